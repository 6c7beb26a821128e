//! `tritter train` (also `cargo run --example train`): trains a model on the built-in generated
//! tasks or on your files, with burn-train's dashboard, step checkpoints and resume.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use clap::{Args, ValueEnum};
use indicatif::HumanBytes;
use tritter::backend::Autodiff;
use tritter::data::{generate_tasks, DataSpec, PrepareOptions, Tokenizer, TrainingSets};
use tritter::train::{
    train_parallel, Cooldown, Dashboard, HybridOptions, MainJob, Nodes, NonFinitePolicy, Parallel, ResumePoint,
    RunSummary, TaskEval, TrainConfig, TrainData, TrainOptions, TrainOutcome,
};
use tritter::{TritterConfig, TritterError, TritterModel};

use crate::common::{devices, json_differences, spinner, Device, Inner, SourceArgs, BACKEND};
use crate::infer::written_at;
use crate::interrupt;

#[derive(Copy, Clone, ValueEnum)]
pub enum DashboardArg {
    /// The terminal dashboard on a terminal, plain lines otherwise.
    Auto,
    Tui,
    Lines,
    Quiet,
}

#[derive(Copy, Clone, ValueEnum)]
pub enum NonFiniteArg {
    Stop,
    Skip,
}

/// Options of a training run. Flags override `--config`; the merged settings are saved as
/// `OUT/train_config.json`.
#[derive(Args)]
pub struct TrainArgs {
    /// Model preset (test, small_100m, medium_500m, large_1b, xlarge_3b, huge_7b, bitnet_2b4t)
    /// [default: the main job's model (the test preset at H 96, 4 layers, RoPE base 10,000); a
    /// resumed run: the checkpoint's model].
    #[arg(long, conflicts_with = "model_config")]
    pub preset: Option<String>,
    /// A model config JSON instead of a preset.
    #[arg(long)]
    pub model_config: Option<PathBuf>,
    /// The ~40 s demo instead of the ~5 min main job: the test preset for 1500 steps (learns
    /// counting and sorting, not yet copying, reversing or addition).
    #[arg(long, conflicts_with_all = ["preset", "model_config", "resume", "config"])]
    pub quick: bool,
    /// A training config JSON (see TrainConfig); flags given here override its fields.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Training data: a file or directory (.jsonl, .txt, .parquet, .gz), `PATH:WEIGHT` to mix
    /// several; repeatable. Default: the built-in generated tasks.
    #[arg(long)]
    pub data: Vec<DataSpec>,
    /// A Hugging Face tokenizer.json; the byte-level tokenizer when omitted.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Run directory: checkpoints, metric logs, the final model [default: runs/train; a resumed
    /// run: its own directory].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this run directory (or from this step checkpoint), in its directory
    /// and with its saved training config; flags may lengthen it (--steps) or change how often
    /// it evaluates and checkpoints, and are refused if they would change anything else.
    #[arg(long, conflicts_with = "init")]
    pub resume: Option<PathBuf>,
    /// Start from the weights of a model directory (config.json + model.safetensors) or of a
    /// run directory's newest, e.g. to fine-tune, instead of a random initialisation.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Replace the run already in `--out` (its checkpoints and final model) with a fresh one;
    /// without it a fresh run into such a directory is refused.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Optimizer steps in the whole run [default: 1500].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Sequences per micro-batch, over all devices together.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Tokens per sequence.
    #[arg(long)]
    pub seq: Option<usize>,
    /// Peak learning rate (default 1e-2 for the test preset, else 1e-3).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Steps of linear warmup to the peak learning rate [default: 75, or steps / 20 with --steps].
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Micro-batches per optimizer step.
    #[arg(long)]
    pub grad_accum: Option<usize>,
    /// Global gradient-norm clip (0 disables).
    #[arg(long)]
    pub grad_clip: Option<f32>,
    /// AdamW's decoupled weight decay [default: 0.1].
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// BitNet b1.58's two-stage schedule: `START:LR_RATIO`, e.g. `0.5:0.3` drops the learning
    /// rate to 30% and stops weight decay after half the steps.
    #[arg(long, value_parser = parse_cooldown)]
    pub cooldown: Option<Cooldown>,
    /// Seeds the initialisation and the data order [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Evaluate every N steps (0: at the end only).
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Save a resumable checkpoint every N steps (0: at the end only).
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    #[arg(long, value_enum)]
    pub on_non_finite: Option<NonFiniteArg>,
    /// Recompute activations in the backward pass to save memory.
    #[arg(long)]
    pub grad_checkpointing: bool,
    /// Use the hybrid predictive trainer (Full / Predict / Correct phases). Experimental: on the
    /// `test` preset it did no better than plain training with as many steps as it made backward
    /// passes (docs/training.md, Hybrid predictive training).
    #[arg(long)]
    pub hybrid: bool,
    /// Hybrid: full (backpropagated) steps before the first prediction.
    #[arg(long)]
    pub hybrid_warmup: Option<usize>,
    /// Hybrid: full steps per cycle (fewer = more predicted steps).
    #[arg(long)]
    pub hybrid_full_steps: Option<usize>,
    /// Hybrid: longest run of predicted steps.
    #[arg(long)]
    pub hybrid_max_predict: Option<usize>,
    /// Hybrid: predictor confidence needed to predict.
    #[arg(long)]
    pub hybrid_confidence: Option<f32>,
    /// Hybrid: optimizer updates averaged into each predicted step.
    #[arg(long)]
    pub hybrid_history: Option<usize>,
    #[command(flatten)]
    pub parallel: ParallelArgs,
    /// Held-out generated tasks scored at each evaluation (generated data only).
    #[arg(long, default_value_t = 200)]
    pub task_examples: usize,
    #[arg(long, value_enum, default_value = "auto")]
    pub dashboard: DashboardArg,
    /// Fraction of documents held out for validation.
    #[arg(long, default_value_t = 0.02)]
    pub val_fraction: f64,
    /// Where token caches live.
    #[arg(long, default_value = "runs/cache")]
    pub cache_dir: PathBuf,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Data-parallel training on several devices and machines.
#[derive(Args)]
pub struct ParallelArgs {
    /// Train on N devices at once (CUDA: cuda:0..N-1; wgpu: the first N discrete GPUs; the CPU:
    /// N workers sharing its cores), each on its share of every batch; the result equals a
    /// one-device run up to float rounding.
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// Machines in the run: each runs this command with the same settings and data and its own
    /// --node-rank and --node-address, after `tritter orchestrator` has started on one of them.
    #[arg(long, requires_all = ["node_rank", "orchestrator", "node_address"])]
    pub nodes: Option<u32>,
    /// This machine's place in 0..NODES (which rows of every batch it trains on); node 0
    /// evaluates and writes the checkpoints.
    #[arg(long, requires = "nodes")]
    pub node_rank: Option<u32>,
    /// The orchestrator's address, e.g. ws://10.0.0.1:3000.
    #[arg(long, requires = "nodes")]
    pub orchestrator: Option<String>,
    /// Where the other machines reach this one, e.g. ws://10.0.0.2:3001 (a free port).
    #[arg(long, requires = "nodes")]
    pub node_address: Option<String>,
    /// Seconds to wait for a step's workers (and the other machines) before the run stops with
    /// an error (the last checkpoint stays the latest).
    #[arg(long, default_value_t = tritter::train::parallel::DEFAULT_TIMEOUT.as_secs())]
    pub worker_timeout: u64,
}

impl ParallelArgs {
    pub fn parallel(&self) -> tritter::Result<Parallel<Device>> {
        let nodes = self.nodes.map(|count| Nodes {
            count,
            rank: self.node_rank.unwrap_or_default(),
            orchestrator: self.orchestrator.clone().unwrap_or_default(),
            node_address: self.node_address.clone().unwrap_or_default(),
        });
        Ok(Parallel { devices: devices(self.devices)?, nodes, timeout: Duration::from_secs(self.worker_timeout) })
    }
}

impl TrainArgs {
    /// The run's training config: `saved` (a resumed run's) or `--config` or the main job's,
    /// with the flags given applied over it.
    fn train_config(&self, saved: Option<&TrainConfig>) -> tritter::Result<TrainConfig> {
        let mut c = match (&self.config, saved) {
            (Some(path), _) => TrainConfig::from_json_file(path)?,
            (None, Some(saved)) => saved.clone(),
            (None, None) => match self.main_job() {
                Some(job) => job.train,
                None => TrainConfig::main_job(if self.preset.as_deref() == Some("test") { 1e-2 } else { 1e-3 }),
            },
        };
        if let Some(v) = self.steps {
            c.steps = v;
            if self.warmup.is_none() && self.config.is_none() && saved.is_none() {
                c.warmup_steps = v / 20;
            }
        }
        macro_rules! set {
            ($($flag:ident => $field:ident),*) => { $(if let Some(v) = self.$flag { c.$field = v; })* };
        }
        set!(batch => batch_size, seq => seq_len, lr => learning_rate, warmup => warmup_steps, grad_accum => grad_accum,
             weight_decay => weight_decay, seed => seed, eval_every => eval_every, checkpoint_every => checkpoint_every);
        if let Some(cooldown) = self.cooldown {
            c.cooldown = Some(cooldown);
        }
        if let Some(clip) = self.grad_clip {
            // 0 turns clipping off; anything else (NaN, negative, infinite) is checked by the config.
            c.grad_clip = (clip != 0.0).then_some(clip);
        }
        if let Some(policy) = self.on_non_finite {
            c.on_non_finite = match policy {
                NonFiniteArg::Stop => NonFinitePolicy::Stop,
                NonFiniteArg::Skip => NonFinitePolicy::Skip,
            };
        }
        c.grad_checkpointing |= self.grad_checkpointing;
        self.apply_hybrid(&mut c);
        c.validate()?;
        Ok(c)
    }

