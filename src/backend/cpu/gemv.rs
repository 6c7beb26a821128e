//! `x · Wᵀ` for a dense f32 weight and a few tokens (generation's full-precision LM head):
//! rows in parallel, each row read once.
//!
//! Why its own loop: at batch 1 Burn's ndarray matmul repacks the whole weight on every call,
//! and a plain Rust dot compiles to SSE without FMA, which on `small_100m`'s 98 MB head (held in
//! a large L3) ran at ~17 GB/s where AVX2 + FMA reads it at the cache's speed.

use super::packed::for_each_row;

/// Independent accumulators per dot: four vectors of 8 lanes, so the adds do not wait on each
/// other's latency.
const DOT_LANES: usize = 32;

/// `out = x · Wᵀ` for a dense row-major `w: [rows, cols]` and tokens `x: [tokens, cols]`.
pub fn dense_matmul_f32(w: &[f32], rows: usize, cols: usize, x: &[f32], out: &mut [f32]) {
    let tokens = x.len() / cols.max(1);
    assert_eq!(w.len(), rows * cols, "weight length");
    assert_eq!(out.len(), tokens * rows, "output length");
    let dot = dot_kernel();
    for_each_row(rows, cols, tokens, out, |r, row_out| {
        let row = &w[r * cols..(r + 1) * cols];
        for (t, x) in x.chunks(cols.max(1)).enumerate() {
            row_out[t] = dot(row, x);
        }
    });
}

/// The fastest dot this CPU runs.
fn dot_kernel() -> fn(&[f32], &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return |w, x| unsafe { dot_avx2_fma(w, x) };
    }
    dot_portable
}

/// `Σ w_i · x_i` over [`DOT_LANES`] lanes, then the tail.
fn dot_portable(w: &[f32], x: &[f32]) -> f32 {
    let main = w.len() - w.len() % DOT_LANES;
    let mut acc = [0f32; DOT_LANES];
    for (w, x) in w[..main].chunks_exact(DOT_LANES).zip(x.chunks_exact(DOT_LANES)) {
        for j in 0..DOT_LANES {
            acc[j] += w[j] * x[j];
        }
    }
    let tail: f32 = w[main..].iter().zip(&x[main..]).map(|(a, b)| a * b).sum();
    acc.iter().sum::<f32>() + tail
}

/// [`dot_portable`] with four 8-lane FMA accumulators.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2_fma(w: &[f32], x: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = w.len().min(x.len());
    let main = n - n % DOT_LANES;
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    for i in (0..main).step_by(DOT_LANES) {
        for (j, acc) in acc.iter_mut().enumerate() {
            let o = i + 8 * j;
            *acc = _mm256_fmadd_ps(_mm256_loadu_ps(wp.add(o)), _mm256_loadu_ps(xp.add(o)), *acc);
        }
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
    let quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
    let one = _mm_add_ss(quarter, _mm_shuffle_ps(quarter, quarter, 1));
    let tail: f32 = w[main..n].iter().zip(&x[main..n]).map(|(a, b)| a * b).sum();
    _mm_cvtss_f32(one) + tail
}
