//! RoPE on the CPU: the rotation as one autodiff node in one pass each way. The
//! backward is the inverse rotation, `dx1 = g1·cos + g2·sin`, `dx2 = g2·cos − g1·sin`; the
//! tensor-op reference narrows, multiplies, adds and concatenates (eight tensors forward).

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::math::rows_per_task;
use super::tensor::{cpu_tensor, with_rows};
use crate::backend::{float, Cpu};

/// `cos`, `sin` `[T, d/2]` and the heads per position: what a rotation needs.
#[derive(Debug, Clone)]
pub(crate) struct Tables {
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
    pub heads: usize,
}

/// Rotates every row of `x: [B·T·heads, d]` by its position's angles (`inverse`: the other way).
pub(super) fn rotate(x: &[f32], d: usize, t: &Tables, inverse: bool) -> Vec<f32> {
    let half = d / 2;
    let positions = t.cos.len() / half.max(1);
    let mut out = vec![0f32; x.len()];
    let per_task = rows_per_task(d);
    out.par_chunks_mut(d * per_task).enumerate().for_each(|(task, out)| {
        for (i, out) in out.chunks_mut(d).enumerate() {
            let row = task * per_task + i;
            let p = (row / t.heads) % positions;
            let (cos, sin, x) = (&t.cos[p * half..][..half], &t.sin[p * half..][..half], &x[row * d..][..d]);
            let (x1, x2) = x.split_at(half);
            let (o1, o2) = out.split_at_mut(half);
            for j in 0..half {
                if inverse {
                    o1[j] = x1[j] * cos[j] + x2[j] * sin[j];
                    o2[j] = x2[j] * cos[j] - x1[j] * sin[j];
                } else {
                    o1[j] = x1[j] * cos[j] - x2[j] * sin[j];
                    o2[j] = x2[j] * cos[j] + x1[j] * sin[j];
                }
            }
        }
    });
    out
}

fn rotate_tensor(x: Tensor<Cpu, 4>, t: &Tables, inverse: bool) -> Tensor<Cpu, 4> {
    let dims = x.dims();
    let (rows, d) = (dims[0] * dims[1] * dims[2], dims[3]);
    let out = with_rows(super::tensor::reshape(x, [rows, d]), |x| rotate(x, d, t, inverse));
    super::tensor::reshape(cpu_tensor(out, rows, d), dims)
}

/// RoPE on the CPU without autodiff (inference).
pub(crate) fn rope(x: Tensor<Cpu, 4>, tables: &Tables) -> Tensor<Cpu, 4> {
    rotate_tensor(x, tables, false)
}

#[derive(Debug)]
struct FusedRope;

impl Backward<Cpu, 1> for FusedRope {
    type State = Tables;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let g = float::<_, 4>(grads.consume::<Cpu>(&ops.node));
        if let [Some(node)] = ops.parents {
            grads.register::<Cpu>(node.id, rotate_tensor(g, &ops.state, true).into_primitive().tensor());
        }
    }
}

/// RoPE on the CPU under autodiff, as one node.
pub(crate) fn fused_rope<C: CheckpointStrategy>(
    x: Tensor<Autodiff<Cpu, C>, 4>,
    tables: Tables,
) -> Tensor<Autodiff<Cpu, C>, 4> {
    let x = x.into_primitive().tensor();
    let y = rotate_tensor(float(x.primitive.clone()), &tables, false).into_primitive().tensor();
    let out = match FusedRope.prepare::<C>([x.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(tables, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    float(out)
}
