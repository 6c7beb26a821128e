//! `reshape` without a copy on the CPU backend.
//!
//! Burn 0.20's ndarray backend copies on every reshape, contiguous or not (`to_shape` of a shared
//! array yields a view, which `into_shared` then copies), and its autodiff backward reshapes the
//! gradient back with another copy. The model reshapes every projection's input and output and
//! the attention heads, so on the CPU those copies were ~8% of a `test`-preset training step.
//! [`super::tensor::reshape`] gives a contiguous CPU tensor its new shape in place (a
//! non-contiguous one is copied once, as Burn does); [`fused_reshape`] records one autodiff node
//! whose backward does the same.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::Tensor;

use super::tensor::reshape_primitive;
use crate::backend::{float, Cpu};

#[derive(Debug)]
struct Reshape;

impl Backward<Cpu, 1> for Reshape {
    /// The input's shape.
    type State = Vec<usize>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Cpu>(&ops.node);
        if let [Some(node)] = ops.parents {
            grads.register::<Cpu>(node.id, reshape_primitive(grad, &ops.state));
        }
    }
}

/// The reshape on the CPU under autodiff, as one node.
pub(crate) fn fused_reshape<C: CheckpointStrategy, const D1: usize, const D2: usize>(
    t: Tensor<Autodiff<Cpu, C>, D1>,
    dims: [usize; D2],
) -> Tensor<Autodiff<Cpu, C>, D2> {
    let before = t.dims().to_vec();
    let t = t.into_primitive().tensor();
    let y = reshape_primitive(t.primitive.clone(), &dims);
    let out = match Reshape.prepare::<C>([t.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(before, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    float(out)
}
