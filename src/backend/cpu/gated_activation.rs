//! The MLP's gate on the CPU, `act(gate) ⊙ up`, as one autodiff node in one pass each way:
//! `d gate = g ⊙ up ⊙ act'(gate)`, `d up = g ⊙ act(gate)` (the tensor-op reference: the
//! activation's ops and the product, each with its backward). `act` is `relu(z)²`
//! (`act' = 2·relu(z)`) or `silu(z) = z·σ(z)` (`act' = σ(z)·(1 + z·(1 − σ(z)))`).

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::ops::FloatTensor;
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::tensor::{cpu_tensor, with_rows};
use crate::backend::{float, Cpu};
use crate::config::Activation;

const PIECE: usize = super::math::TASK_ELEMENTS;

fn as_2d<const D: usize>(t: Tensor<Cpu, D>) -> (Tensor<Cpu, 2>, [usize; D]) {
    let dims = t.dims();
    let last = dims[D - 1];
    (super::tensor::reshape(t, [dims.iter().product::<usize>() / last.max(1), last]), dims)
}

/// `silu(z)` as the reference computes it: `z · sigmoid(z)`, `sigmoid(z) = 1 / (1 + e^(−z))`.
#[inline(always)]
fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

pub(super) fn forward(gate: &[f32], up: &[f32], activation: Activation) -> Vec<f32> {
    let mut out = vec![0f32; gate.len()];
    out.par_chunks_mut(PIECE).zip(gate.par_chunks(PIECE).zip(up.par_chunks(PIECE))).for_each(|(out, (gate, up))| {
        let pairs = out.iter_mut().zip(gate).zip(up);
        match activation {
            Activation::ReluSquared => pairs.for_each(|((o, &g), &u)| {
                let r = g.max(0.0);
                *o = r * r * u;
            }),
            Activation::Silu => pairs.for_each(|((o, &g), &u)| *o = g * sigmoid(g) * u),
        }
    });
    out
}

/// `(d gate, d up)` for one element: upstream gradient `g`, inputs `gate`, `up`.
#[inline(always)]
fn backward(g: f32, gate: f32, up: f32, activation: Activation) -> (f32, f32) {
    match activation {
        Activation::ReluSquared => {
            let r = gate.max(0.0);
            (g * up * (2.0 * r), g * (r * r))
        }
        Activation::Silu => {
            let s = sigmoid(gate);
            (g * up * (s * (1.0 + gate * (1.0 - s))), g * (gate * s))
        }
    }
}

/// `act(gate) ⊙ up` on the CPU without autodiff (inference; also the fused node's forward).
pub(crate) fn gated_activation<const D: usize>(
    gate: Tensor<Cpu, D>,
    up: Tensor<Cpu, D>,
    activation: Activation,
) -> Tensor<Cpu, D> {
    let ((gate, dims), (up, _)) = (as_2d(gate), as_2d(up));
    let [rows, cols] = gate.dims();
    let out = with_rows(gate, |gate| with_rows(up, |up| forward(gate, up, activation)));
    super::tensor::reshape(cpu_tensor(out, rows, cols), dims)
}

#[derive(Debug)]
struct FusedGate<const D: usize>(Activation);

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
                                (dg[i], du[i]) = backward(g[i], gate[i], up[i], self.0);
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

/// `act(gate) ⊙ up` on the CPU under autodiff, as one node.
pub(crate) fn fused_gated_activation<C: CheckpointStrategy, const D: usize>(
    gate: Tensor<Autodiff<Cpu, C>, D>,
    up: Tensor<Autodiff<Cpu, C>, D>,
    activation: Activation,
) -> Tensor<Autodiff<Cpu, C>, D> {
    let (gate, up) = (gate.into_primitive().tensor(), up.into_primitive().tensor());
    let y = gated_activation::<D>(float(gate.primitive.clone()), float(up.primitive.clone()), activation)
        .into_primitive()
        .tensor();
    let out = match FusedGate::<D>(activation)
        .prepare::<C>([gate.node.clone(), up.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((gate.primitive, up.primitive), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    float(out)
}
