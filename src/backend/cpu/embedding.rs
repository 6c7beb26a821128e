//! The token embedding on the CPU as one autodiff node. Burn's backward builds the gradient of
//! the `[vocab, hidden]` table by filling a zero tensor and copying it before adding the rows: for
//! `small_100m` two 98 MB passes over freshly mapped memory per step (a tenth of the step's
//! cycles, on one thread), and with a tied LM head a third to add the head's gradient. Here each
//! token's output gradient is added, in token order, into the head's gradient when there is one,
//! else into a zeroed allocation (fresh pages from the OS cost nothing until touched).

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ndarray::NdArrayTensor;
use burn::backend::Autodiff;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Int, Tensor};

use super::tensor::{into_unique_rows, reshape, with_rows};
use crate::backend::{float, Cpu};

#[derive(Debug)]
struct EmbeddingBackward;

/// The token ids (row-major `[batch, seq]`) and the table (for its shape, and to find the
/// gradient a tied LM head registered for it).
type State = (Vec<usize>, FloatTensor<Autodiff<Cpu>>);

impl Backward<Cpu, 1> for EmbeddingBackward {
    type State = State;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [Some(node)] = ops.parents else { return };
        let grad_out = float::<Cpu, 3>(grads.consume::<Cpu>(&ops.node));
        let (ids, table) = ops.state;
        let [vocab, hidden] = float::<Cpu, 2>(table.primitive.clone()).dims();
        // A tied LM head's gradient, registered before this one: the rows are added into it
        // rather than into a zero table that Burn would then add to it (one more 98 MB pass).
        let mut grad = match grads.remove::<Cpu>(&table) {
            Some(head) => into_unique_rows(head),
            None => ndarray::Array::from_shape_vec(ndarray::IxDyn(&[vocab, hidden]), vec![0f32; vocab * hidden])
                .expect("vocab × hidden elements")
                .into_shared(),
        };
        let sums = grad.as_slice_mut().expect("a unique row-major array");
        with_rows(reshape(grad_out, [ids.len(), hidden]), |rows| {
            for (&id, row) in ids.iter().zip(rows.chunks_exact(hidden)) {
                for (g, &r) in sums[id * hidden..(id + 1) * hidden].iter_mut().zip(row) {
                    *g += r;
                }
            }
        });
        grads.register::<Cpu>(node.id, NdArrayTensor::from(grad));
    }
}

/// `weight[ids]` under autodiff, as one node. Panics on an id outside `0..vocab` (the model
/// checks its input ids; a bad id here is a bug).
pub(crate) fn fused_embedding<C: CheckpointStrategy>(
    weight: Tensor<Autodiff<Cpu, C>, 2>,
    ids: Tensor<Autodiff<Cpu, C>, 2, Int>,
) -> Tensor<Autodiff<Cpu, C>, 3> {
    let dims = weight.dims();
    let ids = Tensor::<Cpu, 2, Int>::from_primitive(ids.into_primitive());
    let positions: Vec<usize> = ids.to_data().convert::<i64>().iter::<i64>().map(|id| id as usize).collect();
    assert!(positions.iter().all(|&id| id < dims[0]), "embedding id outside 0..{}", dims[0]);
    let weight = weight.into_primitive().tensor();
    let rows = burn::tensor::module::embedding(float::<Cpu, 2>(weight.primitive.clone()), ids);
    let out = match EmbeddingBackward.prepare::<C>([weight.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((positions, weight.clone()), rows.into_primitive().tensor()),
        OpsKind::UnTracked(prep) => prep.finish(rows.into_primitive().tensor()),
    };
    float(out)
}
