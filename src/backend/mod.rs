//! Every backend-specific kernel of Tritter, behind one extension trait.
//!
//! [`TritterBackend`] names each op the model runs that a backend may implement with its own
//! kernel; every default body is the tensor-op reference ([`reference`]), so a backend without
//! kernels of its own needs only `impl TritterBackend for MyBackend {}`. The CPU backend
//! ([`cpu`]) brings fused kernels for every op, the CubeCL backends (`cube`, wgpu and CUDA, with
//! and without Burn's fusion) their quantizers and packed product, and `Autodiff<B, C>`
//! ([`autodiff`]) runs each op as one autodiff node where `B` has kernels for its backward.
//!
//! Backend ops take Burn tensors and plain data (codes, scales, quantization settings), never the
//! model's modules, so nothing here depends on `model/` or on the layers of `ternary/`.

pub mod autodiff;
#[cfg(feature = "ndarray")]
pub mod cpu;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub mod cube;
pub mod decode;
mod owned_params;
mod packed_weight;
pub mod reference;
mod types;

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;

use burn::tensor::{backend::Backend, Bool, Int, Tensor};

use crate::config::{Activation, WeightQuantEps, WeightScale};
use crate::quant::TernaryQuant;

pub use decode::TokenDecoder;
pub use owned_params::with_owned_params;
pub use packed_weight::{upload as upload_packed, PackedWeight};
pub use reference::AdamWStep;
pub use types::*;

/// The ops of a Tritter model, each with the tensor-op reference as its default body.
///
/// Implement it (empty, or overriding the ops you have kernels for) to run Tritter on a backend
/// of your own. Shapes are those of the model: a projection's input is `[tokens, in]`, attention
/// operands are `[B, heads, T, d]`.
pub trait TritterBackend: Backend {
    /// Whether this backend runs kernels of its own rather than the references (reported by
    /// [`has_native_ops`]; tests use it to prove which path they measure).
    const NATIVE_OPS: bool = false;

    /// Whether the training projection's backward quantizes its inputs again (keeping only the
    /// unquantized ones, which cost no extra memory) instead of keeping quantized copies from the
    /// forward: worth it where the quantizers are one cheap pass.
    const REQUANTIZE_IN_BACKWARD: bool = false;

    /// Whether [`Self::packed_matmul`] reads the codes and scales from host memory, so a packed
    /// layer need not keep device copies.
    const PACKED_ON_HOST: bool = false;

    /// A decoder that runs `model` one token per row at a time without tensor ops, continuing
    /// from `cache` (default: none; generation then runs the model's forward pass per token).
    /// Its logits must equal the forward pass's up to float rounding.
    fn token_decoder(
        model: decode::DecodeModel<Self>,
        cache: decode::DecodeCache,
    ) -> Option<Box<dyn decode::TokenDecoder>> {
        let _ = (model, cache);
        None
    }

    /// `x: [tokens, in] -> [tokens, out]` with a packed ternary weight (default: the reference,
    /// which materialises `γ · Wq`).
    fn packed_matmul(x: Tensor<Self, 2>, w: PackedWeight<'_, Self>) -> Tensor<Self, 2> {
        reference::packed_matmul(x, w)
    }

    /// The training projection `y = x̃ · W̃ᵀ` for `x: [tokens, in]`, `w: [out, in]`. Default:
    /// the quantizers then [`Self::matmul_nt`], which is the whole op on a backend without
    /// autodiff; `Autodiff<B>` records it as one node with the straight-through backward.
    fn ternary_linear(x: Tensor<Self, 2>, w: Tensor<Self, 2>, quant: &TernaryQuant) -> Tensor<Self, 2> {
        Self::matmul_nt(Self::quantize_activation(x, quant), Self::quantize_weight(w, quant))
    }

    /// `x̃`: `x: [tokens, in]` quantized per token as `quant` says ([`Self::int8_activation`]),
    /// or as is. Backends implement the quantizer, not this.
    fn quantize_activation(x: Tensor<Self, 2>, quant: &TernaryQuant) -> Tensor<Self, 2> {
        if quant.activation_bits.is_some() {
            Self::int8_activation(x)
        } else {
            x
        }
    }

