//! Gradients: the global norm against an f64 recomputation, clipping, every parameter trained,
//! accumulation equal to one big batch.

use burn::data::dataset::InMemDataset;
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData};
use burn::train::TrainStep;
use tritter::data::TokenBatch;
use tritter::train::grads::{clip_global_norm, global_grad_norm};
use tritter::train::train;
use tritter::TritterModel;

use crate::train::common::{
    arithmetic_windows, data, fresh_rng, model_config, options, parameters, train_config, AD, B,
};

fn batch(windows: &[Vec<u32>]) -> TokenBatch<AD> {
    let ids: Vec<i64> = windows.iter().flatten().map(|&i| i as i64).collect();
    TokenBatch::new(Tensor::<AD, 2, Int>::from_data(
        TensorData::new(ids, [windows.len(), windows[0].len()]),
        &Default::default(),
    ))
}

/// `sqrt(Σ g²)` in f64 over every parameter's gradient.
fn f64_norm(model: &TritterModel<AD>, grads: &GradientsParams) -> f64 {
    let mut total = 0.0;
    for (id, _) in parameters(model) {
        let grad = grads
            .get::<B, 1>(id)
            .map(|g| g.into_data().convert::<f64>().to_vec::<f64>().unwrap())
            .or_else(|| grads.get::<B, 2>(id).map(|g| g.into_data().convert::<f64>().to_vec::<f64>().unwrap()))
            .unwrap_or_else(|| panic!("parameter {id} has no gradient"));
        total += grad.iter().map(|g| g * g).sum::<f64>();
    }
    total.sqrt()
}

#[test]
fn global_norm_matches_f64_and_clipping_hits_the_bound() {
    let (mut rng, _) = fresh_rng("global_norm_matches_f64_and_clipping_hits_the_bound");
    let model = TritterModel::<AD>::new(&model_config(), &Default::default()).unwrap();
    let out = TrainStep::step(&model, batch(&arithmetic_windows(&mut rng, 3, 12)));
    let grads = out.grads;
    let reference = f64_norm(&model, &grads);
    let norm = global_grad_norm(&model, &grads);
    assert!(reference > 0.0 && reference.is_finite());
    assert!((norm - reference).abs() / reference < 1e-5, "norm {norm} vs f64 {reference}");

    let bound = reference / 3.0;
    let (clipped, before) = clip_global_norm(&model, grads, Some(bound as f32));
    assert_eq!(before, norm);
    let after = f64_norm(&model, &clipped);
    assert!((after - bound).abs() / bound < 1e-4, "clipped norm {after}, bound {bound}");

    // Under the bound nothing changes.
    let (kept, _) = clip_global_norm(&model, clipped, Some((bound * 2.0) as f32));
    assert!((f64_norm(&model, &kept) - after).abs() / after < 1e-6);
}

#[test]
fn one_training_step_moves_every_parameter() {
    let (mut rng, seed) = fresh_rng("one_training_step_moves_every_parameter");
    let run = tempfile::tempdir().unwrap();
    let config = tritter::train::TrainConfig { checkpoint_every: 1, keep_checkpoints: 2, ..train_config(seed, 2) };
    let outcome =
        train::<AD>(&model_config(), &config, data(&mut rng, 8, 4, 16), options(run.path(), None), &Default::default())
            .unwrap();
    let step1 = run.path().join("checkpoints/step-00000001/model");
    let before = parameters(&TritterModel::<B>::load_checkpoint(&step1, &Default::default()).unwrap());
    let after = parameters(&outcome.model);
    assert_eq!(before.len(), after.len());
    for ((_, a), (_, b)) in before.iter().zip(&after) {
        assert!(b.iter().all(|v| v.is_finite()));
        assert!(a.iter().zip(b).any(|(x, y)| x != y), "a parameter did not change in step 2");
    }
}

#[test]
fn accumulated_micro_batches_equal_one_big_batch() {
    let (mut rng, seed) = fresh_rng("accumulated_micro_batches_equal_one_big_batch");
    let windows = arithmetic_windows(&mut rng, 64, 16);
    let valid = arithmetic_windows(&mut rng, 4, 16);
    // Both runs start from the same saved weights (the global RNG is shared by parallel tests).
    // Without ternary rounding, so float-rounding differences between the two summation orders
    // stay at rounding level instead of flipping quantized weights.
    let model = tritter::TritterConfig { bitnet: false, ..model_config() };
    let init = tempfile::tempdir().unwrap();
    TritterModel::<B>::new(&model, &Default::default()).unwrap().save_checkpoint(init.path()).unwrap();
    let run = |batch_size: usize, grad_accum: usize| {
        let dir = tempfile::tempdir().unwrap();
        let config = tritter::train::TrainConfig { batch_size, grad_accum, ..train_config(seed, 3) };
        let data = tritter::train::TrainData {
            train: std::sync::Arc::new(InMemDataset::new(windows.clone())),
            valid: std::sync::Arc::new(InMemDataset::new(valid.clone())),
            tasks: None,
            answers: None,
        };
        let options =
            tritter::train::TrainOptions { init: Some(init.path().to_path_buf()), ..options(dir.path(), None) };
        train::<AD>(&model, &config, data, options, &Default::default()).unwrap()
    };
    let big = run(8, 1);
    let accumulated = run(2, 4);
    assert_eq!(big.state.samples, accumulated.state.samples);
    assert_eq!(accumulated.state.backward_passes, 12);
    for ((step, a), (_, b)) in big.losses.iter().zip(&accumulated.losses) {
        assert!((a - b).abs() < 1e-4, "step {step}: loss {a} (batch 8) vs {b} (4 x 2)");
    }
}
