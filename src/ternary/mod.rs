//! BitNet b1.58 ternary layers (spec section 3): quantizers and the `TernaryLinear` module.

pub mod linear;
pub mod pack;
pub mod quant;

pub use linear::{ternary_linear, TernaryLinear, TernaryLinearConfig, TernaryQuant};
pub use pack::{PackedTernary, CODES_PER_WORD};
pub use quant::{
    absmean_scales, fake_quantize_activation, fake_quantize_weight, quantize_activation_int8,
    quantize_weight_absmean, ACTIVATION_EPS, WEIGHT_EPS,
};
