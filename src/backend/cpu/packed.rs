//! The CPU kernel of the packed inference form: `y = (int8(x) · Wqᵀ) · γ / s` straight from the
//! 2-bit codes of a [`PackedTernary`], accumulated in integers, never building an f32 weight.
//!
//! Why it is fast: code `c = value + 1 ∈ {0, 1, 2}` is an unsigned byte once masked out of its
//! word, so `Σ c·q` is what x86's `maddubs` (u8 × i8 → i16 pairs) computes, 32 lanes at a time,
//! and `Σ value·q = Σ c·q − Σ q` needs only the per-token sum `Σ q`. Byte `i` of a 128-column
//! block (8 words) holds the codes of columns `4i .. 4i + 4`, so shifting the block by `2k` and
//! masking yields the codes of columns `4i + k`; the activations are permuted once per token to
//! match (`xp[32k + i] = q[4i + k]`), shared by every row. No multiplies by weights happen in the
//! portable path either: it is the same sum in plain integer code.

use rayon::prelude::*;

use super::quant::{round_clamped, token_scale};
use super::tensor::SharedOut;
use crate::config::WeightScale;
use crate::quant::{code_at, PackedTernary, CODES_PER_WORD};

/// Columns per block: 8 words of 16 codes, one 256-bit load.
const BLOCK: usize = 128;
const WORDS_PER_BLOCK: usize = BLOCK / CODES_PER_WORD;
/// Tokens multiplied with one decoded row per pass of [`rows_code_sums_avx2`] (its accumulators
/// and the row's four code vectors stay in registers).
const TOKENS_PER_PASS: usize = 4;
/// Output rows per parallel task.
const ROWS_PER_TASK: usize = 32;
/// Fewest multiply-adds (or code-activation products) per parallel task.
const MIN_TASK_WORK: usize = 1 << 16;

/// Which inner loop runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuKernel {
    /// Plain Rust, any CPU.
    Portable,
    /// x86-64 AVX2 (`maddubs`), chosen at run time when the CPU has it.
    Avx2,
}

impl CpuKernel {
    /// The fastest kernel this CPU supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Self::Avx2;
        }
        Self::Portable
    }

    /// Whether this CPU can run the kernel.
    pub fn is_available(self) -> bool {
        match self {
            Self::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(not(target_arch = "x86_64"))]
            Self::Avx2 => false,
        }
    }
}

/// One token's int8 activation in the kernel's layout.
struct QuantizedToken {
    /// Block-permuted codes, zero past `cols`, length = blocks · 128.
    permuted: Vec<i8>,
    /// Plain codes, for segments that do not start on a word.
    plain: Vec<i8>,
    /// `Σ q` per scale segment.
    segment_sums: Vec<i32>,
    /// The scale `s = 127 / max(max|x|, ε)`.
    scale: f32,
}

/// Per-token absmax int8 quantization exactly as [`crate::quant::quantize_activation_int8`]
/// computes it (round half to even, clamp to i8; the training path's quantizer), laid out for
/// the kernel.
fn quantize_token(x: &[f32], blocks: usize, segment: usize) -> QuantizedToken {
    let scale = token_scale(x);
    let plain: Vec<i8> = x.iter().map(|&v| round_clamped(v * scale, -128.0, 127.0) as i8).collect();
    let mut permuted = vec![0i8; blocks * BLOCK];
    for (c, &q) in plain.iter().enumerate() {
        let (block, within) = (c / BLOCK, c % BLOCK);
        permuted[block * BLOCK + 32 * (within % 4) + within / 4] = q;
    }
    let segment_sums = plain.chunks(segment).map(|s| s.iter().map(|&q| q as i32).sum()).collect();
    QuantizedToken { permuted, plain, segment_sums, scale }
}

