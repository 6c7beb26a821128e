//! Peak memory of training steps on the `small_100m` preset (CPU) with and without gradient
//! checkpointing (`Autodiff<_, BalancedCheckpointing>`). Each mode runs in its own child process
//! so its peak RSS (`VmHWM`) is its own. `cargo bench --bench train_memory`.

#[path = "support/results.rs"]
mod results;

use std::process::Command;
use std::time::Instant;

use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy, NoCheckpointing};
use burn::backend::{Autodiff, NdArray};
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData};
use burn::train::TrainStep;
use tritter::data::TokenBatch;
use tritter::train::optimizer::adamw;
use tritter::train::TrainConfig;
use tritter::{TritterConfig, TritterModel};

const BATCH: usize = 4;
const SEQ: usize = 512;
const STEPS: usize = 2;

/// `VmHWM` / `VmRSS` of this process in MiB.
fn memory(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn child<B: tritter::backend::TritterAutodiffBackend>() {
    use burn::optim::Optimizer;
    let device = Default::default();
    let config = TritterConfig::small_100m();
    let mut model = TritterModel::<B>::new(&config, &device).unwrap();
    let mut optim = adamw::<B>(&TrainConfig::default());
    let ids: Vec<i64> = (0..BATCH * (SEQ + 1)).map(|i| (i * 7919 % config.vocab_size) as i64).collect();
    let batch = || {
        TokenBatch::<B>::new(Tensor::<B, 2, Int>::from_data(TensorData::new(ids.clone(), [BATCH, SEQ + 1]), &device))
    };
    // One step first so the optimizer state exists; the baseline is measured after it.
    let out = TrainStep::step(&model, batch());
    model = optim.step(1e-3, model, out.grads);
    let baseline = memory("VmRSS");
    let started = Instant::now();
    for _ in 0..STEPS {
        let out = TrainStep::step(&model, batch());
        let grads: GradientsParams = out.grads;
        model = optim.step(1e-3, model, grads);
    }
    let seconds = started.elapsed().as_secs_f64() / STEPS as f64;
    println!("RESULT {} {} {}", memory("VmHWM"), baseline, seconds);
}

fn run_child<C: CheckpointStrategy>() {
    child::<Autodiff<NdArray<f32>, C>>();
}

fn main() {
    // Not `tritter::allocator::keep_freed_memory`: the baseline needs freed memory returned to
    // the OS, so s/step here includes the page faults that the training binaries avoid.
    match std::env::var("TRITTER_MEMORY_MODE").as_deref() {
        Ok("plain") => return run_child::<NoCheckpointing>(),
        Ok("balanced") => return run_child::<BalancedCheckpointing>(),
        _ => {}
    }
    let exe = std::env::current_exe().unwrap();
    let mut rows = Vec::new();
    for (mode, label) in [("plain", "off"), ("balanced", "on (BalancedCheckpointing)")] {
        let output = Command::new(&exe).env("TRITTER_MEMORY_MODE", mode).output().expect("run the child");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with("RESULT"))
            .unwrap_or_else(|| panic!("{mode}: no result\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
        let v: Vec<f64> = line.split_whitespace().skip(1).map(|x| x.parse().unwrap()).collect();
        println!(
            "gradient checkpointing {label}: peak {:.0} MiB, after setup {:.0} MiB, {:.1} s/step",
            v[0], v[1], v[2]
        );
        rows.push((label, v[0], v[1], v[2]));
    }
    let saving = 1.0 - (rows[1].1 - rows[1].2) / (rows[0].1 - rows[0].2);
    let table: String = rows
        .iter()
        .map(|(label, peak, base, secs)| {
            format!("| {label} | {peak:.0} | {base:.0} | {:.0} | {secs:.1} |\n", peak - base)
        })
        .collect();
    results::record(
        "train_memory",
        &format!(
            "## Gradient checkpointing: peak memory of a training step\n\nMachine: {}. Command: `cargo bench --bench train_memory`. `small_100m` preset ({} parameters) on the CPU (ndarray), batch {BATCH} × {SEQ} tokens, forward + backward + AdamW; peak RSS of a child process per mode, \"after setup\" = RSS once the model and optimizer state exist.\n\n| gradient checkpointing | peak RSS MiB | after setup MiB | step memory MiB | s/step |\n|---|---|---|---|---|\n{table}\nStep memory (peak − after setup) saved by checkpointing: {:.0}%.",
            results::machine(),
            TritterConfig::small_100m().parameter_count(),
            saving * 100.0
        ),
    );
}
