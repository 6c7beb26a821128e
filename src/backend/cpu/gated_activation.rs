//! The MLP's gate on the CPU, `relu(gate)² ⊙ up`, as one autodiff node in one pass each way:
//! `d gate = g ⊙ up ⊙ 2·relu(gate)`, `d up = g ⊙ relu(gate)²` (the tensor-op reference: relu,
//! square and product, each with its backward).

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::ops::FloatTensor;
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::tensor::{cpu_tensor, with_rows};
use crate::backend::{float, Cpu};

const PIECE: usize = super::math::TASK_ELEMENTS;

fn as_2d<const D: usize>(t: Tensor<Cpu, D>) -> (Tensor<Cpu, 2>, [usize; D]) {
    let dims = t.dims();
    let last = dims[D - 1];
    (super::tensor::reshape(t, [dims.iter().product::<usize>() / last.max(1), last]), dims)
}

fn forward(gate: &[f32], up: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; gate.len()];
    out.par_chunks_mut(PIECE).zip(gate.par_chunks(PIECE).zip(up.par_chunks(PIECE))).for_each(|(out, (gate, up))| {
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            let r = g.max(0.0);
            *o = r * r * u;
        }
    });
    out
}

/// `relu(gate)² ⊙ up` on the CPU without autodiff (inference; also the fused node's forward).
pub(crate) fn gated_relu_squared<const D: usize>(gate: Tensor<Cpu, D>, up: Tensor<Cpu, D>) -> Tensor<Cpu, D> {
    let ((gate, dims), (up, _)) = (as_2d(gate), as_2d(up));
    let [rows, cols] = gate.dims();
    let out = with_rows(gate, |gate| with_rows(up, |up| forward(gate, up)));
    super::tensor::reshape(cpu_tensor(out, rows, cols), dims)
}

#[derive(Debug)]
struct FusedGate<const D: usize>;

impl<const D: usize> Backward<Cpu, 2> for FusedGate<D> {
    type State = (FloatTensor<Cpu>, FloatTensor<Cpu>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let tensor = |t: FloatTensor<Cpu>| as_2d(float::<_, D>(t));
        let ((g, dims), (gate, _), (up, _)) =
            (tensor(grads.consume::<Cpu>(&ops.node)), tensor(ops.state.0), tensor(ops.state.1));
        let [rows, cols] = g.dims();
        let (mut d_gate, mut d_up) = (vec![0f32; rows * cols], vec![0f32; rows * cols]);
        with_rows(g, |g| {
            with_rows(gate, |gate| {
                with_rows(up, |up| {
                    let inputs = g.par_chunks(PIECE).zip(gate.par_chunks(PIECE).zip(up.par_chunks(PIECE)));
                    d_gate.par_chunks_mut(PIECE).zip(d_up.par_chunks_mut(PIECE)).zip(inputs).for_each(
                        |((dg, du), (g, (gate, up)))| {
                            for i in 0..dg.len().min(g.len()) {
                                let r = gate[i].max(0.0);
                                dg[i] = g[i] * up[i] * (2.0 * r);
                                du[i] = g[i] * (r * r);
                            }
                        },
                    )
                })
            })
        });
        let [node_gate, node_up] = ops.parents;
        let result = |v: Vec<f32>| super::tensor::reshape(cpu_tensor(v, rows, cols), dims).into_primitive().tensor();
        if let Some(node) = node_gate {
            grads.register::<Cpu>(node.id, result(d_gate));
        }
        if let Some(node) = node_up {
            grads.register::<Cpu>(node.id, result(d_up));
        }
    }
}

/// `relu(gate)² ⊙ up` on the CPU under autodiff, as one node.
pub(crate) fn fused_gated_relu_squared<C: CheckpointStrategy, const D: usize>(
    gate: Tensor<Autodiff<Cpu, C>, D>,
    up: Tensor<Autodiff<Cpu, C>, D>,
) -> Tensor<Autodiff<Cpu, C>, D> {
    let (gate, up) = (gate.into_primitive().tensor(), up.into_primitive().tensor());
    let y =
        gated_relu_squared::<D>(float(gate.primitive.clone()), float(up.primitive.clone())).into_primitive().tensor();
    let out = match FusedGate::<D>.prepare::<C>([gate.node.clone(), up.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((gate.primitive, up.primitive), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    float(out)
}
