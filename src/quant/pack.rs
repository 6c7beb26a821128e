//! The packed inference form of a ternary weight (spec section 3): each row of `Wq ∈ {-1, 0, 1}`
//! as 2-bit codes `value + 1`, 16 per `u32` (code `j` of a word in bits `2j..2j+2`, rows padded
//! to a whole word with code 1 = value 0), plus the absmean scales γ.

use burn::tensor::{backend::Backend, Tensor, TensorData};

use crate::config::{WeightQuantEps, WeightScale};
use crate::error::{Result, TritterError};
use crate::quant::quantize_weight_absmean;

/// Ternary values per `u32` word.
pub const CODES_PER_WORD: usize = 16;

/// A ternary matrix `[rows, cols]` as 2-bit codes and its scales.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedTernary {
    pub rows: usize,
    pub cols: usize,
    /// `rows × words_per_row` words, row-major.
    pub codes: Vec<u32>,
    /// γ per scale group, `[rows_of_scales, groups]` row-major (see [`crate::quant::absmean_scales`]).
    pub scales: Vec<f32>,
    pub weight_scale: WeightScale,
}

impl PackedTernary {
    /// Words per packed row.
    pub fn words_per_row(cols: usize) -> usize {
        cols.div_ceil(CODES_PER_WORD)
    }

    /// Packs ternary `values` (`rows × cols`, each -1, 0 or 1) with their `scales`.
    pub fn from_values(
        values: &[i8],
        rows: usize,
        cols: usize,
        scales: Vec<f32>,
        weight_scale: WeightScale,
    ) -> Result<Self> {
        if values.len() != rows * cols {
            return Err(TritterError::InvalidInput(format!("{} values for a {rows}×{cols} matrix", values.len())));
        }
        let words = Self::words_per_row(cols);
        let mut codes = vec![0x5555_5555u32; rows * words]; // every code 1 = value 0
        for (r, row) in values.chunks(cols.max(1)).enumerate().take(rows) {
            for (c, &v) in row.iter().enumerate() {
                if !(-1..=1).contains(&v) {
                    return Err(TritterError::InvalidInput(format!("value {v} at ({r}, {c}) is not ternary")));
                }
                let word = &mut codes[r * words + c / CODES_PER_WORD];
                let shift = 2 * (c % CODES_PER_WORD);
                *word = (*word & !(0b11 << shift)) | (((v + 1) as u32) << shift);
            }
        }
        Ok(Self { rows, cols, codes, scales, weight_scale })
    }

    /// Quantizes a latent weight `[out, in]` (absmean, as the training forward does) and packs it.
    pub fn quantize<B: Backend>(w: Tensor<B, 2>, weight_scale: WeightScale, eps: WeightQuantEps) -> Result<Self> {
        let [rows, cols] = w.dims();
        let (codes, gamma) = quantize_weight_absmean(w, weight_scale, eps);
        let values: Vec<i8> =
            codes.into_data().convert::<f32>().to_vec::<f32>().expect("f32").iter().map(|&v| v as i8).collect();
        let scales = gamma.into_data().convert::<f32>().to_vec::<f32>().expect("f32");
        Self::from_values(&values, rows, cols, scales, weight_scale)
    }

    /// The codes of row `r` (`words_per_row` words).
    pub fn row_codes(&self, r: usize) -> &[u32] {
        let words = Self::words_per_row(self.cols);
        &self.codes[r * words..(r + 1) * words]
    }

    /// The ternary values, `rows × cols`.
    pub fn values(&self) -> Vec<i8> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for r in 0..self.rows {
            let row = self.row_codes(r);
            out.extend((0..self.cols).map(|c| code_at(row, c) as i8 - 1));
        }
        out
    }

    /// γ of the weight at row `r`, column `c`.
    pub fn scale_at(&self, r: usize, c: usize) -> f32 {
        match self.weight_scale {
            WeightScale::PerTensor => self.scales[0],
            WeightScale::PerRow => self.scales[r],
            WeightScale::PerGroup(n) => self.scales[r * self.cols.div_ceil(n) + c / n],
        }
    }

    /// `γ · Wq` as an f32 tensor `[rows, cols]`: what the fake-quantized training forward uses.
    pub fn dequantize<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2> {
        let values = self.values();
        let data: Vec<f32> =
            values.iter().enumerate().map(|(i, &v)| v as f32 * self.scale_at(i / self.cols, i % self.cols)).collect();
        Tensor::from_data(TensorData::new(data, [self.rows, self.cols]), device)
    }

    /// Shape of [`Self::scales`]: `[1, 1]` per tensor, `[rows, 1]` per row, `[rows, cols / N]` per group.
    pub fn scale_shape(&self) -> [usize; 2] {
        match self.weight_scale {
            WeightScale::PerTensor => [1, 1],
            WeightScale::PerRow => [self.rows, 1],
            WeightScale::PerGroup(n) => [self.rows, self.cols.div_ceil(n)],
        }
    }

    /// Bytes of codes and scales.
    pub fn size_bytes(&self) -> usize {
        4 * (self.codes.len() + self.scales.len())
    }
}

/// Code (value + 1, in 0..=2) of column `c` of a packed row.
pub fn code_at(row: &[u32], c: usize) -> u32 {
    (row[c / CODES_PER_WORD] >> (2 * (c % CODES_PER_WORD))) & 0b11
}
