//! TrainConfig files and checks, the learning-rate schedule, the data order.

use std::collections::HashSet;

use burn::data::dataset::{Dataset, InMemDataset};
use burn::lr_scheduler::LrScheduler;
use rand::Rng;
use tritter::train::order::{permute, EpochOrder};
use tritter::train::{HybridOptions, TrainConfig, WarmupCosine};
use tritter::TritterError;

use crate::train::common::{fresh_rng, B};

#[test]
fn train_config_round_trips_and_rejects_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.json");
    let config =
        TrainConfig { steps: 77, grad_clip: None, hybrid: Some(HybridOptions::default()), ..TrainConfig::default() };
    config.to_json_file(&path).unwrap();
    assert_eq!(TrainConfig::from_json_file(&path).unwrap(), config);

    // Missing fields take defaults; unknown ones are errors that name the field.
    std::fs::write(&path, r#"{"steps": 500}"#).unwrap();
    assert_eq!(TrainConfig::from_json_file(&path).unwrap(), TrainConfig { steps: 500, ..TrainConfig::default() });
    std::fs::write(&path, r#"{"stepz": 5}"#).unwrap();
    let error = TrainConfig::from_json_file(&path).unwrap_err().to_string();
    assert!(error.contains("stepz") && error.contains("train.json"), "{error}");
}

#[test]
fn invalid_train_configs_name_the_field() {
    let cases: Vec<(&str, TrainConfig)> = vec![
        ("steps", TrainConfig { steps: 0, ..TrainConfig::default() }),
        ("batch_size", TrainConfig { batch_size: 0, ..TrainConfig::default() }),
        ("learning_rate", TrainConfig { learning_rate: f64::NAN, ..TrainConfig::default() }),
        ("learning_rate", TrainConfig { learning_rate: -1.0, ..TrainConfig::default() }),
        ("warmup_steps", TrainConfig { steps: 10, warmup_steps: 11, ..TrainConfig::default() }),
        ("beta2", TrainConfig { beta2: 1.0, ..TrainConfig::default() }),
        ("epsilon", TrainConfig { epsilon: 0.0, ..TrainConfig::default() }),
        ("epsilon", TrainConfig { epsilon: f32::INFINITY, ..TrainConfig::default() }),
        ("weight_decay", TrainConfig { weight_decay: f32::NAN, ..TrainConfig::default() }),
        ("grad_clip", TrainConfig { grad_clip: Some(0.0), ..TrainConfig::default() }),
        ("grad_clip", TrainConfig { grad_clip: Some(f32::NAN), ..TrainConfig::default() }),
        ("min_lr_ratio", TrainConfig { min_lr_ratio: 1.5, ..TrainConfig::default() }),
        ("grad_accum", TrainConfig { grad_accum: 2, hybrid: Some(HybridOptions::default()), ..TrainConfig::default() }),
        (
            "hybrid.full_steps",
            TrainConfig {
                hybrid: Some(HybridOptions { full_steps: 0, ..HybridOptions::default() }),
                ..TrainConfig::default()
            },
        ),
    ];
    for (field, config) in cases {
        match config.validate() {
            Err(TritterError::InvalidConfig { field: named, .. }) => assert_eq!(named, field),
            other => panic!("{field}: expected InvalidConfig, got {other:?}"),
        }
    }
    TrainConfig::default().validate().unwrap();
}

#[test]
fn warmup_cosine_matches_hand_computed_values() {
    // peak 1, floor 0.1, 10 warmup steps, 110 in all: the cosine spans steps 10..110.
    let mut schedule = WarmupCosine::new(1.0, 0.1, 10, 110);
    let lrs: Vec<f64> = (0..200).map(|_| schedule.step()).collect();
    let at = |t: usize| lrs[t - 1];
    assert!((at(1) - 0.1).abs() < 1e-12);
    assert!((at(5) - 0.5).abs() < 1e-12);
    assert!((at(10) - 1.0).abs() < 1e-12);
    assert!((at(60) - 0.55).abs() < 1e-12, "midpoint of the cosine: 0.1 + 0.9 * 0.5");
    assert!((at(110) - 0.1).abs() < 1e-12);
    assert!((at(200) - 0.1).abs() < 1e-12, "constant after the end");
    assert!(lrs[10..110].windows(2).all(|w| w[1] <= w[0]), "decays monotonically");

    // The record is the step: a reloaded schedule continues where it was.
    let mut a = WarmupCosine::new(3e-3, 0.0, 7, 50);
    for _ in 0..23 {
        a.step();
    }
    let record = a.to_record::<B>();
    let mut b = WarmupCosine::new(3e-3, 0.0, 7, 50).load_record::<B>(record);
    for _ in 0..30 {
        assert_eq!(a.step(), b.step());
    }
}

/// BitNet's two-stage schedule: the learning rate drops by the ratio after the first stage
/// (hand-computed cosine values) and weight decay stops there, while a zero gradient leaves
/// AdamW's update at exactly the decay.
#[test]
fn the_cooldown_stage_lowers_the_rate_and_stops_weight_decay() {
    use burn::optim::SimpleOptimizer;
    use burn::tensor::{Tensor, TensorData};
    use tritter::train::fused_adamw::FusedAdamWConfig;
    use tritter::train::Cooldown;
    let config = TrainConfig {
        learning_rate: 1.0,
        min_lr_ratio: 0.1,
        warmup_steps: 10,
        steps: 110,
        weight_decay: 0.25,
        cooldown: Some(Cooldown { start: 0.5, lr_ratio: 0.3 }),
        ..TrainConfig::default()
    };
    config.validate().unwrap();
    let mut schedule = WarmupCosine::of(&config);
    let lrs: Vec<f64> = (0..110).map(|_| schedule.step()).collect();
    let cosine = |t: f64| 0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * (t - 10.0) / 100.0).cos());
    assert!((lrs[54] - cosine(55.0)).abs() < 1e-12, "step 55 is the first stage's last");
    assert!((lrs[55] - 0.3 * cosine(56.0)).abs() < 1e-12, "step 56 is the cooldown's first");
    assert!((lrs[109] - 0.03).abs() < 1e-12);

    let optimizer = FusedAdamWConfig::of(&config).optimizer();
    let (mut weight, mut state) =
        (Tensor::<B, 1>::from_data(TensorData::from([2.0f32, -3.0]), &Default::default()), None);
    let mut expected = [2.0f32, -3.0];
    for (t, &lr) in lrs.iter().enumerate().take(60) {
        let zero = Tensor::<B, 1>::zeros([2], &Default::default());
        (weight, state) = optimizer.step(lr, weight, zero, state);
        if t < 55 {
            let keep = (1.0 - lr * 0.25) as f32;
            expected = expected.map(|w| w * keep);
        }
    }
    assert_eq!(weight.into_data().to_vec::<f32>().unwrap(), expected.to_vec());

    let bad = TrainConfig { cooldown: Some(Cooldown { start: 1.0, lr_ratio: 0.3 }), ..TrainConfig::default() };
    assert!(bad.validate().unwrap_err().to_string().contains("cooldown.start"));
}

