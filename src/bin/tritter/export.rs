//! `tritter export`: a trained model in packed inference form, as bitnet-quantize weights, or as
//! a Hugging Face transformers model.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use indicatif::HumanBytes;
use tritter::export::{export_bitnet, FloatFormat};
use tritter::hf::{copy_model_files, HfDtype};
use tritter::TritterModel;

use crate::common::{spinner, Inner};
use crate::infer::model_dir;

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// A packed checkpoint directory (2-bit codes + scales), loadable by generate/eval.
    Packed,
    /// A JSON object: projection name -> bitnet-quantize `TernaryWeight`.
    BitnetJson,
    /// A Hugging Face transformers directory (`BitNetForCausalLM` / `LlamaForCausalLM`):
    /// latent weights (online quantization), or with `--packed` transformers' packed form.
    Hf,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DtypeArg {
    Bf16,
    F16,
    F32,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Model directory (config.json + model.safetensors) or a training run directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Output: a directory for `packed` and `hf`, a .json file for `bitnet-json`.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "packed")]
    pub format: ExportFormat,
    /// Store embeddings, norms and a full-precision LM head in f16 (packed format).
    #[arg(long)]
    pub f16: bool,
    /// `hf`: the dtype of the float tensors (f32 gives Tritter's logits exactly).
    #[arg(long, value_enum, default_value = "bf16")]
    pub dtype: DtypeArg,
    /// `hf`: export the packed form (codes + per-tensor scales) instead of latent weights; a
    /// packed model always exports packed.
    #[arg(long)]
    pub packed: bool,
}

pub fn run_export(args: ExportArgs) -> tritter::Result<()> {
    let dir = model_dir(&args.model)?;
    let bar = spinner(&format!("packing {}", dir.display()));
    let model = TritterModel::<Inner>::load_checkpoint(&dir, &Default::default())?;
    let keep_latent = matches!(args.format, ExportFormat::Hf) && !args.packed;
    let model = if model.is_packed() || keep_latent { model } else { model.into_packed()? };
    bar.finish_and_clear();
    match args.format {
        ExportFormat::Hf => {
            let dtype = match args.dtype {
                DtypeArg::Bf16 => HfDtype::Bf16,
                DtypeArg::F16 => HfDtype::F16,
                DtypeArg::F32 => HfDtype::F32,
            };
            let summary = model.save_hf(&args.out, dtype)?;
            let copied = copy_model_files(&dir, &args.out)?;
            println!(
                "Wrote a transformers {} model ({}, {} tensors, {}) to {}{}",
                summary.model_type,
                if summary.packed { "packed offline form" } else { "latent weights, online quantization" },
                summary.tensors,
                HumanBytes(summary.bytes),
                args.out.display(),
                if copied.is_empty() {
                    "; no tokenizer files to copy".to_string()
                } else {
                    format!(" with {}", copied.join(", "))
                }
            );
        }
        ExportFormat::Packed => {
            let floats = if args.f16 { FloatFormat::F16 } else { FloatFormat::F32 };
            let size = model.save_packed_checkpoint(&args.out, floats)?;
            let latent = std::fs::metadata(dir.join("model.safetensors")).map(|m| m.len()).unwrap_or(0);
            let packed = std::fs::metadata(args.out.join("model.safetensors")).map(|m| m.len()).unwrap_or(0);
            println!(
                "Packed {} ternary weights at {:.3} bits each ({}) + {} of {} tensors: {} on disk (was {}), {}",
                size.ternary_weights,
                size.bits_per_ternary_weight(),
                HumanBytes(size.ternary_bytes),
                HumanBytes(size.float_bytes),
                if args.f16 { "f16" } else { "f32" },
                HumanBytes(packed),
                HumanBytes(latent),
                args.out.display()
            );
        }
        ExportFormat::BitnetJson => {
            let weights = export_bitnet(&model)?;
            let json = serde_json::to_vec(&weights).expect("ternary weights serialise");
            tritter::io::write_atomic(&args.out, &json)?;
            println!(
                "Wrote {} bitnet-quantize TernaryWeight values ({}) to {}",
                weights.len(),
                HumanBytes(json.len() as u64),
                args.out.display()
            );
        }
    }
    Ok(())
}
