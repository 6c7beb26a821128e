//! `tritter generate` and `tritter eval`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::data::dataset::Dataset;
use clap::Args;
use tritter::data::{prepare_corpus, task_stream, PrepareOptions, TokenBatcher, TokenWindows, Tokenizer};
use tritter::infer::{
    generate, ChatMessage, ChatTemplate, GenerateOptions, PromptFormat, SamplingConfig, TaskAccuracy,
};
use tritter::train::resolve_run_checkpoint;
use tritter::{TritterError, TritterModel};

use crate::common::{count_bar, spinner, Inner, SourceArgs, BACKEND};

/// A model directory, or a run directory's newest weights: its final `model/` or its latest
/// step checkpoint's, whichever was written last (a resumed run that stopped early leaves
/// `model/` older than its checkpoints). Says which one a run directory gave.
pub fn model_dir(path: &Path) -> tritter::Result<PathBuf> {
    if !path.is_dir() {
        return Err(TritterError::Io {
            action: "cannot open model directory",
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory or does not exist"),
        });
    }
    if tritter::hf::is_hf_dir(path) {
        return Err(TritterError::Unsupported {
            path: path.to_path_buf(),
            what: "config.json".into(),
            reason: format!(
                "this is a Hugging Face model directory; import it first: tritter import --from {} --out DIR",
                path.display()
            ),
        });
    }
    if path.join("config.json").is_file() {
        return Ok(path.to_path_buf());
    }
    let finished = Some(path.join("model")).filter(|d| d.join("config.json").is_file());
    let latest = resolve_run_checkpoint(path).ok().map(|c| c.join("model"));
    let chosen = match (finished, latest) {
        (None, None) => {
            return Err(TritterError::InvalidInput(format!(
                "{} is neither a model directory (config.json + model.safetensors) nor a run directory \
                 (model/ or checkpoints/latest)",
                path.display()
            )))
        }
        (Some(dir), None) | (None, Some(dir)) => dir,
        (Some(finished), Some(latest)) if written_at(&latest) > written_at(&finished) => {
            eprintln!("note: {} is newer than {}; loading it", latest.display(), finished.display());
            latest
        }
        (Some(finished), Some(_)) => finished,
    };
    eprintln!("Loading {}", chosen.display());
    Ok(chosen)
}

/// When a model directory's weights were written (`None` if unreadable).
pub fn written_at(dir: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(dir.join("model.safetensors")).and_then(|m| m.modified()).ok()
}

/// A loaded model with its tokenizer and the directory it came from.
pub struct Loaded {
    pub model: TritterModel<Inner>,
    pub tokenizer: Tokenizer,
    pub dir: PathBuf,
}

/// The tokenizer given, else the model directory's `tokenizer.json`, else the byte tokenizer.
pub fn model_tokenizer(dir: &Path, given: &Option<PathBuf>) -> tritter::Result<Tokenizer> {
    let beside = dir.join("tokenizer.json");
    match given {
        Some(path) => Tokenizer::from_file(path),
        None if beside.is_file() => Tokenizer::from_file(&beside),
        None => Ok(Tokenizer::bytes()),
    }
}

/// Loads a model (as [`load_model`]) and its tokenizer (as [`model_tokenizer`]).
pub fn load(model: &Path, tokenizer: &Option<PathBuf>, packed: bool) -> tritter::Result<Loaded> {
    let (model, dir) = load_model(model, packed)?;
    let tokenizer = model_tokenizer(&dir, tokenizer)?;
    tokenizer.check_fits(model.config().vocab_size)?;
    if tokenizer.vocab_size() < model.config().vocab_size {
        eprintln!(
            "note: the model has {} token ids, the tokenizer ({}) {}; generated ids it lacks print as <id N>",
            model.config().vocab_size,
            tokenizer.describe(),
            tokenizer.vocab_size()
        );
    }
    Ok(Loaded { model, tokenizer, dir })
}

/// Loads a model (packing it in memory when `packed` is set and it is not packed yet) and
/// returns it with its directory.
fn load_model(model: &Path, packed: bool) -> tritter::Result<(TritterModel<Inner>, PathBuf)> {
    let dir = model_dir(model)?;
    let mut model = TritterModel::<Inner>::load_checkpoint(&dir, &Default::default())?;
    if packed && !model.is_packed() {
        model = model.into_packed()?;
    }
    Ok((model, dir))
}

/// Generates from one prompt, printing the reply's text as it grows (decoding the whole reply
/// each time keeps multi-byte characters intact); returns the reply's ids.
pub fn stream_reply(loaded: &Loaded, prompt: Vec<u32>, options: &GenerateOptions) -> tritter::Result<Vec<u32>> {
    let mut printed = String::new();
    let mut produced: Vec<u32> = Vec::new();
    generate(&loaded.model, &[prompt], options, &mut |_, token| {
        if options.stop_tokens.contains(&token) {
            return;
        }
        produced.push(token);
        if let Ok(text) = loaded.tokenizer.decode(&produced) {
            if let Some(new) = text.strip_prefix(printed.as_str()) {
                print!("{new}");
                let _ = std::io::stdout().flush();
            }
            printed = text;
        }
    })?;
    Ok(produced)
}

