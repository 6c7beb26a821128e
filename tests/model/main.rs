//! Integration tests of the core model. One binary, so the suite links once.

// Burn's fusion backend (under `--features wgpu` or `cuda`) nests types deeper than the default limit.
#![recursion_limit = "256"]

mod common;
mod reference;

mod attention;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod backends;
mod checkpoint;
mod fused_linear;
mod fused_ops;
mod generation;
mod packed_kernel;
mod packed_model;
mod packing;
mod learning;
mod presets;
mod reference_f64;
mod ternary;
