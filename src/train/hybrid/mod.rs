//! The hybrid predictive trainer (`hybrid-predict-trainer-rs`) on a Tritter model.
//!
//! The crate alternates Full steps (forward + backward + optimizer) with Predict steps (forward
//! only) and Correct steps. It only predicts eight unsigned magnitudes (one per parameter group:
//! embed, attention q/k/v/out, mlp up/down, lm_head), so the update itself comes from us: during
//! Full steps every parameter keeps an exponential average of its optimizer update per unit of
//! learning rate (its "drift"); a Predict step moves each parameter by `lr · drift`, scaled by
//! its group's predicted magnitude relative to the mean of the eight. A Correct step applies
//! the crate's signed per-group corrections the same way (a fraction of `lr · drift`, clamped
//! to ±0.5), skipping non-finite values.
//!
//! The crate's side effects are contained: no checkpoint files (`save_interval = 0`) and its
//! phase-transition `println!` is captured and routed to `tracing`. Its predictor uses an
//! unseeded RNG, so hybrid runs are not bit-reproducible and resume restarts the predictor.
//!
//! `adapter` holds the crate's `Model` and `Optimizer` over a Tritter model, `drift` the
//! per-parameter update averages they move weights by, `groups` the crate's parameter groups,
//! `run` the trainer as Tritter's training loop drives it, `stdout` the routing of its output.

mod adapter;
mod drift;
mod groups;
mod run;
mod stdout;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use burn::tensor::backend::Backend;
use hpt::{HybridTrainer, HybridTrainerConfig};
use hybrid_predict_trainer_rs as hpt;

use crate::backend::TritterAutodiffBackend;
use crate::config::TritterConfig;
use crate::data::TokenBatch;
use crate::error::{Result, TritterError};
use crate::model::TritterModel;
use crate::train::config::{HybridOptions, TrainConfig};
use crate::train::optimizer::{adamw, SharedOptimizer};

pub use adapter::{HybridModel, HybridOptimizer, TritterHybridTrainer};
pub use run::{HybridRun, HybridStep};

impl<B: Backend> hpt::Batch for TokenBatch<B> {
    fn batch_size(&self) -> usize {
        self.input_ids.dims()[0]
    }
}

/// Counts of what the hybrid run did; `predicted_update_norm` is the summed L2 norm of every
/// weight change applied by Predict steps (zero would mean Predict did nothing).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HybridStats {
    pub warmup_steps: usize,
    pub full_steps: usize,
    pub predict_steps: usize,
    pub correct_steps: usize,
    pub forward_passes: usize,
    pub backward_passes: usize,
    pub predicted_update_norm: f64,
    pub corrections_applied: usize,
}

/// What the crate's model and optimizer share: the learning rate the caller's schedule sets,
/// whether the next forward builds the autodiff graph (the crate calls the optimizer's
/// `zero_grad` before a training forward), and the counts.
#[derive(Debug)]
struct Shared {
    lr: Mutex<f64>,
    train_next: AtomicBool,
    stats: Mutex<HybridStats>,
}

impl Shared {
    fn new(lr: f64) -> Arc<Self> {
        Arc::new(Self {
            lr: Mutex::new(lr),
            train_next: AtomicBool::new(false),
            stats: Mutex::new(HybridStats::default()),
        })
    }

    fn lr(&self) -> f64 {
        *self.lr.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_lr(&self, lr: f64) {
        *self.lr.lock().unwrap_or_else(|p| p.into_inner()) = lr;
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, HybridStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The crate's recurrent predictor at a quarter of its default width (GRU state 64 instead of
/// 256, 16 × 16 instead of 32 × 32 categorical latents; 3 ensemble members as by default). The
/// crate runs it on the CPU, scalar, every step (a 10-step rollout per member for its confidence
/// alone): at the default width it took 21% of a `test`-preset hybrid run's CPU time and made
/// `--hybrid` slower than plain AdamW; at this width 3%, with the same validation loss within
/// run-to-run noise (docs/training.md, Hybrid predictive training). Its output only scales our updates by
/// group (relative to their mean) and gates the phases.
const PREDICTOR: hpt::config::PredictorConfig = hpt::config::PredictorConfig::RSSM {
    deterministic_dim: 64,
    stochastic_dim: 16,
    num_categoricals: 16,
    ensemble_size: 3,
};

/// The crate's config for our options: its predictor as [`PREDICTOR`], its file checkpoints off.
pub fn hybrid_trainer_config(options: &HybridOptions) -> HybridTrainerConfig {
    let mut config = HybridTrainerConfig::builder()
        .warmup_steps(options.warmup_steps)
        .full_steps(options.full_steps)
        .max_predict_steps(options.max_predict_steps)
        .confidence_threshold(options.confidence_threshold)
        .predictor_config(PREDICTOR)
        .build();
    config.checkpoint_config.save_interval = 0;
    config
}

/// A standalone hybrid trainer, outside Tritter's training loop: a fresh model of
/// `model_config` with AdamW (defaults of [`TrainConfig`]) at a constant `learning_rate`. Drive
/// it with `trainer.step(&batch)`. The trainer writes no files (`save_interval` is forced to 0).
pub fn create_trainer_with_config<B: TritterAutodiffBackend>(
    model_config: &TritterConfig,
    mut trainer_config: HybridTrainerConfig,
    learning_rate: f32,
    device: &B::Device,
) -> Result<TritterHybridTrainer<B>> {
    let model = TritterModel::<B>::new(model_config, device)?;
    let train = TrainConfig::default();
    let history = HybridOptions::default().history;
    let adamw = SharedOptimizer::new(adamw::<B>(&train));
    let (model, optimizer) = adapter::wrap(model, adamw, Shared::new(learning_rate as f64), train.grad_clip, history);
    trainer_config.checkpoint_config.save_interval = 0;
    HybridTrainer::new(model, optimizer, trainer_config).map_err(|(e, _)| TritterError::Hybrid(e.to_string()))
}
