//! Gated squared-ReLU MLP: `down(relu(gate(x))² ⊙ up(x))`.

use burn::module::Module;
use burn::tensor::{activation::relu, backend::Backend, Tensor};

#[allow(unused_imports)] // unused in a build without the ndarray feature
use crate::backend::same;
use crate::config::TritterConfig;
use crate::model::attention::projection;
use crate::ternary::{Projection, TernaryQuant};

/// The feed-forward block; `gate`, `up`: `[I, H]`, `down`: `[H, I]`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate_proj: Projection<B>,
    pub up_proj: Projection<B>,
    pub down_proj: Projection<B>,
}

impl<B: Backend> Mlp<B> {
    /// A fresh MLP for `config`.
    pub fn new(config: &TritterConfig, quant: TernaryQuant, device: &B::Device) -> Self {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        Self {
            gate_proj: projection(config, quant, h, i, device),
            up_proj: projection(config, quant, h, i, device),
            down_proj: projection(config, quant, i, h, device),
        }
    }

    /// `[.., H] -> [.., H]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let gated = gated_relu_squared(self.gate_proj.forward(x.clone()), self.up_proj.forward(x));
        self.down_proj.forward(gated)
    }
}

/// `relu(gate)² ⊙ up`, with the CPU's fused op where it applies.
pub fn gated_relu_squared<B: Backend, const D: usize>(gate: Tensor<B, D>, up: Tensor<B, D>) -> Tensor<B, D> {
    crate::backend::for_cpu_backends!(B,
        plain: same(super::cpu_gated_activation::gated_relu_squared::<D>(same(gate), same(up))),
        autodiff: |C| same(super::cpu_gated_activation::fused_gated_relu_squared::<C, D>(same(gate), same(up))));
    reference_gated_relu_squared(gate, up)
}

/// [`gated_relu_squared`] with tensor ops.
pub fn reference_gated_relu_squared<B: Backend, const D: usize>(gate: Tensor<B, D>, up: Tensor<B, D>) -> Tensor<B, D> {
    relu(gate).square() * up
}
