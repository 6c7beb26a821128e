//! `TrainConfig`: every knob of a training run in one serde struct (JSON file or CLI flags).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TritterError};
use crate::io::{read_json, write_json};

/// What to do when the loss or the gradients are not finite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonFinitePolicy {
    /// Stop with an error; the last checkpoint on disk stays the latest good one.
    Stop,
    /// Skip the optimizer step (the weights stay as they were) and go on; stops anyway after
    /// `max_skipped_steps` skips in a row.
    Skip,
}

/// Options of the hybrid predictive trainer (`hybrid-predict-trainer-rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HybridOptions {
    /// Full (backpropagated) steps before the first prediction.
    pub warmup_steps: usize,
    /// Full steps per cycle, used to fit the predictor.
    pub full_steps: usize,
    /// Longest run of predicted steps.
    pub max_predict_steps: usize,
    /// Predictor confidence needed to enter a Predict phase.
    pub confidence_threshold: f32,
    /// How many recent optimizer updates per parameter the extrapolation averages.
    pub history: usize,
}

impl Default for HybridOptions {
    fn default() -> Self {
        Self { warmup_steps: 50, full_steps: 2, max_predict_steps: 10, confidence_threshold: 0.6, history: 8 }
    }
}

/// BitNet b1.58's two-stage schedule (the 2B4T report): after a high-learning-rate stage, at
/// `start` (a fraction of the run's steps) the learning rate drops to `lr_ratio` times the
/// cosine schedule's value and weight decay stops for the rest of the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cooldown {
    pub start: f64,
    pub lr_ratio: f64,
}

impl Cooldown {
    /// The last step of the first stage.
    pub fn first_stage_steps(&self, steps: usize) -> usize {
        (self.start * steps as f64).round() as usize
    }
}

/// A training run: optimizer, schedule, batching, checkpoints, failure handling.
///
/// Defaults follow common LLM practice: AdamW β = (0.9, 0.95), weight decay 0.1, linear warmup
/// then cosine decay to 10% of the peak learning rate, global-norm clipping at 1.0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Optimizer steps in the whole run.
    pub steps: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Tokens per sequence fed to the model (each window holds `seq_len + 1` tokens).
    pub seq_len: usize,
    /// Micro-batches whose gradients are summed (averaged) into one optimizer step.
    pub grad_accum: usize,
    /// Peak learning rate, reached after warmup.
    pub learning_rate: f64,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_ratio: f64,
    /// Steps of linear warmup from 0 to the peak.
    pub warmup_steps: usize,
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
    /// Decoupled weight decay (AdamW).
    pub weight_decay: f32,
    /// A second, low-learning-rate stage without weight decay (BitNet b1.58's schedule).
    pub cooldown: Option<Cooldown>,
    /// Clip gradients to this global L2 norm (over all parameters together); `None` disables.
    pub grad_clip: Option<f32>,
    /// Seeds the model initialisation and the data order.
    pub seed: u64,
    /// Save a resumable checkpoint every N optimizer steps (0: only at the end).
    pub checkpoint_every: usize,
    /// How many step checkpoints to keep (the newest); at least 1.
    pub keep_checkpoints: usize,
    /// Run validation every N steps (0: only at the end).
    pub eval_every: usize,
    /// Batches of validation data per evaluation.
    pub eval_batches: usize,
    pub on_non_finite: NonFinitePolicy,
    /// With `on_non_finite = skip`: stop after this many non-finite steps in a row.
    pub max_skipped_steps: usize,
    /// Recompute memory-bound activations in the backward pass (`BalancedCheckpointing`).
    pub grad_checkpointing: bool,
    /// Run the hybrid predictive trainer instead of plain AdamW steps.
    pub hybrid: Option<HybridOptions>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            batch_size: 16,
            seq_len: 64,
            grad_accum: 1,
            learning_rate: 1e-3,
            min_lr_ratio: 0.1,
            warmup_steps: 50,
            beta1: 0.9,
            beta2: 0.95,
            epsilon: 1e-8,
            weight_decay: 0.1,
            cooldown: None,
            grad_clip: Some(1.0),
            seed: 42,
            checkpoint_every: 0,
            keep_checkpoints: 2,
            eval_every: 0,
            eval_batches: 8,
            on_non_finite: NonFinitePolicy::Stop,
            max_skipped_steps: 10,
            grad_checkpointing: false,
            hybrid: None,
        }
    }
}