    /// `W̃`: `w: [out, in]` quantized as `quant` says ([`Self::ternary_weight`]), or as is.
    /// Backends implement the quantizer, not this.
    fn quantize_weight(w: Tensor<Self, 2>, quant: &TernaryQuant) -> Tensor<Self, 2> {
        match quant.weight_scale {
            Some(scale) => Self::ternary_weight(w, scale, quant.weight_eps),
            None => w,
        }
    }

    /// The per-token int8 fake quantization of `x: [tokens, in]`.
    fn int8_activation(x: Tensor<Self, 2>) -> Tensor<Self, 2> {
        crate::quant::fake_quantize_activation(x)
    }

    /// The absmean ternary fake quantization of `w: [out, in]` with `scale`'s groups and `eps`'s
    /// rule.
    fn ternary_weight(w: Tensor<Self, 2>, scale: WeightScale, eps: WeightQuantEps) -> Tensor<Self, 2> {
        crate::quant::fake_quantize_weight(w, scale, eps)
    }

    /// `a · bᵀ` (the forward product).
    fn matmul_nt(a: Tensor<Self, 2>, b: Tensor<Self, 2>) -> Tensor<Self, 2> {
        a.matmul(b.transpose())
    }

    /// `a · b` (the input gradient `∂L/∂y · W̃`).
    fn matmul_nn(a: Tensor<Self, 2>, b: Tensor<Self, 2>) -> Tensor<Self, 2> {
        a.matmul(b)
    }

    /// `aᵀ · b` (the weight gradient `(∂L/∂y)ᵀ · x̃`).
    fn matmul_tn(a: Tensor<Self, 2>, b: Tensor<Self, 2>) -> Tensor<Self, 2> {
        a.transpose().matmul(b)
    }

    /// LayerNorm (with `bias`) or RMSNorm over the rows of `x: [rows, dim]`.
    fn norm(x: Tensor<Self, 2>, weight: Tensor<Self, 1>, bias: Option<Tensor<Self, 1>>, eps: f64) -> Tensor<Self, 2> {
        reference::norm(x, weight, bias, eps)
    }

    /// RoPE (rotate-half) of `x: [B, T, heads, d]` with the `[T · d/2]` tables `cos` and `sin`.
    fn rope(x: Tensor<Self, 4>, cos: Vec<f32>, sin: Vec<f32>) -> Tensor<Self, 4> {
        reference::rope(x, cos, sin)
    }

    /// `softmax(q·kᵀ/√d + mask)·v` with grouped-query heads (see [`reference::attention`]).
    fn grouped_query_attention(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        mask: Tensor<Self, 4, Bool>,
    ) -> Tensor<Self, 4> {
        reference::attention(q, k, v, mask)
    }

    /// The rows of `weight: [vocab, hidden]` at `ids: [batch, seq]`: `[batch, seq, hidden]`.
    fn token_embedding(weight: Tensor<Self, 2>, ids: Tensor<Self, 2, Int>) -> Tensor<Self, 3> {
        burn::tensor::module::embedding(weight, ids)
    }

    /// Mean cross-entropy over the rows whose target is not `ignore` (see
    /// [`reference::cross_entropy`]).
    fn cross_entropy(logits: Tensor<Self, 2>, targets: Tensor<Self, 1, Int>, ignore: Option<usize>) -> Tensor<Self, 1> {
        reference::cross_entropy(logits, targets, ignore)
    }

    /// `act(gate) ⊙ up` (`relu(gate)²` or `silu(gate)`).
    fn gated_activation<const D: usize>(
        gate: Tensor<Self, D>,
        up: Tensor<Self, D>,
        activation: Activation,
    ) -> Tensor<Self, D> {
        reference::gated_activation(gate, up, activation)
    }

    /// `t` with the same elements in row-major order under the shape `dims`.
    fn reshape<const D1: usize, const D2: usize>(t: Tensor<Self, D1>, dims: [usize; D2]) -> Tensor<Self, D2> {
        t.reshape(dims)
    }

