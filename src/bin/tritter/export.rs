//! `tritter export`: a trained model in packed inference form, as bitnet-quantize weights, as
//! a Hugging Face transformers model, or as a GGUF file for llama.cpp.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use indicatif::HumanBytes;
use tritter::export::{export_bitnet, FloatFormat};
use tritter::gguf::{GgmlType, GgufOptions};
use tritter::hf::{copy_model_files, HfDtype};
use tritter::infer::{ChatTemplate, PromptFormat};
use tritter::{TritterError, TritterModel};

use crate::common::{spinner, tensor_bar, Inner};
use crate::infer::{model_dir, model_tokenizer};

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// A packed checkpoint directory (2-bit codes + scales), loadable by generate/eval.
    Packed,
    /// A JSON object: projection name -> bitnet-quantize `TernaryWeight`.
    BitnetJson,
    /// A Hugging Face transformers directory (`BitNetForCausalLM` / `LlamaForCausalLM`):
    /// latent weights (online quantization), or with `--packed` transformers' packed form.
    Hf,
    /// A GGUF file for llama.cpp (architecture `bitnet` or `llama`), tokenizer included.
    Gguf,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TernaryArg {
    /// 2.0625 bits per weight; llama.cpp's faster ternary kernel.
    #[value(name = "tq2_0", alias = "tq2-0")]
    Tq2_0,
    /// 1.6875 bits per weight.
    #[value(name = "tq1_0", alias = "tq1-0")]
    Tq1_0,
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
    /// Output: a directory for `packed` and `hf`, a .json file for `bitnet-json`, a .gguf file
    /// for `gguf`.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "packed")]
    pub format: ExportFormat,
    /// Store embeddings, norms and a full-precision LM head in f16 (packed format).
    #[arg(long)]
    pub f16: bool,
    /// `hf`, `gguf`: the dtype of the float tensors (`hf`: all of them, default bf16; f32 gives
    /// Tritter's logits exactly. `gguf`: embeddings and full-precision matrices, default f16).
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeArg>,
    /// `gguf`: the ggml type of the ternary projections [default: tq2_0].
    #[arg(long, value_enum)]
    pub gguf_type: Option<TernaryArg>,
    /// `gguf`: the tokenizer.json to embed; default: the model directory's, else the byte tokenizer.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// `hf`: export the packed form (codes + per-tensor scales) instead of latent weights; a
    /// packed model always exports packed.
    #[arg(long)]
    pub packed: bool,
}

/// Refuses a flag the chosen format does not use, instead of ignoring it.
fn check_flags(args: &ExportArgs) -> tritter::Result<()> {
    use ExportFormat::*;
    let format = args.format;
    for (flag, given, used_by, formats) in [
        ("--f16", args.f16, matches!(format, Packed), "packed"),
        ("--packed", args.packed, matches!(format, Hf), "hf"),
        ("--dtype", args.dtype.is_some(), matches!(format, Hf | Gguf), "hf and gguf"),
        ("--gguf-type", args.gguf_type.is_some(), matches!(format, Gguf), "gguf"),
        ("--tokenizer", args.tokenizer.is_some(), matches!(format, Gguf), "gguf"),
    ] {
        if given && !used_by {
            return Err(TritterError::InvalidInput(format!("{flag} applies to --format {formats} only")));
        }
    }
    Ok(())
}

pub fn run_export(args: ExportArgs) -> tritter::Result<()> {
    check_flags(&args)?;
    let dir = model_dir(&args.model)?;
    let bar = spinner(&format!("packing {}", dir.display()));
    let model = TritterModel::<Inner>::load_checkpoint(&dir, &Default::default())?;
    let keep_latent =
        matches!(args.format, ExportFormat::Hf if !args.packed) || matches!(args.format, ExportFormat::Gguf);
    let model = if model.is_packed() || keep_latent { model } else { model.into_packed()? };
    bar.finish_and_clear();
    match args.format {
        ExportFormat::Hf => {
            let dtype = match args.dtype.unwrap_or(DtypeArg::Bf16) {
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
        ExportFormat::Gguf => export_gguf(&model, &dir, &args)?,
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

fn export_gguf(model: &TritterModel<Inner>, dir: &Path, args: &ExportArgs) -> tritter::Result<()> {
    let tokenizer = model_tokenizer(dir, &args.tokenizer)?;
    let prompt = PromptFormat::for_model(dir, &tokenizer)?;
    let template = ChatTemplate::from_dir(dir)?;
    let name = dir.file_name().map_or("tritter".into(), |n| n.to_string_lossy().into_owned());
    let options = GgufOptions {
        ternary: match args.gguf_type.unwrap_or(TernaryArg::Tq2_0) {
            TernaryArg::Tq2_0 => GgmlType::Tq2_0,
            TernaryArg::Tq1_0 => GgmlType::Tq1_0,
        },
        floats: match args.dtype.unwrap_or(DtypeArg::F16) {
            DtypeArg::Bf16 => GgmlType::BF16,
            DtypeArg::F16 => GgmlType::F16,
            DtypeArg::F32 => GgmlType::F32,
        },
        tokenizer: &tokenizer,
        prompt: &prompt,
        chat_template: template.as_ref().map(ChatTemplate::source),
        name: &name,
    };
    let bar = tensor_bar("writing");
    let summary = model.save_gguf(&args.out, &options, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    println!(
        "Wrote a llama.cpp {} model ({} tensors, {}, tokenizer: {}{}) to {}",
        summary.architecture,
        summary.tensors,
        HumanBytes(summary.bytes),
        tokenizer.describe(),
        if template.is_some() { ", chat template" } else { "" },
        args.out.display()
    );
    Ok(())
}
