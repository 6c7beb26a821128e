//! LayerNorm / RMSNorm over the last dim, with the spec's parameter names (`weight`, `bias`).

use burn::module::{Initializer, Module, Param};
use burn::tensor::{backend::Backend, Tensor};

#[allow(unused_imports)] // unused in a build without the ndarray feature
use crate::backend::same;
use crate::config::NormKind;
use crate::reshape::reshape;

/// A norm over the last dim: LayerNorm (`weight`, `bias`) or RMSNorm (`weight` only).
/// Weights start at 1, biases at 0.
#[derive(Module, Debug)]
pub struct Norm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    /// Present for LayerNorm only.
    pub bias: Option<Param<Tensor<B, 1>>>,
    pub eps: f64,
}

impl<B: Backend> Norm<B> {
    /// A fresh norm over `dim` features.
    pub fn new(kind: NormKind, dim: usize, eps: f64, device: &B::Device) -> Self {
        let bias = match kind {
            NormKind::LayerNorm => Some(Initializer::Zeros.init([dim], device)),
            NormKind::RmsNorm => None,
        };
        Self { weight: Initializer::Ones.init([dim], device), bias, eps }
    }

    /// Normalises over the last dim.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dims = x.dims();
        let dim = dims[D - 1];
        let rows = dims.iter().product::<usize>() / dim.max(1);
        let bias = self.bias.as_ref().map(|b| b.val());
        reshape(normalize(reshape(x, [rows, dim]), self.weight.val(), bias, self.eps), dims)
    }
}

/// `x: [rows, dim]` normalised per row, with the CPU's fused op where it applies.
fn normalize<B: Backend>(x: Tensor<B, 2>, weight: Tensor<B, 1>, bias: Option<Tensor<B, 1>>, eps: f64) -> Tensor<B, 2> {
    crate::backend::for_cpu_backends!(B,
        plain: same(super::cpu_norm::norm(same(x), same(weight), same(bias), eps)),
        autodiff: |C| same(super::cpu_norm::fused_norm::<C>(same(x), same(weight), same(bias), eps)));
    reference_norm(x, weight, bias, eps)
}

/// LayerNorm (with `bias`) or RMSNorm over the last dim of `x: [rows, dim]`, with tensor ops.
pub fn reference_norm<B: Backend>(x: Tensor<B, 2>, weight: Tensor<B, 1>, bias: Option<Tensor<B, 1>>, eps: f64) -> Tensor<B, 2> {
    let weight = weight.unsqueeze::<2>();
    match bias {
        Some(bias) => {
            let centered = x.clone() - x.mean_dim(1);
            let var = centered.clone().square().mean_dim(1);
            centered / (var + eps).sqrt() * weight + bias.unsqueeze::<2>()
        }
        None => {
            let mean_sq = x.clone().square().mean_dim(1);
            x / (mean_sq + eps).sqrt() * weight
        }
    }
}
