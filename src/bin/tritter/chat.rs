//! `tritter chat`: an interactive conversation with a model through its chat template,
//! streaming each reply.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use clap::Args;
use tritter::infer::{ChatMessage, PromptFormat};

use crate::infer::{chat_template, load, stream_reply, SamplingArgs};

#[derive(Args)]
pub struct ChatArgs {
    /// Model directory with a chat template (an imported Hugging Face chat model).
    #[arg(long)]
    pub model: PathBuf,
    /// A tokenizer.json; default: the model directory's.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// A system message to start the conversation with.
    #[arg(long)]
    pub system: Option<String>,
    /// Pack the ternary weights in memory first.
    #[arg(long)]
    pub packed: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn run_chat(args: ChatArgs) -> tritter::Result<()> {
    let loaded = load(&args.model, &args.tokenizer, args.packed)?;
    let mut format = PromptFormat::for_model(&loaded.dir, &loaded.tokenizer)?;
    let template = chat_template(&loaded, &mut format)?;
    let options = args.sampling.options(format.stop.clone());
    let mut messages: Vec<ChatMessage> = args.system.iter().map(|s| ChatMessage::new("system", s)).collect();
    eprintln!("Chatting with {} (an empty line or end of input quits; /reset starts over).", loaded.dir.display());
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        eprint!("> ");
        let _ = std::io::stderr().flush();
        let Some(line) = lines.next().transpose().map_err(|source| tritter::TritterError::Io {
            action: "cannot read",
            path: "stdin".into(),
            source,
        })?
        else {
            break;
        };
        match line.trim() {
            "" => break,
            "/reset" => {
                messages.retain(|m| m.role == "system");
                continue;
            }
            text => messages.push(ChatMessage::new("user", text)),
        }
        let prompt = loaded.tokenizer.encode_reference(&template.render(&messages, true)?)?;
        let reply = stream_reply(&loaded, prompt, &options)?;
        println!();
        messages.push(ChatMessage::new("assistant", loaded.tokenizer.decode(&reply)?.trim()));
    }
    Ok(())
}