/// The sampling options every generating command shares.
#[derive(Args)]
pub struct SamplingArgs {
    /// Most tokens to generate per prompt.
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Softmax temperature; 0 = greedy (always the most likely token).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Sample only among the k most likely tokens [default: all].
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sample only among the most likely tokens whose probabilities sum to p, in (0, 1]
    /// [default: 1].
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Seed of the sampler (the same seed gives the same text).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep going past max_seq_len by sliding the context window (else: an error).
    #[arg(long)]
    pub slide_window: bool,
    /// Do not stop at the end-of-sequence token.
    #[arg(long)]
    pub ignore_eos: bool,
}

impl SamplingArgs {
    pub fn options(&self, stop_tokens: Vec<u32>) -> GenerateOptions {
        GenerateOptions {
            max_new_tokens: self.max_new_tokens,
            sampling: SamplingConfig {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                seed: self.seed,
            },
            stop_tokens: if self.ignore_eos { Vec::new() } else { stop_tokens },
            slide_window: self.slide_window,
        }
    }
}

/// The chat template of a loaded model, the tokens ending its turns added to `format.stop`.
pub fn chat_template(loaded: &Loaded, format: &mut PromptFormat) -> tritter::Result<ChatTemplate> {
    let template = ChatTemplate::from_dir(&loaded.dir)?.ok_or_else(|| TritterError::Tokenizer {
        path: loaded.dir.clone(),
        reason: "the model has no chat template (chat_template.jinja or chat_template in tokenizer_config.json)".into(),
    })?;
    if let Ok([id]) = loaded.tokenizer.encode_reference(template.eos_token()).as_deref() {
        if !format.stop.contains(id) {
            format.stop.push(*id);
        }
    }
    Ok(template)
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Model directory (config.json + model.safetensors) or a training run directory.
    #[arg(long)]
    pub model: PathBuf,
    /// The tokenizer.json the model was trained with; default: the model directory's
    /// tokenizer.json, else the byte-level tokenizer.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Prompt text; repeat for a batch (each completion is printed when the batch ends).
    #[arg(long, required = true)]
    pub prompt: Vec<String>,
    /// Treat each prompt as a user message in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Pack the ternary weights in memory first (2-bit codes, the packed kernel); packed
    /// checkpoints are always used packed.
    #[arg(long)]
    pub packed: bool,
}

pub fn run_generate(args: GenerateArgs) -> tritter::Result<()> {
    let loaded = load(&args.model, &args.tokenizer, args.packed)?;
    let mut format = PromptFormat::for_model(&loaded.dir, &loaded.tokenizer)?;
    let template = if args.chat { Some(chat_template(&loaded, &mut format)?) } else { None };
    let prompts: Vec<Vec<u32>> = args
        .prompt
        .iter()
        .map(|p| match &template {
            Some(t) => loaded.tokenizer.encode_reference(&t.render(&[ChatMessage::new("user", p)], true)?),
            None => Ok(format.prompt(loaded.tokenizer.encode(p)?)),
        })
        .collect::<tritter::Result<_>>()?;
    let options = args.sampling.options(format.stop.clone());
    options.check(loaded.model.config(), &prompts)?;
    let started = Instant::now();
    let tokens = if let [prompt] = prompts.as_slice() {
        if !args.chat {
            print!("{}", args.prompt[0]);
        }
        let reply = stream_reply(&loaded, prompt.clone(), &options)?;
        println!();
        reply.len()
    } else {
        let outputs = generate(&loaded.model, &prompts, &options, &mut |_, _| {})?;
        for (prompt, out) in args.prompt.iter().zip(&outputs) {
            let out: Vec<u32> = out.iter().copied().filter(|t| !options.stop_tokens.contains(t)).collect();
            println!("{}{}", if args.chat { "" } else { prompt }, loaded.tokenizer.decode(&out)?);
        }
        outputs.iter().map(Vec::len).sum()
    };
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("[{tokens} tokens in {seconds:.2} s, {:.1} tokens/s on {BACKEND}]", tokens as f64 / seconds.max(1e-9));
    Ok(())
}

#[derive(Args)]
pub struct EvalArgs {
    /// Model directory (config.json + model.safetensors) or a training run directory.
    #[arg(long)]
    pub model: PathBuf,
    /// The tokenizer.json the model was trained with; default: the model directory's
    /// tokenizer.json, else the byte-level tokenizer.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Data to measure perplexity on (a file or directory; all of it is used). Default: the
    /// held-out generated tasks only.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Held-out generated tasks to score by exact match (0: none) [default: 250 without
    /// --data, 0 with it].
    #[arg(long)]
    pub tasks: Option<usize>,
    /// Tokens per evaluation window.
    #[arg(long, default_value_t = 64, value_parser = at_least_one())]
    pub seq: usize,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 16, value_parser = at_least_one())]
    pub batch: usize,
    /// Stop after this many windows (0: all).
    #[arg(long, default_value_t = 0)]
    pub max_windows: usize,
    #[arg(long, default_value = "runs/cache")]
    pub cache_dir: PathBuf,
    /// Pack the ternary weights in memory first (as `generate --packed`).
    #[arg(long)]
    pub packed: bool,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// A count that must be positive (clap refuses 0, naming the flag).
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