    fn apply_hybrid(&self, c: &mut TrainConfig) {
        let tuned = [self.hybrid_warmup, self.hybrid_full_steps, self.hybrid_max_predict, self.hybrid_history]
            .iter()
            .any(Option::is_some)
            || self.hybrid_confidence.is_some();
        if (self.hybrid || tuned) && c.hybrid.is_none() {
            c.hybrid = Some(HybridOptions::default());
        }
        if let Some(h) = c.hybrid.as_mut() {
            if let Some(v) = self.hybrid_warmup {
                h.warmup_steps = v;
            }
            if let Some(v) = self.hybrid_full_steps {
                h.full_steps = v;
            }
            if let Some(v) = self.hybrid_max_predict {
                h.max_predict_steps = v;
            }
            if let Some(v) = self.hybrid_confidence {
                h.confidence_threshold = v;
            }
            if let Some(v) = self.hybrid_history {
                h.history = v;
            }
        }
    }

    /// The main job (or with `--quick` the demo) when no model is named.
    fn main_job(&self) -> Option<MainJob> {
        let named = self.model_config.is_some() || self.preset.is_some();
        (!named).then(|| if self.quick { MainJob::quick() } else { MainJob::standard() })
    }

    /// The model config asked for by `--model-config` or `--preset` (`None`: neither given).
    fn requested_model(&self) -> tritter::Result<Option<TritterConfig>> {
        match (&self.model_config, &self.preset) {
            (Some(path), _) => TritterConfig::from_json_file(path).map(Some),
            (None, Some(preset)) => TritterConfig::from_preset(preset).map(Some),
            (None, None) => Ok(None),
        }
    }

