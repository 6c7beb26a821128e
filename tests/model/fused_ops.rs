//! The CPU's fused model ops against the tensor-op reference (same maths through Burn's ops) and
//! against f64 recomputations: values and gradients, on fresh random inputs.

use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use rand::{rngs::StdRng, Rng};
use tritter::backend::{reference, TritterBackend};
use tritter::Activation;

use crate::model::common::{fresh_rng, max_rel_diff, normal, to_vec, AD, B};

/// Loss and `∂loss/∂logits` of the fused or the reference cross-entropy, with the loss scaled
/// by `g` before the backward (so the incoming gradient is not 1).
fn cross_entropy_and_gradient<Ad: tritter::backend::TritterAutodiffBackend>(
    logits: &[f32],
    shape: [usize; 2],
    targets: &[i64],
    ignore: Option<usize>,
    g: f32,
    fused: bool,
) -> (f32, Vec<f32>) {
    let device = Default::default();
    let x = Tensor::<Ad, 2>::from_data(TensorData::new(logits.to_vec(), shape), &device).require_grad();
    let t = Tensor::<Ad, 1, Int>::from_data(TensorData::new(targets.to_vec(), [targets.len()]), &device);
    let loss = if fused {
        TritterBackend::cross_entropy(x.clone(), t, ignore)
    } else {
        reference::cross_entropy(x.clone(), t, ignore)
    };
    let value = to_vec(loss.clone())[0];
    let grads = (loss * g).backward();
    (value, to_vec(x.grad(&grads).expect("logits gradient")))
}

