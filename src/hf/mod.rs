//! Hugging Face transformers model directories: BitNet b1.58 (`BitNetForCausalLM`) and
//! Llama-architecture ternary models (`LlamaForCausalLM` with a `bitnet` quantization config),
//! read as transformers reads them and imported into Tritter checkpoints, and Tritter models
//! written for transformers.

pub mod config;
pub mod export;
pub mod files;
pub mod import;
pub mod offline;
pub mod tensors;

pub use config::{read_hf_config, HfModel, WeightForm};
pub use export::{hf_config, HfDtype, HfExportSummary};
pub use files::{copy_model_files, TOKENIZER_FILES};
pub use import::{import_hf, ImportOptions, ImportSummary};
pub use tensors::HfWeights;

/// Whether `dir` looks like a Hugging Face model directory (its `config.json` has a `model_type`).
pub fn is_hf_dir(dir: &std::path::Path) -> bool {
    std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .is_some_and(|json| json.get("model_type").is_some())
}
