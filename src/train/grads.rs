//! Gradient utilities Burn lacks: the global L2 norm over all parameters (Burn's clipping is per
//! tensor) and scaling every gradient by one factor.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};

struct SquaredNorm<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let sum = grad.square().sum();
            self.total = Some(match self.total.take() {
                Some(total) => total + sum,
                None => sum,
            });
        }
    }
}

/// `sqrt(Σ_p ‖∇p‖²)` over every parameter of `model` that has a gradient (NaN or ∞ if any
/// gradient is not finite). One device-to-host read.
pub fn global_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(model: &M, grads: &GradientsParams) -> f64 {
    let mut visitor = SquaredNorm::<B> { grads, total: None };
    model.visit(&mut visitor);
    match visitor.total {
        Some(total) => {
            let squared: f32 = total.into_scalar().elem();
            (squared as f64).sqrt()
        }
        None => 0.0,
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, grad.mul_scalar(self.factor));
        }
    }
}

/// Multiplies every gradient of `model`'s parameters by `factor`.
pub fn scale_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    mut grads: GradientsParams,
    factor: f64,
) -> GradientsParams {
    model.visit(&mut Scale { grads: &mut grads, factor });
    grads
}

/// Clips to global norm `max_norm` like PyTorch's `clip_grad_norm_`: scales by
/// `max_norm / (norm + 1e-6)` when that is below 1. Returns the gradients and the norm before
/// clipping.
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: GradientsParams,
    max_norm: Option<f32>,
) -> (GradientsParams, f64) {
    let norm = global_grad_norm(model, &grads);
    match max_norm {
        Some(max) if norm.is_finite() && norm > max as f64 => {
            let factor = max as f64 / (norm + 1e-6);
            (scale_grads(model, grads, factor), norm)
        }
        _ => (grads, norm),
    }
}

struct Flatten<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    parts: Vec<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Flatten<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let grad =
            self.grads.remove::<B::InnerBackend, D>(param.id).unwrap_or_else(|| param.val().inner().zeros_like());
        self.parts.push(grad.flatten(0, D - 1));
    }
}

/// `head` followed by the gradient of every parameter of `model` (zeros where it has none),
/// flattened in the module's visiting order: one tensor to all-reduce, laid out the same on every
/// machine (parameter ids differ between processes; the module structure does not).
pub fn flatten_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    mut grads: GradientsParams,
    head: Tensor<B::InnerBackend, 1>,
) -> Tensor<B::InnerBackend, 1> {
    let mut visitor = Flatten::<B> { grads: &mut grads, parts: vec![head] };
    model.visit(&mut visitor);
    Tensor::cat(visitor.parts, 0)
}

struct Unflatten<B: AutodiffBackend> {
    flat: Tensor<B::InnerBackend, 1>,
    offset: usize,
    grads: GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Unflatten<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let shape = param.val().shape();
        let len = shape.num_elements();
        let grad: Tensor<B::InnerBackend, D> = self.flat.clone().narrow(0, self.offset, len).reshape(shape);
        self.grads.register(param.id, grad);
        self.offset += len;
    }
}

/// The inverse of [`flatten_grads`] with a head of `head_len` values: the gradients and the head.
pub fn unflatten_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    flat: Tensor<B::InnerBackend, 1>,
    head_len: usize,
) -> (GradientsParams, Tensor<B::InnerBackend, 1>) {
    let head = flat.clone().narrow(0, 0, head_len);
    let mut visitor = Unflatten::<B> { flat, offset: head_len, grads: GradientsParams::new() };
    model.visit(&mut visitor);
    (visitor.grads, head)
}