/// `Σ code·q` over whole words `words` of a row whose first word is word `first` of the row.
fn code_dot_words(kernel: CpuKernel, words: &[u32], first: usize, xp: &[i8]) -> i32 {
    let mut sum = 0i32;
    let mut w = 0;
    // Leading words up to a block boundary, then whole blocks, then the tail.
    while w < words.len() && !(first + w).is_multiple_of(WORDS_PER_BLOCK) {
        sum += code_dot_word(words[w], first + w, xp);
        w += 1;
    }
    let whole = (words.len() - w) / WORDS_PER_BLOCK;
    if whole > 0 {
        let start_block = (first + w) / WORDS_PER_BLOCK;
        let block_x = &xp[start_block * BLOCK..(start_block + whole) * BLOCK];
        sum += code_dot_blocks(kernel, &words[w..w + whole * WORDS_PER_BLOCK], block_x);
        w += whole * WORDS_PER_BLOCK;
    }
    // The tail, under one block, as a whole block padded with code 0 (which adds nothing): rows
    // narrower than a block (a 64-wide model) would otherwise run the scalar word loop only.
    if w < words.len() {
        let mut padded = [0u32; WORDS_PER_BLOCK];
        padded[..words.len() - w].copy_from_slice(&words[w..]);
        let block = (first + w) / WORDS_PER_BLOCK;
        sum += code_dot_blocks(kernel, &padded, &xp[block * BLOCK..(block + 1) * BLOCK]);
    }
    sum
}

