//! LayerNorm / RMSNorm over the last dim, with the spec's parameter names (`weight`, `bias`).

use burn::module::{Initializer, Module, Param};
use burn::tensor::{backend::Backend, Tensor};

use crate::backend::TritterBackend;
use crate::config::NormKind;

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
}

impl<B: TritterBackend> Norm<B> {
    /// Normalises over the last dim with the backend's [`TritterBackend::norm`].
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dims = x.dims();
        let dim = dims[D - 1];
        let rows = dims.iter().product::<usize>() / dim.max(1);
        let bias = self.bias.as_ref().map(|b| b.val());
        B::reshape(B::norm(B::reshape(x, [rows, dim]), self.weight.val(), bias, self.eps), dims)
    }
}
