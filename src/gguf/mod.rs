//! GGUF files for llama.cpp (and what runs on it: ollama, LM Studio): Tritter models written with
//! ternary TQ2_0/TQ1_0 projections and the tokenizer embedded.

mod export;
mod file;
mod tensor_names;
mod ternary;
mod tokenizer;

pub use export::{GgufExportSummary, GgufOptions};
pub use file::GgmlType;
