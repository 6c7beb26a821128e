//! The training projection of an autodiff backend as one graph node: the forward runs the inner
//! backend's quantizers and product ([`TernaryBackend::quantize_operands`],
//! [`TernaryBackend::matmul_nt`]); the backward is the spec's straight-through estimator,
//! `∂L/∂x = ∂L/∂y · W̃` and `∂L/∂W = (∂L/∂y)ᵀ · x̃`, two products of the inner backend. The
//! tensor-op reference records the same gradients through a dozen nodes (quantizers, the
//! straight-through sums, Burn's batched matmul and its backward).

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

use crate::ternary::backend::TernaryBackend;
use crate::ternary::linear::TernaryQuant;

fn tensor<B: burn::tensor::backend::Backend>(primitive: FloatTensor<B>) -> Tensor<B, 2> {
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

/// The backward of the fused projection; its state is `(W̃, x̃)`, each kept only when the input
/// whose gradient needs it is tracked.
#[derive(Debug)]
struct StraightThroughLinear;

impl<B: TernaryBackend> Backward<B, 2> for StraightThroughLinear {
    type State = (Option<FloatTensor<B>>, Option<FloatTensor<B>>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let grad_y = grads.consume::<B>(&ops.node);
        let (w_quantized, x_quantized) = ops.state;
        if let (Some(node), Some(w)) = (node_x, w_quantized) {
            grads.register::<B>(node.id, B::matmul_nn(tensor(grad_y.clone()), tensor(w)).into_primitive().tensor());
        }
        if let (Some(node), Some(x)) = (node_w, x_quantized) {
            grads.register::<B>(node.id, B::matmul_tn(tensor(grad_y), tensor(x)).into_primitive().tensor());
        }
    }
}

impl<B: TernaryBackend, C: CheckpointStrategy> TernaryBackend for Autodiff<B, C> {
    fn ternary_linear(x: Tensor<Self, 2>, w: Tensor<Self, 2>, quant: &TernaryQuant) -> Tensor<Self, 2> {
        let (x, w) = (x.into_primitive().tensor(), w.into_primitive().tensor());
        let (x_quantized, w_quantized) = B::quantize_operands(tensor(x.primitive.clone()), tensor(w.primitive.clone()), quant);
        let y = B::matmul_nt(x_quantized.clone(), w_quantized.clone()).into_primitive().tensor();
        let keep_if = |tracked: bool, t: Tensor<B, 2>| tracked.then(|| t.into_primitive().tensor());
        let (x_tracked, w_tracked) = (!x.node.requirement.is_none(), !w.node.requirement.is_none());
        let out = match StraightThroughLinear.prepare::<C>([x.node.clone(), w.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((keep_if(x_tracked, w_quantized), keep_if(w_tracked, x_quantized)), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }
}
