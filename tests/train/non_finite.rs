//! Non-finite losses or gradients: stop with an error naming the last good checkpoint, or skip
//! the update, never train on NaN silently.

use tritter::train::{train, NonFinitePolicy, TrainConfig};
use tritter::{TritterError, TritterModel};

use crate::train::common::{data, fresh_rng, model_config, options, parameters, train_config, AD, B};

/// A learning rate so large that the weights overflow within a few steps.
fn exploding(seed: u64, policy: NonFinitePolicy) -> TrainConfig {
    TrainConfig {
        learning_rate: 1e38,
        warmup_steps: 0,
        grad_clip: None,
        weight_decay: 0.0,
        checkpoint_every: 1,
        keep_checkpoints: 1,
        on_non_finite: policy,
        max_skipped_steps: 2,
        ..train_config(seed, 30)
    }
}

#[test]
fn stop_policy_stops_and_keeps_the_last_good_checkpoint() {
    let (mut rng, seed) = fresh_rng("stop_policy_stops_and_keeps_the_last_good_checkpoint");
    let dir = tempfile::tempdir().unwrap();
    let result = train::<AD>(
        &model_config(),
        &exploding(seed, NonFinitePolicy::Stop),
        data(&mut rng, 40, 4, 16),
        options(dir.path(), None),
        &Default::default(),
    );
    let (step, checkpoint) = match result {
        Err(TritterError::NonFinite { step, checkpoint, .. }) => (step, checkpoint),
        Err(other) => panic!("expected NonFinite, got {other}"),
        Ok(outcome) => panic!("trained {} steps on an exploding learning rate without noticing", outcome.state.step),
    };
    assert!(step >= 2, "the first step starts from finite weights");
    let checkpoint = checkpoint.expect("a checkpoint was saved every step");
    assert_eq!(checkpoint, dir.path().join(format!("checkpoints/step-{:08}", step - 1)));
    let model = TritterModel::<B>::load_checkpoint(checkpoint.join("model"), &Default::default()).unwrap();
    for (_, values) in parameters(&model) {
        assert!(values.iter().all(|v| v.is_finite()), "the kept checkpoint holds non-finite weights");
    }
}

#[test]
fn skip_policy_skips_updates_and_gives_up_after_too_many() {
    let (mut rng, seed) = fresh_rng("skip_policy_skips_updates_and_gives_up_after_too_many");
    let windows = data(&mut rng, 40, 4, 16);
    let stop_dir = tempfile::tempdir().unwrap();
    let first_bad = match train::<AD>(
        &model_config(),
        &exploding(seed, NonFinitePolicy::Stop),
        tritter::train::TrainData {
            train: windows.train.clone(),
            valid: windows.valid.clone(),
            tasks: None,
            answers: None,
        },
        options(stop_dir.path(), None),
        &Default::default(),
    ) {
        Err(TritterError::NonFinite { step, .. }) => step,
        other => panic!("expected NonFinite, got {:?}", other.map(|o| o.state)),
    };

    let skip_dir = tempfile::tempdir().unwrap();
    match train::<AD>(
        &model_config(),
        &exploding(seed, NonFinitePolicy::Skip),
        windows,
        options(skip_dir.path(), None),
        &Default::default(),
    ) {
        // Same seed and data: identical up to the first bad step, which is now skipped.
        Ok(outcome) => assert!(outcome.state.skipped_steps >= 1 && outcome.state.step == 30),
        Err(TritterError::NonFinite { step, .. }) => {
            assert!(step >= first_bad + 2, "gave up at step {step}, first bad step {first_bad}, 2 skips allowed")
        }
        Err(other) => panic!("unexpected error {other}"),
    }
}