    fn model_name(&self) -> String {
        match (&self.model_config, &self.preset) {
            (Some(path), _) => path.display().to_string(),
            (None, Some(preset)) => preset.clone(),
            (None, None) if self.quick => "test (--quick)".into(),
            (None, None) => "main job: test preset at H 96, 4 layers, RoPE base 10,000".into(),
        }
    }
}

/// Training-config fields a resumed run may change: its length and how often it evaluates and
/// checkpoints. Every other field fixes the run's arithmetic or data order.
const ADJUSTABLE_ON_RESUME: [&str; 8] = [
    "steps",
    "eval_every",
    "eval_batches",
    "checkpoint_every",
    "keep_checkpoints",
    "on_non_finite",
    "max_skipped_steps",
    "grad_checkpointing",
];

/// `START:LR_RATIO` (ranges are checked with the rest of the config).
fn parse_cooldown(text: &str) -> Result<Cooldown, String> {
    let parse = |part: &str| part.trim().parse::<f64>().map_err(|e| format!("`{part}`: {e}"));
    let (start, ratio) = text.split_once(':').ok_or("expected START:LR_RATIO, e.g. 0.5:0.3")?;
    Ok(Cooldown { start: parse(start)?, lr_ratio: parse(ratio)? })
}

/// The flag that sets training-config field `field`.
fn flag_of(field: &str) -> &'static str {
    match field {
        "batch_size" => "--batch",
        "seq_len" => "--seq",
        "learning_rate" => "--lr",
        "warmup_steps" => "--warmup",
        "grad_accum" => "--grad-accum",
        "grad_clip" => "--grad-clip",
        "weight_decay" => "--weight-decay",
        "cooldown" => "--cooldown",
        "seed" => "--seed",
        "hybrid" => "--hybrid*",
        _ => "--config",
    }
}

