//! `tritter import`: a Hugging Face BitNet / Llama-BitNet model directory as a Tritter checkpoint.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use indicatif::HumanBytes;
use tritter::export::FloatFormat;
use tritter::hf::{import_hf, ImportOptions, WeightForm};

use crate::common::tensor_bar;

#[derive(Args)]
pub struct ImportArgs {
    /// A Hugging Face model directory as downloaded (config.json, model.safetensors or its
    /// index and shards, tokenizer files).
    #[arg(long)]
    pub from: PathBuf,
    /// The Tritter checkpoint directory to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Dequantize a packed ("offline") model to latent weights, for fine-tuning with
    /// `train --init` (latent checkpoints import as latent weights anyway).
    #[arg(long)]
    pub latent: bool,
    /// Store a packed result's embeddings and norms in f16.
    #[arg(long)]
    pub f16: bool,
}

pub fn run_import(args: ImportArgs) -> tritter::Result<()> {
    let started = Instant::now();
    let bar = tensor_bar("importing");
    let options =
        ImportOptions { latent: args.latent, floats: if args.f16 { FloatFormat::F16 } else { FloatFormat::F32 } };
    let summary = import_hf(&args.from, &args.out, &options, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    let form = match summary.source.weights {
        WeightForm::Plain => "full-precision weights (bitnet off)",
        WeightForm::Online => "latent weights (online quantization)",
        WeightForm::Offline { .. } if summary.packed => "packed ternary weights",
        WeightForm::Offline { .. } => "packed ternary weights, dequantized to latent weights",
    };
    let c = &summary.source.config;
    println!(
        "Imported {} ({}; {} layers, hidden {}, {}/{} heads, vocab {}, {} parameters) from {} in {:.1} s",
        summary.source.model_type,
        form,
        c.num_layers,
        c.hidden_size,
        c.num_heads,
        c.num_kv_heads,
        c.vocab_size,
        c.parameter_count(),
        args.from.display(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "Wrote {} ({} tensors, {}{}) with {}",
        args.out.display(),
        summary.tensors,
        HumanBytes(summary.bytes),
        if summary.packed { ", packed" } else { ", latent f32" },
        if summary.copied.is_empty() { "no tokenizer files".to_string() } else { summary.copied.join(", ") }
    );
    if !summary.copied.iter().any(|f| f == "tokenizer.json") {
        println!("note: the source has no tokenizer.json; give --tokenizer to generate and chat");
    }
    Ok(())
}
