//! BitNet b1.58 ternary layers (spec section 3): the quantizers' maths, the packed format, the
//! trainable `TernaryLinear`, its packed inference form `PackedLinear`, and `Projection`, which
//! holds either. The backend kernels behind them are in [`crate::backend`].

pub mod linear;
pub mod pack;
pub mod packed_linear;
pub mod projection;
pub mod quant;

pub use linear::{ternary_linear, TernaryLinear, TernaryLinearConfig};
pub use pack::{PackedTernary, CODES_PER_WORD};
pub use packed_linear::PackedLinear;
pub use projection::Projection;
pub use quant::{
    absmean_scales, fake_quantize_activation, fake_quantize_weight, quantize_activation_int8, quantize_weight_absmean,
    scale_codes, TernaryQuant, ACTIVATION_EPS, WEIGHT_EPS,
};
