//! A Tritter model and AdamW as the crate's `Model` and `Optimizer`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use burn::module::{AutodiffModule, Module, ParamId};
use burn::optim::{GradientsParams, Optimizer as _};
use burn::tensor::{ElementConversion, Tensor};
use hpt::state::WeightDelta;
use hpt::{GradientInfo, HybridResult, HybridTrainer, HybridTrainingError};
use hybrid_predict_trainer_rs as hpt;

use super::drift::{ApplyDrift, RecordUpdate, Snapshot};
use super::groups::{group_named, group_of};
use super::Shared;
use crate::backend::TritterAutodiffBackend;
use crate::data::TokenBatch;
use crate::model::TritterModel;
use crate::train::grads::clip_global_norm;
use crate::train::optimizer::{SharedOptimizer, TritterAdamW};
use crate::train::state::param_ids;
use crate::train::step::batch_loss;

fn hybrid_error(detail: impl ToString) -> (HybridTrainingError, Option<hpt::RecoveryAction>) {
    (HybridTrainingError::IntegrationError { crate_name: "tritter".into(), detail: detail.to_string() }, None)
}

/// A Tritter model as the crate's `Model`: Full-step forwards build the autodiff graph,
/// Predict/Correct forwards run without it.
pub struct HybridModel<B: TritterAutodiffBackend> {
    model: TritterModel<B>,
    pending: Option<Tensor<B, 1>>,
    grads: Option<(GradientsParams, f64)>,
    drift: GradientsParams,
    has_drift: bool,
    groups: HashMap<ParamId, &'static str>,
    shared: Arc<Shared>,
    clip: Option<f32>,
    keep: f64,
    last_loss: f32,
}

impl<B: TritterAutodiffBackend> HybridModel<B> {
    pub fn model(&self) -> &TritterModel<B> {
        &self.model
    }

    /// Moves the weights by `lr · drift · scale(group)`; returns the L2 norm of the change.
    fn apply_drift(&mut self, group_scale: &HashMap<&'static str, f64>, default: f64) -> f64 {
        let lr = self.shared.lr();
        let groups = &self.groups;
        let scale = |id: ParamId| lr * groups.get(&id).and_then(|g| group_scale.get(g)).copied().unwrap_or(default);
        let mut mapper = ApplyDrift { drift: &self.drift, scale: &scale, squared_norm: 0.0 };
        self.model = self.model.clone().map(&mut mapper);
        mapper.squared_norm.sqrt()
    }

    fn record_update(&mut self, before: GradientsParams, lr: f64) {
        let keep = if self.has_drift { self.keep } else { 0.0 };
        let mut visitor = RecordUpdate::<B> {
            before,
            drift: &mut self.drift,
            inv_lr: 1.0 / lr.max(1e-30),
            keep,
            _b: std::marker::PhantomData,
        };
        self.model.visit(&mut visitor);
        self.has_drift = true;
    }
}

impl<B: TritterAutodiffBackend> hpt::Model<TokenBatch<B>> for HybridModel<B> {
    fn forward(&mut self, batch: &TokenBatch<B>) -> HybridResult<f32> {
        let loss = if self.shared.train_next.swap(false, Ordering::SeqCst) {
            let loss = batch_loss(&self.model, batch.clone());
            let value = loss.clone().into_scalar().elem::<f32>();
            self.pending = Some(loss);
            value
        } else {
            let inner = TokenBatch {
                input_ids: batch.input_ids.clone().inner(),
                targets: batch.targets.clone().map(|t| t.inner()),
            };
            batch_loss(&self.model.valid(), inner).into_scalar().elem::<f32>()
        };
        self.last_loss = loss;
        self.shared.stats().forward_passes += 1;
        Ok(loss)
    }

    fn backward(&mut self) -> HybridResult<GradientInfo> {
        let loss = self.pending.take().ok_or_else(|| hybrid_error("backward without a training forward"))?;
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        let (grads, norm) = clip_global_norm(&self.model, grads, self.clip);
        self.grads = Some((grads, norm));
        self.shared.stats().backward_passes += 1;
        Ok(GradientInfo { loss: self.last_loss, gradient_norm: norm as f32, per_param_norms: None })
    }

