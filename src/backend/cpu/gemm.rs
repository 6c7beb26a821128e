//! Dense products of the CPU backend's projections, `a · bᵀ` (forward), `a · b` (input
//! gradient) and `aᵀ · b` (weight gradient), computed by the `gemm` crate straight from the
//! operands' memory (a transpose is a stride, never a copy) into an array that becomes the
//! result tensor as is.
//!
//! Why not Burn's matmul for these: burn-ndarray copies non-contiguous operands and multiplies a
//! `[batch, tokens, in]` input one batch at a time (the weight gradient becomes a
//! `[batch, out, in]` product that is then summed), so a 1024→4096 projection's forward +
//! backward on 8×128 tokens ran at ~40 GFLOP/s where the GEMM itself does ~190 on the same two
//! cores (`cargo bench --bench hot_paths`).

use burn::tensor::Tensor;
use rayon::prelude::*;

use super::gemv::dense_matmul_f32;
use super::tensor::{cpu_tensor, with_operand, Operand};
use crate::backend::Cpu;

/// Up to this many rows of `a`, `a · bᵀ` reads `b` once with [`dense_matmul_f32`] (generation).
const GEMV_MAX_ROWS: usize = 8;
/// From this many rows of `a` on, `a · bᵀ` with `b: [n, k]`, `n ≤ k`, transposes `b` first.
const TRANSPOSE_MIN_ROWS: usize = 32;
/// Products below this many multiply-adds run on one thread.
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// `a · b` for operands of any strides, into a new row-major tensor.
fn product(a: Operand, b: Operand) -> Tensor<Cpu, 2> {
    assert_eq!(a.cols, b.rows, "inner dimensions of a product");
    let (m, k, n) = (a.rows, a.cols, b.cols);
    // Not zeroed first: with `read_dst = false` the gemm crate writes every element of `dst`
    // without reading it (also for k = 0, where it writes zeros).
    let mut out = Vec::<f32>::with_capacity(m * n);
    let parallelism = if m * n * k < PARALLEL_MIN_WORK {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    };
    if m > 0 && n > 0 {
        // SAFETY: both operands are valid for their shapes and strides (`with_operand` keeps
        // their storage alive), `out` is a row-major m × n buffer, and `read_dst = false` means
        // its contents are not read (alpha is ignored): dst = 1 · a · b sets all m · n elements.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.ptr,
                a.col_stride,
                a.row_stride,
                b.ptr,
                b.col_stride,
                b.row_stride,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
            out.set_len(m * n);
        }
    }
    cpu_tensor(out, m, n)
}

/// `a · bᵀ` for `a: [m, k]`, `b: [n, k]`.
pub fn matmul_nt(a: Tensor<Cpu, 2>, b: Tensor<Cpu, 2>) -> Tensor<Cpu, 2> {
    with_operand(a, |a| {
        with_operand(b, |b| match (a.row_major(), b.row_major()) {
            (Some(x), Some(w)) if a.rows <= GEMV_MAX_ROWS => {
                let mut out = vec![0f32; a.rows * b.rows];
                dense_matmul_f32(w, b.rows, b.cols, x, &mut out);
                cpu_tensor(out, a.rows, b.rows)
            }
            // The gemm crate runs `a · bᵀ` at ~110-160 GFLOP/s where `a · b` runs at ~190-210 when
            // n ≤ k (2 cores, AVX-512; e.g. the MLP's down projection 512×2048×768: 107 vs 193),
            // so a dense `b` is transposed once (n·k copies against m·n·k multiply-adds).
            (_, Some(w)) if a.rows >= TRANSPOSE_MIN_ROWS && 0 < b.rows && b.rows <= b.cols => {
                let wt = transpose(w, b.rows, b.cols);
                product(
                    a,
                    Operand {
                        ptr: wt.as_ptr(),
                        rows: b.cols,
                        cols: b.rows,
                        row_stride: b.rows as isize,
                        col_stride: 1,
                    },
                )
            }
            _ => product(a, b.transposed()),
        })
    })
}

/// The transpose `[cols, rows]` of a row-major `[rows, cols]` matrix, 16 columns at a time (one
/// cache line of each source row), in parallel.
fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 16;
    let mut out = vec![0f32; rows * cols];
    out.par_chunks_mut(rows * TILE).enumerate().for_each(|(tile, out)| {
        let c0 = tile * TILE;
        let width = out.len() / rows;
        for r in 0..rows {
            for (j, &v) in w[r * cols + c0..r * cols + c0 + width].iter().enumerate() {
                out[j * rows + r] = v;
            }
        }
    });
    out
}

/// `a · b` for `a: [m, k]`, `b: [k, n]`.
pub fn matmul_nn(a: Tensor<Cpu, 2>, b: Tensor<Cpu, 2>) -> Tensor<Cpu, 2> {
    with_operand(a, |a| with_operand(b, |b| product(a, b)))
}

/// `aᵀ · b` for `a: [k, m]`, `b: [k, n]`.
pub fn matmul_tn(a: Tensor<Cpu, 2>, b: Tensor<Cpu, 2>) -> Tensor<Cpu, 2> {
    with_operand(a, |a| with_operand(b, |b| product(a.transposed(), b)))
}
