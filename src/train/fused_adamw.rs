//! AdamW with Burn's maths and Burn's state (`AdamWState`, so step checkpoints keep their format),
//! updated in one pass per parameter on the CPU backend.
//!
//! Burn's `AdamW` makes about a dozen whole-tensor passes per parameter (each allocating a new
//! array); on `small_100m` that was 0.87 s of a 4.6 s training step on two cores. The CPU path
//! performs the same f32 operations in the same order per element, so its results are
//! bit-identical; other backends run the same maths as tensor ops.

use burn::optim::adaptor::OptimizerAdaptor;
use burn::module::AutodiffModule;
use burn::optim::{AdamWState, AdaptiveMomentumState, LearningRate, SimpleOptimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Device, Tensor};

use crate::train::config::TrainConfig;

/// AdamW (decoupled weight decay, bias-corrected moments), as Burn's `AdamW` computes it.
#[derive(Clone, Debug)]
pub struct FusedAdamW {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
}

impl FusedAdamW {
    /// The run's β, ε and weight decay.
    pub fn new(config: &TrainConfig) -> Self {
        Self { beta_1: config.beta1, beta_2: config.beta2, epsilon: config.epsilon, weight_decay: config.weight_decay }
    }

    /// The optimizer for a module (Burn's adaptor: gradients by parameter id, state records).
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(self) -> OptimizerAdaptor<Self, M, B> {
        self.into()
    }

    /// The per-step scalars: `1 − β1^t`, `1 − β2^t`, the weight's multiplier `1 − lr · λ` (None
    /// without decay) and `lr`, rounded to f32 as Burn rounds them.
    fn scalars(&self, lr: LearningRate, time: usize) -> Step {
        let decay_rate = lr * self.weight_decay as f64;
        Step {
            correction_1: 1.0 - self.beta_1.powi(time as i32),
            correction_2: 1.0 - self.beta_2.powi(time as i32),
            keep: (decay_rate != 0.0).then_some((1.0 - decay_rate) as f32),
            lr: lr as f32,
        }
    }
}

#[derive(Clone, Copy)]
struct Step {
    correction_1: f32,
    correction_2: f32,
    keep: Option<f32>,
    lr: f32,
}

impl<B: Backend> SimpleOptimizer<B> for FusedAdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(&self, lr: LearningRate, tensor: Tensor<B, D>, grad: Tensor<B, D>, state: Option<Self::State<D>>) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let time = state.as_ref().map_or(1, |s| s.momentum.time + 1);
        let step = self.scalars(lr, time);
        let moments = state.map(|s| (s.momentum.moment_1, s.momentum.moment_2));
        #[cfg(feature = "ndarray")]
        if crate::backend::is::<B, crate::backend::Cpu>() {
            use crate::backend::same;
            let (tensor, m1, m2) = cpu::step::<D>(self, step, same(tensor), same(grad), moments.map(|(m1, m2)| (same(m1), same(m2))));
            return (same(tensor), Some(AdamWState::new(AdaptiveMomentumState::new(time, same(m1), same(m2)))));
        }
        let (m1, m2) = match moments {
            Some((m1, m2)) => (
                m1.mul_scalar(self.beta_1).add(grad.clone().mul_scalar(1.0 - self.beta_1)),
                m2.mul_scalar(self.beta_2).add(grad.square().mul_scalar(1.0 - self.beta_2)),
            ),
            None => (grad.clone().mul_scalar(1.0 - self.beta_1), grad.square().mul_scalar(1.0 - self.beta_2)),
        };
        let delta = m1.clone().div_scalar(step.correction_1).div(m2.clone().div_scalar(step.correction_2).sqrt().add_scalar(self.epsilon));
        let decayed = match step.keep {
            Some(keep) => tensor.mul_scalar(keep),
            None => tensor,
        };
        (decayed - delta.mul_scalar(step.lr), Some(AdamWState::new(AdaptiveMomentumState::new(time, m1, m2))))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device<B>) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

