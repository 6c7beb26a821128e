//! `tritter info`: parameters and memory of a preset or config, for training and for packed
//! inference.

use std::path::PathBuf;

use clap::Args;
use tritter::TritterConfig;

#[derive(Args)]
pub struct InfoArgs {
    /// A preset name; every preset when neither this nor --config is given.
    #[arg(long)]
    pub preset: Option<String>,
    /// A model config JSON.
    #[arg(long, conflicts_with = "preset")]
    pub config: Option<PathBuf>,
    /// Show memory per device for data-parallel training on N devices.
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
}

/// Training bytes per parameter on each device of a data-parallel run: weights, gradients and
/// AdamW's two moments in f32, and the all-reduce's flat gradient and its sum.
const PARALLEL_BYTES_PER_PARAMETER: u64 = 16 + 8;

fn mib(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib >= 10_240.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

pub fn run_info(args: InfoArgs) -> tritter::Result<()> {
    let configs: Vec<(String, TritterConfig)> = match (&args.preset, &args.config) {
        (Some(name), _) => vec![(name.clone(), TritterConfig::from_preset(name)?)],
        (_, Some(path)) => vec![(path.display().to_string(), TritterConfig::from_json_file(path)?)],
        _ => TritterConfig::presets().into_iter().map(|(name, c, _)| (name.to_string(), c)).collect(),
    };
    println!(
        "{:<14} {:>14} {:>14} {:>16} {:>16} {:>16}",
        "model", "parameters", "ternary", "train state", "packed (f32)", "packed (f16)"
    );
    for (name, config) in &configs {
        let params = config.parameter_count();
        let ternary: u64 = config.ternary_matrices().iter().map(|[r, c]| (r * c) as u64).sum();
        println!(
            "{:<14} {:>14} {:>14} {:>16} {:>16} {:>16}",
            name,
            params,
            ternary,
            mib(params * 16),
            mib(config.packed_size_bytes(4)),
            mib(config.packed_size_bytes(2)),
        );
    }
    if args.devices > 1 {
        println!("\nWith --devices {}, per device (each holds a whole replica):", args.devices);
        for (name, config) in &configs {
            println!("{:<14} {:>16}", name, mib(config.parameter_count() * PARALLEL_BYTES_PER_PARAMETER));
        }
        println!(
            "= the train state plus, during the all-reduce, the flat gradient and its sum (8 bytes/parameter);\n\
             activations are those of 1/{} of each batch.",
            args.devices
        );
    }
    println!(
        "\ntrain state = f32 weights + gradients + AdamW's two moments (16 bytes/parameter), before\n\
         activations (they grow with batch x sequence; --grad-checkpointing cuts them, see docs/training.md).\n\
         packed = ternary projections as 2-bit codes + scales, embeddings/norms/LM head in f32 or f16."
    );
    Ok(())
}
