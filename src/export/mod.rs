//! Inference and interchange formats: packed checkpoints and `bitnet-quantize` ternary weights.

pub mod bitnet;
pub mod packed;

pub use bitnet::{export_bitnet, BitnetTernaryWeight};
pub use packed::{FloatFormat, PackedSize};
