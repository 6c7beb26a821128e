//! `Autodiff<B, C>` for every [`TritterBackend`] `B`: each op runs as `B` says it runs under
//! autodiff (the `autodiff_*` methods: one node with a hand-written backward where `B` has the
//! kernels, the reference's tensor ops otherwise).
//!
//! The training projection is one graph node on every backend: the forward runs the inner
//! backend's quantizers and product ([`TritterBackend::quantize_activation`],
//! [`TritterBackend::quantize_weight`], [`TritterBackend::matmul_nt`]), or, where the node
//! requantizes in its backward, the inner backend's [`TritterBackend::ternary_linear`] (on the
//! CPU an int8 × ternary integer product for large products); the backward is the
//! spec's straight-through estimator, `∂L/∂x = ∂L/∂y · W̃` and `∂L/∂W = (∂L/∂y)ᵀ · x̃`, two
//! products of the inner backend. The tensor-op reference records the same gradients through a
//! dozen nodes (quantizers, the straight-through sums, the matmul and its backward).
//!
//! Where quantizing is one cheap pass ([`TritterBackend::REQUANTIZE_IN_BACKWARD`]: the CPU) the
//! node keeps the unquantized inputs (the latent weight is the parameter itself and the input is
//! usually shared with other nodes, so neither costs memory) and quantizes them again in the
//! backward pass (the quantizers are deterministic, so `x̃` and `W̃` are the forward's); elsewhere
//! it keeps the quantized copies (on lavapipe requantizing with tensor ops made a `test`-preset
//! training step 30% slower).

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Bool, Int, Tensor};

use crate::backend::{float, TritterBackend};
use crate::config::Activation;
use crate::quant::TernaryQuant;

/// The backward of the fused projection; its state is `(w, x, requantize)`: the weight kept only
/// when `x` is tracked (its gradient needs `W̃`) and the input only when `w` is, either already
/// quantized (`None`) or to be quantized as the forward did (`Some(quant)`).
#[derive(Debug)]
struct StraightThroughLinear;

type State<B> = (Option<FloatTensor<B>>, Option<FloatTensor<B>>, Option<TernaryQuant>);

impl<B: TritterBackend> Backward<B, 2> for StraightThroughLinear {
    type State = State<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let grad_y = grads.consume::<B>(&ops.node);
        let (w, x, requantize) = ops.state;
        if let (Some(node), Some(w)) = (node_x, w) {
            let w = match &requantize {
                Some(quant) => B::quantize_weight(float(w), quant),
                None => float(w),
            };
            grads.register::<B>(node.id, B::matmul_nn(float(grad_y.clone()), w).into_primitive().tensor());
        }
        if let (Some(node), Some(x)) = (node_w, x) {
            let x = match &requantize {
                Some(quant) => B::quantize_activation(float(x), quant),
                None => float(x),
            };
            grads.register::<B>(node.id, B::matmul_tn(float(grad_y), x).into_primitive().tensor());
        }
    }
}

impl<B: TritterBackend, C: CheckpointStrategy> TritterBackend for Autodiff<B, C> {
    const NATIVE_OPS: bool = B::NATIVE_OPS;

    fn ternary_linear(x: Tensor<Self, 2>, w: Tensor<Self, 2>, quant: &TernaryQuant) -> Tensor<Self, 2> {
        let (x, w) = (x.into_primitive().tensor(), w.into_primitive().tensor());
        // Requantizing backends run the inner forward as is and keep the unquantized inputs;
        // the others keep the quantized copies the forward multiplied.
        let (y, quantized) = if B::REQUANTIZE_IN_BACKWARD {
            (B::ternary_linear(float(x.primitive.clone()), float(w.primitive.clone()), quant), None)
        } else {
            let x_quantized = B::quantize_activation(float(x.primitive.clone()), quant);
            let w_quantized = B::quantize_weight(float(w.primitive.clone()), quant);
            (B::matmul_nt(x_quantized.clone(), w_quantized.clone()), Some((x_quantized, w_quantized)))
        };
        let y = y.into_primitive().tensor();
        let out = match StraightThroughLinear.prepare::<C>([x.node.clone(), w.node.clone()]).compute_bound().stateful()
        {
            OpsKind::Tracked(prep) => {
                let (w_kept, x_kept, requantize) = match quantized {
                    None => (w.primitive, x.primitive, Some(*quant)),
                    Some((x_quantized, w_quantized)) => {
                        (w_quantized.into_primitive().tensor(), x_quantized.into_primitive().tensor(), None)
                    }
                };
                let keep = |tracked: bool, t: FloatTensor<B>| tracked.then_some(t);
                let state = (
                    keep(!x.node.requirement.is_none(), w_kept),
                    keep(!w.node.requirement.is_none(), x_kept),
                    requantize,
                );
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        float(out)
    }

    fn norm(x: Tensor<Self, 2>, weight: Tensor<Self, 1>, bias: Option<Tensor<Self, 1>>, eps: f64) -> Tensor<Self, 2> {
        B::autodiff_norm::<C>(x, weight, bias, eps)
    }

    fn rope(x: Tensor<Self, 4>, cos: Vec<f32>, sin: Vec<f32>) -> Tensor<Self, 4> {
        B::autodiff_rope::<C>(x, cos, sin)
    }

    fn grouped_query_attention(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        mask: Tensor<Self, 4, Bool>,
    ) -> Tensor<Self, 4> {
        B::autodiff_grouped_query_attention::<C>(q, k, v, mask)
    }

    fn token_embedding(weight: Tensor<Self, 2>, ids: Tensor<Self, 2, Int>) -> Tensor<Self, 3> {
        B::autodiff_token_embedding::<C>(weight, ids)
    }

    fn cross_entropy(logits: Tensor<Self, 2>, targets: Tensor<Self, 1, Int>, ignore: Option<usize>) -> Tensor<Self, 1> {
        B::autodiff_cross_entropy::<C>(logits, targets, ignore)
    }

    fn gated_activation<const D: usize>(
        gate: Tensor<Self, D>,
        up: Tensor<Self, D>,
        activation: Activation,
    ) -> Tensor<Self, D> {
        B::autodiff_gated_activation::<C, D>(gate, up, activation)
    }

    fn reshape<const D1: usize, const D2: usize>(t: Tensor<Self, D1>, dims: [usize; D2]) -> Tensor<Self, D2> {
        B::autodiff_reshape::<C, D1, D2>(t, dims)
    }
}
