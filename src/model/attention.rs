//! Causal self-attention with grouped-query heads, QK-Norm and RoPE (spec section 2).

use burn::module::{Ignored, Module};
use burn::tensor::{backend::Backend, Bool, Tensor};

use crate::backend::TritterBackend;
use crate::config::TritterConfig;
use crate::model::norm::Norm;
use crate::model::rope::RotaryEmbedding;
use crate::ternary::{Projection, TernaryLinearConfig, TernaryQuant};

/// Builds one projection of a block with the model's quantization settings.
pub(crate) fn projection<B: Backend>(
    config: &TritterConfig,
    quant: TernaryQuant,
    d_input: usize,
    d_output: usize,
    device: &B::Device,
) -> Projection<B> {
    TernaryLinearConfig::new(d_input, d_output)
        .with_init_std(config.init_std)
        .with_weight_scale(quant.weight_scale)
        .with_weight_quant_eps(quant.weight_eps)
        .with_activation_bits(quant.activation_bits)
        .init(device)
        .into()
}

/// Multi-head attention where query head `h` reads kv head `h / (n_h / n_kv)`.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub q_proj: Projection<B>,
    pub k_proj: Projection<B>,
    pub v_proj: Projection<B>,
    pub o_proj: Projection<B>,
    /// Per-head norm over `d` applied to q (one weight shared by all heads), if `qk_norm`.
    pub q_norm: Option<Norm<B>>,
    /// Per-head norm over `d` applied to k, if `qk_norm`.
    pub k_norm: Option<Norm<B>>,
    /// Norm over `n_h · d` of the attention output before `o_proj`, if `sub_norm` (BitNet SubLN).
    pub attn_sub_norm: Option<Norm<B>>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub rope: Ignored<RotaryEmbedding>,
}

impl<B: Backend> Attention<B> {
    /// A fresh attention block for `config`.
    pub fn new(config: &TritterConfig, quant: TernaryQuant, device: &B::Device) -> Self {
        let (h, d) = (config.hidden_size, config.head_dim());
        let (nh, nkv) = (config.num_heads, config.num_kv_heads);
        let qk_norm = || config.qk_norm.then(|| Norm::new(config.norm, d, config.norm_eps, device));
        Self {
            q_proj: projection(config, quant, h, nh * d, device),
            k_proj: projection(config, quant, h, nkv * d, device),
            v_proj: projection(config, quant, h, nkv * d, device),
            o_proj: projection(config, quant, nh * d, h, device),
            q_norm: qk_norm(),
            k_norm: qk_norm(),
            attn_sub_norm: config.sub_norm.then(|| Norm::new(config.norm, nh * d, config.norm_eps, device)),
            num_heads: nh,
            num_kv_heads: nkv,
            rope: Ignored(RotaryEmbedding { theta: config.rope_theta, head_dim: d }),
        }
    }
}

impl<B: TritterBackend> Attention<B> {
    /// `x: [B, T, H]` at positions `offset..offset + T`; `mask: [B, 1, T, T]`, true = masked.
    pub fn forward(&self, x: Tensor<B, 3>, offset: usize, mask: Tensor<B, 4, Bool>) -> Tensor<B, 3> {
        self.forward_cached(x, offset, mask, None)
    }

    /// Like [`Self::forward`], attending also to the keys and values in `cache` (the positions
    /// before `offset`), which it then extends with this call's. `mask: [B, 1, T, offset + T]`.
    pub fn forward_cached(
        &self,
        x: Tensor<B, 3>,
        offset: usize,
        mask: Tensor<B, 4, Bool>,
        cache: Option<&mut Option<LayerCache<B>>>,
    ) -> Tensor<B, 3> {
        let [batch, seq, _] = x.dims();
        let d = self.rope.head_dim;
        let (nh, nkv) = (self.num_heads, self.num_kv_heads);

        let mut q = B::reshape(self.q_proj.forward(x.clone()), [batch, seq, nh, d]);
        let mut k = B::reshape(self.k_proj.forward(x.clone()), [batch, seq, nkv, d]);
        let v = B::reshape(self.v_proj.forward(x), [batch, seq, nkv, d]);
        if let (Some(q_norm), Some(k_norm)) = (&self.q_norm, &self.k_norm) {
            q = q_norm.forward(q);
            k = k_norm.forward(k);
        }
        let q = self.rope.apply(q, offset).swap_dims(1, 2); // [B, nh, T, d]
        let mut k = self.rope.apply(k, offset).swap_dims(1, 2); // [B, nkv, T, d]
        let mut v = v.swap_dims(1, 2);
        if let Some(slot) = cache {
            if let Some(past) = slot.take() {
                k = Tensor::cat(vec![past.k, k], 2);
                v = Tensor::cat(vec![past.v, v], 2);
            }
            *slot = Some(LayerCache { k: k.clone(), v: v.clone() });
        }
        let out = B::grouped_query_attention(q, k, v, mask); // [B, nh, T, d]
        let out = B::reshape(out.swap_dims(1, 2), [batch, seq, nh * d]);
        self.o_proj.forward(match &self.attn_sub_norm {
            Some(norm) => norm.forward(out),
            None => out,
        })
    }
}

/// Keys and values of one layer for the positions seen so far, `[B, n_kv, T, d]`: the cache
/// holds the `n_kv` kv heads, not the `n_h` query heads they serve.
#[derive(Debug, Clone)]
pub struct LayerCache<B: Backend> {
    pub k: Tensor<B, 4>,
    pub v: Tensor<B, 4>,
}

/// The attention mask `[B, 1, T, T]` (true = masked): keys after the query (causal) and pad
/// keys. A query may always see itself, so a row is never fully masked (no NaN at pad queries).
pub fn attention_mask<B: Backend>(
    ids: &Tensor<B, 2, burn::tensor::Int>,
    pad_token_id: Option<usize>,
) -> Tensor<B, 4, Bool> {
    let [batch, seq] = ids.dims();
    let device = ids.device();
    // Burn's `tril_mask` is true outside the lower triangle (diagonal kept): the keys j > i.
    let causal = Tensor::<B, 2, Bool>::tril_mask([seq, seq], 0, &device).reshape([1, 1, seq, seq]);
    let Some(pad) = pad_token_id else {
        return causal.expand([batch, 1, seq, seq]);
    };
    let pad_keys = ids.clone().equal_elem(pad as i64).reshape([batch, 1, 1, seq]).expand([batch, 1, seq, seq]);
    let off_diagonal = Tensor::<B, 2, Bool>::diag_mask([seq, seq], 0, &device).reshape([1, 1, seq, seq]);
    causal.expand([batch, 1, seq, seq]).bool_or(pad_keys.bool_and(off_diagonal.expand([batch, 1, seq, seq])))
}
