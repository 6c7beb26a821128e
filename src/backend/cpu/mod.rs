//! The CPU backend's kernels (burn-ndarray, f32): every [`TritterBackend`] op as a pass over the
//! tensors' memory, and under autodiff as one node whose backward is one more.

pub mod adamw;
pub mod attention;
pub mod cross_entropy;
mod decode;
pub mod embedding;
pub mod gated_activation;
pub mod gemm;
pub mod gemv;
pub mod math;
pub mod norm;
pub mod packed;
pub mod quant;
pub mod reshape;
pub mod rope;
pub mod tensor;
pub mod ternary_gemm;

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::Autodiff;
use burn::tensor::{Bool, Int, Tensor};

use crate::backend::decode::{DecodeCache, DecodeModel};
use crate::backend::{AdamWStep, Cpu, PackedWeight, TokenDecoder, TritterBackend};
use crate::config::{Activation, WeightQuantEps, WeightScale};
use crate::quant::TernaryQuant;
use tensor::{cpu_tensor, with_rows};

impl TritterBackend for Cpu {
    const NATIVE_OPS: bool = true;
    const REQUANTIZE_IN_BACKWARD: bool = true;
    const PACKED_ON_HOST: bool = true;

    fn packed_matmul(x: Tensor<Self, 2>, w: PackedWeight<'_, Self>) -> Tensor<Self, 2> {
        let tokens = x.dims()[0];
        cpu_tensor(with_rows(x, |x| packed::packed_matmul(w.packed, w.int8_activations, x)), tokens, w.packed.rows)
    }

    fn token_decoder(model: DecodeModel<Self>, cache: DecodeCache) -> Option<Box<dyn TokenDecoder>> {
        Some(Box::new(decode::CpuDecoder::new(model, cache)))
    }

    fn ternary_linear(x: Tensor<Self, 2>, w: Tensor<Self, 2>, quant: &TernaryQuant) -> Tensor<Self, 2> {
        let ([tokens, cols], rows) = (x.dims(), w.dims()[0]);
        if let (Some(scale), Some(_)) = (quant.weight_scale, quant.activation_bits) {
            if tokens * rows * cols >= ternary_gemm::MIN_WORK && ternary_gemm::supported(scale, cols) {
                let y = with_rows(x, |x| {
                    with_rows(w, |w| ternary_gemm::ternary_product(x, tokens, w, rows, cols, scale, quant.weight_eps))
                });
                return cpu_tensor(y.expect("supported"), tokens, rows);
            }
        }
        Self::matmul_nt(Self::quantize_activation(x, quant), Self::quantize_weight(w, quant))
    }

    fn int8_activation(x: Tensor<Self, 2>) -> Tensor<Self, 2> {
        let [tokens, cols] = x.dims();
        cpu_tensor(with_rows(x, |x| quant::fake_quantize_activation(x, cols)), tokens, cols)
    }

    fn ternary_weight(w: Tensor<Self, 2>, scale: WeightScale, eps: WeightQuantEps) -> Tensor<Self, 2> {
        let [rows, cols] = w.dims();
        cpu_tensor(with_rows(w, |w| quant::fake_quantize_weight(w, rows, cols, scale, eps)), rows, cols)
    }

    fn matmul_nt(a: Tensor<Self, 2>, b: Tensor<Self, 2>) -> Tensor<Self, 2> {
        gemm::matmul_nt(a, b)
    }

    fn matmul_nn(a: Tensor<Self, 2>, b: Tensor<Self, 2>) -> Tensor<Self, 2> {
        gemm::matmul_nn(a, b)
    }

    fn matmul_tn(a: Tensor<Self, 2>, b: Tensor<Self, 2>) -> Tensor<Self, 2> {
        gemm::matmul_tn(a, b)
    }

    fn norm(x: Tensor<Self, 2>, weight: Tensor<Self, 1>, bias: Option<Tensor<Self, 1>>, eps: f64) -> Tensor<Self, 2> {
        norm::norm(x, weight, bias, eps)
    }