    /// One AdamW step: `(parameter, moment_1, moment_2)` after it (`moments: None` on the first).
    fn adamw_step<const D: usize>(
        step: &AdamWStep,
        parameter: Tensor<Self, D>,
        grad: Tensor<Self, D>,
        moments: Option<(Tensor<Self, D>, Tensor<Self, D>)>,
    ) -> (Tensor<Self, D>, Tensor<Self, D>, Tensor<Self, D>) {
        reference::adamw_step(step, parameter, grad, moments)
    }

    // How `Autodiff<Self, C>` runs the ops above: by default the reference's tensor ops, recorded
    // one by one; a backend with kernels for the backward overrides them with one node each.

    /// [`Self::norm`] under autodiff.
    fn autodiff_norm<C: CheckpointStrategy>(
        x: Tensor<Autodiff<Self, C>, 2>,
        weight: Tensor<Autodiff<Self, C>, 1>,
        bias: Option<Tensor<Autodiff<Self, C>, 1>>,
        eps: f64,
    ) -> Tensor<Autodiff<Self, C>, 2> {
        reference::norm(x, weight, bias, eps)
    }

    /// [`Self::rope`] under autodiff.
    fn autodiff_rope<C: CheckpointStrategy>(
        x: Tensor<Autodiff<Self, C>, 4>,
        cos: Vec<f32>,
        sin: Vec<f32>,
    ) -> Tensor<Autodiff<Self, C>, 4> {
        reference::rope(x, cos, sin)
    }

    /// [`Self::grouped_query_attention`] under autodiff.
    fn autodiff_grouped_query_attention<C: CheckpointStrategy>(
        q: Tensor<Autodiff<Self, C>, 4>,
        k: Tensor<Autodiff<Self, C>, 4>,
        v: Tensor<Autodiff<Self, C>, 4>,
        mask: Tensor<Autodiff<Self, C>, 4, Bool>,
    ) -> Tensor<Autodiff<Self, C>, 4> {
        reference::attention(q, k, v, mask)
    }

    /// [`Self::token_embedding`] under autodiff (default: Burn's op, whose backward builds the
    /// gradient with tensor ops).
    fn autodiff_token_embedding<C: CheckpointStrategy>(
        weight: Tensor<Autodiff<Self, C>, 2>,
        ids: Tensor<Autodiff<Self, C>, 2, Int>,
    ) -> Tensor<Autodiff<Self, C>, 3> {
        burn::tensor::module::embedding(weight, ids)
    }

    /// [`Self::cross_entropy`] under autodiff.
    fn autodiff_cross_entropy<C: CheckpointStrategy>(
        logits: Tensor<Autodiff<Self, C>, 2>,
        targets: Tensor<Autodiff<Self, C>, 1, Int>,
        ignore: Option<usize>,
    ) -> Tensor<Autodiff<Self, C>, 1> {
        reference::cross_entropy(logits, targets, ignore)
    }

    /// [`Self::gated_activation`] under autodiff.
    fn autodiff_gated_activation<C: CheckpointStrategy, const D: usize>(
        gate: Tensor<Autodiff<Self, C>, D>,
        up: Tensor<Autodiff<Self, C>, D>,
        activation: Activation,
    ) -> Tensor<Autodiff<Self, C>, D> {
        reference::gated_activation(gate, up, activation)
    }

    /// [`Self::reshape`] under autodiff.
    fn autodiff_reshape<C: CheckpointStrategy, const D1: usize, const D2: usize>(
        t: Tensor<Autodiff<Self, C>, D1>,
        dims: [usize; D2],
    ) -> Tensor<Autodiff<Self, C>, D2> {
        t.reshape(dims)
    }
}

/// An autodiff backend whose inner backend is a [`TritterBackend`] too: what training needs
/// (the validation model and the optimizer run on the inner backend).
pub trait TritterAutodiffBackend:
    burn::tensor::backend::AutodiffBackend<InnerBackend: TritterBackend> + TritterBackend
{
}

impl<B> TritterAutodiffBackend for B
where
    B: burn::tensor::backend::AutodiffBackend + TritterBackend,
    B::InnerBackend: TritterBackend,
{
}

/// Whether `B` runs kernels of its own ([`TritterBackend::NATIVE_OPS`]) rather than the
/// tensor-op references.
pub fn has_native_ops<B: TritterBackend>() -> bool {
    B::NATIVE_OPS
}
