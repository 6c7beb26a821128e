//! `train`: one call that sets up burn-train (data loaders, metrics, dashboard, Learner) and runs
//! Tritter's strategy, fresh or resumed from a step checkpoint.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::Dataset;
use burn::optim::Optimizer;
use burn::tensor::backend::Backend;
use burn::train::metric::{LearningRateMetric, LossMetric};
use burn::train::{Interrupter, Learner, SupervisedTraining, TrainingStrategy};

use crate::backend::TritterAutodiffBackend;
use crate::config::TritterConfig;
use crate::data::{AnswerTargets, TokenBatcher};
use crate::error::{Result, TritterError};
use crate::infer::TaskAccuracy;
use crate::model::TritterModel;
use crate::train::config::TrainConfig;
use crate::train::hybrid::HybridStats;
use crate::train::metrics::{PerplexityFromLoss, TaskAccuracy as TaskAccuracyMetric, TokensPerSecond};
use crate::train::optimizer::{adamw, SharedOptimizer, TritterAdamW};
use crate::train::order::EpochOrder;
use crate::train::parallel::Parallel;
use crate::train::render::{LineRenderer, LineSink};
use crate::train::schedule::WarmupCosine;
use crate::train::state::{load_run_checkpoint, prepare_fresh_run_dir, remove_stale_temporaries, RunState};
use crate::train::strategy::{Components, RunReport, TaskEval, TritterStrategy, Validation};
use crate::train::terminal::interruptible_tui;

/// Token windows of `seq_len + 1` ids for training and validation.
pub struct TrainData {
    pub train: Arc<dyn Dataset<Vec<u32>>>,
    pub valid: Arc<dyn Dataset<Vec<u32>>>,
    /// Held-out generated tasks to score at each evaluation.
    pub tasks: Option<TaskEval>,
    /// Train (and validate) on these answer tokens only; `None`: every next token.
    pub answers: Option<AnswerTargets>,
}

/// How progress is shown.
pub enum Dashboard {
    /// burn-train's terminal dashboard when stdout is a terminal, else lines every 50 steps to
    /// the sink.
    Auto(LineSink),
    /// burn-train's terminal dashboard.
    Tui,
    /// One line per `every` steps and per evaluation, handed to `sink`.
    Lines { every: usize, sink: LineSink },
    /// Nothing (metrics still go to the run directory's logs).
    Quiet,
}

/// Where and how a run happens.
pub struct TrainOptions {
    /// Checkpoints (`checkpoints/step-…`), burn-train's metric logs and the final model.
    pub run_dir: PathBuf,
    /// A run directory or step checkpoint to continue from.
    pub resume: Option<PathBuf>,
    /// Start a fresh run from these weights (a model checkpoint directory) instead of a random
    /// initialisation, e.g. to fine-tune; its config replaces `model_config`.
    pub init: Option<PathBuf>,
    pub dashboard: Dashboard,
    /// Stops the run cleanly (after the current step a checkpoint is saved) when triggered, e.g.
    /// from a SIGINT handler. With one, the terminal dashboard leaves Ctrl-C to the terminal as
    /// SIGINT instead of swallowing it as a key.
    pub interrupter: Option<Interrupter>,
    /// A fresh run into a `run_dir` that holds another run's checkpoints or model replaces
    /// them; without it such a run is refused ([`TritterError::RunExists`]).
    pub overwrite: bool,
}

/// The result of [`train`].
pub struct TrainOutcome<B: Backend> {
    /// The trained model, without autodiff.
    pub model: TritterModel<B>,
    pub state: RunState,
    /// Training loss per step run by this call.
    pub losses: Vec<(usize, f32)>,
    /// Validation loss after each evaluation.
    pub validation: Vec<Validation>,
    pub tasks: Option<TaskAccuracy>,
    /// The newest step checkpoint (resume from it, or load `…/model` as a model).
    pub checkpoint: Option<PathBuf>,
    pub interrupted: bool,
    pub elapsed: Duration,
    pub hybrid: Option<HybridStats>,
    /// The step this call started from (0 unless resumed).
    pub resumed_from: usize,
}

/// Settings a resumed run must share with its checkpoint (they define the data order).
fn check_resumable(saved: &TrainConfig, now: &TrainConfig, path: &std::path::Path) -> Result<()> {
    for (field, a, b) in [
        ("batch_size", saved.batch_size as u64, now.batch_size as u64),
        ("grad_accum", saved.grad_accum as u64, now.grad_accum as u64),
        ("seq_len", saved.seq_len as u64, now.seq_len as u64),
        ("seed", saved.seed, now.seed),
    ] {
        if a != b {
            return Err(TritterError::ResumeMismatch {
                path: path.to_path_buf(),
                reason: format!("{field} was {a} in the checkpoint but is {b} now (it fixes the data order)"),
            });
        }
    }
    Ok(())
}

