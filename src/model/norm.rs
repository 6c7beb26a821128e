//! LayerNorm / RMSNorm over the last dim, with the spec's parameter names (`weight`, `bias`).

use burn::module::{Initializer, Module, Param};
use burn::tensor::{backend::Backend, Tensor};

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

    /// Normalises over the last dim.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let last = D - 1;
        let weight = self.weight.val().unsqueeze::<D>();
        match &self.bias {
            Some(bias) => {
                let centered = x.clone() - x.mean_dim(last);
                let var = centered.clone().square().mean_dim(last);
                centered / (var + self.eps).sqrt() * weight + bias.val().unsqueeze::<D>()
            }
            None => {
                let mean_sq = x.clone().square().mean_dim(last);
                x / (mean_sq + self.eps).sqrt() * weight
            }
        }
    }
}
