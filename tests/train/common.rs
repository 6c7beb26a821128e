//! Helpers: fresh seeds, a small learnable synthetic corpus, quiet training options.

use std::path::Path;
use std::sync::Arc;

use burn::data::dataset::InMemDataset;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;
use rand::{rngs::StdRng, Rng, SeedableRng};
use tritter::train::{Dashboard, TrainConfig, TrainData, TrainOptions};
use tritter::TritterConfig;

pub type B = burn::backend::NdArray<f32>;
pub type AD = burn::backend::Autodiff<B>;

/// A generator from [`crate::fresh_seed`], and its seed.
pub fn fresh_rng(test: &str) -> (StdRng, u64) {
    let seed = crate::fresh_seed(test);
    (StdRng::seed_from_u64(seed), seed)
}

/// The `test` preset with padding id 0, as the CLI configures it.
pub fn model_config() -> TritterConfig {
    let mut config = TritterConfig::test();
    config.pad_token_id = Some(0);
    config
}

/// `n` windows of `seq_len + 1` ids following `next = (prev + stride) mod 200 + 4` with a random
/// start and a stride from {1, 2, 3}: learnable, no padding.
pub fn arithmetic_windows(rng: &mut StdRng, n: usize, seq_len: usize) -> Vec<Vec<u32>> {
    (0..n)
        .map(|_| {
            let stride = rng.random_range(1..4u32);
            let mut id = rng.random_range(0..200u32);
            (0..=seq_len)
                .map(|_| {
                    id = (id + stride) % 200;
                    id + 4
                })
                .collect()
        })
        .collect()
}

pub fn data(rng: &mut StdRng, train: usize, valid: usize, seq_len: usize) -> TrainData {
    TrainData {
        train: Arc::new(InMemDataset::new(arithmetic_windows(rng, train, seq_len))),
        valid: Arc::new(InMemDataset::new(arithmetic_windows(rng, valid, seq_len))),
        tasks: None,
        answers: None,
    }
}

/// A short run: 16-token windows, batches of 4, no dashboard.
pub fn train_config(seed: u64, steps: usize) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 4,
        seq_len: 16,
        learning_rate: 1e-2,
        warmup_steps: 2,
        seed,
        eval_batches: 2,
        ..TrainConfig::default()
    }
}

pub fn options(run_dir: &Path, resume: Option<&Path>) -> TrainOptions {
    TrainOptions {
        run_dir: run_dir.to_path_buf(),
        resume: resume.map(Path::to_path_buf),
        init: None,
        dashboard: Dashboard::Quiet,
        interrupter: None,
        overwrite: false,
    }
}

struct Collect(Vec<(ParamId, Vec<f32>)>);

impl<Bk: tritter::TritterBackend> ModuleVisitor<Bk> for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Bk, D>>) {
        self.0.push((param.id, param.val().into_data().convert::<f32>().to_vec().unwrap()));
    }
}

/// Every float parameter's id and values, in visiting order.
pub fn parameters<Bk: tritter::TritterBackend, M: Module<Bk>>(model: &M) -> Vec<(ParamId, Vec<f32>)> {
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    collect.0
}
