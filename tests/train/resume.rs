//! Step checkpoints: exact resume, pruning, crash safety, and clear errors for damaged ones.

use std::path::Path;

use tritter::train::{load_run_checkpoint, resolve_run_checkpoint, train, TrainConfig, TrainOutcome};
use tritter::TritterError;

use crate::train::common::{data, fresh_rng, model_config, options, train_config, AD, B};

fn config(seed: u64) -> TrainConfig {
    TrainConfig { grad_accum: 2, checkpoint_every: 4, keep_checkpoints: 2, eval_every: 4, ..train_config(seed, 8) }
}

fn run(data_seed: u64, dir: &Path, resume: Option<&Path>, config: &TrainConfig) -> tritter::Result<TrainOutcome<B>> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(data_seed);
    train::<AD>(&model_config(), config, data(&mut rng, 40, 8, 16), options(dir, resume), &Default::default())
}

/// Burn's ndarray backward is not bit-reproducible: repeating the same backward pass can differ
/// in the last bits (which kernels run depends on memory layout), and ternary rounding amplifies
/// such differences step after step. So the exact checks are: the first resumed step (a forward
/// from the restored weights on the restored data position) is bit-identical, and with
/// `bitnet = false` (no rounding to amplify noise) every later step agrees to 1e-5. A resume that
/// lost the optimizer state, the schedule or the data position misses both by orders of magnitude.
fn resume_case(test: &str, bitnet: bool) {
    let (_, seed) = fresh_rng(test);
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = config(seed);
    let model = tritter::TritterConfig { bitnet, ..model_config() };
    let run = |dir: &Path, resume: Option<&Path>| {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        train::<AD>(&model, &config, data(&mut rng, 40, 8, 16), options(dir, resume), &Default::default()).unwrap()
    };
    let full = run(a_dir.path(), None);
    assert_eq!(full.losses.len(), 8);
    let resumed = run(b_dir.path(), Some(&a_dir.path().join("checkpoints/step-00000004")));
    assert_eq!(resumed.resumed_from, 4);
    assert_eq!(resumed.state.samples, full.state.samples);
    assert_eq!(resumed.state.backward_passes, full.state.backward_passes);
    let steps: Vec<usize> = resumed.losses.iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, [5, 6, 7, 8]);
    assert_eq!(resumed.losses[0], full.losses[4], "first step after resuming is not bit-identical");
    if !bitnet {
        for ((step, a), (_, b)) in full.losses[4..].iter().zip(&resumed.losses) {
            assert!((a - b).abs() <= 1e-5 * a.abs(), "step {step}: uninterrupted {a}, resumed {b}");
        }
    }
}

/// The names in a directory, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn resumed_run_matches_the_uninterrupted_run() {
    resume_case("resumed_run_matches_the_uninterrupted_run", false);
}

#[test]
fn resumed_ternary_run_restarts_bit_exactly() {
    resume_case("resumed_ternary_run_restarts_bit_exactly", true);
}

#[test]
fn resume_rejects_settings_that_change_the_data_order() {
    let (_, seed) = fresh_rng("resume_rejects_settings_that_change_the_data_order");
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = TrainConfig { steps: 4, ..config(seed) };
    run(seed, a_dir.path(), None, &config).unwrap();
    let other = TrainConfig { seed: seed ^ 1, steps: 8, ..config.clone() };
    match run(seed, b_dir.path(), Some(a_dir.path()), &other) {
        Err(TritterError::ResumeMismatch { reason, .. }) => assert!(reason.contains("seed"), "{reason}"),
        other => panic!("expected ResumeMismatch, got {:?}", other.map(|o| o.state)),
    }
    match run(seed, b_dir.path(), Some(a_dir.path()), &config) {
        Err(TritterError::ResumeMismatch { reason, .. }) => assert!(reason.contains("step 4"), "{reason}"),
        other => panic!("a finished run cannot resume: {:?}", other.map(|o| o.state)),
    }
}

#[test]
fn checkpoints_are_pruned_and_a_crash_mid_save_keeps_the_latest() {
    let (_, seed) = fresh_rng("checkpoints_are_pruned_and_a_crash_mid_save_keeps_the_latest");
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig { checkpoint_every: 2, ..config(seed) };
    run(seed, dir.path(), None, &config).unwrap();
    let root = dir.path().join("checkpoints");
    let kept: Vec<String> = entries(&root).into_iter().filter(|n| n.starts_with("step-")).collect();
    assert_eq!(kept, ["step-00000006", "step-00000008"]);

    // A save that died half-way leaves only a temporary directory: the latest is unchanged.
    let partial = root.join(".step-00000010.tmp4242");
    std::fs::create_dir_all(partial.join("model")).unwrap();
    std::fs::write(partial.join("optimizer.mpk"), b"half").unwrap();
    assert_eq!(resolve_run_checkpoint(dir.path()).unwrap(), root.join("step-00000008"));
    let loaded =
        load_run_checkpoint::<AD, tritter::train::optimizer::TritterAdamWRecord<AD>>(dir.path(), &Default::default())
            .unwrap();
    assert_eq!(loaded.state.step, 8);
}

