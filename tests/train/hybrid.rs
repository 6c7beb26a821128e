//! The hybrid predictive trainer: Predict steps really move the weights (per parameter, from
//! the recent optimizer updates), the loss keeps falling, no files or prints leak out.

use burn::tensor::{Int, Tensor, TensorData};
use hybrid_predict_trainer_rs::{HybridTrainerConfig, Phase};
use tritter::data::TokenBatch;
use tritter::train::{create_trainer_with_config, train, HybridOptions, TrainConfig};

use crate::train::common::{arithmetic_windows, data, fresh_rng, model_config, options, parameters, train_config, AD};

fn mean(values: &[f32]) -> f32 {
    values.iter().sum::<f32>() / values.len() as f32
}

#[test]
fn predict_steps_change_the_weights_and_the_loss_keeps_falling() {
    let (mut rng, _) = fresh_rng("predict_steps_change_the_weights_and_the_loss_keeps_falling");
    let config = HybridTrainerConfig::builder()
        .warmup_steps(8)
        .full_steps(4)
        .max_predict_steps(4)
        .confidence_threshold(0.0)
        .build();
    let mut trainer = create_trainer_with_config::<AD>(&model_config(), config, 5e-3, &Default::default()).unwrap();
    let windows = arithmetic_windows(&mut rng, 4 * 80, 16);
    let (mut losses, mut predicted, mut backward) = (Vec::new(), 0, 0);
    for chunk in windows.chunks(4) {
        let ids: Vec<i64> = chunk.iter().flatten().map(|&i| i as i64).collect();
        let batch =
            TokenBatch::<AD>::new(Tensor::<AD, 2, Int>::from_data(TensorData::new(ids, [4, 17]), &Default::default()));
        let before = parameters(trainer.model().model());
        let result = trainer.step(&batch).unwrap();
        assert!(result.loss.is_finite());
        losses.push(result.loss);
        match result.phase {
            Phase::Predict => {
                predicted += 1;
                let after = parameters(trainer.model().model());
                let changed = before.iter().zip(&after).filter(|((_, a), (_, b))| a != b).count();
                assert_eq!(changed, after.len(), "a Predict step left {} parameters unchanged", after.len() - changed);
            }
            Phase::Warmup | Phase::Full => backward += 1,
            Phase::Correct => {}
        }
    }
    assert!(predicted >= 3, "only {predicted} Predict steps in 80");
    assert!(backward < 80, "every step ran a backward pass");
    let (start, end) = (mean(&losses[..8]), mean(&losses[70..]));
    assert!(end < start - 0.5, "loss did not keep falling: {start} -> {end}");
    assert!(!std::path::Path::new("checkpoints").exists(), "the hybrid crate wrote ./checkpoints");
}

#[test]
fn hybrid_mode_runs_inside_burn_train() {
    let (mut rng, seed) = fresh_rng("hybrid_mode_runs_inside_burn_train");
    let dir = tempfile::tempdir().unwrap();
    let hybrid =
        HybridOptions { warmup_steps: 10, full_steps: 5, max_predict_steps: 5, confidence_threshold: 0.0, history: 4 };
    let config = TrainConfig { hybrid: Some(hybrid), checkpoint_every: 30, ..train_config(seed, 60) };
    let outcome = train::<AD>(
        &model_config(),
        &config,
        data(&mut rng, 300, 8, 16),
        options(dir.path(), None),
        &Default::default(),
    )
    .unwrap();
    let stats = outcome.hybrid.expect("hybrid statistics");
    assert_eq!(stats.warmup_steps + stats.full_steps + stats.predict_steps + stats.correct_steps, 60);
    assert!(stats.predict_steps > 0, "{stats:?}");
    assert!(stats.predicted_update_norm > 0.0, "{stats:?}");
    assert_eq!(outcome.state.backward_passes, stats.backward_passes);
    assert!(outcome.state.backward_passes < 60);
    let losses: Vec<f32> = outcome.losses.iter().map(|(_, l)| *l).collect();
    assert!(mean(&losses[50..]) < mean(&losses[..5]) - 0.5, "{losses:?}");
    assert!(dir.path().join("checkpoints/step-00000060/model/model.safetensors").is_file());
}
