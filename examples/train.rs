//! The project's main job: trains the `test` preset on the built-in generated task corpus
//! (addition, copying, reversing, counting, sorting) through burn-train, then reports
//! validation loss and exact-match accuracy on held-out tasks. The same options as
//! `tritter train` (`-- --help` lists them): preset, data, tokenizer, steps, batch, lr,
//! `--hybrid`, `--resume`, ….
//!
//! `cargo run --release --example train` (CPU); `--features wgpu` or `--features cuda` pick
//! those backends.

// Burn's fusion backend (under `--features wgpu` or `cuda`) nests types deeper than the default limit.
#![recursion_limit = "256"]

#[path = "../src/bin/tritter/common.rs"]
mod common;
#[path = "../src/bin/tritter/train.rs"]
mod train;

use clap::Parser;

#[derive(Parser)]
#[command(name = "train", about = "Train a Tritter model (defaults: test preset, generated tasks, 1500 steps)")]
struct Cli {
    #[command(flatten)]
    args: train::TrainArgs,
}

fn main() -> std::process::ExitCode {
    tritter::allocator::keep_freed_memory();
    match train::run(Cli::parse().args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