    fn rope(x: Tensor<Self, 4>, cos: Vec<f32>, sin: Vec<f32>) -> Tensor<Self, 4> {
        let heads = x.dims()[2];
        rope::rope(x, &rope::Tables { cos, sin, heads })
    }

    fn grouped_query_attention(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        mask: Tensor<Self, 4, Bool>,
    ) -> Tensor<Self, 4> {
        attention::attention(q, k, v, mask)
    }

    fn cross_entropy(logits: Tensor<Self, 2>, targets: Tensor<Self, 1, Int>, ignore: Option<usize>) -> Tensor<Self, 1> {
        cross_entropy::cross_entropy(logits, targets, ignore)
    }

    fn gated_activation<const D: usize>(
        gate: Tensor<Self, D>,
        up: Tensor<Self, D>,
        activation: Activation,
    ) -> Tensor<Self, D> {
        gated_activation::gated_activation(gate, up, activation)
    }

    fn reshape<const D1: usize, const D2: usize>(t: Tensor<Self, D1>, dims: [usize; D2]) -> Tensor<Self, D2> {
        tensor::reshape(t, dims)
    }

    fn adamw_step<const D: usize>(
        step: &AdamWStep,
        parameter: Tensor<Self, D>,
        grad: Tensor<Self, D>,
        moments: Option<(Tensor<Self, D>, Tensor<Self, D>)>,
    ) -> (Tensor<Self, D>, Tensor<Self, D>, Tensor<Self, D>) {
        adamw::step(step, parameter, grad, moments)
    }

    fn autodiff_norm<C: CheckpointStrategy>(
        x: Tensor<Autodiff<Self, C>, 2>,
        weight: Tensor<Autodiff<Self, C>, 1>,
        bias: Option<Tensor<Autodiff<Self, C>, 1>>,
        eps: f64,
    ) -> Tensor<Autodiff<Self, C>, 2> {
        norm::fused_norm(x, weight, bias, eps)
    }

    fn autodiff_rope<C: CheckpointStrategy>(
        x: Tensor<Autodiff<Self, C>, 4>,
        cos: Vec<f32>,
        sin: Vec<f32>,
    ) -> Tensor<Autodiff<Self, C>, 4> {
        let heads = x.dims()[2];
        rope::fused_rope(x, rope::Tables { cos, sin, heads })
    }

    fn autodiff_grouped_query_attention<C: CheckpointStrategy>(
        q: Tensor<Autodiff<Self, C>, 4>,
        k: Tensor<Autodiff<Self, C>, 4>,
        v: Tensor<Autodiff<Self, C>, 4>,
        mask: Tensor<Autodiff<Self, C>, 4, Bool>,
    ) -> Tensor<Autodiff<Self, C>, 4> {
        attention::fused_attention(q, k, v, mask)
    }

    fn autodiff_token_embedding<C: CheckpointStrategy>(
        weight: Tensor<Autodiff<Self, C>, 2>,
        ids: Tensor<Autodiff<Self, C>, 2, Int>,
    ) -> Tensor<Autodiff<Self, C>, 3> {
        embedding::fused_embedding(weight, ids)
    }

    fn autodiff_cross_entropy<C: CheckpointStrategy>(
        logits: Tensor<Autodiff<Self, C>, 2>,
        targets: Tensor<Autodiff<Self, C>, 1, Int>,
        ignore: Option<usize>,
    ) -> Tensor<Autodiff<Self, C>, 1> {
        cross_entropy::fused_cross_entropy(logits, targets, ignore)
    }

    fn autodiff_gated_activation<C: CheckpointStrategy, const D: usize>(
        gate: Tensor<Autodiff<Self, C>, D>,
        up: Tensor<Autodiff<Self, C>, D>,
        activation: Activation,
    ) -> Tensor<Autodiff<Self, C>, D> {
        gated_activation::fused_gated_activation(gate, up, activation)
    }

    fn autodiff_reshape<C: CheckpointStrategy, const D1: usize, const D2: usize>(
        t: Tensor<Autodiff<Self, C>, D1>,
        dims: [usize; D2],
    ) -> Tensor<Autodiff<Self, C>, D2> {
        reshape::fused_reshape(t, dims)
    }
}