#[cfg(feature = "ndarray")]
mod cpu {
    use burn::backend::ndarray::NdArrayTensor;
    use burn::tensor::Tensor;
    use ndarray::ArcArray;
    use rayon::prelude::*;

    use super::{FusedAdamW, Step};
    use crate::backend::Cpu;

    /// Elements per parallel task.
    const PIECE: usize = 1 << 14;

    type Array = ArcArray<f32, ndarray::IxDyn>;

    /// The tensor's array, owned (no copy when nothing else holds it) and in standard layout.
    fn array<const D: usize>(t: Tensor<Cpu, D>) -> Array {
        let NdArrayTensor::F32(storage) = t.into_primitive().tensor() else { panic!("the CPU backend's float tensors are f32") };
        let array = storage.into_owned();
        if array.is_standard_layout() { array } else { array.as_standard_layout().into_owned().into_shared() }
    }

    fn tensor<const D: usize>(array: Array) -> Tensor<Cpu, D> {
        crate::backend::float(NdArrayTensor::from(array))
    }

    /// One piece of the step, written as a loop over zipped slices with the branches outside it
    /// so that it compiles to vector instructions (division and square root included, which are
    /// exact IEEE operations, so the results stay bit-identical to Burn's; multiplying by a
    /// `keep` of 1 without decay is exact too).
    fn update<const FIRST: bool>(adam: &FusedAdamW, s: &Step, p: &mut [f32], m1: &mut [f32], m2: &mut [f32], g: &[f32]) {
        let (b1, b2, f1, f2) = (adam.beta_1, adam.beta_2, 1.0 - adam.beta_1, 1.0 - adam.beta_2);
        let (c1, c2, eps, lr, keep) = (s.correction_1, s.correction_2, adam.epsilon, s.lr, s.keep.unwrap_or(1.0));
        for (((p, m1), m2), &g) in p.iter_mut().zip(m1.iter_mut()).zip(m2.iter_mut()).zip(g) {
            // The order of Burn's tensor ops: m·β + g·(1 − β), each product rounded.
            (*m1, *m2) = if FIRST { (g * f1, (g * g) * f2) } else { (*m1 * b1 + g * f1, *m2 * b2 + (g * g) * f2) };
            let delta = (*m1 / c1) / ((*m2 / c2).sqrt() + eps);
            *p = *p * keep - delta * lr;
        }
    }

    /// One AdamW step in place: `(parameter, moment_1, moment_2)` after the step.
    pub(super) fn step<const D: usize>(
        adam: &FusedAdamW,
        s: Step,
        parameter: Tensor<Cpu, D>,
        grad: Tensor<Cpu, D>,
        moments: Option<(Tensor<Cpu, D>, Tensor<Cpu, D>)>,
    ) -> (Tensor<Cpu, D>, Tensor<Cpu, D>, Tensor<Cpu, D>) {
        let grad = array(grad);
        let mut param = array(parameter);
        let (mut m1, mut m2, first) = match moments {
            Some((m1, m2)) => (array(m1), array(m2), false),
            None => (Array::zeros(grad.raw_dim()), Array::zeros(grad.raw_dim()), true),
        };
        let g = grad.as_slice().expect("standard layout");
        let (p, m1s, m2s) = (param.as_slice_mut().expect("standard layout"), m1.as_slice_mut().expect("standard layout"), m2.as_slice_mut().expect("standard layout"));
        p.par_chunks_mut(PIECE)
            .zip(m1s.par_chunks_mut(PIECE))
            .zip(m2s.par_chunks_mut(PIECE))
            .zip(g.par_chunks(PIECE))
            .for_each(|(((p, m1), m2), g)| match first {
                true => update::<true>(adam, &s, p, m1, m2, g),
                false => update::<false>(adam, &s, p, m1, m2, g),
            });
        (tensor(param), tensor(m1), tensor(m2))
    }
}
