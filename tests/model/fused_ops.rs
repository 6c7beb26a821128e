//! The CPU's fused model ops against the tensor-op reference (same maths through Burn's ops) and
//! against f64 recomputations: values and gradients, on fresh random inputs.

use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::tensor::{backend::AutodiffBackend, Int, Tensor, TensorData};
use rand::{rngs::StdRng, Rng};
use tritter::model::{cross_entropy, reference_cross_entropy};

use crate::common::{fresh_rng, max_rel_diff, normal, to_vec, AD, B};

/// Loss and `∂loss/∂logits` of the fused or the reference cross-entropy, with the loss scaled
/// by `g` before the backward (so the incoming gradient is not 1).
fn cross_entropy_and_gradient<Ad: AutodiffBackend>(logits: &[f32], shape: [usize; 2], targets: &[i64], ignore: Option<usize>, g: f32, fused: bool) -> (f32, Vec<f32>) {
    let device = Default::default();
    let x = Tensor::<Ad, 2>::from_data(TensorData::new(logits.to_vec(), shape), &device).require_grad();
    let t = Tensor::<Ad, 1, Int>::from_data(TensorData::new(targets.to_vec(), [targets.len()]), &device);
    let loss = if fused { cross_entropy(x.clone(), t, ignore) } else { reference_cross_entropy(x.clone(), t, ignore) };
    let value = to_vec(loss.clone())[0];
    let grads = (loss * g).backward();
    (value, to_vec(x.grad(&grads).expect("logits gradient")))
}

/// f64 loss and gradient: `mean_kept(lse_i − x_i[t_i])`, `g/kept · (softmax_i − onehot(t_i))`.
fn cross_entropy_f64(logits: &[f32], [rows, vocab]: [usize; 2], targets: &[i64], ignore: Option<usize>, g: f64) -> (f64, Vec<f64>) {
    let keep: Vec<bool> = targets.iter().map(|&t| Some(t as usize) != ignore).collect();
    let kept = keep.iter().filter(|&&k| k).count().max(1) as f64;
    let (mut loss, mut grad) = (0.0, vec![0.0; rows * vocab]);
    for r in (0..rows).filter(|&r| keep[r]) {
        let row: Vec<f64> = logits[r * vocab..(r + 1) * vocab].iter().map(|&x| x as f64).collect();
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
        let t = targets[r] as usize;
        loss += (lse - row[t]) / kept;
        for (j, x) in row.iter().enumerate() {
            grad[r * vocab + j] = g / kept * ((x - lse).exp() - if j == t { 1.0 } else { 0.0 });
        }
    }
    (loss, grad)
}

fn random_case(rng: &mut StdRng, rows: usize, vocab: usize, std: f32) -> (Vec<f32>, Vec<i64>) {
    let logits = (0..rows * vocab).map(|_| normal(rng) * std).collect();
    (logits, (0..rows).map(|_| rng.random_range(0..vocab) as i64).collect())
}

fn check_cross_entropy<Ad: AutodiffBackend>(rng: &mut StdRng) {
    // One row, a vocab that is no multiple of 8, rows past a parallel task, large logits
    // (exp would overflow without the max), and a batch whose rows are all ignored.
    for (rows, vocab, std) in [(1, 1, 1.0), (1, 7, 1.0), (9, 33, 3.0), (37, 1000, 1.0), (5, 64, 60.0), (rng.random_range(1..50), rng.random_range(2..3000), 2.0)] {
        let (logits, mut targets) = random_case(rng, rows, vocab, std);
        let pad = rng.random_range(0..vocab);
        targets.iter_mut().take(rows / 3).for_each(|t| *t = pad as i64); // some rows ignored
        let g = rng.random_range(0.5f32..2.0);
        for ignore in [None, Some(pad), Some(vocab + 5)] {
            let (loss, grad) = cross_entropy_and_gradient::<Ad>(&logits, [rows, vocab], &targets, ignore, g, true);
            let (ref_loss, ref_grad) = cross_entropy_and_gradient::<Ad>(&logits, [rows, vocab], &targets, ignore, g, false);
            let (loss64, grad64) = cross_entropy_f64(&logits, [rows, vocab], &targets, ignore, g as f64);
            let case = format!("{rows}×{vocab}, std {std}, ignore {ignore:?}");
            assert!(max_rel_diff(&[loss], &[loss64]) < 1e-6, "{case}: fused loss {loss} vs f64 {loss64}");
            assert!(max_rel_diff(&[ref_loss], &[loss64]) < 1e-5, "{case}: reference loss {ref_loss} vs f64 {loss64}");
            let err = max_rel_diff(&grad, &grad64);
            assert!(err < 1e-5, "{case}: fused gradient vs f64: {err:e}");
            let err = max_rel_diff(&grad, &ref_grad.iter().map(|&x| x as f64).collect::<Vec<_>>());
            assert!(err < 1e-5, "{case}: fused gradient vs reference: {err:e}");
        }
    }
    // Every row ignored: loss 0 and a zero gradient, never NaN.
    let (logits, _) = random_case(rng, 3, 10, 1.0);
    let (loss, grad) = cross_entropy_and_gradient::<Ad>(&logits, [3, 10], &[4, 4, 4], Some(4), 1.0, true);
    assert_eq!(loss, 0.0);
    assert!(grad.iter().all(|&g| g == 0.0));
}

#[test]
fn fused_cross_entropy_equals_f64_and_the_reference() {
    let mut rng = fresh_rng("fused_cross_entropy_equals_f64_and_the_reference");
    check_cross_entropy::<AD>(&mut rng);
    check_cross_entropy::<burn::backend::Autodiff<B, BalancedCheckpointing>>(&mut rng);
    // Without autodiff (evaluation): the forward alone.
    let (logits, targets) = random_case(&mut rng, 13, 77, 1.5);
    let x = Tensor::<B, 2>::from_data(TensorData::new(logits.clone(), [13, 77]), &Default::default());
    let t = Tensor::<B, 1, Int>::from_data(TensorData::new(targets.clone(), [13]), &Default::default());
    let loss = to_vec(cross_entropy(x, t, Some(targets[0] as usize)))[0];
    let (loss64, _) = cross_entropy_f64(&logits, [13, 77], &targets, Some(targets[0] as usize), 1.0);
    assert!(max_rel_diff(&[loss], &[loss64]) < 1e-6, "{loss} vs {loss64}");
}