/// A resumed run's settings: the changes `now` makes to the run's saved config, each as
/// `field a → b`, or the refusal of the first change that is not in [`ADJUSTABLE_ON_RESUME`].
fn resume_changes(point: &ResumePoint, now: &TrainConfig) -> tritter::Result<Vec<String>> {
    let mut changes = Vec::new();
    for (field, was, is) in json_differences(&point.state.train_config, now) {
        if !ADJUSTABLE_ON_RESUME.contains(&field.as_str()) {
            return Err(TritterError::ResumeMismatch {
                path: point.dir.clone(),
                reason: format!(
                    "{}: the run has {field} = {was}, this asks {is}; a resumed run keeps its training config \
                     (start a new run from its weights with --init to change it)",
                    flag_of(&field)
                ),
            });
        }
        changes.push(format!("{field} {was} → {is}"));
    }
    Ok(changes)
}

/// Refuses a `--model-config`/`--preset` that is not the resumed checkpoint's model, naming
/// each differing field.
fn check_resumed_model(args: &TrainArgs, point: &ResumePoint, requested: Option<TritterConfig>) -> tritter::Result<()> {
    let Some(requested) = requested else { return Ok(()) };
    let differences = json_differences(&point.model_config, &requested);
    if differences.is_empty() {
        return Ok(());
    }
    let fields: Vec<String> = differences.iter().map(|(f, was, is)| format!("{f} {was} → {is}")).collect();
    let flag = if args.model_config.is_some() { "--model-config" } else { "--preset" };
    Err(TritterError::ResumeMismatch {
        path: point.dir.clone(),
        reason: format!("{flag} {} is not the checkpoint's model: {}", args.model_name(), fields.join(", ")),
    })
}

/// The run directory: `--out`, else a resumed run's own directory, else `runs/train`. A resumed
/// run continues only in its own directory.
fn run_dir(args: &TrainArgs, point: Option<&ResumePoint>) -> tritter::Result<PathBuf> {
    let Some(point) = point else { return Ok(args.out.clone().unwrap_or_else(|| "runs/train".into())) };
    match (&point.run_dir, &args.out) {
        (Some(run), None) => Ok(run.clone()),
        (None, Some(out)) => Ok(out.clone()),
        (None, None) => Err(TritterError::ResumeMismatch {
            path: point.dir.clone(),
            reason: "it is not inside a run directory (RUN/checkpoints/step-…); give the run directory with --out"
                .into(),
        }),
        (Some(run), Some(out)) if same_dir(run, out) => Ok(out.clone()),
        (Some(run), Some(out)) => Err(TritterError::ResumeMismatch {
            path: point.dir.clone(),
            reason: format!(
                "--out {} is not its run directory {}: a resumed run continues in its own directory \
                 (copy the run directory to branch it)",
                out.display(),
                run.display()
            ),
        }),
    }
}

