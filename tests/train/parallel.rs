//! Data-parallel training on several CPU workers (burn-collective all-reduce): the same losses
//! and weights as one worker on the same global batch, token-weighted over uneven shares;
//! accumulation × workers as one big batch; a failing worker ends the run with its name.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::data::dataset::InMemDataset;
use rand::rngs::StdRng;
use rand::Rng;
use tritter::train::{train_parallel, Nodes, Parallel, TrainConfig, TrainData, TrainOptions, TrainOutcome};
use tritter::{TritterConfig, TritterError, TritterModel};

use crate::train::common::{arithmetic_windows, fresh_rng, model_config, options, parameters, train_config, AD, B};

/// Windows of which about half end in a run of padding (id 0, the model's pad id), so the
/// workers' shares of a batch hold different numbers of target tokens.
pub(super) fn padded_data(rng: &mut StdRng, train: usize, seq_len: usize) -> TrainData {
    let mut windows = arithmetic_windows(rng, train + 8, seq_len);
    for window in &mut windows {
        if rng.random_bool(0.5) {
            let keep = rng.random_range(3..seq_len);
            window[keep..].fill(0);
        }
    }
    let valid = windows.split_off(train);
    TrainData {
        train: Arc::new(InMemDataset::new(windows)),
        valid: Arc::new(InMemDataset::new(valid)),
        tasks: None,
        answers: None,
    }
}

/// A model's initial weights, saved once: every run of a comparison starts from them (a fresh
/// initialisation draws from Burn's process-wide generator, which tests running alongside share).
pub(super) fn initial(model: &TritterConfig, dir: &Path) -> PathBuf {
    let path = dir.join("initial");
    TritterModel::<B>::new(model, &Default::default()).unwrap().save_checkpoint(&path).unwrap();
    path
}

fn run(init: &Path, config: &TrainConfig, seed: u64, workers: usize) -> TrainOutcome<B> {
    let dir = tempfile::tempdir().unwrap();
    run_on(init, config, seed, dir.path(), &Parallel::repeated(&Default::default(), workers)).unwrap()
}

/// A run from `init` on the padded windows of `seed`, with AdamW ε = 1e-4 (see [`DRIFT`]).
pub(super) fn run_on(
    init: &Path,
    config: &TrainConfig,
    seed: u64,
    run_dir: &Path,
    parallel: &Parallel<<B as burn::tensor::backend::Backend>::Device>,
) -> tritter::Result<TrainOutcome<B>> {
    use rand::SeedableRng;
    let config = &TrainConfig { epsilon: 1e-4, ..config.clone() };
    let data = padded_data(&mut StdRng::seed_from_u64(seed), 48, config.seq_len);
    let options = TrainOptions { init: Some(init.to_path_buf()), ..options(run_dir, None) };
    train_parallel::<AD>(&model_config(), config, data, options, parallel)
}

/// How far two runs may part: losses relative (to the larger of the loss and 1), weights
/// absolute (or relative where larger than 1).
#[derive(Clone, Copy)]
pub(super) struct Tolerance {
    pub loss: f32,
    pub weight: f32,
}

/// Runs that add the same two addends in either order: bit-identical.
pub(super) const EXACT: Tolerance = Tolerance { loss: 0.0, weight: 0.0 };

/// One step from the same weights: the loss and the gradients differ only in the order of their
/// sums, and AdamW's first update is lr·g/(|g| + ε), so the weights agree to its rounding.
const ONE_STEP: Tolerance = Tolerance { loss: 1e-6, weight: 1e-6 };

/// Runs of many steps that sum the same gradients in different orders. The rounding differences
/// grow step by step through AdamW's division by `sqrt(v) + ε`: with the default ε = 1e-8 a
/// parameter whose gradient is itself at rounding level (a norm's bias, say) gets an update of
/// order lr from noise, so the runs use ε = 1e-4. Measured over 100 runs of 20 steps of
/// `two_and_three_workers_train_like_one_on_uneven_shares` (fresh seeds): at most 3.6e-6 in a
/// loss and 5.4e-5 in a weight (the median run 3e-6). Weighting the workers' shares equally
/// instead of by their target tokens parts them by 3e-2 in the loss and 0.1 in the weights.
pub(super) const DRIFT: Tolerance = Tolerance { loss: 1e-4, weight: 1e-3 };

