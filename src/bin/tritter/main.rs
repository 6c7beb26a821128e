//! The `tritter` command line: training, generation, evaluation, data preparation and tokenizer
//! training.

// Burn's fusion backend (under `--features wgpu` or `cuda`) nests types deeper than the default limit.
#![recursion_limit = "256"]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use indicatif::HumanBytes;
use tritter::data::{
    prepare_corpus, read_crate_list, rust_sources, train_bpe_on, write_rust_corpus, write_task_corpus, BpeOptions,
    DataSpec, PrepareOptions, Tokenizer,
};
use tritter::TritterError;

mod chat;
mod common;
mod export;
mod import;
mod infer;
mod info;
mod interrupt;
mod train;

use common::{spinner, SourceArgs};

#[derive(Parser)]
#[command(name = "tritter", version, about = "Ternary-weight (BitNet b1.58) language models on Burn")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model (built-in generated tasks by default, or your data) with checkpoints,
    /// resume, a live dashboard and the hybrid predictive trainer as an option.
    Train(Box<train::TrainArgs>),
    /// Generate text from a trained model (KV cache, greedy or sampled, streamed).
    Generate(infer::GenerateArgs),
    /// Chat with a model through its chat template (interactive, streaming).
    Chat(chat::ChatArgs),
    /// Print a model's logits for token ids as JSON (for comparisons with other implementations).
    Logits(infer::LogitsArgs),
    /// Measure a model: perplexity on a dataset, exact match on held-out generated tasks.
    Eval(infer::EvalArgs),
    /// Convert a trained model to its packed inference form (2-bit ternary weights), or export
    /// it for transformers (`--format hf`), llama.cpp (`--format gguf`) or bitnet-quantize.
    Export(export::ExportArgs),
    /// Import a Hugging Face BitNet b1.58 or Llama-BitNet model directory (latent or packed
    /// weights) as a Tritter checkpoint for generate, chat, eval and fine-tuning.
    Import(import::ImportArgs),
    /// Parameters and memory (training, packed inference) of a preset or config.
    Info(info::InfoArgs),
    /// Start the orchestrator the machines of a multi-machine run meet at (`tritter train
    /// --nodes`); runs until stopped (Ctrl-C).
    Orchestrator {
        /// The port to listen on (all interfaces).
        #[arg(long, default_value_t = 3000)]
        port: u16,
    },
    /// Tokenizer tools.
    #[command(subcommand)]
    Tokenizer(TokenizerCommand),
    /// Data tools.
    #[command(subcommand)]
    Data(DataCommand),
}