fn same_dir(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The run's token windows, with a spinner while each source is tokenized and a line for each.
fn training_sets(args: &TrainArgs, tokenizer: &Tokenizer, config: &TrainConfig) -> tritter::Result<TrainingSets> {
    let options = PrepareOptions {
        source: args.source.options(),
        val_fraction: args.val_fraction,
        cache_dir: args.cache_dir.clone(),
    };
    let started = Instant::now();
    let bar = spinner("tokenizing");
    let sets =
        tritter::data::training_sets(&args.data, tokenizer, &options, config.seq_len, config.seed, &mut |path, p| {
            let rate = p.text_bytes as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "tokenizing {}: {} documents ({}/s)",
                path.display(),
                p.documents,
                HumanBytes(rate as u64)
            ));
        });
    bar.finish_and_clear();
    let sets = sets?;
    let answers = if sets.answers.is_some() { ", loss on the answers only" } else { "" };
    for source in &sets.sources {
        let cached = if source.reused { " (cached)" } else { "" };
        eprintln!(
            "Data: {} — {} train / {} validation tokens{cached}{answers}",
            source.path.display(),
            source.train_tokens,
            source.val_tokens
        );
    }
    Ok(sets)
}

/// Runs `tritter train`; prints progress and a summary.
pub fn run(args: TrainArgs) -> tritter::Result<ExitCode> {
    let point = args.resume.as_deref().map(tritter::train::read_resume_point).transpose()?;
    let config = args.train_config(point.as_ref().map(|p| &p.state.train_config))?;
    let parallel = args.parallel.parallel()?;
    parallel.validate(config.batch_size)?;
    let tokenizer = match &args.tokenizer {
        Some(path) => Tokenizer::from_file(path)?,
        None => Tokenizer::bytes(),
    };
    let with_pad = |mut c: TritterConfig| {
        c.pad_token_id = Some(tokenizer.special_ids().pad as usize);
        c
    };
    let requested = args.requested_model()?.map(with_pad);
    let out = run_dir(&args, point.as_ref())?;
    if let Some(point) = point.as_ref().filter(|p| p.state.step >= config.steps) {
        return finish_run(&out, point);
    }
    // A model directory, or a run directory's newest weights.
    let init = args.init.as_deref().map(crate::infer::model_dir).transpose()?;
    let init_config = init.as_ref().map(|dir| TritterConfig::from_json_file(dir.join("config.json"))).transpose()?;
    let model_config = match &point {
        Some(point) => {
            check_resumed_model(&args, point, requested)?;
            let changes = resume_changes(point, &config)?;
            eprintln!(
                "Resuming {} at step {} of {} from {}",
                out.display(),
                point.state.step,
                config.steps,
                point.dir.display()
            );
            if !changes.is_empty() {
                eprintln!("Changed for the rest of the run: {}", changes.join(", "));
            }
            point.model_config.clone()
        }
        None => match (requested, &init_config) {
            (Some(model), _) => model,
            // The model --init loads.
            (None, Some(init)) => init.clone(),
            (None, None) => with_pad(args.main_job().map_or_else(TritterConfig::test, |job| job.model)),
        },
    };
    // Before data preparation, as the library would refuse it after.
    tokenizer.check_fits(init_config.as_ref().unwrap_or(&model_config).vocab_size)?;
    config.check_fits(init_config.as_ref().unwrap_or(&model_config))?;
    if point.is_none() {
        // Before data preparation, so a refusal comes at once.
        tritter::train::prepare_fresh_run_dir(&out, args.overwrite)?;
    }
    std::fs::create_dir_all(&out).map_err(|source| TritterError::Io {
        action: "cannot create run directory",
        path: out.clone(),
        source,
    })?;
    config.to_json_file(out.join("train_config.json"))?;

    let generated = args.data.is_empty();
    let sets = training_sets(&args, &tokenizer, &config)?;
    let tasks = (generated && args.task_examples > 0)
        .then(|| TaskEval { tokenizer: tokenizer.clone(), examples: generate_tasks(1, args.task_examples, true) });

    let params = model_config.parameter_count();
    eprintln!(
        "Model: {} ({} parameters, ternary weights, int8 activations) on {BACKEND}{}{}",
        if point.is_some() { "the checkpoint's model".to_string() } else { args.model_name() },
        params,
        match (args.parallel.devices, &parallel.nodes) {
            (1, None) => String::new(),
            (n, None) => format!(", {n} devices data-parallel"),
            (n, Some(nodes)) => format!(
                ", {n} device{} on each of {} machines data-parallel (this is node {})",
                if n == 1 { "" } else { "s" },
                nodes.count,
                nodes.rank
            ),
        },
        if config.grad_checkpointing { ", gradient checkpointing" } else { "" }
    );
    eprintln!(
        "Training: {} steps × {} tokens, lr {:.1e} (warmup {}, cosine to {:.0}%{}), AdamW β=({}, {}) wd {}, clip {}{}",
        config.steps,
        config.tokens_per_step(),
        config.learning_rate,
        config.warmup_steps,
        config.min_lr_ratio * 100.0,
        config.cooldown.map_or(String::new(), |c| format!(
            "; after {:.0}% of steps ×{} and no weight decay",
            c.start * 100.0,
            c.lr_ratio
        )),
        config.beta1,
        config.beta2,
        config.weight_decay,
        config.grad_clip.map_or("off".to_string(), |c| c.to_string()),
        if config.hybrid.is_some() { ", hybrid predictive trainer" } else { "" }
    );
    let sink = || -> tritter::train::render::LineSink { Box::new(|line: &str| eprintln!("{line}")) };
    let tui = match args.dashboard {
        DashboardArg::Tui => true,
        DashboardArg::Auto => std::io::stdout().is_terminal(),
        DashboardArg::Lines | DashboardArg::Quiet => false,
    };
    let interrupts = interrupt::watch(tui);
    let dashboard = match args.dashboard {
        DashboardArg::Auto => Dashboard::Auto(sink()),
        DashboardArg::Tui => Dashboard::Tui,
        DashboardArg::Lines => Dashboard::Lines { every: 50, sink: sink() },
        DashboardArg::Quiet => Dashboard::Quiet,
    };
    // Answer-only loss needs the pad id to mark the skipped targets.
    let answers = sets.answers.filter(|a| model_config.pad_token_id == Some(a.pad as usize));
    let data = TrainData { train: sets.train, valid: sets.valid, tasks, answers };
    let options = TrainOptions {
        run_dir: out.clone(),
        resume: args.resume.clone(),
        init,
        dashboard,
        interrupter: Some(interrupts.interrupter.clone()),
        overwrite: args.overwrite,
    };
    let outcome = if config.grad_checkpointing {
        train_parallel::<Autodiff<Inner, BalancedCheckpointing>>(&model_config, &config, data, options, &parallel)?
    } else {
        train_parallel::<Autodiff<Inner>>(&model_config, &config, data, options, &parallel)?
    };
    let model_dir = summarize(&out, &config, &outcome)?;
    outcome.summary(model_dir.as_deref()).write(&out)?;
    // An interrupted run is not a finished one: 128 + the signal, as a shell reports it.
    Ok(match (outcome.interrupted, interrupts.exit_code()) {
        (false, _) => ExitCode::SUCCESS,
        (true, code) => ExitCode::from(code.unwrap_or(130)),
    })
}