/// Losses and final weights of two runs within `tolerance`.
pub(super) fn assert_same_run(a: &TrainOutcome<B>, b: &TrainOutcome<B>, tolerance: Tolerance, what: &str) {
    assert_same_training((&a.losses, &a.model), (&b.losses, &b.model), tolerance, what);
}

/// [`assert_same_run`] on losses and final models.
pub(super) fn assert_same_training(
    (a_losses, a_model): (&[(usize, f32)], &TritterModel<B>),
    (b_losses, b_model): (&[(usize, f32)], &TritterModel<B>),
    tolerance: Tolerance,
    what: &str,
) {
    assert_eq!(a_losses.len(), b_losses.len(), "{what}");
    for ((step, x), (_, y)) in a_losses.iter().zip(b_losses) {
        assert!((x - y).abs() <= tolerance.loss * x.abs().max(1.0), "{what}: step {step}: loss {x} vs {y}");
    }
    for ((id, x), (_, y)) in parameters(a_model).iter().zip(parameters(b_model)) {
        let worst = x.iter().zip(&y).map(|(p, q)| (p - q).abs() / p.abs().max(1.0)).fold(0f32, f32::max);
        assert!(worst <= tolerance.weight, "{what}: parameter {id}: differs by {worst}");
    }
}

#[test]
fn two_and_three_workers_train_like_one_on_uneven_shares() {
    let (_, seed) = fresh_rng("two_and_three_workers_train_like_one");
    let dir = tempfile::tempdir().unwrap();
    let init = initial(&TritterConfig { bitnet: false, ..model_config() }, dir.path());
    let config = TrainConfig { batch_size: 7, ..train_config(seed, 20) };
    let one = run(&init, &config, seed, 1);
    assert!(one.losses.last().unwrap().1 < one.losses[0].1, "the reference run does not learn");
    for workers in [2, 3] {
        let many = run(&init, &config, seed, workers);
        assert_eq!(many.state.samples, one.state.samples);
        assert_same_run(&one, &many, DRIFT, &format!("{workers} workers"));
    }
}

#[test]
fn ternary_first_step_is_the_same_on_two_workers() {
    let (_, seed) = fresh_rng("ternary_first_step_is_the_same_on_two_workers");
    let dir = tempfile::tempdir().unwrap();
    let init = initial(&model_config(), dir.path());
    let config = TrainConfig { warmup_steps: 0, ..train_config(seed, 1) };
    let (one, two) = (run(&init, &config, seed, 1), run(&init, &config, seed, 2));
    assert_same_run(&one, &two, ONE_STEP, "ternary, 2 workers");
}

#[test]
fn accumulation_times_workers_equals_one_big_batch() {
    let (_, seed) = fresh_rng("accumulation_times_workers_equals_one_big_batch");
    let dir = tempfile::tempdir().unwrap();
    let init = initial(&TritterConfig { bitnet: false, ..model_config() }, dir.path());
    let big = TrainConfig { batch_size: 8, ..train_config(seed, 10) };
    let accumulated = TrainConfig { batch_size: 4, grad_accum: 2, ..big.clone() };
    let reference = run(&init, &big, seed, 1);
    assert_same_run(&reference, &run(&init, &accumulated, seed, 1), DRIFT, "1 worker × 2 micro-batches");
    assert_same_run(&reference, &run(&init, &accumulated, seed, 2), DRIFT, "2 workers × 2 micro-batches");
}

