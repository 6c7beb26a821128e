//! AdamW with Burn's maths and Burn's state (`AdamWState`, so step checkpoints keep their format),
//! each parameter updated by the backend's [`TritterBackend::adamw_step`]: one pass per parameter
//! on the CPU (bit-identical to Burn's `AdamW`), the same maths as tensor ops elsewhere.

use burn::config::Config;
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamWState, AdaptiveMomentumState, LearningRate, SimpleOptimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Device, Tensor};

use crate::backend::{AdamWStep, TritterBackend};
use crate::train::config::TrainConfig;

/// [`FusedAdamW`]'s settings, with the defaults of Burn's `AdamWConfig`: a drop-in for it
/// (`FusedAdamWConfig::new().with_weight_decay(0.1).init()`) in a `Learner` or a hand-written
/// loop. Global-norm clipping is the training loop's ([`crate::train::train`] does it).
#[derive(Config, Debug)]
pub struct FusedAdamWConfig {
    #[config(default = 0.9)]
    pub beta_1: f32,
    #[config(default = 0.999)]
    pub beta_2: f32,
    #[config(default = 1e-5)]
    pub epsilon: f32,
    #[config(default = 1e-4)]
    pub weight_decay: f32,
    /// Weight decay applies to a parameter's first `decay_steps` updates only (BitNet's
    /// cooldown stage turns it off); `None`: always.
    pub decay_steps: Option<usize>,
}

impl FusedAdamWConfig {
    /// The optimizer for a module (Burn's adaptor: gradients by parameter id, state records).
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(&self) -> OptimizerAdaptor<FusedAdamW, M, B>
    where
        B::InnerBackend: TritterBackend,
    {
        self.optimizer().into()
    }

    /// The per-tensor optimizer (Burn's `SimpleOptimizer`), for use without a module.
    pub fn optimizer(&self) -> FusedAdamW {
        FusedAdamW {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
            decay_steps: self.decay_steps,
        }
    }

    /// A training run's β, ε, weight decay and cooldown.
    pub fn of(config: &TrainConfig) -> Self {
        Self::new()
            .with_beta_1(config.beta1)
            .with_beta_2(config.beta2)
            .with_epsilon(config.epsilon)
            .with_weight_decay(config.weight_decay)
            .with_decay_steps(config.cooldown.map(|c| c.first_stage_steps(config.steps)))
    }
}

/// AdamW (decoupled weight decay, bias-corrected moments), as Burn's `AdamW` computes it; made by
/// [`FusedAdamWConfig::init`].
#[derive(Clone, Debug)]
pub struct FusedAdamW {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
    decay_steps: Option<usize>,
}

impl FusedAdamW {
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
