//! One decoder layer: attention and MLP blocks with their norms.

use burn::module::{Ignored, Module};
use burn::tensor::{backend::Backend, Bool, Tensor};

use crate::backend::TritterBackend;
use crate::config::{MlpNorm, TritterConfig};
use crate::model::attention::{Attention, LayerCache};
use crate::model::mlp::Mlp;
use crate::model::norm::Norm;
use crate::ternary::{Projection, TernaryQuant};

/// `x + Attn(N_attn(x))`, then `x + MLP(N_mlp(x))` (pre) or `N_mlp(x + MLP(x))` (post).
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    pub input_layernorm: Norm<B>,
    pub self_attn: Attention<B>,
    /// The MLP-side norm, before (pre) or after (post) the MLP residual.
    pub post_attention_layernorm: Norm<B>,
    pub mlp: Mlp<B>,
    pub mlp_norm: Ignored<MlpNorm>,
}

impl<B: Backend> DecoderLayer<B> {
    /// A fresh layer for `config`.
    pub fn new(config: &TritterConfig, quant: TernaryQuant, device: &B::Device) -> Self {
        let norm = || Norm::new(config.norm, config.hidden_size, config.norm_eps, device);
        Self {
            input_layernorm: norm(),
            self_attn: Attention::new(config, quant, device),
            post_attention_layernorm: norm(),
            mlp: Mlp::new(config, quant, device),
            mlp_norm: Ignored(config.mlp_norm),
        }
    }

    /// The layer's projections in the order of [`crate::config::LAYER_PROJECTIONS`].
    pub fn projections(&self) -> [&Projection<B>; 7] {
        let (a, m) = (&self.self_attn, &self.mlp);
        [&a.q_proj, &a.k_proj, &a.v_proj, &a.o_proj, &m.gate_proj, &m.up_proj, &m.down_proj]
    }

    /// [`Self::projections`], mutably.
    pub fn projections_mut(&mut self) -> [&mut Projection<B>; 7] {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        [&mut a.q_proj, &mut a.k_proj, &mut a.v_proj, &mut a.o_proj, &mut m.gate_proj, &mut m.up_proj, &mut m.down_proj]
    }
}

impl<B: TritterBackend> DecoderLayer<B> {
    /// `[B, T, H] -> [B, T, H]` at positions `offset..offset + T`; with a `cache`, attention also
    /// reads (and then extends) the keys and values of the earlier positions.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        offset: usize,
        mask: Tensor<B, 4, Bool>,
        cache: Option<&mut Option<LayerCache<B>>>,
    ) -> Tensor<B, 3> {
        let x = x.clone() + self.self_attn.forward_cached(self.input_layernorm.forward(x), offset, mask, cache);
        match *self.mlp_norm {
            MlpNorm::Pre => x.clone() + self.mlp.forward(self.post_attention_layernorm.forward(x)),
            MlpNorm::Post => self.post_attention_layernorm.forward(x.clone() + self.mlp.forward(x)),
        }
    }
}