#[test]
fn damaged_checkpoints_give_errors_that_name_the_file() {
    let (_, seed) = fresh_rng("damaged_checkpoints_give_errors_that_name_the_file");
    let dir = tempfile::tempdir().unwrap();
    run(seed, dir.path(), None, &TrainConfig { steps: 4, ..config(seed) }).unwrap();
    let step = dir.path().join("checkpoints/step-00000004");
    let load = || {
        load_run_checkpoint::<AD, tritter::train::optimizer::TritterAdamWRecord<AD>>(dir.path(), &Default::default())
            .map(|c| c.state)
    };

    let optimizer = step.join("optimizer.mpk");
    let bytes = std::fs::read(&optimizer).unwrap();
    std::fs::write(&optimizer, &bytes[..bytes.len() / 2]).unwrap();
    let error = load().unwrap_err().to_string();
    assert!(error.contains("optimizer.mpk"), "{error}");
    std::fs::write(&optimizer, &bytes).unwrap();

    let state = step.join("run_state.json");
    let text = std::fs::read_to_string(&state).unwrap();
    std::fs::write(&state, "{ not json").unwrap();
    let error = load().unwrap_err().to_string();
    assert!(error.contains("run_state.json"), "{error}");
    std::fs::write(&state, &text).unwrap();

    let weights = step.join("model/model.safetensors");
    std::fs::write(&weights, b"garbage").unwrap();
    let error = load().unwrap_err().to_string();
    assert!(error.contains("model.safetensors"), "{error}");

    std::fs::write(dir.path().join("checkpoints/latest"), "step-00000099").unwrap();
    let error = load().unwrap_err().to_string();
    assert!(error.contains("latest") && error.contains("step-00000099"), "{error}");

    let empty = tempfile::tempdir().unwrap();
    let error = resolve_run_checkpoint(empty.path()).unwrap_err().to_string();
    assert!(error.contains("no resumable checkpoint"), "{error}");
}

/// Issue scenario: a long run into DIR, then a shorter fresh run into the same DIR. The fresh
/// run is refused (pruning against the old run's higher steps would delete its own checkpoints
/// and leave `latest` dangling); with `overwrite` it replaces the old run, whose checkpoints
/// are gone, and a resume of it continues the new run. A crashed save's partial directory is
/// removed at the next start.
#[test]
fn a_fresh_run_does_not_mix_with_an_earlier_run() {
    let (_, seed) = fresh_rng("a_fresh_run_does_not_mix_with_an_earlier_run");
    let dir = tempfile::tempdir().unwrap();
    let long = TrainConfig { checkpoint_every: 2, ..config(seed) };
    run(seed, dir.path(), None, &long).unwrap();
    let short = TrainConfig { steps: 4, ..long.clone() };
    match run(seed, dir.path(), None, &short) {
        Err(e @ TritterError::RunExists { .. }) => {
            let message = e.to_string();
            assert!(message.contains("step-00000008") && message.contains("resume"), "{message}");
        }
        other => panic!("expected RunExists, got {:?}", other.map(|o| o.state)),
    }
    let root = dir.path().join("checkpoints");
    assert_eq!(resolve_run_checkpoint(dir.path()).unwrap(), root.join("step-00000008"), "the old run is intact");

    let partial = root.join(".step-00000010.tmp4242");
    std::fs::create_dir_all(partial.join("model")).unwrap();
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let fresh = tritter::train::TrainOptions { overwrite: true, ..options(dir.path(), None) };
    train::<AD>(&model_config(), &short, data(&mut rng, 40, 8, 16), fresh, &Default::default()).unwrap();
    let steps: Vec<String> = entries(&root).into_iter().filter(|n| n != "latest").collect();
    assert_eq!(steps, ["step-00000002", "step-00000004"], "only the new run's checkpoints remain");
    let resumed = run(seed, dir.path(), Some(dir.path()), &TrainConfig { steps: 6, ..short }).unwrap();
    assert_eq!((resumed.resumed_from, resumed.state.step), (4, 6));
}
