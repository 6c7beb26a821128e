//! burn-train glue: `TrainStep` / `InferenceStep` for [`TritterModel`] and the step output the
//! metrics read.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use burn::train::metric::{Adaptor, ItemLazy, LossInput};
use burn::train::{InferenceStep, TrainOutput, TrainStep};

use crate::backend::{TritterAutodiffBackend, TritterBackend};
use crate::data::TokenBatch;
use crate::model::TritterModel;

/// What one step hands to the metrics: the mean next-token loss (shape `[1]`), the tokens it
/// covered and, on evaluation steps over the generated corpus, held-out task results.
#[derive(Debug, Clone)]
pub struct LmOutput<B: Backend> {
    pub loss: Tensor<B, 1>,
    /// Tokens fed to the model (batch × seq_len), for tokens/s.
    pub tokens: usize,
    /// `(correct, total)` exact-match answers of generated tasks, when measured.
    pub tasks: Option<(usize, usize)>,
}

impl<B: Backend> LmOutput<B> {
    pub fn new(loss: Tensor<B, 1>, tokens: usize) -> Self {
        Self { loss, tokens, tasks: None }
    }
}

impl<B: Backend> ItemLazy for LmOutput<B> {
    type ItemSync = Self;

    fn sync(self) -> Self {
        self
    }
}

impl<B: Backend> Adaptor<LossInput<B>> for LmOutput<B> {
    fn adapt(&self) -> LossInput<B> {
        LossInput::new(self.loss.clone())
    }
}

/// Tokens a batch of `[b, seq_len + 1]` windows trains on.
pub(crate) fn batch_tokens<B: Backend>(batch: &TokenBatch<B>) -> usize {
    let [b, t] = batch.input_ids.dims();
    b * t.saturating_sub(1)
}

/// The batch's loss: over its targets when it has them, else over every next token.
pub(crate) fn batch_loss<B: TritterBackend>(model: &TritterModel<B>, batch: TokenBatch<B>) -> Tensor<B, 1> {
    let seq = batch.input_ids.dims()[1];
    let targets = batch.targets.unwrap_or_else(|| batch.input_ids.clone().narrow(1, 1, seq - 1));
    model.loss_on(batch.input_ids.narrow(1, 0, seq - 1), targets)
}

impl<B: TritterAutodiffBackend> TrainStep for TritterModel<B> {
    type Input = TokenBatch<B>;
    type Output = LmOutput<B::InnerBackend>;

    fn step(&self, batch: TokenBatch<B>) -> TrainOutput<LmOutput<B::InnerBackend>> {
        let tokens = batch_tokens(&batch);
        let loss = batch_loss(self, batch);
        let grads = loss.backward();
        TrainOutput::new(self, grads, LmOutput::new(loss.inner(), tokens))
    }
}

impl<B: TritterBackend> InferenceStep for TritterModel<B> {
    type Input = TokenBatch<B>;
    type Output = LmOutput<B>;

    fn step(&self, batch: TokenBatch<B>) -> LmOutput<B> {
        let tokens = batch_tokens(&batch);
        LmOutput::new(batch_loss(self, batch), tokens)
    }
}