/// f64 loss and gradient: `mean_kept(lse_i − x_i[t_i])`, `g/kept · (softmax_i − onehot(t_i))`.
fn cross_entropy_f64(
    logits: &[f32],
    [rows, vocab]: [usize; 2],
    targets: &[i64],
    ignore: Option<usize>,
    g: f64,
) -> (f64, Vec<f64>) {
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

fn check_cross_entropy<Ad: tritter::backend::TritterAutodiffBackend>(rng: &mut StdRng) {
    // One row, a vocab that is no multiple of 8, rows past a parallel task, large logits
    // (exp would overflow without the max), and a batch whose rows are all ignored.
    for (rows, vocab, std) in [
        (1, 1, 1.0),
        (1, 7, 1.0),
        (9, 33, 3.0),
        (37, 1000, 1.0),
        (5, 64, 60.0),
        (rng.random_range(1..50), rng.random_range(2..3000), 2.0),
    ] {
        let (logits, mut targets) = random_case(rng, rows, vocab, std);
        let pad = rng.random_range(0..vocab);
        targets.iter_mut().take(rows / 3).for_each(|t| *t = pad as i64); // some rows ignored
        let g = rng.random_range(0.5f32..2.0);
        for ignore in [None, Some(pad), Some(vocab + 5)] {
            let (loss, grad) = cross_entropy_and_gradient::<Ad>(&logits, [rows, vocab], &targets, ignore, g, true);
            let (ref_loss, ref_grad) =
                cross_entropy_and_gradient::<Ad>(&logits, [rows, vocab], &targets, ignore, g, false);
            let (loss64, grad64) = cross_entropy_f64(&logits, [rows, vocab], &targets, ignore, g as f64);
            let case = format!("{rows}×{vocab}, std {std}, ignore {ignore:?}");
            assert!(max_rel_diff(&[loss], &[loss64]) < 1e-6, "{case}: fused loss {loss} vs f64 {loss64}");
            assert!(max_rel_diff(&[ref_loss], &[loss64]) < 1e-5, "{case}: reference loss {ref_loss} vs f64 {loss64}");
            let err = max_rel_diff(&grad, &grad64);
            assert!(err < 1e-5, "{case}: fused gradient vs f64: {err:e}");
            let err = max_rel_diff(&ref_grad, &grad64);
            assert!(err < 1e-4, "{case}: reference gradient vs f64: {err:e}");
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
    let loss = to_vec(TritterBackend::cross_entropy(x, t, Some(targets[0] as usize)))[0];
    let (loss64, _) = cross_entropy_f64(&logits, [13, 77], &targets, Some(targets[0] as usize), 1.0);
    assert!(max_rel_diff(&[loss], &[loss64]) < 1e-6, "{loss} vs {loss64}");
}

/// Output and `q`, `k`, `v` gradients of the fused or reference attention for `loss = Σ out ⊙ g`;
/// q, k and v are handed over as transposed views (`[B, T, h, d]` memory), as the model does.
fn attention_and_gradients<Ad: tritter::backend::TritterAutodiffBackend>(
    q: &Tensor<Ad, 4>,
    k: &Tensor<Ad, 4>,
    v: &Tensor<Ad, 4>,
    mask: &Tensor<Ad, 4, Bool>,
    g: &Tensor<Ad, 4>,
    fused: bool,
) -> Vec<Vec<f32>> {
    let (q, k, v) = (q.clone().require_grad(), k.clone().require_grad(), v.clone().require_grad());
    let (qt, kt, vt) = (q.clone().swap_dims(1, 2), k.clone().swap_dims(1, 2), v.clone().swap_dims(1, 2));
    let out = if fused {
        TritterBackend::grouped_query_attention(qt, kt, vt, mask.clone())
    } else {
        reference::attention(qt, kt, vt, mask.clone())
    };
    let grads = (out.clone() * g.clone()).sum().backward();
    vec![to_vec(out), to_vec(q.grad(&grads).unwrap()), to_vec(k.grad(&grads).unwrap()), to_vec(v.grad(&grads).unwrap())]
}

/// f64 attention output `[B, h, T, d]` and the gradients of `Σ out ⊙ g` for `q` `[B, T, h, d]`,
/// `k` and `v` `[B, S, h_kv, d]`, by the textbook formulas: `P = softmax(S)` over visible keys,
/// `dv = Pᵀ·g`, `dP = g·vᵀ`, `dS = P ⊙ (dP − Σ_j P ⊙ dP)`, `dq = dS·k/√d`, `dk = dSᵀ·q/√d`.
fn attention_f64(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[bool],
    g: &[f32],
    [b, t, s, nh, nkv, d]: [usize; 6],
) -> [Vec<f64>; 4] {
    let (mut out, mut dq, mut dk, mut dv) =
        (vec![0.0; b * nh * t * d], vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
    let scale = 1.0 / (d as f64).sqrt();
    for (bi, h, i) in (0..b).flat_map(|bi| (0..nh).flat_map(move |h| (0..t).map(move |i| (bi, h, i)))) {
        let kv = h / (nh / nkv);
        let (qi, oi) = (|c: usize| ((bi * t + i) * nh + h) * d + c, |c: usize| ((bi * nh + h) * t + i) * d + c);
        let kj = |j: usize, c: usize| ((bi * s + j) * nkv + kv) * d + c;
        let visible: Vec<usize> = (0..s).filter(|&j| !mask[(bi * t + i) * s + j]).collect();
        let scores: Vec<f64> = visible
            .iter()
            .map(|&j| (0..d).map(|c| q[qi(c)] as f64 * k[kj(j, c)] as f64).sum::<f64>() * scale)
            .collect();
        let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = scores.iter().map(|x| (x - max).exp()).sum();
        let p: Vec<f64> = scores.iter().map(|x| (x - max).exp() / sum).collect();
        let dp: Vec<f64> =
            visible.iter().map(|&j| (0..d).map(|c| g[oi(c)] as f64 * v[kj(j, c)] as f64).sum()).collect();
        let dot: f64 = p.iter().zip(&dp).map(|(p, dp)| p * dp).sum();
        for (n, &j) in visible.iter().enumerate() {
            let ds = p[n] * (dp[n] - dot) * scale;
            for c in 0..d {
                out[oi(c)] += p[n] * v[kj(j, c)] as f64;
                dv[kj(j, c)] += p[n] * g[oi(c)] as f64;
                dq[qi(c)] += ds * k[kj(j, c)] as f64;
                dk[kj(j, c)] += ds * q[qi(c)] as f64;
            }
        }
    }
    [out, dq, dk, dv]
}

#[test]
fn fused_attention_equals_f64_and_the_reference() {
    let mut rng = fresh_rng("fused_attention_equals_f64_and_the_reference");
    let device = Default::default();
    // (batch, queries, keys, heads, kv heads, head dim): one token, queries after a cache
    // (keys > queries), GQA and MHA, odd sizes.
    let cases = [
        (1, 1, 1, 1, 1, 2),
        (2, 5, 5, 4, 2, 8),
        (1, 3, 11, 6, 3, 4),
        (3, 17, 17, 4, 1, 6),
        (2, 40, 40, 2, 2, 64),
        (rng.random_range(1..4), rng.random_range(1..30), 0, 4, 2, rng.random_range(1..20) * 2),
    ];
    for (b, t, s, nh, nkv, d) in cases {
        let s = s.max(t);
        let tensor = |rng: &mut StdRng, heads: usize, rows: usize| {
            let values: Vec<f32> = (0..b * rows * heads * d).map(|_| normal(rng) * 1.5).collect();
            (values.clone(), Tensor::<AD, 4>::from_data(TensorData::new(values, [b, rows, heads, d]), &device))
        };
        let ((q, qt), (k, kt), (v, vt)) = (tensor(&mut rng, nh, t), tensor(&mut rng, nkv, s), tensor(&mut rng, nkv, s));
        let g: Vec<f32> = (0..b * nh * t * d).map(|_| normal(&mut rng)).collect();
        let g_t = Tensor::<AD, 4>::from_data(TensorData::new(g.clone(), [b, nh, t, d]), &device);
        // Causal over the last `t` of `s` positions, plus random pad keys (never a query's own key).
        let mask: Vec<bool> = (0..b * t * s)
            .map(|n| {
                let (i, j) = ((n / s) % t + (s - t), n % s);
                j > i || (j != i && rng.random_range(0..5) == 0)
            })
            .collect();
        let mask_t = Tensor::<AD, 4, Bool>::from_data(TensorData::new(mask.clone(), [b, 1, t, s]), &device);
        let case = format!("b {b} t {t} s {s} nh {nh} nkv {nkv} d {d}");
        let fused = attention_and_gradients(&qt, &kt, &vt, &mask_t, &g_t, true);
        let reference = attention_and_gradients(&qt, &kt, &vt, &mask_t, &g_t, false);
        let expected = attention_f64(&q, &k, &v, &mask, &g, [b, t, s, nh, nkv, d]);
        for (name, ((a, r), e)) in ["out", "dq", "dk", "dv"].iter().zip(fused.iter().zip(&reference).zip(&expected)) {
            let err = max_rel_diff(a, e);
            assert!(err < 1e-5, "{case}: fused {name} vs f64: {err:e}");
            let err = max_rel_diff(r, e);
            assert!(err < 1e-3, "{case}: reference {name} vs f64: {err:e}"); // Burn's f32 autodiff: a sanity check of the f64 formulas
        }
        // Without autodiff, and under gradient checkpointing.
        let inner = |t: &Tensor<AD, 4>| Tensor::<B, 4>::from_data(t.clone().into_data(), &device).swap_dims(1, 2);
        let plain = TritterBackend::grouped_query_attention(
            inner(&qt),
            inner(&kt),
            inner(&vt),
            Tensor::<B, 4, Bool>::from_data(TensorData::new(mask.clone(), [b, 1, t, s]), &device),
        );
        assert!(max_rel_diff(&to_vec(plain), &expected[0]) < 1e-5, "{case}: inference path vs f64");
        type Checkpointed = burn::backend::Autodiff<B, BalancedCheckpointing>;
        let moved = |x: &Tensor<AD, 4>| Tensor::<Checkpointed, 4>::from_data(x.clone().into_data(), &device);
        let mask_c = Tensor::<Checkpointed, 4, Bool>::from_data(TensorData::new(mask.clone(), [b, 1, t, s]), &device);
        let checkpointed = attention_and_gradients(&moved(&qt), &moved(&kt), &moved(&vt), &mask_c, &moved(&g_t), true);
        assert_eq!(checkpointed, fused, "{case}: checkpointed fused path");
    }
}

/// f64 norm of `x: [rows, dim]` and the gradients of `Σ y ⊙ g` for x, w and b (LayerNorm when
/// `b` is given, else RMSNorm): `dx = (u − mean u − x̂·mean(u ⊙ x̂))/σ` with `u = g ⊙ w`.
/// Also, per output, the size of the terms f32 rounding scales with: `x − mean` cancels terms
/// of `(|x| + |mean|)`, so `x̂` carries an error of `κ·ε` with `κ = (max|x| + |mean|)/σ`
/// (large when a row's values nearly agree, as at width 2); `y`, `dx`, `dw` and `db` then
/// cancel or sum terms of that size (at width 2 a LayerNorm's `dx` cancels to nearly 0).
fn norm_f64(x: &[f32], w: &[f32], b: Option<&[f32]>, g: &[f32], dim: usize, eps: f64) -> ([Vec<f64>; 4], [f64; 4]) {
    let (mut y, mut dx, mut dw, mut db) = (vec![], vec![], vec![0.0; dim], vec![0.0; dim]);
    let (mut y_terms, mut dx_terms) = (0.0f64, 0.0f64);
    let (mut dw_terms, mut db_terms) = (vec![0.0f64; dim], vec![0.0f64; dim]);
    for (row, g) in x.chunks(dim).zip(g.chunks(dim)) {
        let row: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        let mean = if b.is_some() { row.iter().sum::<f64>() / dim as f64 } else { 0.0 };
        let sigma = (row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / dim as f64 + eps).sqrt();
        let kappa = (row.iter().fold(0.0f64, |m, v| m.max(v.abs())) + mean.abs()) / sigma;
        let x_hat: Vec<f64> = row.iter().map(|v| (v - mean) / sigma).collect();
        let u: Vec<f64> = (0..dim).map(|j| g[j] as f64 * w[j] as f64).collect();
        let mean_u = if b.is_some() { u.iter().sum::<f64>() / dim as f64 } else { 0.0 };
        let mean_ux = u.iter().zip(&x_hat).map(|(u, x)| u * x).sum::<f64>() / dim as f64;
        dx_terms = u.iter().fold(dx_terms, |m, u| m.max(u.abs() * kappa.max(1.0) / sigma));
        y_terms = w.iter().fold(y_terms, |m, w| m.max(kappa * (*w as f64).abs()));
        for j in 0..dim {
            y.push(x_hat[j] * w[j] as f64 + b.map_or(0.0, |b| b[j] as f64));
            dx.push((u[j] - mean_u - x_hat[j] * mean_ux) / sigma);
            dw[j] += g[j] as f64 * x_hat[j];
            db[j] += g[j] as f64;
            dw_terms[j] += (g[j] as f64).abs() * (x_hat[j].abs() + kappa);
            db_terms[j] += (g[j] as f64).abs();
        }
    }
    let largest = |v: Vec<f64>| v.into_iter().fold(0.0, f64::max);
    ([y, dx, dw, db], [y_terms, dx_terms, largest(dw_terms), largest(db_terms)])
}

#[test]
fn fused_norms_equal_f64_and_the_reference() {
    use tritter::model::Norm;
    use tritter::NormKind;
    let mut rng = fresh_rng("fused_norms_equal_f64_and_the_reference");
    let device = Default::default();
    // One row and one feature, width 2 (dx cancels), odd widths, rows past a parallel block
    // (64), a 3-D input.
    for (shape, kind) in [
        (vec![1, 1], NormKind::LayerNorm),
        (vec![15, 2], NormKind::LayerNorm),
        (vec![3, 7], NormKind::RmsNorm),
        (vec![2, 65, 33], NormKind::LayerNorm),
        (vec![150, 64], NormKind::RmsNorm),
        (vec![rng.random_range(1..200), rng.random_range(1..300)], NormKind::LayerNorm),
    ] {
        let dim = *shape.last().unwrap();
        let n: usize = shape.iter().product();
        let offset = rng.random_range(-3.0f32..3.0);
        let x: Vec<f32> = (0..n).map(|_| normal(&mut rng) * 2.0 + offset).collect();
        let g: Vec<f32> = (0..n).map(|_| normal(&mut rng)).collect();
        let mut norm = Norm::<AD>::new(kind, dim, 1e-5, &device);
        let w: Vec<f32> = (0..dim).map(|_| 1.0 + normal(&mut rng) * 0.3).collect();
        let b: Vec<f32> = (0..dim).map(|_| normal(&mut rng) * 0.3).collect();
        norm.weight = burn::module::Param::from_tensor(Tensor::from_data(TensorData::new(w.clone(), [dim]), &device));
        if let Some(bias) = &mut norm.bias {
            *bias = burn::module::Param::from_tensor(Tensor::from_data(TensorData::new(b.clone(), [dim]), &device));
        }
        let centered = kind == NormKind::LayerNorm;
        let (expected, terms) = norm_f64(&x, &w, centered.then_some(&b[..]), &g, dim, 1e-5);
        let case = format!("{shape:?} {kind:?}");
        let run = |fused: bool| -> Vec<Vec<f32>> {
            let xt = Tensor::<AD, 2>::from_data(TensorData::new(x.clone(), [n / dim, dim]), &device).require_grad();
            let gt = Tensor::<AD, 2>::from_data(TensorData::new(g.clone(), [n / dim, dim]), &device);
            let (weight, bias) = (norm.weight.val(), norm.bias.as_ref().map(|b| b.val()));
            let y = if fused {
                match shape.len() {
                    3 => norm.forward(xt.clone().reshape([shape[0], shape[1], dim])).reshape([n / dim, dim]),
                    _ => norm.forward(xt.clone()),
                }
            } else {
                reference::norm(xt.clone(), weight.clone(), bias.clone(), 1e-5)
            };
            let grads = (y.clone() * gt).sum().backward();
            let mut out = vec![to_vec(y), to_vec(xt.grad(&grads).unwrap()), to_vec(weight.grad(&grads).unwrap())];
            out.extend(bias.map(|b| to_vec(b.grad(&grads).unwrap())));
            out
        };
        let (fused, reference) = (run(true), run(false));
        assert_eq!(fused.len(), if centered { 4 } else { 3 }, "{case}: gradients present");
        for (i, (name, ((a, r), e))) in
            ["y", "dx", "dw", "db"].iter().zip(fused.iter().zip(&reference).zip(&expected)).enumerate()
        {
            // Each relative to the terms f32 rounding scales with (see `norm_f64`).
            let scale = e.iter().fold(terms[i], |m, v| m.max(v.abs())).max(1e-30);
            let err = |got: &[f32]| got.iter().zip(e).fold(0.0f64, |m, (g, e)| m.max((*g as f64 - e).abs())) / scale;
            let (fused_err, reference_err) = (err(a), err(r));
            assert!(fused_err < 1e-5, "{case}: fused {name} vs f64: {fused_err:e}");
            // A sanity check of the f64 formulas.
            assert!(reference_err < 1e-3, "{case}: reference {name} vs f64: {reference_err:e}");
        }
        // Without autodiff.
        let plain = Norm::<B> {
            weight: burn::module::Param::from_tensor(Tensor::from_data(TensorData::new(w.clone(), [dim]), &device)),
            bias: centered.then(|| {
                burn::module::Param::from_tensor(Tensor::from_data(TensorData::new(b.clone(), [dim]), &device))
            }),
            eps: 1e-5,
        };
        let y = plain.forward(Tensor::<B, 2>::from_data(TensorData::new(x.clone(), [n / dim, dim]), &device));
        let y_scale = expected[0].iter().fold(terms[0], |m, v| m.max(v.abs())).max(1e-30);
        let y_err = to_vec(y).iter().zip(&expected[0]).fold(0.0f64, |m, (g, e)| m.max((*g as f64 - e).abs()));
        assert!(y_err / y_scale < 1e-5, "{case}: inference path vs f64: {:e}", y_err / y_scale);
    }
}

#[test]
fn fused_rope_equals_the_reference_bit_for_bit() {
    // Same products and sums per element as the tensor ops (forward and, by commutativity, the
    // backward), so equal to the bit; positions start at an offset as after a KV cache.
    use tritter::model::RotaryEmbedding;
    let mut rng = fresh_rng("fused_rope_equals_the_reference_bit_for_bit");
    let device = Default::default();
    for [b, t, h, d] in [
        [1, 1, 1, 2],
        [2, 7, 3, 8],
        [1, 300, 2, 64],
        [rng.random_range(1..4), rng.random_range(1..50), rng.random_range(1..6), rng.random_range(1..40) * 2],
    ] {
        let rope = RotaryEmbedding { theta: 10_000.0, head_dim: d };
        let offset = rng.random_range(0..100);
        let n = b * t * h * d;
        let x: Vec<f32> = (0..n).map(|_| normal(&mut rng)).collect();
        let g: Vec<f32> = (0..n).map(|_| normal(&mut rng)).collect();
        let run = |fused: bool| {
            let xt = Tensor::<AD, 4>::from_data(TensorData::new(x.clone(), [b, t, h, d]), &device).require_grad();
            let (cos, sin) = rope.tables(offset, t);
            let y = if fused { rope.apply(xt.clone(), offset) } else { reference::rope(xt.clone(), cos, sin) };
            let grads =
                (y.clone() * Tensor::from_data(TensorData::new(g.clone(), [b, t, h, d]), &device)).sum().backward();
            (to_vec(y), to_vec(xt.grad(&grads).unwrap()))
        };
        assert_eq!(run(true), run(false), "[{b}, {t}, {h}, {d}] at offset {offset}");
        let plain = rope.apply(Tensor::<B, 4>::from_data(TensorData::new(x.clone(), [b, t, h, d]), &device), offset);
        assert_eq!(to_vec(plain), run(false).0, "inference path");
    }
}

#[test]
fn fused_gated_activations_equal_f64_and_the_reference() {
    let mut rng = fresh_rng("fused_gated_activations_equal_f64_and_the_reference");
    let device = Default::default();
    let shapes = [
        [1, 1, 1],
        [2, 3, 17],
        [3, 100, 300],
        [rng.random_range(1..4), rng.random_range(1..60), rng.random_range(1..500)],
    ];
    let activations = [Activation::ReluSquared, Activation::Silu];
    for ([b, t, i], activation) in shapes.into_iter().flat_map(|s| activations.map(|a| (s, a))) {
        let n = b * t * i;
        let draw = |rng: &mut StdRng| (0..n).map(|_| 3.0 * normal(rng)).collect::<Vec<f32>>();
        let (gate, up, g) = (draw(&mut rng), draw(&mut rng), draw(&mut rng));
        let run = |fused: bool| {
            let tensor = |v: &Vec<f32>| {
                Tensor::<AD, 3>::from_data(TensorData::new(v.clone(), [b, t, i]), &device).require_grad()
            };
            let (gt, ut) = (tensor(&gate), tensor(&up));
            let y = if fused {
                TritterBackend::gated_activation(gt.clone(), ut.clone(), activation)
            } else {
                reference::gated_activation(gt.clone(), ut.clone(), activation)
            };
            let grads = (y.clone() * tensor(&g)).sum().backward();
            vec![to_vec(y), to_vec(gt.grad(&grads).unwrap()), to_vec(ut.grad(&grads).unwrap())]
        };
        // act(z) and act'(z) in f64: relu(z)², 2·relu(z); z·σ(z), σ(z)·(1 + z·(1 − σ(z))).
        let act = |z: f32| {
            let z = z as f64;
            let s = 1.0 / (1.0 + (-z).exp());
            match activation {
                Activation::ReluSquared => (z.max(0.0).powi(2), 2.0 * z.max(0.0)),
                Activation::Silu => (z * s, s * (1.0 + z * (1.0 - s))),
            }
        };
        let expected = [
            (0..n).map(|k| act(gate[k]).0 * up[k] as f64).collect::<Vec<_>>(),
            (0..n).map(|k| g[k] as f64 * up[k] as f64 * act(gate[k]).1).collect(),
            (0..n).map(|k| g[k] as f64 * act(gate[k]).0).collect(),
        ];
        let (fused, reference) = (run(true), run(false));
        for (name, ((a, r), e)) in ["y", "d gate", "d up"].iter().zip(fused.iter().zip(&reference).zip(&expected)) {
            assert!(max_rel_diff(a, e) < 1e-6, "[{b}, {t}, {i}] {activation:?} fused {name} vs f64");
            assert!(max_rel_diff(r, e) < 1e-5, "[{b}, {t}, {i}] {activation:?} reference {name} vs f64");
        }
        let plain = |v: &Vec<f32>| Tensor::<B, 3>::from_data(TensorData::new(v.clone(), [b, t, i]), &device);
        assert!(
            max_rel_diff(&to_vec(TritterBackend::gated_activation(plain(&gate), plain(&up), activation)), &expected[0])
                < 1e-6,
            "inference path"
        );
    }
}

#[test]
fn cpu_reshape_equals_burn_reshape_with_gradients() {
    // Contiguous and transposed (copied) inputs; the gradient comes back in the input's shape.
    let mut rng = fresh_rng("cpu_reshape_equals_burn_reshape_with_gradients");
    let device = Default::default();
    let [a, b, c] = [rng.random_range(1..6), rng.random_range(1..7), rng.random_range(1..9)];
    let x: Vec<f32> = (0..a * b * c).map(|_| normal(&mut rng)).collect();
    let g: Vec<f32> = (0..a * b * c).map(|_| normal(&mut rng)).collect();
    for transposed in [false, true] {
        let run = |ours: bool| {
            let xt = Tensor::<AD, 3>::from_data(TensorData::new(x.clone(), [a, b, c]), &device).require_grad();
            let input = if transposed { xt.clone().swap_dims(0, 2) } else { xt.clone() };
            let y: Tensor<AD, 2> =
                if ours { TritterBackend::reshape(input, [a * b, c]) } else { input.reshape([a * b, c]) };
            let grads =
                (y.clone() * Tensor::from_data(TensorData::new(g.clone(), [a * b, c]), &device)).sum().backward();
            (to_vec(y), to_vec(xt.grad(&grads).unwrap()))
        };
        assert_eq!(run(true), run(false), "transposed: {transposed}");
    }
    let plain: Tensor<B, 2> = TritterBackend::reshape(
        Tensor::<B, 3>::from_data(TensorData::new(x.clone(), [a, b, c]), &device).swap_dims(1, 2),
        [a, b * c],
    );
    assert_eq!(
        to_vec(plain),
        to_vec(Tensor::<B, 3>::from_data(TensorData::new(x, [a, b, c]), &device).swap_dims(1, 2).reshape([a, b * c]))
    );
}

/// The table's gradient from `loss = Σ embedding(W, ids) ⊙ g (+ Σ W ⊙ h when tied)`, the head
/// term built after the lookup as a tied LM head is (its gradient is registered first).
fn embedding_gradient<Ad: tritter::backend::TritterAutodiffBackend>(
    table: &[f32],
    [vocab, hidden]: [usize; 2],
    ids: &[i64],
    [batch, seq]: [usize; 2],
    g: &[f32],
    head: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let device = Default::default();
    let w = Tensor::<Ad, 2>::from_data(TensorData::new(table.to_vec(), [vocab, hidden]), &device).require_grad();
    let ids = Tensor::<Ad, 2, Int>::from_data(TensorData::new(ids.to_vec(), [batch, seq]), &device);
    let rows = Ad::token_embedding(w.clone(), ids);
    let g = Tensor::<Ad, 3>::from_data(TensorData::new(g.to_vec(), [batch, seq, hidden]), &device);
    let mut loss = (rows.clone() * g).sum();
    if let Some(h) = head {
        let h = Tensor::<Ad, 2>::from_data(TensorData::new(h.to_vec(), [vocab, hidden]), &device);
        loss = loss + (w.clone() * h).sum();
    }
    let grads = loss.backward();
    (to_vec(rows), to_vec(w.grad(&grads).expect("table gradient")))
}

fn check_embedding<Ad: tritter::backend::TritterAutodiffBackend>(rng: &mut StdRng) {
    // Few rows, so that ids repeat; a batch of one; a table whose rows no token picks.
    for (vocab, hidden, batch, seq) in [(5, 3, 2, 7), (1, 8, 1, 1), (40, 16, 3, 5), (7, 33, 1, 20)] {
        let table: Vec<f32> = (0..vocab * hidden).map(|_| normal(rng)).collect();
        let ids: Vec<i64> = (0..batch * seq).map(|_| rng.random_range(0..vocab) as i64).collect();
        let g: Vec<f32> = (0..batch * seq * hidden).map(|_| normal(rng)).collect();
        let h: Vec<f32> = (0..vocab * hidden).map(|_| normal(rng)).collect();
        for head in [None, Some(h.as_slice())] {
            let (rows, grad) = embedding_gradient::<Ad>(&table, [vocab, hidden], &ids, [batch, seq], &g, head);
            let mut grad64: Vec<f64> =
                head.map_or(vec![0.0; vocab * hidden], |h| h.iter().map(|&v| v as f64).collect());
            let mut rows64 = Vec::new();
            for (token, &id) in ids.iter().enumerate() {
                for j in 0..hidden {
                    grad64[id as usize * hidden + j] += g[token * hidden + j] as f64;
                    rows64.push(table[id as usize * hidden + j] as f64);
                }
            }
            let case = format!("{vocab}×{hidden}, {batch}×{seq}, tied {}", head.is_some());
            assert_eq!(max_rel_diff(&rows, &rows64), 0.0, "{case}: looked-up rows");
            let err = max_rel_diff(&grad, &grad64);
            assert!(err < 1e-6, "{case}: table gradient vs f64: {err:e}");
        }
    }
}

#[test]
fn fused_embedding_gradient_equals_f64_tied_or_not() {
    let mut rng = fresh_rng("fused_embedding_gradient_equals_f64_tied_or_not");
    assert!(tritter::backend::has_native_ops::<B>());
    check_embedding::<AD>(&mut rng);
    check_embedding::<burn::backend::Autodiff<B, BalancedCheckpointing>>(&mut rng);
    check_embedding::<burn::backend::Autodiff<tritter::backend::Reference>>(&mut rng);
}