/// Saves the final model of a finished run and prints the summary; returns the model's directory.
fn summarize<B: tritter::TritterBackend>(
    out: &Path,
    config: &TrainConfig,
    outcome: &TrainOutcome<B>,
) -> tritter::Result<Option<PathBuf>> {
    // An interrupted run's weights are in its checkpoint; `model/` is the finished run's.
    let final_dir = (!outcome.interrupted).then(|| out.join("model"));
    if let Some(dir) = &final_dir {
        outcome.model.save_checkpoint(dir)?;
    }
    let steps = outcome.state.step - outcome.resumed_from;
    let tokens = steps * config.tokens_per_step();
    let secs = outcome.elapsed.as_secs_f64();
    println!();
    if outcome.interrupted {
        println!("Interrupted at step {} of {}.", outcome.state.step, config.steps);
    }
    println!(
        "Trained {steps} steps{} in {secs:.1} s ({:.0} tokens/s), {} backward passes.",
        if outcome.resumed_from > 0 { format!(" (resumed at step {})", outcome.resumed_from) } else { String::new() },
        tokens as f64 / secs.max(1e-9),
        outcome.state.backward_passes,
    );
    if let (Some((_, first)), Some((_, last))) = (outcome.losses.first(), outcome.losses.last()) {
        print!("Loss: {first:.3} -> {last:.3}");
        match outcome.validation.last() {
            Some(v) => println!(", validation {:.3} (perplexity {:.2})", v.loss, v.loss.exp()),
            None => println!(),
        }
    }
    if outcome.state.skipped_steps > 0 {
        println!("Skipped {} steps with non-finite loss or gradients.", outcome.state.skipped_steps);
    }
    if let Some(stats) = &outcome.hybrid {
        println!(
            "Hybrid phases: warmup {}, full {}, predict {}, correct {}; backward passes {} of {} steps; predicted updates moved the weights by {:.3e} (L2, summed)",
            stats.warmup_steps, stats.full_steps, stats.predict_steps, stats.correct_steps, stats.backward_passes,
            steps, stats.predicted_update_norm
        );
    }
    if let Some(tasks) = &outcome.tasks {
        println!("Held-out task accuracy (exact match, greedy): {:.1}% of {}", 100.0 * tasks.accuracy(), tasks.total);
        for (task, (correct, total)) in &tasks.per_task {
            println!("  {:<8} {correct:>3}/{total}", task.name());
        }
    }
    if let Some(checkpoint) = &outcome.checkpoint {
        println!(
            "Resumable checkpoint: {} (continue with: tritter train --resume {})",
            checkpoint.display(),
            out.display()
        );
    }
    if let Some(dir) = &final_dir {
        println!("Model: {}/ (config.json + model.safetensors)", dir.display());
    }
    Ok(final_dir)
}

/// A resume of a run that reached its last step: a process stopped between the last checkpoint
/// and the final model leaves the model unwritten, so it is written from that checkpoint;
/// a run whose model is there already is refused (train further with more --steps).
fn finish_run(out: &Path, point: &ResumePoint) -> tritter::Result<ExitCode> {
    let model = out.join("model");
    let checkpoint_model = point.dir.join("model");
    if model.join("config.json").is_file() && written_at(&model) >= written_at(&checkpoint_model) {
        return Err(TritterError::ResumeMismatch {
            path: point.dir.clone(),
            reason: format!(
                "the run is finished (step {} of {}) and its model is in {}; give --steps above {} to train further",
                point.state.step,
                point.state.train_config.steps,
                model.display(),
                point.state.step
            ),
        });
    }
    TritterModel::<Inner>::load_checkpoint(&checkpoint_model, &Default::default())?.save_checkpoint(&model)?;
    println!(
        "The run had finished at step {} but its final model was not written; wrote {}/ from {}.",
        point.state.step,
        model.display(),
        point.dir.display()
    );
    let summary = RunSummary::of_state(&point.state, Some(point.dir.clone()), Some(&model));
    summary.write(out)?;
    Ok(ExitCode::SUCCESS)
}
