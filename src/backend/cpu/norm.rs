//! The norm on the CPU: LayerNorm / RMSNorm over rows as one autodiff node. Forward: each
//! row's mean (LayerNorm) and `σ = √(mean((x − μ)²) + ε)` (kept, 8 bytes a row), `y = x̂·w + b`
//! with `x̂ = (x − μ)/σ`. Backward, with `u = g ⊙ w`:
//! `dx = (u − mean(u) − x̂·mean(u ⊙ x̂)) / σ` (RMSNorm: without `mean(u)`), `dw = Σ_rows g ⊙ x̂`,
//! `db = Σ_rows g`, the sums taken per fixed block of rows and then in block order (deterministic
//! for any thread count). The tensor-op reference takes about ten tensors each way.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::Autodiff;
use burn::tensor::ops::FloatTensor;
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::math::{self as math, rows_per_task};
use super::tensor::{cpu_tensor, vector, with_rows};
use crate::backend::{float, Cpu};

/// `y` and each row's `(μ, σ)` (μ = 0 for RMSNorm, `centered = false`).
pub(super) fn forward(x: &[f32], dim: usize, w: &[f32], b: Option<&[f32]>, eps: f32) -> (Vec<f32>, Vec<[f32; 2]>) {
    let rows = x.len() / dim.max(1);
    let mut y = vec![0f32; x.len()];
    let mut stats = vec![[0f32; 2]; rows];
    let per_task = rows_per_task(dim);
    y.par_chunks_mut(dim * per_task).zip(stats.par_chunks_mut(per_task)).enumerate().for_each(|(task, (y, stats))| {
        let mut centered = Vec::with_capacity(dim);
        for (i, (y, stat)) in y.chunks_mut(dim).zip(stats.iter_mut()).enumerate() {
            let row = &x[(task * per_task + i) * dim..][..dim];
            let mean = if b.is_some() { math::sum(row) / dim as f32 } else { 0.0 };
            centered.clear();
            centered.extend(row.iter().map(|&v| v - mean));
            let var = math::dot(&centered, &centered) / dim as f32;
            let sigma = (var + eps).sqrt();
            match b {
                Some(b) => y
                    .iter_mut()
                    .zip(&centered)
                    .zip(w.iter().zip(b))
                    .for_each(|((y, &c), (&w, &b))| *y = c / sigma * w + b),
                None => y.iter_mut().zip(&centered).zip(w).for_each(|((y, &c), &w)| *y = c / sigma * w),
            }
            *stat = [mean, sigma];
        }
    });
    (y, stats)
}

/// `dx`, `dw` and `db` (empty for RMSNorm).
fn backward(
    x: &[f32],
    g: &[f32],
    dim: usize,
    w: &[f32],
    stats: &[[f32; 2]],
    centered: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut dx = vec![0f32; x.len()];
    let per_task = rows_per_task(dim);
    let partial: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(dim * per_task)
        .enumerate()
        .map(|(task, dx)| {
            let (mut dw, mut db) = (vec![0f32; dim], vec![0f32; if centered { dim } else { 0 }]);
            let (mut u, mut x_hat) = (vec![0f32; dim], vec![0f32; dim]);
            for (i, dx) in dx.chunks_mut(dim).enumerate() {
                let row = task * per_task + i;
                let ([mean, sigma], x, g) = (stats[row], &x[row * dim..][..dim], &g[row * dim..][..dim]);
                u.iter_mut().zip(g.iter().zip(w)).for_each(|(u, (&g, &w))| *u = g * w);
                x_hat.iter_mut().zip(x).for_each(|(h, &x)| *h = (x - mean) / sigma);
                let mean_u = if centered { math::sum(&u) / dim as f32 } else { 0.0 };
                let mean_ux = math::dot(&u, &x_hat) / dim as f32;
                dw.iter_mut().zip(g.iter().zip(&x_hat)).for_each(|(dw, (&g, &h))| *dw += g * h);
                dx.iter_mut()
                    .zip(u.iter().zip(&x_hat))
                    .for_each(|(dx, (&u, &h))| *dx = (u - mean_u - h * mean_ux) / sigma);
                for (db, &g) in db.iter_mut().zip(g) {
                    *db += g;
                }
            }
            (dw, db)
        })
        .collect();
    let add = |mut acc: Vec<f32>, v: &Vec<f32>| {
        acc.iter_mut().zip(v).for_each(|(a, v)| *a += v);
        acc
    };
    let dw = partial.iter().fold(vec![0f32; dim], |acc, p| add(acc, &p.0));
    let db = partial.iter().fold(vec![0f32; if centered { dim } else { 0 }], |acc, p| add(acc, &p.1));
    (dx, dw, db)
}

