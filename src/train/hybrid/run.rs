//! The hybrid trainer inside Tritter's training loop.

use std::sync::Arc;

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use hybrid_predict_trainer_rs::{HybridTrainer, Phase};

use super::adapter::{wrap, TritterHybridTrainer};
use super::stdout::with_stdout_routed;
use super::{hybrid_trainer_config, HybridStats, Shared};
use crate::backend::TritterAutodiffBackend;
use crate::data::TokenBatch;
use crate::error::{Result, TritterError};
use crate::model::TritterModel;
use crate::train::config::{HybridOptions, TrainConfig};
use crate::train::optimizer::{SharedOptimizer, TritterAdamW};
use crate::train::step::batch_tokens;

/// One hybrid step as the training loop sees it.
pub struct HybridStep<B: Backend> {
    pub loss: Tensor<B, 1>,
    /// `loss` as a number.
    pub value: f32,
    pub tokens: usize,
    pub backward: bool,
    pub phase: Phase,
}

/// The hybrid trainer inside Tritter's training loop (see [`crate::train::strategy`]).
pub struct HybridRun<B: TritterAutodiffBackend> {
    trainer: TritterHybridTrainer<B>,
    shared: Arc<Shared>,
}

impl<B: TritterAutodiffBackend> HybridRun<B> {
    pub fn new(
        model: TritterModel<B>,
        adamw: SharedOptimizer<TritterAdamW<B>>,
        config: &TrainConfig,
        options: &HybridOptions,
    ) -> Result<Self> {
        let shared = Shared::new(config.learning_rate);
        let (model, optimizer) = wrap(model, adamw, shared.clone(), config.grad_clip, options.history);
        let trainer = HybridTrainer::new(model, optimizer, hybrid_trainer_config(options))
            .map_err(|(e, _)| TritterError::Hybrid(e.to_string()))?;
        Ok(Self { trainer, shared })
    }

    /// Runs one step at learning rate `lr`; the crate's console output is routed to `tracing`.
    pub fn step(&mut self, batch: TokenBatch<B>, lr: f64) -> Result<HybridStep<B::InnerBackend>> {
        self.shared.set_lr(lr);
        let tokens = batch_tokens(&batch);
        let device = batch.input_ids.device();
        let result = with_stdout_routed(|| self.trainer.step(&batch))
            .map_err(|(e, action)| TritterError::Hybrid(format!("{e} (suggested recovery: {action:?})")))?;
        let mut stats = self.shared.stats();
        match result.phase {
            Phase::Warmup => stats.warmup_steps += 1,
            Phase::Full => stats.full_steps += 1,
            Phase::Predict => stats.predict_steps += 1,
            Phase::Correct => stats.correct_steps += 1,
        }
        Ok(HybridStep {
            loss: Tensor::from_floats([result.loss], &device),
            value: result.loss,
            tokens,
            backward: result.phase.computes_backward(),
            phase: result.phase,
        })
    }

    pub fn model(&self) -> TritterModel<B> {
        self.trainer.model().model().clone()
    }

    pub fn stats(&self) -> HybridStats {
        self.shared.stats().clone()
    }
}