#[derive(Subcommand)]
enum TokenizerCommand {
    /// Train a byte-level BPE tokenizer on your files and save it as tokenizer.json.
    Train {
        /// A file or a directory of them (.jsonl, .txt, .parquet, optionally .gz).
        #[arg(long)]
        data: PathBuf,
        /// Vocabulary size, the 4 special tokens and 256 bytes included.
        #[arg(long, default_value_t = 8192)]
        vocab_size: usize,
        /// Pairs seen fewer times are not merged.
        #[arg(long, default_value_t = 2)]
        min_frequency: u64,
        /// Where to write the tokenizer.
        #[arg(long, default_value = "tokenizer.json")]
        out: PathBuf,
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Print the token ids of a text as JSON (no special tokens added).
    Encode {
        /// A tokenizer.json; the byte-level tokenizer when omitted.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        #[arg(long)]
        text: String,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Tokenize a corpus into the binary token cache (reused while nothing changes).
    Prepare {
        /// A file or directory, optionally `PATH:WEIGHT`; repeatable.
        #[arg(long, required = true)]
        data: Vec<DataSpec>,
        /// A Hugging Face tokenizer.json; the byte-level tokenizer when omitted.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// Fraction of documents held out for validation.
        #[arg(long, default_value_t = 0.01)]
        val_fraction: f64,
        /// Where token caches live.
        #[arg(long, default_value = "runs/cache")]
        cache_dir: PathBuf,
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Write the built-in generated task corpus (addition, copy, reverse, count, sort) as JSONL.
    Generate {
        #[arg(long, default_value = "data/tasks.jsonl")]
        out: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Write the Rust-text corpus as JSONL: the .rs files of the crates a list names (`NAME
    /// VERSION` per line), read from cargo's registry; no download.
    RustSources {
        #[arg(long, default_value = "data/rust-crates.txt")]
        crates: PathBuf,
        #[arg(long, default_value = "data/rust.jsonl")]
        out: PathBuf,
        /// Cargo's home (`$CARGO_HOME`, else ~/.cargo).
        #[arg(long)]
        cargo_home: Option<PathBuf>,
    },
}

/// burn-collective's global orchestrator on `port`, until the process is stopped.
fn run_orchestrator(port: u16) -> tritter::Result<()> {
    // The orchestrator's server ends quietly when it cannot listen: try the port first.
    std::net::TcpListener::bind(("0.0.0.0", port)).map_err(|e| {
        tritter::TritterError::InvalidInput(format!("the orchestrator cannot listen on port {port}: {e}"))
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| tritter::TritterError::InvalidInput(format!("cannot start the orchestrator's runtime: {e}")))?;
    eprintln!("Orchestrator on port {port}: start `tritter train --nodes N --orchestrator ws://THIS_HOST:{port} ...` on each machine; Ctrl-C stops it.");
    runtime.block_on(burn_collective::start_global_orchestrator(port));
    Ok(())
}

/// The tokenizer.json at `path`, or the byte-level tokenizer.
fn open_tokenizer(path: &Option<PathBuf>) -> tritter::Result<Tokenizer> {
    path.as_ref().map_or(Ok(Tokenizer::bytes()), Tokenizer::from_file)
}

fn run(cli: Cli) -> tritter::Result<ExitCode> {
    match cli.command {
        Command::Train(args) => return train::run(*args),
        Command::Generate(args) => infer::run_generate(args)?,
        Command::Chat(args) => chat::run_chat(args)?,
        Command::Eval(args) => infer::run_eval(args)?,
        Command::Logits(args) => infer::run_logits(args)?,
        Command::Export(args) => export::run_export(args)?,
        Command::Import(args) => import::run_import(args)?,
        Command::Info(args) => info::run_info(args)?,
        Command::Orchestrator { port } => run_orchestrator(port)?,
        Command::Tokenizer(TokenizerCommand::Train { data, vocab_size, min_frequency, out, source }) => {
            let options = BpeOptions {
                vocab_size,
                min_frequency,
                show_progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            let started = Instant::now();
            let (tokenizer, stats) = train_bpe_on(&data, &source.options(), &options)?;
            if stats.skipped_records > 0 {
                println!("skipped {} bad records", stats.skipped_records);
            }
            tokenizer.save(&out)?;
            println!(
                "Trained a {}-token BPE tokenizer on {} documents in {:.1?}: {}",
                tokenizer.vocab_size(),
                stats.documents,
                started.elapsed(),
                out.display()
            );
        }
        Command::Tokenizer(TokenizerCommand::Encode { tokenizer, text }) => {
            let ids = open_tokenizer(&tokenizer)?.encode(&text)?;
            println!("{}", serde_json::json!({ "ids": ids }));
        }
        Command::Data(DataCommand::Prepare { data, tokenizer, val_fraction, cache_dir, source }) => {
            let tokenizer = open_tokenizer(&tokenizer)?;
            let options = PrepareOptions { source: source.options(), val_fraction, cache_dir };
            for spec in &data {
                let started = Instant::now();
                let bar = spinner(&format!("tokenizing {}", spec.path.display()));
                let corpus = prepare_corpus(&spec.path, &tokenizer, &options, &mut |p| {
                    let rate = p.text_bytes as f64 / started.elapsed().as_secs_f64().max(1e-9);
                    bar.set_message(format!(
                        "tokenizing {}: {} documents, {} ({}/s)",
                        spec.path.display(),
                        p.documents,
                        HumanBytes(p.text_bytes),
                        HumanBytes(rate as u64)
                    ));
                })?;
                bar.finish_and_clear();
                let i = &corpus.index;
                println!(
                    "{} (weight {}): {} documents ({} skipped), {} train / {} validation tokens, {} {}",
                    spec.path.display(),
                    spec.weight,
                    i.stats.documents,
                    i.stats.skipped_records,
                    i.train_tokens,
                    i.val_tokens,
                    if corpus.reused { "reused cache" } else { "cached in" },
                    corpus.dir.display()
                );
            }
        }
        Command::Data(DataCommand::Generate { out, count, seed }) => {
            write_task_corpus(&out, seed, count)?;
            println!("Wrote {count} generated task examples to {}", out.display());
        }
        Command::Data(DataCommand::RustSources { crates, out, cargo_home }) => {
            let cargo_home = cargo_home.or_else(rust_sources::default_cargo_home).ok_or_else(|| {
                TritterError::InvalidInput("cannot find cargo's home: set CARGO_HOME or pass --cargo-home".into())
            })?;
            let list = read_crate_list(&crates)?;
            let stats = write_rust_corpus(&list, &cargo_home, &out)?;
            println!(
                "Wrote {} .rs files of {} crates ({}) to {}",
                stats.files,
                stats.crates,
                HumanBytes(stats.bytes),
                out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Printing into a closed pipe (`tritter logits ... | head`) ends the process quietly, as
/// other command-line tools do, instead of panicking inside `println!`.
fn end_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restores the default action of one signal before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    end_quietly_on_closed_pipe();
    tritter::allocator::keep_freed_memory();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