/// The norm on the CPU without autodiff (inference).
pub(crate) fn norm(x: Tensor<Cpu, 2>, w: Tensor<Cpu, 1>, b: Option<Tensor<Cpu, 1>>, eps: f64) -> Tensor<Cpu, 2> {
    let [rows, dim] = x.dims();
    let (w, b) = (vector(w), b.map(vector));
    let (y, _) = with_rows(x, |x| forward(x, dim, &w, b.as_deref(), eps as f32));
    cpu_tensor(y, rows, dim)
}

#[derive(Debug)]
struct FusedNorm;

/// x, the weight and each row's `(μ, σ)`.
type State = (FloatTensor<Cpu>, Vec<f32>, Vec<[f32; 2]>);

impl FusedNorm {
    /// The gradients of x, w and (LayerNorm) b.
    fn gradients(
        g: FloatTensor<Cpu>,
        state: State,
        centered: bool,
    ) -> (Tensor<Cpu, 2>, Tensor<Cpu, 1>, Option<Tensor<Cpu, 1>>) {
        let g = float::<_, 2>(g);
        let (x, w, stats) = state;
        let x = float::<_, 2>(x);
        let [rows, dim] = x.dims();
        let (dx, dw, db) = with_rows(x, |x| with_rows(g, |g| backward(x, g, dim, &w, &stats, centered)));
        let vector = |v: Vec<f32>| super::tensor::reshape(cpu_tensor(v, 1, dim), [dim]);
        (cpu_tensor(dx, rows, dim), vector(dw), centered.then(|| vector(db)))
    }
}

/// Adds `grad` to the gradients of the parent `node`, if it is tracked.
fn register<const D: usize>(grads: &mut Gradients, node: Option<NodeId>, grad: Tensor<Cpu, D>) {
    if let Some(node) = node {
        grads.register::<Cpu>(node, grad.into_primitive().tensor());
    }
}

impl Backward<Cpu, 2> for FusedNorm {
    type State = State;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (dx, dw, _) = Self::gradients(grads.consume::<Cpu>(&ops.node), ops.state, false);
        let [node_x, node_w] = ops.parents;
        register(grads, node_x.map(|n| n.id), dx);
        register(grads, node_w.map(|n| n.id), dw);
    }
}

impl Backward<Cpu, 3> for FusedNorm {
    type State = State;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (dx, dw, db) = Self::gradients(grads.consume::<Cpu>(&ops.node), ops.state, true);
        let [node_x, node_w, node_b] = ops.parents;
        register(grads, node_x.map(|n| n.id), dx);
        register(grads, node_w.map(|n| n.id), dw);
        register(grads, node_b.map(|n| n.id), db.expect("LayerNorm bias gradient"));
    }
}

/// The norm on the CPU under autodiff, as one node.
pub(crate) fn fused_norm<C: CheckpointStrategy>(
    x: Tensor<Autodiff<Cpu, C>, 2>,
    w: Tensor<Autodiff<Cpu, C>, 1>,
    b: Option<Tensor<Autodiff<Cpu, C>, 1>>,
    eps: f64,
) -> Tensor<Autodiff<Cpu, C>, 2> {
    let [rows, dim] = x.dims();
    let (x, w, b) = (x.into_primitive().tensor(), w.into_primitive().tensor(), b.map(|b| b.into_primitive().tensor()));
    let (w_values, b_values) =
        (vector(float(w.primitive.clone())), b.as_ref().map(|b| vector(float(b.primitive.clone()))));
    let x_inner = float::<_, 2>(x.primitive.clone());
    let (y, stats) = with_rows(x_inner, |x| forward(x, dim, &w_values, b_values.as_deref(), eps as f32));
    let y = cpu_tensor(y, rows, dim).into_primitive().tensor();
    let out = match b {
        None => match FusedNorm.prepare::<C>([x.node.clone(), w.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x.primitive, w_values, stats), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        },
        Some(b) => {
            match FusedNorm.prepare::<C>([x.node.clone(), w.node.clone(), b.node.clone()]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => prep.finish((x.primitive, w_values, stats), y),
                OpsKind::UnTracked(prep) => prep.finish(y),
            }
        }
    };
    float(out)
}