/// `Σ code·q` over whole blocks with `kernel`'s loop.
fn code_dot_blocks(kernel: CpuKernel, words: &[u32], xp: &[i8]) -> i32 {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx2` is only used after `is_available` confirmed the CPU feature.
        CpuKernel::Avx2 => unsafe { code_dot_blocks_avx2(words, xp) },
        _ => code_dot_blocks_portable(words, xp),
    }
}

/// `Σ code·q` of one word (word index `word_index` in its row) against the permuted codes.
fn code_dot_word(word: u32, word_index: usize, xp: &[i8]) -> i32 {
    let block = &xp[(word_index / WORDS_PER_BLOCK) * BLOCK..];
    let byte0 = 4 * (word_index % WORDS_PER_BLOCK);
    let mut sum = 0i32;
    for b in 0..4 {
        let byte = (word >> (8 * b)) as u8;
        for k in 0..4 {
            sum += ((byte >> (2 * k)) & 3) as i32 * block[32 * k + byte0 + b] as i32;
        }
    }
    sum
}

/// `Σ code·q` over whole blocks, plain Rust (the compiler vectorises the inner loop).
fn code_dot_blocks_portable(words: &[u32], xp: &[i8]) -> i32 {
    let mut sum = 0i32;
    for (block_words, block_x) in words.chunks_exact(WORDS_PER_BLOCK).zip(xp.chunks_exact(BLOCK)) {
        let mut bytes = [0u8; 32];
        for (w, word) in block_words.iter().enumerate() {
            bytes[4 * w..4 * w + 4].copy_from_slice(&word.to_le_bytes());
        }
        for k in 0..4 {
            let x = &block_x[32 * k..32 * k + 32];
            sum += bytes.iter().zip(x).map(|(&b, &q)| ((b >> (2 * k)) & 3) as i32 * q as i32).sum::<i32>();
        }
    }
    sum
}

/// `Σ code·q` over whole blocks with AVX2: per block one 32-byte load of codes, four
/// shift-and-mask decodes and four `maddubs` against the permuted activations.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn code_dot_blocks_avx2(words: &[u32], xp: &[i8]) -> i32 {
    use std::arch::x86_64::*;
    debug_assert_eq!(words.len() / WORDS_PER_BLOCK * BLOCK, xp.len());
    let mut acc = _mm256_setzero_si256();
    for b in 0..words.len() / WORDS_PER_BLOCK {
        let codes = decode_block_avx2(words.as_ptr().add(b * WORDS_PER_BLOCK));
        acc = block_dot_avx2(acc, &codes, xp.as_ptr().add(b * BLOCK) as *const __m256i);
    }
    horizontal_sum_avx2(acc)
}

/// A block's codes (8 words from `words`) as four vectors of unsigned bytes: vector `k` holds
/// the codes of columns `4i + k`, matching the activations' permutation.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn decode_block_avx2(words: *const u32) -> [std::arch::x86_64::__m256i; 4] {
    use std::arch::x86_64::*;
    let mask = _mm256_set1_epi8(3);
    let v = _mm256_loadu_si256(words as *const __m256i);
    [
        _mm256_and_si256(v, mask),
        _mm256_and_si256(_mm256_srli_epi16(v, 2), mask),
        _mm256_and_si256(_mm256_srli_epi16(v, 4), mask),
        _mm256_and_si256(_mm256_srli_epi16(v, 6), mask),
    ]
}

/// `acc + Σ c·x` over one block: `c` from [`decode_block_avx2`], `x` the block's 128 permuted
/// activations.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn block_dot_avx2(
    acc: std::arch::x86_64::__m256i,
    c: &[std::arch::x86_64::__m256i; 4],
    x: *const std::arch::x86_64::__m256i,
) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    // Each i16 lane: at most 4 pairs of 2 · 128, no saturation.
    let p01 = _mm256_add_epi16(
        _mm256_maddubs_epi16(c[0], _mm256_loadu_si256(x)),
        _mm256_maddubs_epi16(c[1], _mm256_loadu_si256(x.add(1))),
    );
    let p23 = _mm256_add_epi16(
        _mm256_maddubs_epi16(c[2], _mm256_loadu_si256(x.add(2))),
        _mm256_maddubs_epi16(c[3], _mm256_loadu_si256(x.add(3))),
    );
    _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_add_epi16(p01, p23), _mm256_set1_epi16(1)))
}

/// The sum of the eight `i32` lanes of `acc`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn horizontal_sum_avx2(acc: std::arch::x86_64::__m256i) -> i32 {
    use std::arch::x86_64::*;
    let sum128 = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    let sum64 = _mm_add_epi32(sum128, _mm_shuffle_epi32(sum128, 0b01_00_11_10));
    let sum32 = _mm_add_epi32(sum64, _mm_shuffle_epi32(sum64, 0b10_11_00_01));
    _mm_cvtsi128_si32(sum32)
}

/// `Σ code·q` of whole rows (`row_words(i)` for `i < rows`) against each of `tokens`, into
/// `sums: [rows, tokens]`, with AVX2. The rows' codes are decoded once ([`decode_block_avx2`]),
/// then multiplied with [`TOKENS_PER_PASS`] tokens at a time, all rows per pass, so those
/// tokens' activations stay in L1 while the rows go by; the per-token path decodes a row again
/// for every token and streams every token's activations once per row.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rows_code_sums_avx2<'a>(
    rows: usize,
    row_words: impl Fn(usize) -> &'a [u32],
    tokens: &[QuantizedToken],
    sums: &mut [i32],
) {
    let per_row = row_words(0).len().div_ceil(WORDS_PER_BLOCK);
    let mut decoded = Vec::with_capacity(rows * per_row);
    for i in 0..rows {
        for block in row_words(i).chunks(WORDS_PER_BLOCK) {
            // A partial last block is padded with code 0, against activations that are 0 there.
            let mut padded = [0u32; WORDS_PER_BLOCK];
            padded[..block.len()].copy_from_slice(block);
            decoded.push(decode_block_avx2(padded.as_ptr()));
        }
    }
    let n_tokens = tokens.len();
    for (pass, xs) in tokens.chunks(TOKENS_PER_PASS).enumerate() {
        let t0 = pass * TOKENS_PER_PASS;
        for (i, row) in decoded.chunks_exact(per_row).enumerate() {
            let out = &mut sums[i * n_tokens + t0..i * n_tokens + t0 + xs.len()];
            match xs.len() {
                4 => out.copy_from_slice(&decoded_dots_avx2::<4>(row, xs)),
                3 => out.copy_from_slice(&decoded_dots_avx2::<3>(row, xs)),
                2 => out.copy_from_slice(&decoded_dots_avx2::<2>(row, xs)),
                _ => out.copy_from_slice(&decoded_dots_avx2::<1>(row, xs)),
            }
        }
    }
}

/// `Σ code·q` of a decoded row (one [`decode_block_avx2`] per block) against `N` tokens.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn decoded_dots_avx2<const N: usize>(
    decoded: &[[std::arch::x86_64::__m256i; 4]],
    tokens: &[QuantizedToken],
) -> [i32; N] {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_si256(); N];
    for (b, codes) in decoded.iter().enumerate() {
        for (acc, token) in acc.iter_mut().zip(tokens) {
            debug_assert!(token.permuted.len() >= (b + 1) * BLOCK);
            *acc = block_dot_avx2(*acc, codes, token.permuted.as_ptr().add(b * BLOCK) as *const __m256i);
        }
    }
    acc.map(|a| horizontal_sum_avx2(a))
}

/// Columns per scale segment: the whole row unless scales are per group.
fn segment_len(p: &PackedTernary) -> usize {
    match p.weight_scale {
        WeightScale::PerGroup(n) => n,
        WeightScale::PerTensor | WeightScale::PerRow => p.cols.max(1),
    }
}

/// `Σ value·q` of row `r` over segment `g` (columns `g·len .. (g+1)·len`).
fn ternary_dot(kernel: CpuKernel, p: &PackedTernary, r: usize, g: usize, len: usize, token: &QuantizedToken) -> i32 {
    let row = p.row_codes(r);
    let (c0, c1) = (g * len, ((g + 1) * len).min(p.cols));
    let code_sum = if c0 % CODES_PER_WORD == 0 && (c1 % CODES_PER_WORD == 0 || c1 == p.cols) {
        // Whole words (a row's last word is padded with value 0, whose q are 0 too).
        let (w0, w1) = (c0 / CODES_PER_WORD, c1.div_ceil(CODES_PER_WORD));
        code_dot_words(kernel, &row[w0..w1], w0, &token.permuted)
    } else {
        (c0..c1).map(|c| code_at(row, c) as i32 * token.plain[c] as i32).sum()
    };
    code_sum - token.segment_sums[g]
}

/// `x · W̃ᵀ` for `x: [tokens, cols]` row-major: `[tokens, rows]`, with int8 activations
/// ([`packed_matmul_int8`]) or full-precision ones ([`packed_matmul_f32`]).
pub fn packed_matmul(p: &PackedTernary, int8_activations: bool, x: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; x.len() / p.cols.max(1) * p.rows];
    match int8_activations {
        true => packed_matmul_int8(CpuKernel::detect(), p, x, &mut out),
        false => packed_matmul_f32(p, x, &mut out),
    }
    out
}

/// `out = x · W̃ᵀ` with int8 per-token activations: `x` is `[tokens, cols]` row-major, `out`
/// `[tokens, rows]`. Equals the fake-quantized forward `x̃ · (γ · Wq)ᵀ` up to float rounding.
pub fn packed_matmul_int8(kernel: CpuKernel, p: &PackedTernary, x: &[f32], out: &mut [f32]) {
    assert!(kernel.is_available(), "{kernel:?} is not supported by this CPU");
    let tokens = check_lengths(p, x, out);
    let len = segment_len(p);
    let segments = p.cols.div_ceil(len);
    let blocks = p.cols.div_ceil(BLOCK);
    let quantized: Vec<QuantizedToken> = x.par_chunks(p.cols.max(1)).map(|t| quantize_token(t, blocks, len)).collect();
    // Several tokens against rows with one scale each: each row decoded once for all of them.
    #[cfg(target_arch = "x86_64")]
    if kernel == CpuKernel::Avx2 && tokens > 1 && segments == 1 {
        for_each_task(p.rows, p.cols, tokens, out, |rows, block| {
            let mut sums = vec![0i32; block.len()];
            // SAFETY: `Avx2` is only used after `is_available` confirmed the CPU feature (asserted
            // above); every token's permuted codes cover the rows' blocks.
            unsafe { rows_code_sums_avx2(rows.len(), |i| p.row_codes(rows.start + i), &quantized, &mut sums) };
            for (r, (row_out, row_sums)) in rows.zip(block.chunks_mut(tokens).zip(sums.chunks(tokens))) {
                let scale = p.scale_at(r, 0);
                for ((out, &sum), token) in row_out.iter_mut().zip(row_sums).zip(&quantized) {
                    *out = (sum - token.segment_sums[0]) as f32 * scale / token.scale;
                }
            }
        });
        return;
    }
    // One token (decoding) against rows with one scale and whole blocks each: a row is one
    // AVX2 pass and a scale, without the segment and tail handling below (~20 ns a row, which
    // for the 83K rows of a `small_100m` token was a fifth of its projections' time).
    #[cfg(target_arch = "x86_64")]
    if kernel == CpuKernel::Avx2 && tokens == 1 && segments == 1 && p.cols.is_multiple_of(BLOCK) {
        let token = &quantized[0];
        for_each_task(p.rows, p.cols, 1, out, |rows, block| {
            for (r, out) in rows.zip(block) {
                // SAFETY: `Avx2` is only used after `is_available` confirmed the CPU feature
                // (asserted above); a row is whole blocks, as many as the token's permuted codes.
                let sum = unsafe { code_dot_blocks_avx2(p.row_codes(r), &token.permuted) };
                *out = (sum - token.segment_sums[0]) as f32 * p.scale_at(r, 0) / token.scale;
            }
        });
        return;
    }
    for_each_row(p.rows, p.cols, tokens, out, |r, row_out| {
        for (t, token) in quantized.iter().enumerate() {
            let acc: f32 =
                (0..segments).map(|g| ternary_dot(kernel, p, r, g, len, token) as f32 * p.scale_at(r, g * len)).sum();
            row_out[t] = acc / token.scale;
        }
    });
}

/// `out = x · W̃ᵀ` with full-precision activations (`activation_bits = None`), shaped as in
/// [`packed_matmul_int8`].
pub fn packed_matmul_f32(p: &PackedTernary, x: &[f32], out: &mut [f32]) {
    let tokens = check_lengths(p, x, out);
    let len = segment_len(p);
    let segments = p.cols.div_ceil(len);
    for_each_row(p.rows, p.cols, tokens, out, |r, row_out| {
        let row = p.row_codes(r);
        for (t, x) in x.chunks(p.cols.max(1)).enumerate() {
            row_out[t] = (0..segments)
                .map(|g| {
                    let (c0, c1) = (g * len, ((g + 1) * len).min(p.cols));
                    let dot: f32 = (c0..c1).map(|c| [-x[c], 0.0, x[c]][code_at(row, c).min(2) as usize]).sum();
                    dot * p.scale_at(r, c0)
                })
                .sum();
        }
    });
}

/// Tokens in `x`; panics unless `x` is `[tokens, cols]` and `out` `[tokens, rows]`.
fn check_lengths(p: &PackedTernary, x: &[f32], out: &[f32]) -> usize {
    let tokens = x.len() / p.cols.max(1);
    assert_eq!(tokens * p.cols, x.len(), "activation length {} is not a multiple of {}", x.len(), p.cols);
    assert_eq!(out.len(), tokens * p.rows, "output length {} for {tokens} tokens × {} rows", out.len(), p.rows);
    tokens
}

/// Runs `f(r, outputs of row r for every token)` for every row of `cols` columns, rows in
/// parallel (see [`for_each_task`]).
pub(super) fn for_each_row(
    rows: usize,
    cols: usize,
    tokens: usize,
    out: &mut [f32],
    f: impl Fn(usize, &mut [f32]) + Sync,
) {
    for_each_task(rows, cols, tokens, out, |rows, block| {
        for (r, row_out) in rows.zip(block.chunks_mut(tokens.max(1))) {
            f(r, row_out);
        }
    });
}

/// Runs `f(rows, their outputs [rows, tokens])` for consecutive ranges of rows of `cols` columns,
/// ranges in parallel, each task writing its rows of `out: [tokens, rows]`. A task gets at least
/// [`MIN_TASK_WORK`] multiply-adds: waking a worker costs more than a small model's rows take
/// (`test`-preset packed generation went from ~2000 to ~3400 tokens/s once its 64×64 products
/// stopped being split in two).
fn for_each_task(
    rows: usize,
    cols: usize,
    tokens: usize,
    out: &mut [f32],
    f: impl Fn(std::ops::Range<usize>, &mut [f32]) + Sync,
) {
    let rows_per_task = ROWS_PER_TASK.max(MIN_TASK_WORK / (cols * tokens).max(1));
    let shared = SharedOut(out.as_mut_ptr());
    (0..rows.div_ceil(rows_per_task)).into_par_iter().for_each(|task| {
        let range = task * rows_per_task..((task + 1) * rows_per_task).min(rows);
        let mut block = vec![0f32; range.len() * tokens]; // [rows, tokens]
        f(range.clone(), &mut block);
        // Token by token, so that each token's writes are consecutive.
        for t in 0..tokens {
            for (i, r) in range.clone().enumerate() {
                // SAFETY: element (t, r) of `out: [tokens, rows]`, in bounds; row r is this task's.
                unsafe { *shared.at(t * rows + r) = block[i * tokens + t] };
            }
        }
    });
}
