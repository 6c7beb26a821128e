//! Interchange formats: `bitnet-quantize` ternary weights.

pub mod bitnet;

pub use crate::checkpoint::{FloatFormat, PackedSize};
pub use bitnet::{export_bitnet, BitnetTernaryWeight};
