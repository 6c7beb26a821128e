//! transformers' packed ("offline") BitNet weights: `uint8 [out/4, in]` where packed row `r`
//! holds rows `r, r + R, r + 2R, r + 3R` (`R = out/4`) in bit pairs 0–1, 2–3, 4–5, 6–7 as
//! `value + 1`, with a per-tensor `weight_scale` (`integrations/bitnet.py`: `pack_weights`,
//! `unpack_weights`). `AutoBitLinear` multiplies the product by the scale, `BitLinear` divides by
//! it, so `γ` is the scale or its reciprocal. Ternary values stored as floats are accepted too.

use safetensors::tensor::Dtype;

use super::tensors::StoredTensor;
use crate::checkpoint::format::check_shape;
use crate::error::{Result, TritterError};

/// Rows of a projection held by one packed row.
const ROWS_PER_BYTE: usize = 4;

/// A checked offline weight: how its values are stored and its scale γ (`W̃ = γ · Wq`).
#[derive(Debug, Clone, Copy)]
pub struct OfflineWeight {
    /// `uint8` packed (else float ternary values).
    packed: bool,
    gamma: f32,
}

impl OfflineWeight {
    /// Checks the weight's dtype and shape against the projection's `[out, in]` and reads γ.
    pub fn check(weight: &StoredTensor, scale: &StoredTensor, shape: &[usize], divide_by_scale: bool) -> Result<Self> {
        let load_error = |tensor: &StoredTensor, reason: String| TritterError::TensorLoad {
            path: tensor.path.to_path_buf(),
            tensor: tensor.name.to_string(),
            reason,
        };
        let values = scale.floats()?;
        let &[stored] = values.as_slice() else {
            return Err(load_error(
                scale,
                format!("has {} values; Tritter imports one scale per tensor", values.len()),
            ));
        };
        let gamma = if divide_by_scale { 1.0 / stored } else { stored };
        if !(gamma.is_finite() && gamma > 0.0) {
            return Err(load_error(scale, format!("scale {stored} gives γ = {gamma}, not a finite positive number")));
        }
        let [rows, cols] = [shape[0], shape[1]];
        let packed = weight.dtype() == Dtype::U8;
        let expected = if packed { vec![rows / ROWS_PER_BYTE, cols] } else { vec![rows, cols] };
        if packed && rows % ROWS_PER_BYTE != 0 {
            return Err(load_error(weight, format!("{rows} output rows do not pack 4 to a byte")));
        }
        if !packed && !matches!(weight.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(load_error(
                weight,
                format!("dtype {:?}; a packed weight is U8 (or float ternary values)", weight.dtype()),
            ));
        }
        check_shape(weight.path, weight.name, &weight.view, &expected)?;
        Ok(Self { packed, gamma })
    }

    /// γ, the scale of `W̃ = γ · Wq`.
    pub fn gamma(&self) -> f32 {
        self.gamma
    }
}

/// The ternary values `[rows, cols]` row-major and γ.
pub fn values(stored: &StoredTensor, rows: usize, cols: usize, weight: OfflineWeight) -> Result<(Vec<i8>, f32)> {
    let bad = |index: usize, what: String| TritterError::TensorLoad {
        path: stored.path.to_path_buf(),
        tensor: stored.name.to_string(),
        reason: format!("element {index} {what}; ternary codes are 0, 1, 2 (values -1, 0, 1)"),
    };
    let mut values = vec![0i8; rows * cols];
    if weight.packed {
        let group = rows / ROWS_PER_BYTE;
        for (i, &byte) in stored.view.data().iter().enumerate() {
            let (r, c) = (i / cols, i % cols);
            for j in 0..ROWS_PER_BYTE {
                let code = (byte >> (2 * j)) & 3;
                if code == 3 {
                    return Err(bad(i, format!("holds code 3 in bits {}–{}", 2 * j, 2 * j + 1)));
                }
                values[(r + j * group) * cols + c] = code as i8 - 1;
            }
        }
    } else {
        for (i, v) in stored.floats()?.into_iter().enumerate() {
            if !matches!(v, -1.0 | 0.0 | 1.0) {
                return Err(bad(i, format!("is {v}")));
            }
            values[i] = v as i8;
        }
    }
    Ok((values, weight.gamma))
}

/// Latent weights that quantize back to exactly `values` and γ: `W = Wq · γ / p` with
/// `p = mean|Wq|`, so `mean|W| = γ` and `W / γ = Wq / p`, which rounds to `Wq` (`p ≤ 1`).
pub fn latent(values: &[i8], gamma: f32) -> Vec<f32> {
    let nonzero = values.iter().filter(|&&v| v != 0).count();
    if nonzero == 0 {
        return vec![0.0; values.len()];
    }
    let magnitude = (gamma as f64 * values.len() as f64 / nonzero as f64) as f32;
    values.iter().map(|&v| v as f32 * magnitude).collect()
}
