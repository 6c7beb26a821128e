//! The two quantizers of BitNet b1.58: absmean ternary weights and per-token absmax int8
//! activations. Plain tensor ops, so they run (and are the reference) on every backend.

use burn::tensor::{backend::Backend, Tensor};

use crate::config::{WeightQuantEps, WeightScale};

/// ε of the weight quantizer: added to γ before dividing (`Wq = clamp(round(W / (γ + ε)), -1, 1)`)
/// or, with [`WeightQuantEps::Clamp`], γ's floor.
pub const WEIGHT_EPS: f32 = 1e-5;
/// Floor of the per-token absmax: `s = 127 / max(max|x|, ε)`.
pub const ACTIVATION_EPS: f32 = 1e-5;

impl WeightQuantEps {
    /// `(scale, divisor)` of a group with absmean `gamma`: `Wq = round(W / divisor)`, `W̃ = scale · Wq`.
    #[inline(always)]
    pub fn scale_and_divisor(self, gamma: f32) -> (f32, f32) {
        match self {
            WeightQuantEps::Add => (gamma, gamma + WEIGHT_EPS),
            WeightQuantEps::Clamp => {
                let floored = gamma.max(WEIGHT_EPS);
                (floored, floored)
            }
        }
    }
}

/// What a projection quantizes. `weight_scale: None` makes it a plain full-precision linear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TernaryQuant {
    /// Ternary weights with this scale granularity, or full precision.
    pub weight_scale: Option<WeightScale>,
    /// How ε enters the weight quantizer.
    pub weight_eps: WeightQuantEps,
    /// Per-token absmax activation quantization (only 8 bits exists), or none.
    pub activation_bits: Option<u32>,
}

impl TernaryQuant {
    /// A full-precision linear layer (`bitnet = false`).
    pub const FULL_PRECISION: Self =
        Self { weight_scale: None, weight_eps: WeightQuantEps::Add, activation_bits: None };

    /// BitNet b1.58: ternary weights and (optionally) int8 activations.
    pub fn bitnet(weight_scale: WeightScale, weight_eps: WeightQuantEps, activation_bits: Option<u32>) -> Self {
        Self { weight_scale: Some(weight_scale), weight_eps, activation_bits }
    }
}

/// Views `[out, in]` as `[rows, groups, group_len]` so that every scale group is one
/// contiguous run along the last dim, whatever the granularity.
pub(crate) fn group_shape(dims: [usize; 2], scale: WeightScale) -> [usize; 3] {
    let [out, inp] = dims;
    match scale {
        WeightScale::PerTensor => [1, 1, out * inp],
        WeightScale::PerRow => [out, 1, inp],
        WeightScale::PerGroup(n) => {
            assert!(n > 0 && inp % n == 0, "per_group size {n} must divide the input dim {inp}");
            [out, inp / n, n]
        }
    }
}

/// The absmean scales γ = mean(|W|) of each scale group, shaped `[rows, groups]`:
/// `[1, 1]` per tensor, `[out, 1]` per row, `[out, in / N]` per group of `N` inputs.
pub fn absmean_scales<B: Backend>(w: Tensor<B, 2>, scale: WeightScale) -> Tensor<B, 2> {
    let [rows, groups, len] = group_shape(w.dims(), scale);
    w.abs().reshape([rows, groups, len]).mean_dim(2).reshape([rows, groups])
}

/// Ternary codes in {-1, 0, +1} (as floats, shaped like `w`) and their scales (shaped as
/// [`absmean_scales`] says): `Wq = clamp(round(W / (γ + ε)), -1, 1)` with scale γ, or with
/// [`WeightQuantEps::Clamp`] `Wq = clamp(round(W / max(γ, ε)), -1, 1)` with scale `max(γ, ε)`.
pub fn quantize_weight_absmean<B: Backend>(
    w: Tensor<B, 2>,
    scale: WeightScale,
    eps: WeightQuantEps,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let dims = w.dims();
    let [rows, groups, len] = group_shape(dims, scale);
    let grouped = w.reshape([rows, groups, len]);
    let gamma = grouped.clone().abs().mean_dim(2);
    let (gamma, divisor) = match eps {
        WeightQuantEps::Add => (gamma.clone(), gamma + WEIGHT_EPS),
        WeightQuantEps::Clamp => {
            let floored = gamma.clamp_min(WEIGHT_EPS);
            (floored.clone(), floored)
        }
    };
    let codes = (grouped / divisor).round().clamp(-1.0, 1.0);
    (codes.reshape(dims), gamma.reshape([rows, groups]))
}

/// `W̃ = γ · Wq`: the ternary weight the forward pass multiplies with, shaped like `w`.
pub fn fake_quantize_weight<B: Backend>(w: Tensor<B, 2>, scale: WeightScale, eps: WeightQuantEps) -> Tensor<B, 2> {
    let (codes, gamma) = quantize_weight_absmean(w, scale, eps);
    scale_codes(codes, gamma, scale)
}

/// `γ · Wq` from the codes `[out, in]` and scales (shaped as [`absmean_scales`] says).
pub fn scale_codes<B: Backend>(codes: Tensor<B, 2>, gamma: Tensor<B, 2>, scale: WeightScale) -> Tensor<B, 2> {
    let dims = codes.dims();
    let [rows, groups, len] = group_shape(dims, scale);
    (codes.reshape([rows, groups, len]) * gamma.reshape([rows, groups, 1])).reshape(dims)
}

/// Per-token absmax int8 quantization over the last dim: returns the integer codes
/// `clamp(round(x · s), -128, 127)` (as floats) and the scales `s = 127 / max(max|x|, ε)`
/// (last dim 1).
pub fn quantize_activation_int8<B: Backend, const D: usize>(x: Tensor<B, D>) -> (Tensor<B, D>, Tensor<B, D>) {
    let absmax = x.clone().abs().max_dim(D - 1).clamp_min(ACTIVATION_EPS);
    let s = absmax.full_like(127.0) / absmax; // 127 / m in one rounding, as the spec writes it
    let codes = (x * s.clone()).round().clamp(-128.0, 127.0);
    (codes, s)
}

/// `x̃ = clamp(round(x · s), -128, 127) / s`: the activation the forward pass multiplies with.
pub fn fake_quantize_activation<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let (codes, s) = quantize_activation_int8(x);
    codes / s
}
