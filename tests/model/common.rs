//! Shared helpers: backends, fresh random seeds, tensor <-> Vec conversions, comparisons.

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use rand::{rngs::StdRng, Rng, SeedableRng};

pub type B = burn::backend::NdArray<f32>;
pub type AD = burn::backend::Autodiff<B>;

/// A generator from [`crate::fresh_seed`], which also seeds ndarray's global RNG (weight init).
pub fn fresh_rng(test: &str) -> StdRng {
    let seed = crate::fresh_seed(test);
    B::seed(&Default::default(), seed);
    StdRng::seed_from_u64(seed)
}

/// Uniformly random token ids `[batch][seq]` below `vocab`.
pub fn random_ids(rng: &mut StdRng, batch: usize, seq: usize, vocab: usize) -> Vec<Vec<usize>> {
    (0..batch).map(|_| (0..seq).map(|_| rng.random_range(0..vocab)).collect()).collect()
}

/// `[batch][seq]` ids as a Burn int tensor.
pub fn ids_tensor<Bk: tritter::TritterBackend>(ids: &[Vec<usize>], device: &Bk::Device) -> Tensor<Bk, 2, Int> {
    let (batch, seq) = (ids.len(), ids[0].len());
    let flat: Vec<i64> = ids.iter().flatten().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(flat, [batch, seq]), device)
}

/// Normal random values as a tensor (drawn on the host, so the seed controls them).
pub fn random_tensor<Bk: tritter::TritterBackend, const D: usize>(
    rng: &mut StdRng,
    shape: [usize; D],
    std: f32,
    device: &Bk::Device,
) -> Tensor<Bk, D> {
    let n = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| normal(rng) * std).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// γ = mean|W| of each element's scale group (`w` row-major `[rows, cols]`), recomputed in f64.
pub fn gammas_f64(w: &[f32], rows: usize, cols: usize, scale: tritter::WeightScale) -> Vec<f64> {
    let len = match scale {
        tritter::WeightScale::PerTensor => rows * cols,
        tritter::WeightScale::PerRow => cols,
        tritter::WeightScale::PerGroup(n) => n,
    }
    .max(1);
    let groups: Vec<f64> = w.chunks(len).map(|g| g.iter().map(|v| v.abs() as f64).sum::<f64>() / len as f64).collect();
    (0..w.len()).map(|i| groups[i / len]).collect()
}

/// A standard normal sample (Box-Muller).
pub fn normal(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

pub fn to_vec<Bk: tritter::TritterBackend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

/// `max |a − b| / max |b|`: the error relative to the scale of the reference.
/// Panics on any non-finite value, so NaN can never pass as "no difference".
pub fn max_rel_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    assert!(a.iter().all(|v| v.is_finite()), "non-finite value in the result under test");
    assert!(b.iter().all(|v| v.is_finite()), "non-finite value in the reference");
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((*x as f64 - y).abs())) / scale
}

/// A unique temporary directory.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Every float parameter of a module as `(spec name, shape, values)`, in visiting order.
pub fn named_params<Bk: tritter::TritterBackend, M: burn_store::ModuleSnapshot<Bk>>(
    module: &M,
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    module
        .collect(None, None, true)
        .into_iter()
        .map(|s| {
            let values = s.to_data().unwrap().convert::<f32>().to_vec().unwrap();
            (s.full_path(), s.shape.clone(), values)
        })
        .collect()
}