pub fn run_eval(args: EvalArgs) -> tritter::Result<()> {
    let tasks = args.tasks.unwrap_or(if args.data.is_some() { 0 } else { 250 });
    if args.data.is_none() && tasks == 0 {
        return Err(TritterError::InvalidInput("nothing to evaluate: give --data, or --tasks above 0".into()));
    }
    let Loaded { model, tokenizer, .. } = load(&args.model, &args.tokenizer, args.packed)?;
    if args.seq + 1 > model.config().max_seq_len {
        return Err(TritterError::InvalidConfig {
            field: "seq",
            reason: format!("seq + 1 = {} exceeds max_seq_len = {}", args.seq + 1, model.config().max_seq_len),
        });
    }
    if let Some(path) = &args.data {
        let options =
            PrepareOptions { source: args.source.options(), val_fraction: 0.0, cache_dir: args.cache_dir.clone() };
        let bar = spinner(&format!("tokenizing {}", path.display()));
        let corpus = prepare_corpus(path, &tokenizer, &options, &mut |_| {})?;
        bar.finish_and_clear();
        let windows = TokenWindows::new(Arc::new(corpus.train), args.seq, tokenizer.special_ids().pad);
        let count = if args.max_windows > 0 { windows.len().min(args.max_windows) } else { windows.len() };
        if count == 0 {
            return Err(TritterError::Data { path: path.clone(), line: None, reason: "no tokens to evaluate".into() });
        }
        let (mut weighted, mut tokens) = (0.0f64, 0usize);
        let started = Instant::now();
        for start in (0..count).step_by(args.batch) {
            let items: Vec<Vec<u32>> =
                (start..(start + args.batch).min(count)).filter_map(|i| windows.get(i)).collect();
            let pad = tokenizer.special_ids().pad;
            let targets = items.iter().flat_map(|w| &w[1..]).filter(|&&t| t != pad).count();
            let batch = burn::data::dataloader::batcher::Batcher::<Inner, _, _>::batch(
                &TokenBatcher::default(),
                items,
                &Default::default(),
            );
            let loss: f32 = model.loss_checked(batch.input_ids)?.into_scalar();
            weighted += loss as f64 * targets as f64;
            tokens += targets;
        }
        let mean = weighted / tokens.max(1) as f64;
        // Bits per byte: the loss per token over the bytes of text per token, comparable
        // across tokenizers.
        let index = &corpus.index;
        let bits_per_byte =
            mean / std::f64::consts::LN_2 * index.train_tokens as f64 / index.stats.text_bytes.max(1) as f64;
        println!(
            "{}: {tokens} tokens in {count} windows of {}: loss {mean:.4}, perplexity {:.3}, {bits_per_byte:.3} bits per byte ({:.1} s)",
            path.display(),
            args.seq + 1,
            mean.exp(),
            started.elapsed().as_secs_f64()
        );
    }
    if tasks > 0 {
        let bar = count_bar("scoring held-out tasks", tasks as u64);
        let mut accuracy = TaskAccuracy::default();
        for example in task_stream(1, true).take(tasks) {
            accuracy.score(&model, &tokenizer, &example)?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        println!(
            "Held-out generated tasks (exact match, greedy): {:.1}% of {}",
            100.0 * accuracy.accuracy(),
            accuracy.total
        );
        for (task, (correct, total)) in &accuracy.per_task {
            println!("  {:<8} {correct:>3}/{total}", task.name());
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct LogitsArgs {
    /// Model directory (config.json + model.safetensors) or a training run directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Token ids, comma or space separated; one sequence.
    #[arg(long)]
    pub ids: String,
    /// Pack the ternary weights in memory first.
    #[arg(long)]
    pub packed: bool,
}

/// Prints `{"shape": [1, T, V], "logits": [...]}` for one sequence of ids.
pub fn run_logits(args: LogitsArgs) -> tritter::Result<()> {
    let (model, _) = load_model(&args.model, args.packed)?;
    let ids = args
        .ids
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<i64>().map_err(|_| TritterError::InvalidInput(format!("--ids: `{s}` is not a token id"))))
        .collect::<tritter::Result<Vec<i64>>>()?;
    let len = ids.len();
    let input = burn::tensor::Tensor::<Inner, 2, burn::tensor::Int>::from_data(
        burn::tensor::TensorData::new(ids, [1, len]),
        &Default::default(),
    );
    let logits = model.forward_checked(input)?;
    let shape = logits.dims();
    let values: Vec<f32> = logits.into_data().convert::<f32>().to_vec().expect("f32 logits");
    println!("{}", serde_json::json!({ "shape": shape, "logits": values }));
    Ok(())
}
