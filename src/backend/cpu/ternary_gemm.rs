//! The training projection's forward `x̃ · W̃ᵀ` as an integer product. With `x̃ = q / s` (int8
//! `q`, one scale `s` per token) and `W̃ = γ · t` (ternary `t`, one `γ` per output row), the
//! product is `γ / s · Σ q·t`: the sum is exact in i32, then one scale per output. AVX-512 VNNI's
//! `vpdpbusd` multiplies 64 byte pairs per instruction (16 for an f32 FMA), reading the codes
//! `t + 1 ∈ {0, 1, 2}` as unsigned bytes, so `Σ q·t = Σ q·(t + 1) − Σ q`.
//!
//! The codes and scales are the quantizers' own ([`super::quant`]), so the result is the f32 form
//! `fake_quantize(x) · fake_quantize(W)ᵀ` without its rounding of every product and partial sum.
//! Used where the CPU has VNNI and `γ` is per tensor or per row; elsewhere the f32 form runs.
//! Exact below 131 072 inputs (`|Σ q·t| < 2²⁴`, so its conversion to f32 does not round).

use rayon::prelude::*;

use super::quant::{rounded_byte, token_scale, weight_gammas};
use super::tensor::SharedOut;
use crate::config::{WeightQuantEps, WeightScale};

/// Token rows per tile of the microkernel.
const TILE_ROWS: usize = 6;
/// Tokens per parallel task (a multiple of [`TILE_ROWS`]): small products still split in
/// several tasks, and a task's int8 rows (≤ 96 × 8 KiB) stay in L2 across its columns.
const CHUNK_TOKENS: usize = 16 * TILE_ROWS;
/// Output columns per panel (one 512-bit register of i32 sums).
const PANEL: usize = 16;

/// Multiply-adds from which the CPU backend's projection takes the integer product: below, the
/// passes that make codes and panels cost more than they save (the `test` preset's 1024 × 64 × 64
/// products ran at 25-32 GOP/s against the f32 form's 31-35; 512 × 768 × 768 at 150-190
/// against 90-105, 2 cores).
pub const MIN_WORK: usize = 1 << 26;

/// Whether [`ternary_product`] runs on this CPU for weights of this scale granularity.
pub fn supported(scale: WeightScale, cols: usize) -> bool {
    let per_row = match scale {
        WeightScale::PerTensor | WeightScale::PerRow => true,
        WeightScale::PerGroup(group) => group == cols,
    };
    per_row && vnni()
}

#[cfg(target_arch = "x86_64")]
fn vnni() -> bool {
    std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vnni")
}

#[cfg(not(target_arch = "x86_64"))]
fn vnni() -> bool {
    false
}

/// Activations as int8 rows of `padded_cols` (a multiple of 4), zero-padded to a multiple of
/// [`TILE_ROWS`] rows, with each token's scale and `Σ q`.
struct Int8Rows {
    q: Vec<i8>,
    scale: Vec<f32>,
    sum: Vec<i32>,
    padded_cols: usize,
}

fn int8_rows(x: &[f32], tokens: usize, cols: usize) -> Int8Rows {
    let padded_cols = cols.next_multiple_of(4);
    let mut q = vec![0i8; tokens.next_multiple_of(TILE_ROWS) * padded_cols];
    let (mut scale, mut sum) = (vec![0f32; tokens], vec![0i32; tokens]);
    q.par_chunks_mut(padded_cols)
        .zip(scale.par_iter_mut().zip(sum.par_iter_mut()))
        .enumerate()
        .with_min_len(16)
        .for_each(|(t, (q, (scale, sum)))| {
            let row = &x[t * cols..(t + 1) * cols];
            *scale = token_scale(row);
            for (q, &v) in q.iter_mut().zip(row) {
                *q = rounded_byte(v * *scale, -128.0, 127.0) as i8;
            }
            *sum = q.iter().map(|&q| q as i32).sum();
        });
    Int8Rows { q, scale, sum, padded_cols }
}

/// Weight codes `t + 1` in panels of [`PANEL`] rows: panel `p`, column quad `c`, row `j` holds the
/// 4 codes of row `16p + j`, columns `4c..4c + 4` (the layout `vpdpbusd` reads), zero-padded to
/// an even number of panels; with each row's `γ`.
fn code_panels(w: &[f32], rows: usize, cols: usize, scale: WeightScale, eps: WeightQuantEps) -> (Vec<u8>, Vec<f32>) {
    let (gammas, group) = weight_gammas(w, rows, cols, scale);
    let (row_scale, divisors): (Vec<f32>, Vec<f32>) =
        (0..rows).map(|r| eps.scale_and_divisor(gammas[r * cols / group])).unzip();
    let quads = cols.div_ceil(4);
    let mut codes = vec![0u8; rows.next_multiple_of(2 * PANEL) * quads * 4];
    codes.par_chunks_mut(PANEL * quads * 4).enumerate().for_each(|(p, panel)| {
        let mut row_codes = vec![0u8; quads * 4];
        for j in 0..PANEL.min(rows.saturating_sub(p * PANEL)) {
            let r = p * PANEL + j;
            for (code, &v) in row_codes.iter_mut().zip(&w[r * cols..(r + 1) * cols]) {
                *code = rounded_byte(v / divisors[r], -1.0, 1.0).wrapping_add(1);
            }
            for (quad, codes) in row_codes.chunks_exact(4).enumerate() {
                panel[(quad * PANEL + j) * 4..][..4].copy_from_slice(codes);
            }
        }
    });
    (codes, row_scale)
}