/// The data order's hash and permutation equal bench/pytorch/time_to_loss.py's replica (which
/// trains PyTorch on the same windows in the same order); `mix(0)` is splitmix64's first
/// output for seed 0.
#[test]
fn the_data_order_matches_its_python_replica() {
    use tritter::train::order::mix;
    assert_eq!(mix(0), 0xE220_A839_7B1D_CDAF);
    let first: Vec<usize> = (0..5).map(|i| permute(i, 1000, mix(42))).collect();
    assert_eq!(first, [515, 632, 372, 621, 279]);
}

#[test]
fn permutations_visit_every_index_once() {
    let (mut rng, _) = fresh_rng("permutations_visit_every_index_once");
    for n in [1usize, 2, 3, 7, 64, 100, 1000, rng.random_range(2..5000)] {
        let key = rng.random::<u64>();
        let image: HashSet<usize> = (0..n).map(|i| permute(i, n, key)).collect();
        assert_eq!(image.len(), n, "n = {n}: not a bijection");
        assert!(image.iter().all(|&j| j < n));
        if n >= 64 {
            let moved = (0..n).filter(|&i| permute(i, n, key) != i).count();
            assert!(moved > n / 2, "n = {n}: only {moved} indices moved; not shuffled");
        }
    }
}

#[test]
fn epoch_order_is_deterministic_and_reshuffles_each_epoch() {
    let (mut rng, seed) = fresh_rng("epoch_order_is_deterministic_and_reshuffles_each_epoch");
    let n = rng.random_range(50..300);
    let items: Vec<Vec<u32>> = (0..n as u32).map(|i| vec![i]).collect();
    let dataset = std::sync::Arc::new(InMemDataset::new(items));
    let order = EpochOrder::new(dataset.clone(), 3 * n + 5, seed);
    assert_eq!(order.len(), 3 * n + 5);
    let epochs: Vec<Vec<u32>> = (0..3).map(|e| (0..n).map(|i| order.get(e * n + i).unwrap()[0]).collect()).collect();
    for epoch in &epochs {
        let mut sorted = epoch.clone();
        sorted.sort();
        assert_eq!(sorted, (0..n as u32).collect::<Vec<_>>(), "each epoch visits every item once");
    }
    assert_ne!(epochs[0], epochs[1], "epochs are shuffled differently");
    assert!(order.get(3 * n + 5).is_none());
    let again = EpochOrder::new(dataset.clone(), 3 * n + 5, seed);
    assert!((0..3 * n + 5).all(|i| again.get(i) == order.get(i)), "same seed, same order");
    let other = EpochOrder::new(dataset, 3 * n + 5, seed ^ 1);
    assert!((0..n).any(|i| other.get(i) != order.get(i)), "another seed, another order");
}
