//! `tritter generate` and `tritter eval`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::data::dataset::Dataset;
use clap::Args;
use tritter::data::{generate_tasks, prepare_corpus, PrepareOptions, TokenBatcher, TokenWindows, Tokenizer};
use tritter::infer::{generate, task_accuracy, GenerateOptions, SamplingConfig};
use tritter::train::resolve_run_checkpoint;
use tritter::{TritterError, TritterModel};

use crate::common::{spinner, Inner, SourceArgs, BACKEND};

/// A model directory, or a run directory (its final `model/`, else its latest checkpoint).
pub fn model_dir(path: &Path) -> tritter::Result<PathBuf> {
    if !path.is_dir() {
        return Err(TritterError::Io {
            action: "cannot open model directory",
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory or does not exist"),
        });
    }
    if path.join("config.json").is_file() {
        return Ok(path.to_path_buf());
    }
    if path.join("model/config.json").is_file() {
        return Ok(path.join("model"));
    }
    Ok(resolve_run_checkpoint(path)?.join("model"))
}

/// Loads a model (packing it in memory when `packed` is set and it is not packed yet) and the tokenizer.
fn load(model: &Path, tokenizer: &Option<PathBuf>, packed: bool) -> tritter::Result<(TritterModel<Inner>, Tokenizer)> {
    let dir = model_dir(model)?;
    let mut model = TritterModel::<Inner>::load_checkpoint(&dir, &Default::default())?;
    if packed && !model.is_packed() {
        model = model.into_packed()?;
    }
    let tokenizer = match tokenizer {
        Some(path) => Tokenizer::from_file(path)?,
        None => Tokenizer::bytes(),
    };
    tokenizer.check_fits(model.config().vocab_size)?;
    Ok((model, tokenizer))
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Model directory (config.json + model.safetensors) or a training run directory.
    #[arg(long)]
    pub model: PathBuf,
    /// The tokenizer.json the model was trained with; the byte-level tokenizer when omitted.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Prompt text; repeat for a batch (each completion is printed when the batch ends).
    #[arg(long, required = true)]
    pub prompt: Vec<String>,
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub top_p: Option<f32>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep going past max_seq_len by sliding the context window (else: an error).
    #[arg(long)]
    pub slide_window: bool,
    /// Do not stop at the end-of-sequence token.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Pack the ternary weights in memory first (2-bit codes, the packed kernel); packed
    /// checkpoints are always used packed.
    #[arg(long)]
    pub packed: bool,
}

pub fn run_generate(args: GenerateArgs) -> tritter::Result<()> {
    let (model, tokenizer) = load(&args.model, &args.tokenizer, args.packed)?;
    let eos = tokenizer.special_ids().eos;
    let prompts: Vec<Vec<u32>> = args
        .prompt
        .iter()
        .map(|p| {
            let mut ids = vec![eos];
            ids.extend(tokenizer.encode(p)?);
            Ok(ids)
        })
        .collect::<tritter::Result<_>>()?;
    let options = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        sampling: SamplingConfig {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            seed: args.seed,
        },
        stop_tokens: if args.ignore_eos { Vec::new() } else { vec![eos] },
        slide_window: args.slide_window,
    };
    let started = Instant::now();
    let single = prompts.len() == 1;
    let mut printed = String::new();
    let mut produced: Vec<u32> = Vec::new();
    if single {
        print!("{}", args.prompt[0]);
        let _ = std::io::stdout().flush();
    }
    // Stream a single prompt's text as it grows (decoding the whole completion each time keeps
    // multi-byte characters intact).
    let outputs = generate(&model, &prompts, &options, &mut |_, token| {
        if single {
            produced.push(token);
            if let Ok(text) = tokenizer.decode(&produced) {
                if let Some(new) = text.strip_prefix(printed.as_str()) {
                    print!("{new}");
                    let _ = std::io::stdout().flush();
                }
                printed = text;
            }
        }
    })?;
    let seconds = started.elapsed().as_secs_f64();
    if single {
        println!();
    } else {
        for (prompt, out) in args.prompt.iter().zip(&outputs) {
            println!("{prompt}{}", tokenizer.decode(out)?);
        }
    }
    let tokens: usize = outputs.iter().map(Vec::len).sum();
    eprintln!("[{tokens} tokens in {seconds:.2} s, {:.1} tokens/s on {BACKEND}]", tokens as f64 / seconds.max(1e-9));
    Ok(())
}

#[derive(Args)]
pub struct EvalArgs {
    /// Model directory (config.json + model.safetensors) or a training run directory.
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Data to measure perplexity on (a file or directory; all of it is used). Default: the
    /// held-out generated tasks only.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Held-out generated tasks to score by exact match (0: none).
    #[arg(long, default_value_t = 250)]
    pub tasks: usize,
    /// Tokens per evaluation window.
    #[arg(long, default_value_t = 64)]
    pub seq: usize,
    #[arg(long, default_value_t = 16)]
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

pub fn run_eval(args: EvalArgs) -> tritter::Result<()> {
    let (model, tokenizer) = load(&args.model, &args.tokenizer, args.packed)?;
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
                &TokenBatcher,
                items,
                &Default::default(),
            );
            let loss: f32 = model.loss_checked(batch.input_ids)?.into_scalar();
            weighted += loss as f64 * targets as f64;
            tokens += targets;
        }
        let mean = weighted / tokens.max(1) as f64;
        println!(
            "{}: {tokens} tokens in {count} windows of {}: loss {mean:.4}, perplexity {:.3} ({:.1} s)",
            path.display(),
            args.seq + 1,
            mean.exp(),
            started.elapsed().as_secs_f64()
        );
    }
    if args.tasks > 0 {
        let examples = generate_tasks(1, args.tasks, true);
        let accuracy = task_accuracy(&model, &tokenizer, &examples)?;
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
    let (model, _) = load(&args.model, &None, args.packed)?;
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
