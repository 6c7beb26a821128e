//! The packed ternary matmul (CPU kernel, its portable and AVX2 loops, and the tensor-op
//! reference) against an f64 recomputation, on awkward shapes and every scale granularity.

use rand::{rngs::StdRng, Rng};
use tritter::backend::cpu::packed::{packed_matmul_f32, packed_matmul_int8, CpuKernel};
use tritter::backend::reference;
use tritter::ternary::{PackedLinear, PackedTernary};
use tritter::WeightScale;

use crate::model::common::{fresh_rng, max_rel_diff, normal, to_vec, B};

/// Random ternary values (about a third zero) with positive scales.
pub fn random_packed(rng: &mut StdRng, rows: usize, cols: usize, scale: WeightScale) -> PackedTernary {
    let values: Vec<i8> = (0..rows * cols).map(|_| rng.random_range(-1..=1)).collect();
    let n_scales = match scale {
        WeightScale::PerTensor => 1,
        WeightScale::PerRow => rows,
        WeightScale::PerGroup(n) => rows * cols / n,
    };
    let scales = (0..n_scales).map(|_| rng.random_range(0.01..0.2)).collect();
    PackedTernary::from_values(&values, rows, cols, scales, scale).unwrap()
}

/// `y[t, r] = Σ_c x̃[t, c] · γ(r, c) · w[r, c]` in f64, with `x̃` the int8 fake quantization
/// (or `x` itself when `int8` is off).
pub fn reference_f64(p: &PackedTernary, x: &[f32], int8: bool) -> Vec<f64> {
    let values = p.values();
    let tokens = x.len() / p.cols;
    let gamma = |r: usize, c: usize| match p.weight_scale {
        WeightScale::PerTensor => p.scales[0],
        WeightScale::PerRow => p.scales[r],
        WeightScale::PerGroup(n) => p.scales[r * (p.cols / n) + c / n],
    } as f64;
    let mut out = Vec::with_capacity(tokens * p.rows);
    for token in x.chunks(p.cols) {
        let absmax = token.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-5);
        let s = 127.0 / absmax;
        let xq: Vec<f64> = if int8 {
            token.iter().map(|&v| (v * s).round_ties_even().clamp(-128.0, 127.0) as f64 / s as f64).collect()
        } else {
            token.iter().map(|&v| v as f64).collect()
        };
        for r in 0..p.rows {
            out.push((0..p.cols).map(|c| xq[c] * gamma(r, c) * values[r * p.cols + c] as f64).sum());
        }
    }
    out
}

/// Shapes with dims that are not multiples of 16/32/64/128, one row, one token, long K, many
/// tokens.
pub fn cases(rng: &mut StdRng) -> Vec<(usize, usize, usize, WeightScale)> {
    let mut cases = vec![
        (1, 1, 1, WeightScale::PerTensor),
        (3, 17, 1, WeightScale::PerRow),
        (5, 130, 3, WeightScale::PerTensor),
        (33, 257, 2, WeightScale::PerRow),
        (7, 4099, 1, WeightScale::PerTensor),
        (9, 384, 2, WeightScale::PerGroup(128)),
        (6, 96, 2, WeightScale::PerGroup(32)),
        (4, 72, 1, WeightScale::PerGroup(24)),
        (70, 1000, 4, WeightScale::PerGroup(8)),
        // Many tokens, several 32-token × 64-output tiles with ragged edges (the tiled GPU kernel).
        (130, 200, 45, WeightScale::PerGroup(40)),
        (65, 1100, 70, WeightScale::PerRow),
        // Several tokens with one scale per row (the AVX2 loop decoding a row once for all
        // tokens, 4 at a time), remainders of 3 and 1.
        (12, 640, 7, WeightScale::PerTensor),
        (2, 100, 5, WeightScale::PerRow),
        // One token, whole 128-column blocks, one scale per row or tensor (the decoding loop).
        (40, 768, 1, WeightScale::PerRow),
        (3, 128, 1, WeightScale::PerTensor),
        (5, 384, 1, WeightScale::PerTensor),
    ];
    let (rows, cols) = (rng.random_range(1..100), rng.random_range(1..700));
    cases.push((rows, cols, rng.random_range(1..80), WeightScale::PerRow));
    cases
}

fn kernels() -> Vec<CpuKernel> {
    [CpuKernel::Portable, CpuKernel::Avx2].into_iter().filter(|k| k.is_available()).collect()
}