/// `x̃ · W̃ᵀ` of row-major `x: [tokens, cols]` and latent `w: [rows, cols]` as `[tokens, rows]`,
/// or `None` where [`supported`] is false.
pub fn ternary_product(
    x: &[f32],
    tokens: usize,
    w: &[f32],
    rows: usize,
    cols: usize,
    scale: WeightScale,
    eps: WeightQuantEps,
) -> Option<Vec<f32>> {
    if !supported(scale, cols) {
        return None;
    }
    assert_eq!((x.len(), w.len()), (tokens * cols, rows * cols), "operand lengths");
    if cols == 0 {
        return Some(vec![0f32; tokens * rows]);
    }
    let a = int8_rows(x, tokens, cols);
    let (codes, row_scale) = code_panels(w, rows, cols, scale, eps);
    let mut out = vec![0f32; tokens * rows];
    let shared = SharedOut(out.as_mut_ptr());
    let (pair_len, chunks) = (2 * PANEL * a.padded_cols, tokens.div_ceil(CHUNK_TOKENS));
    (0..codes.len() / pair_len * chunks).into_par_iter().for_each(|task| {
        let (pair, chunk) = (task / chunks, task % chunks);
        let codes = &codes[pair * pair_len..(pair + 1) * pair_len];
        let columns = (pair * 2 * PANEL)..rows.min((pair + 1) * 2 * PANEL);
        let tokens = chunk * CHUNK_TOKENS..tokens.min((chunk + 1) * CHUNK_TOKENS);
        // SAFETY: VNNI is present (`supported`); this task writes only its tokens' outputs in
        // its panel pair's columns, and every read is within `a.q` and `codes` (both padded).
        #[cfg(target_arch = "x86_64")]
        unsafe {
            vnni::panel_pair(&a, codes, tokens, rows, columns, &row_scale, shared)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (codes, columns, tokens, shared);
    });
    Some(out)
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::{Int8Rows, SharedOut, PANEL, TILE_ROWS};

    /// Output columns `columns` (one pair of code panels) of the tokens `tokens`: tiles of
    /// [`TILE_ROWS`] tokens × 32 columns held in 12 registers of i32 sums.
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub(super) unsafe fn panel_pair(
        a: &Int8Rows,
        codes: &[u8],
        tokens: Range<usize>,
        rows: usize,
        columns: Range<usize>,
        row_scale: &[f32],
        out: SharedOut,
    ) {
        let quads = a.padded_cols / 4;
        let (b0, b1) = (codes.as_ptr(), unsafe { codes.as_ptr().add(quads * PANEL * 4) });
        for r0 in tokens.clone().step_by(TILE_ROWS) {
            let mut acc = [[_mm512_setzero_si512(); 2]; TILE_ROWS];
            let q = unsafe { a.q.as_ptr().add(r0 * a.padded_cols) };
            for c in 0..quads {
                let (w0, w1) = unsafe {
                    (_mm512_loadu_si512(b0.add(c * 64) as *const _), _mm512_loadu_si512(b1.add(c * 64) as *const _))
                };
                for (i, acc) in acc.iter_mut().enumerate() {
                    let x =
                        _mm512_set1_epi32(unsafe { (q.add(i * a.padded_cols + 4 * c) as *const i32).read_unaligned() });
                    acc[0] = _mm512_dpbusd_epi32(acc[0], w0, x);
                    acc[1] = _mm512_dpbusd_epi32(acc[1], w1, x);
                }
            }
            for (i, acc) in acc.iter().enumerate().take(tokens.end - r0) {
                let t = r0 + i;
                let (sum, scale) = (_mm512_set1_epi32(a.sum[t]), _mm512_set1_ps(a.scale[t]));
                for (half, acc) in acc.iter().enumerate() {
                    let start = columns.start + half * PANEL;
                    let mask = match columns.end.saturating_sub(start) {
                        0 => continue,
                        n => u16::MAX >> PANEL.saturating_sub(n),
                    };
                    // SAFETY: the masked lanes are columns `start..columns.end` of row `t`.
                    unsafe {
                        let gamma = _mm512_maskz_loadu_ps(mask, row_scale.as_ptr().add(start));
                        let value = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(*acc, sum)), gamma);
                        _mm512_mask_storeu_ps(out.at(t * rows + start), mask, _mm512_div_ps(value, scale));
                    }
                }
            }
        }
    }
}
