//! BitNet b1.58 ternary layers (spec section 3): the trainable `TernaryLinear`, its packed
//! inference form `PackedLinear`, and `Projection`, which holds either. The quantizers and the
//! packed format they use are in [`crate::quant`], the kernels behind them in [`crate::backend`].

pub mod linear;
pub mod packed_linear;
pub mod projection;

pub use crate::quant::{
    absmean_scales, fake_quantize_activation, fake_quantize_weight, quantize_activation_int8, quantize_weight_absmean,
    scale_codes, PackedTernary, TernaryQuant, ACTIVATION_EPS, CODES_PER_WORD, WEIGHT_EPS,
};
pub use linear::{ternary_linear, TernaryLinear, TernaryLinearConfig};
pub use packed_linear::PackedLinear;
pub use projection::Projection;
