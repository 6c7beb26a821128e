//! Tritter: ternary-weight (BitNet b1.58) transformer language models on Burn.
//!
//! The model is generic over Burn's `Backend`: the same code trains on the CPU (ndarray),
//! wgpu and CUDA. `docs/TRITTER_SPEC.md` (the spec) gives the exact maths.
//!
//! `model` and `ternary` hold the network, `backend` every backend-specific kernel behind the
//! [`backend::TritterBackend`] trait (whose defaults are the tensor-op references), `checkpoint`
//! the on-disk formats, `data` the tokenizers and corpora, `train` the burn-train based training
//! loop (resume, hybrid predictive training), `infer` cached generation, sampling and
//! evaluation, `hf` the import of Hugging Face BitNet and Llama-BitNet models, and `export`
//! the `bitnet-quantize` export.

pub mod allocator;
pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod export;
pub mod gguf;
pub mod hf;
pub mod infer;
pub mod io;
pub mod model;
pub mod quant;
pub mod ternary;
pub mod train;

pub use backend::TritterBackend;
pub use config::{Activation, MlpNorm, NormKind, TritterConfig, WeightQuantEps, WeightScale};
pub use error::{Result, TritterError};
pub use model::TritterModel;
pub use ternary::{TernaryLinear, TernaryLinearConfig, TernaryQuant};