/// Trains a model of `model_config` (ignored when resuming: the checkpoint's config is used)
/// under `config` on `data`. `B` is the autodiff backend, e.g. `Autodiff<Cpu>`, or
/// `Autodiff<Cpu, BalancedCheckpointing>` for gradient checkpointing.
pub fn train<B: TritterAutodiffBackend>(
    model_config: &TritterConfig,
    config: &TrainConfig,
    data: TrainData,
    options: TrainOptions,
    device: &B::Device,
) -> Result<TrainOutcome<B::InnerBackend>> {
    train_parallel::<B>(model_config, config, data, options, &Parallel::single(device))
}

/// [`train`] with one replica per device of `parallel`: the same steps, batches and result as
/// on one device, up to float rounding.
pub fn train_parallel<B: TritterAutodiffBackend>(
    model_config: &TritterConfig,
    config: &TrainConfig,
    data: TrainData,
    options: TrainOptions,
    parallel: &Parallel<B::Device>,
) -> Result<TrainOutcome<B::InnerBackend>> {
    config.validate()?;
    parallel.validate(config.batch_size)?;
    if config.hybrid.is_some() && parallel.is_parallel() {
        return Err(TritterError::InvalidConfig {
            field: "hybrid",
            reason: "the hybrid predictive trainer runs on one device; train on one device or without it".into(),
        });
    }
    let device = &parallel.devices[0];
    if options.resume.is_none() {
        prepare_fresh_run_dir(&options.run_dir, options.overwrite)?;
    }
    remove_stale_temporaries(&options.run_dir)?;
    let started = Instant::now();
    let optimizer = SharedOptimizer::new(adamw::<B>(config));
    let (model, start) = match &options.resume {
        Some(path) => resumed::<B>(path, config, &optimizer, device)?,
        None => (initial_model::<B>(model_config, config, options.init.as_deref(), device)?, RunState::fresh(config)),
    };
    check_windows(&data, config, model.config())?;
    let (loader_train, loader_valid) = loaders::<B>(&data, config, device);
    let report = Arc::new(Mutex::new(RunReport::default()));
    let resumed_from = start.step;
    let scores_tasks = data.tasks.is_some();
    let strategy = TritterStrategy::<B> {
        device: device.clone(),
        config: config.clone(),
        run_dir: options.run_dir.clone(),
        start,
        optimizer: optimizer.clone(),
        tasks: data.tasks,
        parallel: parallel.clone(),
        report: report.clone(),
        started,
    };
    let mut training = SupervisedTraining::new(&options.run_dir, loader_train, loader_valid)
        .metrics((LossMetric::new(), PerplexityFromLoss::default()))
        .metric_train_numeric(LearningRateMetric::new())
        .metric_train_numeric(TokensPerSecond::default());
    if scores_tasks {
        training = training.metric_valid_numeric(TaskAccuracyMetric::default());
    }
    let training = training
        .with_training_strategy(TrainingStrategy::Custom(Arc::new(strategy)))
        .with_application_logger(None)
        .num_epochs(config.eval_periods());
    let training = with_display(training, options.interrupter, options.dashboard);
    let schedule = WarmupCosine::of(config);
    let result = training.launch(Learner::new(model, optimizer, schedule));
    drop(result.renderer); // restores the terminal after the dashboard
    let report = std::mem::take(&mut *report.lock().unwrap_or_else(|p| p.into_inner()));
    outcome(result.model, report, started, resumed_from)
}

/// The model, optimizer state and run state of a step checkpoint, checked against `config`.
fn resumed<B: TritterAutodiffBackend>(
    path: &Path,
    config: &TrainConfig,
    optimizer: &SharedOptimizer<TritterAdamW<B>>,
    device: &B::Device,
) -> Result<(TritterModel<B>, RunState)> {
    let checkpoint = load_run_checkpoint::<B, _>(path, device)?;
    check_resumable(&checkpoint.state.train_config, config, &checkpoint.dir)?;
    let _ = optimizer.clone().load_record(checkpoint.optimizer);
    let state = RunState { train_config: config.clone(), ..checkpoint.state };
    if state.step >= config.steps {
        return Err(TritterError::ResumeMismatch {
            path: checkpoint.dir,
            reason: format!("it is at step {} already and the run has steps = {}", state.step, config.steps),
        });
    }
    tracing::info!(dir = %checkpoint.dir.display(), step = state.step, "resuming");
    Ok((checkpoint.model, state))
}

