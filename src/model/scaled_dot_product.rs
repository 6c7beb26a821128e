//! The attention core, `softmax(q·kᵀ/√d + mask)·v` with grouped-query heads: query head `h`
//! reads kv head `h / (n_h / n_kv)`.
//!
//! On the CPU (and its `Autodiff` forms) it is one fused op ([`super::cpu_attention`]); other
//! backends run [`reference_attention`] with tensor ops.

use burn::tensor::{activation::softmax, backend::Backend, Bool, Tensor};

#[allow(unused_imports)] // unused in a build without the ndarray feature
use crate::backend::{is, same};

/// `q: [B, n_h, T, d]`, `k`, `v: [B, n_kv, S, d]`, `mask: [B, 1, T, S]` (true = masked) →
/// `[B, n_h, T, d]`. A query whose keys are all masked gets NaN from the reference and 0 from
/// the fused op; the model's masks always leave a query its own position.
pub fn scaled_dot_product_attention<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>, mask: Tensor<B, 4, Bool>) -> Tensor<B, 4> {
    crate::backend::for_cpu_backends!(B,
        plain: same(super::cpu_attention::attention(same(q), same(k), same(v), same(mask))),
        autodiff: |C| same(super::cpu_attention::fused_attention::<C>(same(q), same(k), same(v), same(mask))));
    reference_attention(q, k, v, mask)
}

/// [`scaled_dot_product_attention`] with tensor ops.
pub fn reference_attention<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>, mask: Tensor<B, 4, Bool>) -> Tensor<B, 4> {
    let [batch, heads, queries, d] = q.dims();
    let [_, kv_heads, keys, _] = k.dims();
    let (k, v) = (repeat_kv(k, heads / kv_heads), repeat_kv(v, heads / kv_heads));
    let scores = q.matmul(k.transpose()) / (d as f64).sqrt();
    let scores = scores.mask_fill(mask.expand([batch, heads, queries, keys]), f32::NEG_INFINITY);
    softmax(scores, 3).matmul(v)
}

/// `[B, n_kv, T, d] -> [B, n_kv · n_rep, T, d]`: each kv head serves `n_rep` consecutive query heads.
fn repeat_kv<B: Backend>(x: Tensor<B, 4>, n_rep: usize) -> Tensor<B, 4> {
    if n_rep == 1 {
        return x;
    }
    let [batch, nkv, seq, d] = x.dims();
    x.reshape([batch, nkv, 1, seq, d]).repeat_dim(2, n_rep).reshape([batch, nkv * n_rep, seq, d])
}
