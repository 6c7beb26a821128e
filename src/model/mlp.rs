//! Gated squared-ReLU MLP: `down(relu(gate(x))² ⊙ up(x))`.

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use crate::backend::TritterBackend;
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
}

impl<B: TritterBackend> Mlp<B> {
    /// `[.., H] -> [.., H]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let gated = B::gated_relu_squared(self.gate_proj.forward(x.clone()), self.up_proj.forward(x));
        self.down_proj.forward(gated)
    }
}
