//! Two ways a model can fail to train: parameters cut off from the gradient, and a model that
//! never learns.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::Tensor;
use tritter::{TritterConfig, TritterModel};

use crate::model::common::{fresh_rng, ids_tensor, random_ids, AD};

/// Records, for every float parameter (by path), how many gradient entries are non-zero.
struct GradientCensus<'a, Bk: tritter::backend::TritterAutodiffBackend> {
    grads: &'a Bk::Gradients,
    path: Vec<String>,
    nonzero: Vec<(String, usize, usize)>,
}

impl<Bk: tritter::backend::TritterAutodiffBackend> ModuleVisitor<Bk> for GradientCensus<'_, Bk> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Bk, D>>) {
        let name = self.path.join(".");
        let total = param.val().shape().num_elements();
        let nonzero = match param.val().grad(self.grads) {
            Some(g) => g
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap()
                .iter()
                .filter(|v| **v != 0.0 && v.is_finite())
                .count(),
            None => 0,
        };
        self.nonzero.push((name, nonzero, total));
    }
}

#[test]
fn every_parameter_receives_a_gradient() {
    let mut rng = fresh_rng("every_parameter_receives_a_gradient");
    let device = Default::default();
    for tie_embeddings in [true, false] {
        let mut config = TritterConfig::test();
        config.bitnet = true;
        config.qk_norm = true;
        config.tie_embeddings = tie_embeddings;
        config.ternary_lm_head = !tie_embeddings;
        let model = TritterModel::<AD>::new(&config, &device).unwrap();
        let ids = random_ids(&mut rng, 2, 16, config.vocab_size);
        let grads = model.loss(ids_tensor::<AD>(&ids, &device)).backward();
        let mut census = GradientCensus::<AD> { grads: &grads, path: vec![], nonzero: vec![] };
        model.visit(&mut census);
        let expected_tensors = 3 + config.num_layers * 15 + usize::from(!tie_embeddings);
        assert_eq!(census.nonzero.len(), expected_tensors, "{:?}", census.nonzero);
        for (name, nonzero, total) in &census.nonzero {
            assert!(*nonzero > 0, "tied={tie_embeddings}: `{name}` got no gradient ({total} entries)");
            // Every entry of a dense weight matters (embedding rows of unused tokens aside).
            if !name.contains("embed_tokens") || tie_embeddings {
                assert!(
                    *nonzero * 10 >= *total * 9,
                    "`{name}`: only {nonzero} of {total} gradient entries are non-zero"
                );
            }
        }
    }
}

#[test]
fn overfits_a_fixed_batch() {
    let mut rng = fresh_rng("overfits_a_fixed_batch");
    let device = Default::default();
    let config = TritterConfig::test();
    assert!(config.bitnet);
    let mut model = TritterModel::<AD>::new(&config, &device).unwrap();
    let ids = ids_tensor::<AD>(&random_ids(&mut rng, 2, 32, config.vocab_size), &device);
    let mut optim = AdamWConfig::new().with_beta_2(0.95).with_weight_decay(0.0).init();
    let start: f32 = model.loss(ids.clone()).into_scalar();
    let mut last = start;
    let started = std::time::Instant::now();
    for step in 0..400 {
        let loss = model.loss(ids.clone());
        last = loss.clone().into_scalar();
        if last < 0.1 * start {
            eprintln!("overfit: loss {start:.3} -> {last:.3} in {step} steps, {:.1?}", started.elapsed());
            return;
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    panic!("loss went from {start} to {last} in 400 steps; expected below {}", 0.1 * start);
}

/// `loss_on` against an f64 cross-entropy of the model's own logits over the kept targets, and
/// `loss(ids)` equal to `loss_on(ids[:, :-1], ids[:, 1:])`.
#[test]
fn the_loss_on_chosen_targets_skips_the_others() {
    use rand::Rng;
    let mut rng = fresh_rng("the_loss_on_chosen_targets_skips_the_others");
    let device = Default::default();
    let config = TritterConfig { pad_token_id: Some(0), ..TritterConfig::test() };
    let model = TritterModel::<AD>::new(&config, &device).unwrap();
    let (batch, seq, vocab) = (3, 12, config.vocab_size);
    let ids: Vec<Vec<usize>> = random_ids(&mut rng, batch, seq + 1, vocab)
        .into_iter()
        .map(|row| row.into_iter().map(|id| id.max(1)).collect())
        .collect();
    let inputs: Vec<Vec<usize>> = ids.iter().map(|row| row[..seq].to_vec()).collect();
    // About half of the targets skipped (set to the pad id 0).
    let targets: Vec<Vec<usize>> =
        ids.iter().map(|row| row[1..].iter().map(|&t| if rng.random_bool(0.5) { 0 } else { t }).collect()).collect();
    let logits = crate::model::common::to_vec(model.forward(ids_tensor::<AD>(&inputs, &device)));
    let (mut total, mut kept) = (0.0f64, 0usize);
    for (row, targets) in targets.iter().enumerate() {
        for (pos, &target) in targets.iter().enumerate().filter(|(_, &t)| t != 0) {
            let x: Vec<f64> = logits[(row * seq + pos) * vocab..][..vocab].iter().map(|&v| v as f64).collect();
            let max = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + x.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            total += lse - x[target];
            kept += 1;
        }
    }
    let expected = total / kept as f64;
    let loss: f32 =
        model.loss_on(ids_tensor::<AD>(&inputs, &device), ids_tensor::<AD>(&targets, &device)).into_scalar();
    assert!((loss as f64 - expected).abs() < 1e-5 * expected, "loss_on {loss} vs f64 {expected}");

    let shifted: Vec<Vec<usize>> = ids.iter().map(|row| row[1..].to_vec()).collect();
    let full: f32 = model.loss(ids_tensor::<AD>(&ids, &device)).into_scalar();
    let on: f32 = model.loss_on(ids_tensor::<AD>(&inputs, &device), ids_tensor::<AD>(&shifted, &device)).into_scalar();
    assert!((full - on).abs() <= 1e-6 * full.abs(), "loss {full} vs loss_on of the shifted ids {on}");
}
