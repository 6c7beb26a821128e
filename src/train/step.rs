//! burn-train glue: `TrainStep` / `InferenceStep` for [`TritterModel`] and the step output the
//! metrics read.

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor};
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

/// The tokens a batch's loss averages over: its targets other than the padding id `pad`.
pub(crate) fn target_tokens<B: Backend>(batch: &TokenBatch<B>, pad: Option<usize>) -> usize {
    let seq = batch.input_ids.dims()[1];
    let targets: Tensor<B, 2, Int> = match &batch.targets {
        Some(targets) => targets.clone(),
        None => batch.input_ids.clone().narrow(1, 1, seq - 1),
    };
    match pad {
        Some(pad) => targets.not_equal_elem(pad as i64).int().sum().into_scalar().elem::<i64>() as usize,
        None => targets.dims().iter().product(),
    }
}

/// Each micro-batch of a step with its weight: its share of the step's target tokens, so the
/// weighted sum of the micro-batch losses is the mean loss over all of them. One micro-batch
/// weighs 1 (nothing to count); micro-batches without any target weigh alike (their losses are 0).
pub(crate) fn token_weighted<B: Backend>(batches: Vec<TokenBatch<B>>, pad: Option<usize>) -> Vec<(TokenBatch<B>, f64)> {
    if batches.len() == 1 {
        return batches.into_iter().map(|batch| (batch, 1.0)).collect();
    }
    let counted = batches.into_iter().map(|batch| (target_tokens(&batch, pad), batch)).collect();
    shares_of(counted)
}

/// Each item with its count's share of all counts, or equal weights when they are all 0.
pub(crate) fn shares_of<T>(counted: Vec<(usize, T)>) -> Vec<(T, f64)> {
    let total = counted.iter().map(|(n, _)| n).sum::<usize>() as f64;
    let len = counted.len() as f64;
    counted.into_iter().map(|(n, item)| (item, if total == 0.0 { 1.0 / len } else { n as f64 / total })).collect()
}

/// The gradients of `Σ weight · loss` over `batches` and that sum (detached). Batches of weight
/// 0 are skipped; `None` when all are.
pub(crate) fn weighted_grads<B: TritterAutodiffBackend>(
    model: &TritterModel<B>,
    batches: Vec<(TokenBatch<B>, f64)>,
) -> (Option<GradientsParams>, Tensor<B::InnerBackend, 1>) {
    let device = model.devices()[0].clone();
    let (mut accumulator, mut any) = (GradientsAccumulator::new(), false);
    let mut total = Tensor::<B::InnerBackend, 1>::zeros([1], &device);
    for (batch, weight) in batches.into_iter().filter(|(_, weight)| *weight != 0.0) {
        let loss = batch_loss(model, batch).mul_scalar(weight);
        total = total + loss.clone().inner();
        accumulator.accumulate(model, GradientsParams::from_grads(loss.backward(), model));
        any = true;
    }
    (any.then(|| accumulator.grads()), total)
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
