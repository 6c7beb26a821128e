//! A backend the crate knows nothing of runs the model through the reference ops: an empty
//! `impl TritterBackend` is all it takes. (A lib test: only this crate may implement its trait
//! for a foreign backend type.)

use burn::backend::NdArray;
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};

use crate::backend::{has_native_ops, Autodiff, Cpu, Reference, TritterBackend};
use crate::config::TritterConfig;
use crate::model::TritterModel;

/// The CPU backend with `i16` ints: a type no part of the crate lists.
type Unknown = NdArray<f32, i16>;

impl TritterBackend for Unknown {}

fn logits<B: TritterBackend>(dir: &std::path::Path, ids: &[i64], shape: [usize; 2]) -> Vec<f32> {
    let model = TritterModel::<B>::load_checkpoint(dir, &Default::default()).unwrap();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids.to_vec(), shape), &Default::default());
    model.forward(ids).into_data().convert::<f32>().to_vec().unwrap()
}

/// Counts the float parameters and those with a gradient.
struct GradCount<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    params: usize,
    with_grad: usize,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradCount<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.params += 1;
        self.with_grad += param.val().grad(self.grads).is_some() as usize;
    }
}

#[test]
fn a_backend_unknown_to_the_crate_runs_the_reference_ops() {
    assert!(!has_native_ops::<Unknown>() && !has_native_ops::<Autodiff<Unknown>>());
    assert!(has_native_ops::<Cpu>() && has_native_ops::<Autodiff<Cpu>>());
    let mut rng = rand::rngs::StdRng::seed_from_u64(rand::rng().random());
    let mut config = TritterConfig::from_preset("test").unwrap();
    (config.hidden_size, config.intermediate_size, config.num_layers, config.vocab_size) = (64, 128, 2, 97);
    let dir = tempfile::tempdir().unwrap();
    TritterModel::<Cpu>::new(&config, &Default::default()).unwrap().save_checkpoint(dir.path()).unwrap();
    let shape = [2, 9];
    let ids: Vec<i64> = (0..shape[0] * shape[1]).map(|_| rng.random_range(0..config.vocab_size as i64)).collect();

    let unknown = logits::<Unknown>(dir.path(), &ids, shape);
    // The same tensor ops in the same order as the crate's reference backend: equal bit for bit.
    assert_eq!(unknown, logits::<Reference>(dir.path(), &ids, shape));
    // And the CPU kernels compute the same model up to float rounding.
    let cpu = logits::<Cpu>(dir.path(), &ids, shape);
    let worst = unknown.iter().zip(&cpu).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0f32, f32::max);
    assert!(worst < 1e-3, "unknown backend vs CPU kernels: {worst}");

    // Training works too: every parameter receives a gradient.
    type Ad = Autodiff<Unknown>;
    let model = TritterModel::<Ad>::load_checkpoint(dir.path(), &Default::default()).unwrap();
    let ids = Tensor::<Ad, 2, Int>::from_data(TensorData::new(ids, shape), &Default::default());
    let grads = model.loss(ids).backward();
    let mut count = GradCount::<Ad> { grads: &grads, params: 0, with_grad: 0 };
    model.visit(&mut count);
    assert!(
        count.params > 0 && count.with_grad == count.params,
        "{} of {} parameters have a gradient",
        count.with_grad,
        count.params
    );
    let _ = model.valid();
}
