//! `summary.json`: what a training run did, for scripts that should not parse the console.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use super::run::TrainOutcome;
use super::state::RunState;
use super::strategy::Validation;
use crate::error::Result;

/// File name of the summary inside a run directory.
pub const SUMMARY_FILE: &str = "summary.json";

/// One training call's results (a resumed call counts from where it resumed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run's step count after this call, and the one it aims for.
    pub step: usize,
    pub steps: usize,
    /// The step this call started from (0 unless resumed).
    pub resumed_from: usize,
    /// Stopped early by an interrupt (the checkpoint holds its weights).
    pub interrupted: bool,
    /// Training tokens this call processed (`(step - resumed_from) × tokens per step`).
    pub tokens: usize,
    pub wall_seconds: f64,
    pub tokens_per_second: f64,
    pub backward_passes: usize,
    pub skipped_steps: usize,
    /// Loss of the last step (of the run, also when this call trained none).
    pub final_train_loss: Option<f32>,
    pub final_validation_loss: Option<f32>,
    /// Every evaluation of this call: step, seconds since it started, validation loss.
    pub validation: Vec<Validation>,
    pub validation_perplexity: Option<f32>,
    /// Held-out exact-match accuracy on the generated tasks, overall and `task → [correct, total]`.
    pub task_accuracy: Option<f64>,
    pub per_task: BTreeMap<String, [usize; 2]>,
    /// The newest step checkpoint and the final model directory.
    pub checkpoint: Option<PathBuf>,
    pub model: Option<PathBuf>,
}

impl<B: Backend> TrainOutcome<B> {
    /// This outcome as a summary; `model` is where the caller saved the final model, if it did.
    pub fn summary(&self, model: Option<&Path>) -> RunSummary {
        let tokens = (self.state.step - self.resumed_from) * self.state.train_config.tokens_per_step();
        let wall_seconds = self.elapsed.as_secs_f64();
        let validation = self.validation.last().map(|v| v.loss);
        RunSummary {
            resumed_from: self.resumed_from,
            interrupted: self.interrupted,
            tokens,
            wall_seconds,
            tokens_per_second: tokens as f64 / wall_seconds.max(1e-9),
            final_validation_loss: validation,
            validation_perplexity: validation.map(f32::exp),
            validation: self.validation.clone(),
            task_accuracy: self.tasks.as_ref().map(|t| t.accuracy()),
            per_task: self
                .tasks
                .iter()
                .flat_map(|t| &t.per_task)
                .map(|(k, v)| (k.name().to_string(), [v.0, v.1]))
                .collect(),
            ..RunSummary::of_state(&self.state, self.checkpoint.clone(), model)
        }
    }
}

impl RunSummary {
    /// What a run's state alone tells (no step trained by this call, nothing evaluated): its
    /// step, counters and last loss, with the newest checkpoint and final model's paths.
    pub fn of_state(state: &RunState, checkpoint: Option<PathBuf>, model: Option<&Path>) -> Self {
        Self {
            step: state.step,
            steps: state.train_config.steps,
            resumed_from: state.step,
            backward_passes: state.backward_passes,
            skipped_steps: state.skipped_steps,
            final_train_loss: Some(state.last_loss).filter(|l| l.is_finite()),
            checkpoint,
            model: model.map(Path::to_path_buf),
            ..Self::default()
        }
    }

    /// Writes `run_dir/summary.json` atomically.
    pub fn write(&self, run_dir: &Path) -> Result<()> {
        crate::io::write_json(&run_dir.join(SUMMARY_FILE), self)
    }
}
