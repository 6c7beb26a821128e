//! AdamW with Burn's maths and Burn's state (`AdamWState`, so step checkpoints keep their format),
//! each parameter updated by the backend's [`TritterBackend::adamw_step`]: one pass per parameter
//! on the CPU (bit-identical to Burn's `AdamW`), the same maths as tensor ops elsewhere.

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamWState, AdaptiveMomentumState, LearningRate, SimpleOptimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Device, Tensor};

use crate::backend::{AdamWStep, TritterBackend};
use crate::train::config::TrainConfig;

/// AdamW (decoupled weight decay, bias-corrected moments), as Burn's `AdamW` computes it.
#[derive(Clone, Debug)]
pub struct FusedAdamW {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
    /// Weight decay applies to a parameter's first `decay_steps` updates only (BitNet's
    /// cooldown stage turns it off); `None`: always.
    pub decay_steps: Option<usize>,
}

impl FusedAdamW {
    /// The run's β, ε and weight decay.
    pub fn new(config: &TrainConfig) -> Self {
        Self {
            beta_1: config.beta1,
            beta_2: config.beta2,
            epsilon: config.epsilon,
            weight_decay: config.weight_decay,
            decay_steps: config.cooldown.map(|c| c.first_stage_steps(config.steps)),
        }
    }

    /// The optimizer for a module (Burn's adaptor: gradients by parameter id, state records).
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(self) -> OptimizerAdaptor<Self, M, B>
    where
        B::InnerBackend: TritterBackend,
    {
        self.into()
    }

    /// The constants of step `time` at `lr`: `1 − β1^t`, `1 − β2^t`, the weight's multiplier
    /// `1 − lr · λ` (None without decay) and `lr`, rounded to f32 as Burn rounds them.
    fn step_at(&self, lr: LearningRate, time: usize) -> AdamWStep {
        let decaying = self.decay_steps.is_none_or(|steps| time <= steps);
        let decay_rate = if decaying { lr * self.weight_decay as f64 } else { 0.0 };
        AdamWStep {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            correction_1: 1.0 - self.beta_1.powi(time as i32),
            correction_2: 1.0 - self.beta_2.powi(time as i32),
            keep: (decay_rate != 0.0).then_some((1.0 - decay_rate) as f32),
            lr: lr as f32,
        }
    }
}

impl<B: TritterBackend> SimpleOptimizer<B> for FusedAdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let time = state.as_ref().map_or(1, |s| s.momentum.time + 1);
        let moments = state.map(|s| (s.momentum.moment_1, s.momentum.moment_2));
        let (tensor, m1, m2) = B::adamw_step(&self.step_at(lr, time), tensor, grad, moments);
        (tensor, Some(AdamWState::new(AdaptiveMomentumState::new(time, m1, m2))))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device<B>) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}
