//! Gated MLP: `down(act(gate(x)) ⊙ up(x))` with `act` = `relu(z)²` or `silu(z)`, and BitNet's
//! sub-norm before `down` when the config asks for it.

use burn::module::{Ignored, Module};
use burn::tensor::{backend::Backend, Tensor};

use crate::backend::TritterBackend;
use crate::config::{Activation, TritterConfig};
use crate::model::attention::projection;
use crate::model::norm::Norm;
use crate::ternary::{Projection, TernaryQuant};

/// The feed-forward block; `gate`, `up`: `[I, H]`, `down`: `[H, I]`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate_proj: Projection<B>,
    pub up_proj: Projection<B>,
    pub down_proj: Projection<B>,
    /// Norm over `I` before `down_proj`, if `sub_norm` (BitNet SubLN).
    pub ffn_sub_norm: Option<Norm<B>>,
    pub activation: Ignored<Activation>,
}

impl<B: Backend> Mlp<B> {
    /// A fresh MLP for `config`.
    pub fn new(config: &TritterConfig, quant: TernaryQuant, device: &B::Device) -> Self {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        Self {
            gate_proj: projection(config, quant, h, i, device),
            up_proj: projection(config, quant, h, i, device),
            down_proj: projection(config, quant, i, h, device),
            ffn_sub_norm: config.sub_norm.then(|| Norm::new(config.norm, i, config.norm_eps, device)),
            activation: Ignored(config.activation),
        }
    }
}

impl<B: TritterBackend> Mlp<B> {
    /// `[.., H] -> [.., H]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let gated = B::gated_activation(self.gate_proj.forward(x.clone()), self.up_proj.forward(x), *self.activation);
        self.down_proj.forward(match &self.ffn_sub_norm {
            Some(norm) => norm.forward(gated),
            None => gated,
        })
    }
}
