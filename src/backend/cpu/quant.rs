//! The two BitNet quantizers as single passes over CPU memory, for the fused training
//! projection: `W̃ = γ · clamp(round(W / (γ + ε)), −1, 1)` with `γ = mean|W|` per scale group (one
//! reduction pass, one quantize pass; or with `max(γ, ε)` for both, [`WeightQuantEps::Clamp`]) and `x̃ = clamp(round(x · s), −128, 127) / s` with
//! `s = 127 / max(max|x|, ε)` per token (each row read twice while it is in cache). The packed
//! kernel's int8 activations use the same per-token scale and rounding.
//!
//! Bit-identical to the tensor-op quantizers ([`crate::quant`]) on burn-ndarray: the same
//! f32 operations in the same order, including γ's sum, which follows ndarray's `sum` (eight
//! interleaved partial sums, combined as ndarray combines them).

use rayon::prelude::*;

use super::math::{self, MAGIC};
use crate::config::{WeightQuantEps, WeightScale};
use crate::quant::{group_shape, ACTIVATION_EPS};

/// Elements per parallel task of the weight's quantize pass.
const PIECE: usize = 1 << 16;

/// `round_ties_even(v.clamp(lo, hi))` for bounds within ±2²², equal to rounding then clamping
/// (the bounds are integers). Adding and subtracting 1.5 · 2²³ rounds half to even in the
/// default rounding mode and vectorises, where `f32::round_ties_even` is a libm call per element
/// without SSE4.1; `copysign` restores the sign of zero (`-0.3` rounds to `-0`, as `rint` does).
#[inline(always)]
pub(crate) fn round_clamped(v: f32, lo: f32, hi: f32) -> f32 {
    let v = v.clamp(lo, hi);
    ((v + MAGIC) - MAGIC).copysign(v)
}

/// The low byte of `round_ties_even(v.clamp(lo, hi))` (two's complement) for bounds within
/// ±2²²: the integer sits in the low mantissa bits of `v + 1.5 · 2²³` (as in [`round_clamped`]),
/// which vectorizes where a float-to-int cast does not.
#[inline(always)]
pub(crate) fn rounded_byte(v: f32, lo: f32, hi: f32) -> u8 {
    (v.clamp(lo, hi) + MAGIC).to_bits() as u8
}

/// `Σ |x|` in the order of ndarray's `sum` (its `unrolled_fold`), so γ matches the reference.
fn abs_sum(xs: &[f32]) -> f32 {
    let mut p = [0f32; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for j in 0..8 {
            p[j] += c[j].abs();
        }
    }
    let mut acc = 0f32;
    for j in 0..4 {
        acc += p[j] + p[j + 4];
    }
    chunks.remainder().iter().fold(acc, |acc, x| acc + x.abs())
}

/// `γ = mean|W|` of each scale group of a row-major `[rows, cols]` weight, and the group length
/// (the groups are consecutive runs of that many elements).
pub(crate) fn weight_gammas(w: &[f32], rows: usize, cols: usize, scale: WeightScale) -> (Vec<f32>, usize) {
    let len = group_shape([rows, cols], scale)[2].max(1);
    (w.par_chunks(len).map(|g| abs_sum(g) / len as f32).collect(), len)
}

/// `W̃` of a row-major `[rows, cols]` weight (see the module doc).
pub fn fake_quantize_weight(w: &[f32], rows: usize, cols: usize, scale: WeightScale, eps: WeightQuantEps) -> Vec<f32> {
    assert_eq!(w.len(), rows * cols, "weight length");
    let (gammas, len) = weight_gammas(w, rows, cols, scale);
    let mut out = vec![0f32; w.len()];
    out.par_chunks_mut(PIECE).zip(w.par_chunks(PIECE)).enumerate().for_each(|(i, (out, w))| {
        // A piece may span several groups: walk it group by group.
        let (mut at, mut start) = (0, i * PIECE);
        while at < w.len() {
            let (gamma, divisor) = eps.scale_and_divisor(gammas[start / len]);
            let end = at + (len - start % len).min(w.len() - at);
            for (o, &v) in out[at..end].iter_mut().zip(&w[at..end]) {
                *o = round_clamped(v / divisor, -1.0, 1.0) * gamma;
            }
            start += end - at;
            at = end;
        }
    });
    out
}

/// The per-token scale `s = 127 / max(max|x|, ε)`.
pub(crate) fn token_scale(x: &[f32]) -> f32 {
    127.0 / math::abs_max(x).max(ACTIVATION_EPS)
}

/// `x̃` of row-major `[tokens, cols]` activations (see the module doc).
pub fn fake_quantize_activation(x: &[f32], cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    let min_rows = (PIECE / cols.max(1)).max(1);
    out.par_chunks_mut(cols.max(1)).zip(x.par_chunks(cols.max(1))).with_min_len(min_rows).for_each(|(out, x)| {
        let s = token_scale(x);
        for (o, &v) in out.iter_mut().zip(x) {
            *o = round_clamped(v * s, -128.0, 127.0) / s;
        }
    });
    out
}