    fn clear_forward_state(&mut self) {
        self.pending = None;
    }

    fn parameter_count(&self) -> usize {
        self.model.num_params()
    }

    fn apply_weight_delta(&mut self, delta: &WeightDelta) -> HybridResult<()> {
        if !self.has_drift {
            return Ok(());
        }
        let finite: Vec<(&str, f64)> = delta
            .deltas
            .iter()
            .filter_map(|(k, v)| v.first().map(|&x| (k.as_str(), x as f64)))
            .filter(|(_, x)| x.is_finite())
            .collect();
        if delta.metadata.is_predicted {
            // Relative magnitudes: the crate's absolute scale is not calibrated to our optimizer.
            let positive: Vec<f64> = finite.iter().map(|&(_, x)| x).filter(|x| *x > 0.0).collect();
            let mean = positive.iter().sum::<f64>() / positive.len().max(1) as f64;
            let mut scale = HashMap::new();
            for (key, value) in &finite {
                if let Some(group) = group_named(key) {
                    let relative = if mean > 0.0 { value / mean } else { 1.0 };
                    scale.insert(group, relative.clamp(0.25, 4.0));
                }
            }
            let norm = self.apply_drift(&scale, 1.0);
            self.shared.stats().predicted_update_norm += norm;
        } else {
            let mut scale = HashMap::new();
            for (key, value) in &finite {
                if let Some(group) = group_named(key) {
                    scale.insert(group, value.clamp(-0.5, 0.5));
                }
            }
            if scale.values().any(|v| *v != 0.0) {
                self.apply_drift(&scale, 0.0);
                self.shared.stats().corrections_applied += 1;
            }
        }
        Ok(())
    }
}

/// AdamW as the crate's `Optimizer`; it also records each update into the model's drift.
pub struct HybridOptimizer<B: TritterAutodiffBackend> {
    adamw: SharedOptimizer<TritterAdamW<B>>,
    shared: Arc<Shared>,
}

impl<B: TritterAutodiffBackend> hpt::Optimizer<HybridModel<B>, TokenBatch<B>> for HybridOptimizer<B> {
    fn step(&mut self, model: &mut HybridModel<B>, _: &GradientInfo) -> HybridResult<()> {
        let (grads, norm) = model.grads.take().ok_or_else(|| hybrid_error("optimizer step without gradients"))?;
        if !norm.is_finite() || !model.last_loss.is_finite() {
            tracing::warn!(norm, loss = model.last_loss, "hybrid: non-finite gradients, update skipped");
            return Ok(());
        }
        let lr = self.shared.lr();
        let mut before = Snapshot::<B>(GradientsParams::new(), std::marker::PhantomData);
        model.model.visit(&mut before);
        model.model = self.adamw.step(lr, model.model.clone(), grads);
        model.record_update(before.0, lr);
        Ok(())
    }

    fn learning_rate(&self) -> f32 {
        self.shared.lr() as f32
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.shared.set_lr(lr as f64);
    }

    fn zero_grad(&mut self) {
        self.shared.train_next.store(true, Ordering::SeqCst);
    }
}

/// The crate's trainer over a Tritter model.
pub type TritterHybridTrainer<B> = HybridTrainer<HybridModel<B>, HybridOptimizer<B>>;

/// Wraps `model` and `adamw` for the crate; `shared.lr` is set by the caller's schedule.
pub(super) fn wrap<B: TritterAutodiffBackend>(
    model: TritterModel<B>,
    adamw: SharedOptimizer<TritterAdamW<B>>,
    shared: Arc<Shared>,
    clip: Option<f32>,
    history: usize,
) -> (HybridModel<B>, HybridOptimizer<B>) {
    let groups = param_ids(&model)
        .into_iter()
        .filter_map(|(path, id)| group_of(&path).map(|g| (ParamId::from(id), g)))
        .collect();
    let model = HybridModel {
        model,
        pending: None,
        grads: None,
        drift: GradientsParams::new(),
        has_drift: false,
        groups,
        shared: shared.clone(),
        clip,
        keep: 1.0 - 1.0 / history.max(1) as f64,
        last_loss: f32::NAN,
    };
    (model, HybridOptimizer { adamw, shared })
}
