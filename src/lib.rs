//! Tritter: ternary-weight (BitNet b1.58) transformer language models on Burn.
//!
//! The model is generic over Burn's `Backend`: the same code trains on the CPU (ndarray),
//! wgpu and CUDA. `docs/TRITTER_SPEC.md` (the spec) gives the exact maths.
//!
//! `model` and `ternary` hold the network, `data` the tokenizers and corpora, `train` the
//! burn-train based training loop (checkpoints, resume, hybrid predictive training), `infer`
//! cached generation, sampling and evaluation, and `export` the packed inference checkpoints
//! and the `bitnet-quantize` export. `ternary::TernaryBackend` carries the backend-specific
//! ternary ops (the CPU's packed int8 × 2-bit kernel) with tensor-op defaults.

pub mod allocator;
pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod export;
pub mod infer;
pub mod io;
pub mod model;
pub mod reshape;
pub mod ternary;
pub mod train;

pub use config::{MlpNorm, NormKind, TritterConfig, WeightScale};
pub use error::{Result, TritterError};
pub use model::TritterModel;
pub use ternary::{TernaryLinear, TernaryLinearConfig, TernaryQuant};
