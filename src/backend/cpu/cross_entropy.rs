//! The cross-entropy loss on the CPU: the loss as one autodiff node. Forward: each row's
//! log-sum-exp `lse_i` (kept for the backward, 4 bytes a row). Backward:
//! `∂L/∂logits_ij = g / count · (exp(logits_ij − lse_i) − [j = target_i])` for kept rows, 0 for
//! ignored ones, in one pass.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use rayon::prelude::*;

use super::math::{self as math, exp, rows_per_task};
use super::tensor::{cpu_tensor, with_rows};
use crate::backend::{float, Cpu};

/// The targets as indices, `None` for an ignored row. Panics on a target outside `0..vocab`
/// (the model checks its input ids; a bad target here is a bug).
fn target_indices(targets: Tensor<Cpu, 1, Int>, vocab: usize, ignore: Option<usize>) -> Vec<Option<usize>> {
    let data = targets.into_data().convert::<i64>();
    data.as_slice::<i64>()
        .expect("i64 after convert")
        .iter()
        .map(|&t| {
            assert!(t >= 0 && (t as usize) < vocab, "cross-entropy target {t} outside 0..{vocab}");
            (Some(t as usize) != ignore).then_some(t as usize)
        })
        .collect()
}

/// `ln Σ_j exp(row_j)`, stably (max first).
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = math::max(row);
    if max == f32::NEG_INFINITY {
        return max;
    }
    let mut lanes = [0f32; 8];
    let chunks = row.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|&x| exp(x - max)).sum();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += exp(x - max);
        }
    }
    max + (lanes.iter().sum::<f32>() + tail).ln()
}

/// Each row's log-sum-exp and the loss (summed in f64, divided by the kept rows).
fn forward(logits: &[f32], vocab: usize, targets: &[Option<usize>]) -> (Vec<f32>, f32, usize) {
    let mut lse = vec![0f32; targets.len()];
    let per_task = rows_per_task(vocab);
    lse.par_chunks_mut(per_task).enumerate().for_each(|(task, out)| {
        for (i, lse) in out.iter_mut().enumerate() {
            let row = task * per_task + i;
            *lse = log_sum_exp(&logits[row * vocab..(row + 1) * vocab]);
        }
    });
    let kept = targets.iter().filter(|t| t.is_some()).count();
    let total: f64 = targets
        .iter()
        .enumerate()
        .filter_map(|(row, t)| t.map(|t| lse[row] as f64 - logits[row * vocab + t] as f64))
        .sum();
    (lse, (total / kept.max(1) as f64) as f32, kept)
}

/// The loss on the CPU without autodiff.
pub(crate) fn cross_entropy(
    logits: Tensor<Cpu, 2>,
    targets: Tensor<Cpu, 1, Int>,
    ignore: Option<usize>,
) -> Tensor<Cpu, 1> {
    let vocab = logits.dims()[1];
    let device = logits.device();
    let targets = target_indices(targets, vocab, ignore);
    let (_, loss, _) = with_rows(logits, |logits| forward(logits, vocab, &targets));
    Tensor::from_data(TensorData::new(vec![loss], [1]), &device)
}

#[derive(Debug)]
struct FusedCrossEntropy;

/// The logits, each row's log-sum-exp, the targets and the number of kept rows.
type State = (FloatTensor<Cpu>, Vec<f32>, Vec<Option<usize>>, usize);

impl Backward<Cpu, 1> for FusedCrossEntropy {
    type State = State;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [Some(node)] = ops.parents else { return };
        let grad_loss: f32 = float::<Cpu, 1>(grads.consume::<Cpu>(&ops.node)).into_scalar().elem();
        let (logits, lse, targets, kept) = ops.state;
        let logits = float::<_, 2>(logits);
        let [rows, vocab] = logits.dims();
        let scale = grad_loss / kept.max(1) as f32;
        let mut grad = vec![0f32; rows * vocab];
        with_rows(logits, |logits| {
            let per_task = rows_per_task(vocab);
            grad.par_chunks_mut(vocab * per_task).enumerate().for_each(|(task, out)| {
                for (i, out) in out.chunks_mut(vocab).enumerate() {
                    let row = task * per_task + i;
                    let Some(target) = targets[row] else { continue };
                    let (lse, x) = (lse[row], &logits[row * vocab..(row + 1) * vocab]);
                    for (g, &x) in out.iter_mut().zip(x) {
                        *g = scale * exp(x - lse);
                    }
                    out[target] -= scale;
                }
            })
        });
        grads.register::<Cpu>(node.id, cpu_tensor(grad, rows, vocab).into_primitive().tensor());
    }
}

/// The loss on the CPU under autodiff, as one node.
pub(crate) fn fused_cross_entropy<C: CheckpointStrategy>(
    logits: Tensor<Autodiff<Cpu, C>, 2>,
    targets: Tensor<Autodiff<Cpu, C>, 1, Int>,
    ignore: Option<usize>,
) -> Tensor<Autodiff<Cpu, C>, 1> {
    let vocab = logits.dims()[1];
    let logits = logits.into_primitive().tensor();
    let targets = target_indices(Tensor::from_primitive(targets.into_primitive()), vocab, ignore);
    let inner = float::<_, 2>(logits.primitive.clone());
    let device = inner.device();
    let (lse, loss, kept) = with_rows(inner, |rows| forward(rows, vocab, &targets));
    let loss = Tensor::<Cpu, 1>::from_data(TensorData::new(vec![loss], [1]), &device).into_primitive().tensor();
    let out = match FusedCrossEntropy.prepare::<C>([logits.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((logits.primitive, lse, targets, kept), loss),
        OpsKind::UnTracked(prep) => prep.finish(loss),
    };
    float(out)
}