/// A window with a token id outside the vocabulary in worker 1's share of step 3 makes that
/// worker panic mid-step: the run ends at once with an error naming it, the others are not left
/// blocked in the all-reduce, and the step-2 checkpoint is the latest.
#[test]
fn a_failing_worker_ends_the_run_with_its_name() {
    let (mut rng, seed) = fresh_rng("a_failing_worker_ends_the_run_with_its_name");
    let model = model_config();
    let config = TrainConfig { checkpoint_every: 1, ..train_config(seed, 6) };
    let mut windows = arithmetic_windows(&mut rng, 40, config.seq_len);
    let order = tritter::train::order::EpochOrder::new(InMemDataset::new(windows.clone()), 40, config.seed);
    windows[order.source_index(3 * config.batch_size - 1)][5] = model.vocab_size as u32 + 7;
    let data = TrainData {
        train: Arc::new(InMemDataset::new(windows)),
        valid: Arc::new(InMemDataset::new(arithmetic_windows(&mut rng, 8, config.seq_len))),
        tasks: None,
        answers: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let parallel = Parallel { timeout: Duration::from_secs(120), ..Parallel::repeated(&Default::default(), 2) };
    let started = Instant::now();
    let error = train_parallel::<AD>(&model, &config, data, options(dir.path(), None), &parallel).err();
    assert!(started.elapsed() < Duration::from_secs(100), "the failure took {:?}", started.elapsed());
    match error {
        Some(TritterError::Worker { worker, step: 3, reason }) => {
            assert!(worker.starts_with("worker 1 "), "{worker}: {reason}");
            assert!(reason.contains("panicked"), "{reason}");
        }
        other => panic!("expected worker 1 to fail at step 3, got {other:?}"),
    }
    let latest = tritter::train::resolve_run_checkpoint(dir.path()).unwrap();
    assert!(latest.ends_with("step-00000002"), "{}", latest.display());
    TritterModel::<B>::load_checkpoint(latest.join("model"), &Default::default()).unwrap();
}

#[test]
fn bad_parallel_settings_are_refused_by_name() {
    let (mut rng, seed) = fresh_rng("bad_parallel_settings_are_refused_by_name");
    let config = train_config(seed, 2);
    let dir = tempfile::tempdir().unwrap();
    let attempt = |config: &TrainConfig, parallel: &Parallel<_>, rng: &mut StdRng| {
        let data = crate::train::common::data(rng, 8, 2, 16);
        let out = dir.path().join(format!("run-{}", rng.random::<u32>()));
        train_parallel::<AD>(&model_config(), config, data, options(&out, None), parallel).err().unwrap().to_string()
    };
    let five = Parallel::repeated(&Default::default(), 5);
    assert!(attempt(&config, &five, &mut rng).contains("batch_size"));
    let hybrid = TrainConfig { hybrid: Some(Default::default()), ..config.clone() };
    assert!(attempt(&hybrid, &Parallel::repeated(&Default::default(), 2), &mut rng).contains("hybrid"));
    let zero = Parallel { timeout: Duration::ZERO, ..Parallel::repeated(&Default::default(), 2) };
    assert!(attempt(&config, &zero, &mut rng).contains("timeout"));
    let nodes =
        Nodes { count: 2, rank: 1, orchestrator: "ws://127.0.0.1:9".into(), node_address: "ws://127.0.0.1:9".into() };
    let over = |nodes: Nodes| Parallel { nodes: Some(nodes), ..Parallel::single(&Default::default()) };
    for (field, bad) in [
        ("`nodes`", Nodes { count: 1, rank: 0, ..nodes.clone() }),
        ("`node_rank`", Nodes { rank: 2, ..nodes.clone() }),
        ("`orchestrator`", Nodes { orchestrator: "127.0.0.1:9".into(), ..nodes.clone() }),
        ("`node_address`", Nodes { node_address: "ws://127.0.0.1".into(), ..nodes.clone() }),
    ] {
        let error = attempt(&config, &over(bad), &mut rng);
        assert!(error.contains(field), "{field}: {error}");
    }
    let three = TrainConfig { batch_size: 3, ..config.clone() };
    let error = attempt(&three, &Parallel { devices: vec![Default::default(); 2], ..over(nodes) }, &mut rng);
    assert!(error.contains("`batch_size`") && error.contains("4 workers"), "{error}");
}
