//! Every on-disk form of a model: native checkpoints (latent weights) and packed checkpoints
//! (2-bit codes), both `config.json` + `model.safetensors` with the spec's tensor names.

pub(crate) mod format;
mod native;
pub mod packed;
pub(crate) mod read;
pub(crate) mod write;

pub use format::{CONFIG_FILE, WEIGHTS_FILE};
pub use packed::{FloatFormat, PackedSize};
