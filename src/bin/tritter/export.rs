//! `tritter export`: a trained model in packed inference form, or as bitnet-quantize weights.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use indicatif::HumanBytes;
use tritter::export::{export_bitnet, FloatFormat};
use tritter::TritterModel;

use crate::common::{spinner, Inner};
use crate::infer::model_dir;

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// A packed checkpoint directory (2-bit codes + scales), loadable by generate/eval.
    Packed,
    /// A JSON object: projection name -> bitnet-quantize `TernaryWeight`.
    BitnetJson,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Model directory (config.json + model.safetensors) or a training run directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Output: a directory for `packed`, a .json file for `bitnet-json`.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "packed")]
    pub format: ExportFormat,
    /// Store embeddings, norms and a full-precision LM head in f16 (packed format).
    #[arg(long)]
    pub f16: bool,
}

pub fn run_export(args: ExportArgs) -> tritter::Result<()> {
    let dir = model_dir(&args.model)?;
    let bar = spinner(&format!("packing {}", dir.display()));
    let model = TritterModel::<Inner>::load_checkpoint(&dir, &Default::default())?;
    let model = if model.is_packed() { model } else { model.into_packed()? };
    bar.finish_and_clear();
    match args.format {
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
