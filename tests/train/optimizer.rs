//! `FusedAdamW` (one pass per parameter on the CPU, tensor ops elsewhere) against Burn's own
//! `AdamW` with the same hyper-parameters: the same parameters after several steps, bit for bit.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::{Tensor, TensorData};
use rand::{rngs::StdRng, Rng};
use tritter::train::fused_adamw::FusedAdamWConfig;
use tritter::train::optimizer::adamw;
use tritter::TritterModel;

use crate::train::common::{fresh_rng, model_config, parameters, train_config, AD};

/// Registers the same random gradient for every parameter in two `GradientsParams` (some
/// entries exactly zero, as for unused embedding rows).
struct RandomGrads<'a> {
    rng: &'a mut StdRng,
    scale: f32,
    grads: [GradientsParams; 2],
}

impl<Bk: tritter::backend::TritterAutodiffBackend> ModuleVisitor<Bk> for RandomGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Bk, D>>) {
        let shape = param.val().shape();
        let values: Vec<f32> = (0..shape.num_elements())
            .map(|_| if self.rng.random_bool(0.1) { 0.0 } else { self.rng.random_range(-1.0..1.0f32) * self.scale })
            .collect();
        for grads in &mut self.grads {
            let g = Tensor::<Bk::InnerBackend, D>::from_data(
                TensorData::new(values.clone(), shape.clone()),
                &Default::default(),
            );
            grads.register(param.id, g);
        }
    }
}

fn equal_to_burn<Bk: tritter::backend::TritterAutodiffBackend>(rng: &mut StdRng) {
    for weight_decay in [0.0, 0.1] {
        let mut config = train_config(1, 1);
        config.weight_decay = weight_decay;
        config.beta2 = rng.random_range(0.9..0.999);
        let burn = AdamWConfig::new()
            .with_beta_1(config.beta1)
            .with_beta_2(config.beta2)
            .with_epsilon(config.epsilon)
            .with_weight_decay(config.weight_decay)
            .init::<Bk, TritterModel<Bk>>();
        same_steps(rng, adamw::<Bk>(&config), burn, &format!("weight decay {weight_decay}"));
    }
    // Both configs' defaults: the fused optimizer is a drop-in for Burn's.
    let ours = FusedAdamWConfig::new().init::<Bk, TritterModel<Bk>>();
    same_steps(rng, ours, AdamWConfig::new().init(), "default configs");
}

/// Four steps of both optimizers with the same random gradients of growing scale.
fn same_steps<Bk: tritter::backend::TritterAutodiffBackend>(
    rng: &mut StdRng,
    mut ours: impl Optimizer<TritterModel<Bk>, Bk>,
    mut burn: impl Optimizer<TritterModel<Bk>, Bk>,
    case: &str,
) {
    let mut ours_model = TritterModel::<Bk>::new(&model_config(), &Default::default()).unwrap();
    let mut burn_model = ours_model.clone();
    for step in 0..4 {
        let mut visitor =
            RandomGrads { rng, scale: 10f32.powi(step - 2), grads: [GradientsParams::new(), GradientsParams::new()] };
        ours_model.visit(&mut visitor);
        let [g_ours, g_burn] = visitor.grads;
        let lr = 1e-3 * (step + 1) as f64;
        ours_model = ours.step(lr, ours_model, g_ours);
        burn_model = burn.step(lr, burn_model, g_burn);
        let bits = |m: &TritterModel<Bk>| {
            parameters(m)
                .into_iter()
                .map(|(_, v)| v.into_iter().map(f32::to_bits).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        };
        assert!(bits(&ours_model) == bits(&burn_model), "{case}, step {step}: parameters differ from Burn's AdamW");
    }
}

#[test]
fn fused_adamw_equals_burn_adamw_bit_for_bit() {
    let (mut rng, _) = fresh_rng("fused_adamw_equals_burn_adamw_bit_for_bit");
    // The CPU's one-pass update, then the tensor-op path (a backend type it does not list).
    equal_to_burn::<AD>(&mut rng);
    equal_to_burn::<burn::backend::Autodiff<burn::backend::NdArray<f32, i32>>>(&mut rng);
}