impl TrainConfig {
    /// Refuses windows (`seq_len + 1` tokens) longer than `model` takes.
    pub fn check_fits(&self, model: &crate::config::TritterConfig) -> Result<()> {
        let window = self.seq_len.saturating_add(1);
        if window > model.max_seq_len {
            return Err(TritterError::InvalidConfig {
                field: "seq_len",
                reason: format!("seq_len + 1 = {window} exceeds the model's max_seq_len = {}", model.max_seq_len),
            });
        }
        Ok(())
    }

    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: String| Err(TritterError::InvalidConfig { field, reason });
        for (field, value) in [
            ("steps", self.steps),
            ("batch_size", self.batch_size),
            ("seq_len", self.seq_len),
            ("grad_accum", self.grad_accum),
            ("keep_checkpoints", self.keep_checkpoints),
        ] {
            if value == 0 {
                return bad(field, "must be greater than 0".into());
            }
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad("learning_rate", format!("must be a positive number, got {}", self.learning_rate));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad("min_lr_ratio", format!("must be in [0, 1], got {}", self.min_lr_ratio));
        }
        if self.warmup_steps > self.steps {
            return bad("warmup_steps", format!("{} is more than steps = {}", self.warmup_steps, self.steps));
        }
        for (field, value) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&value) {
                return bad(field, format!("must be in [0, 1), got {value}"));
            }
        }
        if !(self.epsilon > 0.0 && self.epsilon.is_finite()) {
            return bad("epsilon", format!("must be positive and finite, got {}", self.epsilon));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad("weight_decay", format!("must be >= 0, got {}", self.weight_decay));
        }
        if let Some(cooldown) = self.cooldown {
            if !(cooldown.start > 0.0 && cooldown.start < 1.0) {
                return bad("cooldown.start", format!("must be in (0, 1), got {}", cooldown.start));
            }
            if !(cooldown.lr_ratio > 0.0 && cooldown.lr_ratio <= 1.0) {
                return bad("cooldown.lr_ratio", format!("must be in (0, 1], got {}", cooldown.lr_ratio));
            }
        }
        if let Some(clip) = self.grad_clip {
            if !(clip > 0.0 && clip.is_finite()) {
                return bad("grad_clip", format!("must be a positive number, got {clip}"));
            }
        }
        if let Some(hybrid) = &self.hybrid {
            if self.grad_accum > 1 {
                return bad("grad_accum", "gradient accumulation is not supported with the hybrid trainer".into());
            }
            if hybrid.full_steps == 0 {
                return bad("hybrid.full_steps", "must be greater than 0".into());
            }
            if hybrid.history == 0 {
                return bad("hybrid.history", "must be greater than 0".into());
            }
            if !(0.0..=1.0).contains(&hybrid.confidence_threshold) {
                return bad(
                    "hybrid.confidence_threshold",
                    format!("must be in [0, 1], got {}", hybrid.confidence_threshold),
                );
            }
        }
        Ok(())
    }

    /// Evaluation periods in the run (burn-train's "epochs"): one per `eval_every` steps.
    pub fn eval_periods(&self) -> usize {
        match self.eval_every {
            0 => 1,
            every => self.steps.div_ceil(every),
        }
    }

    /// The main job's settings, which `tritter train` and `examples/train.rs` start from: 1500
    /// steps (warmup 75), evaluation and a checkpoint every 500, peak `learning_rate`.
    pub fn main_job(learning_rate: f64) -> Self {
        Self { steps: 1500, warmup_steps: 75, eval_every: 500, checkpoint_every: 500, learning_rate, ..Self::default() }
    }

    /// Training samples (windows) the whole run reads: steps × micro-batch × accumulation.
    pub fn total_samples(&self) -> usize {
        self.steps * self.batch_size * self.grad_accum
    }

    /// Tokens per optimizer step (micro-batch × accumulation × sequence).
    pub fn tokens_per_step(&self) -> usize {
        self.batch_size * self.grad_accum * self.seq_len
    }

    /// Reads and validates a JSON file; unknown fields are errors.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let config: Self = read_json(path.as_ref(), "cannot read training config")?;
        config.validate()?;
        Ok(config)
    }

    /// Writes pretty JSON, atomically.
    pub fn to_json_file(&self, path: impl AsRef<Path>) -> Result<()> {
        write_json(path.as_ref(), self)
    }
}
