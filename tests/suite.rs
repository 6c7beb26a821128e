//! The integration tests, as one binary: each test binary compiles its own copies of the Burn
//! code it uses (the model, training and data paths on ndarray, wgpu and fusion), so one binary
//! for the three suites compiles what they share once. `cargo test --test suite model::`
//! (or `data::`, `train::`) runs one suite.

// Burn's fusion backend (under `--features wgpu` or `cuda`) nests types deeper than the default limit.
#![recursion_limit = "256"]

mod cli;
mod data;
mod interop;
mod model;
mod train;

use rand::Rng;

/// A fresh seed per run (or `TRITTER_TEST_SEED`), printed so a failure can be replayed. The
/// tests also share ndarray's global RNG (weight init, seeded by the model suite), so an exact
/// replay runs the one test alone on one thread.
pub fn fresh_seed(test: &str) -> u64 {
    let seed = std::env::var("TRITTER_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random::<u64>());
    eprintln!(
        "[{test}] seed = {seed} (replay: TRITTER_TEST_SEED={seed} cargo test --test suite {test} -- --test-threads=1)"
    );
    seed
}
