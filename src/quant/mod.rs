//! BitNet b1.58's number formats (spec section 3): the absmean ternary weight and per-token int8
//! activation quantizers as tensor ops, and the packed 2-bit form of a ternary matrix. Plain maths
//! and data, beneath the backends' kernels and the layers alike.

pub mod pack;
pub mod quantizers;

pub use pack::{code_at, PackedTernary, CODES_PER_WORD};
pub(crate) use quantizers::group_shape;
pub use quantizers::{
    absmean_scales, fake_quantize_activation, fake_quantize_weight, quantize_activation_int8, quantize_weight_absmean,
    scale_codes, TernaryQuant, ACTIVATION_EPS, WEIGHT_EPS,
};
