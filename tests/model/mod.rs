//! Integration tests of the core model.

pub(crate) mod common;
mod reference;

mod attention;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod backends;
mod checkpoint;
mod decoder;
mod fused_linear;
mod fused_ops;
mod generation;
mod learning;
mod packed_kernel;
mod packed_model;
mod packing;
mod presets;
mod reference_f64;
mod ternary;
