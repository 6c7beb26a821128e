//! The project's main job, written against the library: trains the main job's model
//! ([`MainJob::standard`], the `test` preset at H 96 with 4 layers, ~5 minutes) on the built-in
//! generated task corpus (addition, copying, reversing, counting, sorting) through burn-train,
//! then reports validation loss and exact-match accuracy on held-out tasks. `tritter train` runs
//! the same job with every option (`tritter train --help`).
//!
//! `cargo run --release --example train` (CPU); `--features wgpu` or `--features cuda` pick
//! those backends. Checkpoints and the final model go to `runs/example-train/`.

// Burn's fusion backend (under `--features wgpu` or `cuda`) nests types deeper than the default limit.
#![recursion_limit = "256"]

use std::path::PathBuf;

use tritter::backend::Autodiff;
use tritter::data::{generate_tasks, training_sets, PrepareOptions, Tokenizer};
use tritter::train::{train, Dashboard, MainJob, TaskEval, TrainData, TrainOptions};

#[cfg(feature = "cuda")]
type Inner = tritter::backend::Cuda;
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
type Inner = tritter::backend::Wgpu;
#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
type Inner = tritter::backend::Cpu;

fn main() -> tritter::Result<()> {
    tritter::allocator::keep_freed_memory();
    let tokenizer = Tokenizer::bytes();
    let MainJob { model: mut model_config, train: config } = MainJob::standard();
    model_config.pad_token_id = Some(tokenizer.special_ids().pad as usize);
    let options = PrepareOptions { val_fraction: 0.02, ..PrepareOptions::default() };
    let sets = training_sets(&[], &tokenizer, &options, config.seq_len, config.seed, &mut |_, _| {})?;
    let tasks = TaskEval { tokenizer: tokenizer.clone(), examples: generate_tasks(1, 200, true) };
    let data = TrainData { train: sets.train, valid: sets.valid, tasks: Some(tasks), answers: sets.answers };
    let run_dir = PathBuf::from("runs/example-train");
    let dashboard = Dashboard::Auto(Box::new(|line: &str| eprintln!("{line}")));
    let options = TrainOptions {
        run_dir: run_dir.clone(),
        resume: None,
        init: None,
        dashboard,
        interrupter: None,
        overwrite: true,
    };
    println!(
        "Training the main job's model ({} parameters) for {} steps",
        model_config.parameter_count(),
        config.steps
    );
    let outcome = train::<Autodiff<Inner>>(&model_config, &config, data, options, &Default::default())?;
    outcome.model.save_checkpoint(run_dir.join("model"))?;
    outcome.summary(Some(&run_dir.join("model"))).write(&run_dir)?; // summary.json, for scripts
    if let Some(validation) = outcome.validation.last() {
        println!("Validation loss {:.3} after {:.1} s", validation.loss, outcome.elapsed.as_secs_f64());
    }
    if let Some(tasks) = &outcome.tasks {
        println!("Held-out task accuracy (exact match, greedy): {:.1}% of {}", 100.0 * tasks.accuracy(), tasks.total);
        for (task, (correct, total)) in &tasks.per_task {
            println!("  {:<8} {correct:>3}/{total}", task.name());
        }
    }
    Ok(())
}