#[test]
fn cpu_kernel_matches_the_f64_reference_with_int8_activations() {
    let mut rng = fresh_rng("cpu_kernel_matches_the_f64_reference_with_int8_activations");
    for (rows, cols, tokens, scale) in cases(&mut rng) {
        let p = random_packed(&mut rng, rows, cols, scale);
        let x: Vec<f32> = (0..tokens * cols).map(|_| normal(&mut rng)).collect();
        let expected = reference_f64(&p, &x, true);
        for kernel in kernels() {
            let mut out = vec![f32::NAN; tokens * rows]; // poisoned: every element must be written
            packed_matmul_int8(kernel, &p, &x, &mut out);
            let err = max_rel_diff(&out, &expected);
            assert!(err < 1e-5, "{kernel:?} {rows}×{cols}, {tokens} tokens, {scale:?}: relative error {err}");
        }
    }
}

#[test]
fn cpu_kernel_matches_the_f64_reference_with_f32_activations() {
    let mut rng = fresh_rng("cpu_kernel_matches_the_f64_reference_with_f32_activations");
    for (rows, cols, tokens, scale) in cases(&mut rng) {
        let p = random_packed(&mut rng, rows, cols, scale);
        let x: Vec<f32> = (0..tokens * cols).map(|_| normal(&mut rng)).collect();
        let mut out = vec![f32::NAN; tokens * rows];
        packed_matmul_f32(&p, &x, &mut out);
        let err = max_rel_diff(&out, &reference_f64(&p, &x, false));
        assert!(err < 1e-5, "{rows}×{cols}, {tokens} tokens, {scale:?}: relative error {err}");
    }
}

#[test]
fn avx2_and_portable_loops_agree_exactly() {
    // Both sum the same integers: any difference is a decoding bug, not rounding.
    let mut rng = fresh_rng("avx2_and_portable_loops_agree_exactly");
    if !CpuKernel::Avx2.is_available() {
        eprintln!("no AVX2 on this CPU; nothing to compare");
        return;
    }
    for (rows, cols, tokens, scale) in cases(&mut rng) {
        let p = random_packed(&mut rng, rows, cols, scale);
        let x: Vec<f32> = (0..tokens * cols).map(|_| normal(&mut rng) * 3.0).collect();
        let (mut a, mut b) = (vec![f32::NAN; tokens * rows], vec![f32::NAN; tokens * rows]);
        packed_matmul_int8(CpuKernel::Portable, &p, &x, &mut a);
        packed_matmul_int8(CpuKernel::Avx2, &p, &x, &mut b);
        assert_eq!(a, b, "{rows}×{cols} {scale:?}");
    }
}

#[test]
fn tensor_op_reference_and_backend_kernel_match_the_f64_reference() {
    // `PackedLinear::forward` on ndarray runs the CPU kernel; `reference_packed_matmul` unpacks
    // the codes with int tensor ops. Both must agree with the f64 recomputation.
    let mut rng = fresh_rng("tensor_op_reference_and_backend_kernel_match_the_f64_reference");
    let device = Default::default();
    for (rows, cols, tokens, scale) in cases(&mut rng) {
        for bits in [Some(8), None] {
            let p = random_packed(&mut rng, rows, cols, scale);
            let x: Vec<f32> = (0..tokens * cols).map(|_| normal(&mut rng)).collect();
            let expected = reference_f64(&p, &x, bits.is_some());
            let x = burn::tensor::Tensor::<B, 2>::from_data(burn::tensor::TensorData::new(x, [tokens, cols]), &device);
            let layer = PackedLinear::<B>::new(p.clone(), bits, &device);
            assert!(layer.codes.is_none(), "ndarray keeps the host copy only");
            let kernel = to_vec(layer.forward(x.clone()));
            let uploaded = PackedLinear::<B>::with_device_tensors(std::sync::Arc::new(p), bits, &device);
            let reference = to_vec(reference::packed_matmul(x, uploaded.weight()));
            for (name, got) in [("kernel", kernel), ("tensor-op reference", reference)] {
                let err = max_rel_diff(&got, &expected);
                assert!(err < 1e-5, "{name} {rows}×{cols}, {tokens} tokens, {scale:?}, {bits:?}: relative error {err}");
            }
        }
    }
}