/// A fresh run's model: loaded from `init`, or initialised from the run's seed.
fn initial_model<B: TritterAutodiffBackend>(
    model_config: &TritterConfig,
    config: &TrainConfig,
    init: Option<&Path>,
    device: &B::Device,
) -> Result<TritterModel<B>> {
    match init {
        Some(dir) => {
            let model = TritterModel::<B>::load_checkpoint(dir, device)?;
            if model.is_packed() {
                return Err(TritterError::InvalidInput(format!(
                    "--init {} is a packed checkpoint (2-bit inference form); fine-tuning needs latent weights \
                     (for an imported Hugging Face model: tritter import --latent)",
                    dir.display()
                )));
            }
            Ok(model)
        }
        None => {
            model_config.validate()?;
            B::seed(device, config.seed);
            TritterModel::<B>::new(model_config, device)
        }
    }
}

/// The training windows are there and hold `seq_len + 1` tokens, which the model can take.
fn check_windows(data: &TrainData, config: &TrainConfig, model: &TritterConfig) -> Result<()> {
    config.check_fits(model)?;
    if let Some(answers) = data.answers.filter(|a| model.pad_token_id != Some(a.pad as usize)) {
        return Err(TritterError::InvalidConfig {
            field: "pad_token_id",
            reason: format!(
                "answer-only training marks skipped targets with pad id {}, but the model's pad_token_id is {:?}",
                answers.pad, model.pad_token_id
            ),
        });
    }
    let window = config.seq_len + 1;
    match data.train.get(0) {
        None => Err(TritterError::InvalidInput("the training data has no windows".into())),
        Some(first) if first.len() != window => Err(TritterError::InvalidInput(format!(
            "training windows hold {} tokens but seq_len + 1 = {window}",
            first.len()
        ))),
        Some(_) => Ok(()),
    }
}

type Loader<B> = Arc<dyn burn::data::dataloader::DataLoader<B, crate::data::TokenBatch<B>>>;

/// The training loader (the run's deterministic epoch order) and the validation loader.
fn loaders<B: TritterAutodiffBackend>(
    data: &TrainData,
    config: &TrainConfig,
    device: &B::Device,
) -> (Loader<B>, Loader<B::InnerBackend>) {
    let order = EpochOrder::new(data.train.clone(), config.total_samples(), config.seed);
    let batcher = TokenBatcher { answers: data.answers };
    let train = DataLoaderBuilder::<B, _, _>::new(batcher.clone())
        .batch_size(config.batch_size)
        .set_device(device.clone())
        .build(order);
    let valid = DataLoaderBuilder::<B::InnerBackend, _, _>::new(batcher)
        .batch_size(config.batch_size)
        .set_device(device.clone())
        .build(data.valid.clone());
    (train, valid)
}

/// burn-train's run with the interrupter and the progress display asked for.
fn with_display<B: TritterAutodiffBackend>(
    mut training: SupervisedTraining<Components<B>>,
    interrupter: Option<Interrupter>,
    dashboard: Dashboard,
) -> SupervisedTraining<Components<B>> {
    if let Some(interrupter) = &interrupter {
        training = training.with_interrupter(interrupter.clone());
    }
    let tui = |training: SupervisedTraining<Components<B>>| match interrupter {
        Some(interrupter) => training.renderer(interruptible_tui(interrupter)),
        None => training,
    };
    match dashboard {
        Dashboard::Tui => tui(training),
        Dashboard::Auto(_) if std::io::stdout().is_terminal() => tui(training),
        Dashboard::Auto(sink) => training.renderer(LineRenderer::new(50, sink)),
        Dashboard::Lines { every, sink } => training.renderer(LineRenderer::new(every, sink)),
        Dashboard::Quiet => training.renderer(LineRenderer::new(usize::MAX, Box::new(|_| {}))),
    }
}

/// The caller's view of a finished (or interrupted) run, or the error that stopped it.
fn outcome<B: Backend>(
    model: TritterModel<B>,
    mut report: RunReport,
    started: Instant,
    resumed_from: usize,
) -> Result<TrainOutcome<B>> {
    if let Some(error) = report.error.take() {
        return Err(error);
    }
    let state = report.state.ok_or_else(|| TritterError::InvalidInput("training ended without a state".into()))?;
    Ok(TrainOutcome {
        model,
        state,
        losses: report.losses,
        validation: report.validation,
        tasks: report.tasks,
        checkpoint: report.last_checkpoint,
        interrupted: report.interrupted,
        elapsed: started.elapsed(),
        hybrid: report.hybrid,
        resumed_from,
    })
}
