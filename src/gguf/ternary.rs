//! ggml's ternary block types, written from Tritter's codes and scales: each block holds 256
//! values of one row and one f16 scale `d`. ggml's own quantizer sets `d` to the block's absmax,
//! which for `γ · Wq` is γ; Tritter writes γ for every block (an all-zero block decodes to zeros
//! under any `d`), so the ternary codes are kept exactly and γ is rounded to f16.
//! Layouts follow `quantize_row_tq{1,2}_0_ref` in ggml's `ggml-quants.c`.

use half::f16;

use super::file::GgmlType;

/// Values per block.
pub const BLOCK: usize = 256;

/// One block of `values` (256 of -1, 0, 1) with scale `d`, in `ty`'s layout.
pub fn encode_block(ty: GgmlType, values: &[i8], d: f32, out: &mut Vec<u8>) {
    debug_assert_eq!(values.len(), BLOCK);
    let trit = |i: usize| (values[i] + 1) as u8;
    match ty {
        GgmlType::Tq2_0 => {
            // Byte m of each 32-byte group j holds values j·128 + m + 32·n in bits 2n..2n+2.
            for group in 0..BLOCK / 128 {
                for m in 0..32 {
                    let byte = (0..4).fold(0u8, |q, n| q | trit(group * 128 + m + 32 * n) << (2 * n));
                    out.push(byte);
                }
            }
        }
        GgmlType::Tq1_0 => {
            // 32 bytes of 5 values (values m + 32·n), 16 bytes of 5 (160 + m + 16·n), then
            // 4 bytes of 4 (240 + j + 4·n), each a base-3 number (first value most significant)
            // scaled to a byte by ceil(q · 256 / 243).
            let pack = |first: usize, stride: usize, count: usize| {
                let q = (0..count).fold(0u16, |q, n| q * 3 + trit(first + stride * n) as u16);
                let q = if count == 4 { q * 3 } else { q };
                ((q * 256).div_ceil(243)) as u8
            };
            out.extend((0..32).map(|m| pack(m, 32, 5)));
            out.extend((0..16).map(|m| pack(160 + m, 16, 5)));
            out.extend((0..4).map(|j| pack(240 + j, 4, 4)));
        }
        _ => unreachable!("{ty:?} is not a ternary block type"),
    }
    out.extend(f16::from_f32(d).to_le_bytes());
}

/// Ternary `values` (rows of a multiple of 256) with one scale per block of 256, as `ty` blocks.
pub fn encode_blocks(ty: GgmlType, values: &[i8], block_scales: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / BLOCK * ty.block().1);
    for (chunk, &d) in values.chunks(BLOCK).zip(block_scales) {
        encode_block(ty, chunk, d, &mut out);
    }
    out
}
