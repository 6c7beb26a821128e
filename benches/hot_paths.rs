//! The hot paths, so regressions show up: the training projection's two quantizers, a ternary
//! and a full-precision linear layer forward + backward (the fused op against the tensor-op
//! reference), the CPU's fused model ops (attention core, cross-entropy, norm, RoPE, gated
//! activation) against theirs, attention, MLP, whole-model forward and a training step
//! (forward, backward, AdamW). CPU (ndarray); with `--features wgpu` (or `cuda`) the quantizer,
//! linear and training-step rows also run on wgpu (or CUDA), on `CubeBackend` and on Burn's
//! fusion backend over it (`Wgpu`, `Cuda`).
//!
//! `cargo bench --bench hot_paths [--features wgpu | --features cuda]` (criterion
//! statistics, then a section of BENCHMARKS.md with medians).

#[path = "support/results.rs"]
mod results;

use std::time::Duration;

use burn::optim::{GradientsParams, Optimizer};

use burn::tensor::{Int, Tensor, TensorData};
use criterion::Criterion;
use rand::{rngs::StdRng, Rng, SeedableRng};
use tritter::backend::{reference, TritterBackend};
use tritter::model::{attention_mask, Attention, Mlp, Norm, RotaryEmbedding};
use tritter::ternary::{fake_quantize_activation, fake_quantize_weight, ternary_linear, TernaryQuant};
use tritter::train::{optimizer::adamw, TrainConfig};
use tritter::{Activation, TritterConfig, TritterModel, WeightQuantEps, WeightScale};

type Cpu = burn::backend::NdArray<f32>;
/// The wgpu backend without Burn's fusion (`burn::backend::Wgpu` is the fusion backend over it).
#[cfg(feature = "wgpu")]
type WgpuCube = burn_cubecl::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>;
/// The CUDA backend without Burn's fusion.
#[cfg(feature = "cuda")]
type CudaCube = burn_cubecl::CubeBackend<burn_cubecl::cubecl::cuda::CudaRuntime, f32, i32, u8>;

fn random<Bk: tritter::TritterBackend, const D: usize>(
    rng: &mut StdRng,
    shape: [usize; D],
    device: &Bk::Device,
) -> Tensor<Bk, D> {
    let n = shape.iter().product();
    Tensor::from_data(
        TensorData::new((0..n).map(|_| rng.random_range(-0.05f32..0.05)).collect::<Vec<_>>(), shape),
        device,
    )
}

fn ids<Bk: tritter::TritterBackend>(
    rng: &mut StdRng,
    vocab: usize,
    batch: usize,
    seq: usize,
    device: &Bk::Device,
) -> Tensor<Bk, 2, Int> {
    Tensor::from_data(
        TensorData::new((0..batch * seq).map(|_| rng.random_range(0..vocab as i64)).collect::<Vec<_>>(), [batch, seq]),
        device,
    )
}

/// Forward + backward of `[8, 128, 1024] -> 4096` with `quant`, gradients read back: the
/// backend's fused op (`ternary_linear`) or the tensor-op reference on the same tokens.
fn linear_step<AD: tritter::backend::TritterAutodiffBackend>(
    x: &Tensor<AD, 3>,
    w: &Tensor<AD, 2>,
    quant: &TernaryQuant,
    fused: bool,
) {
    let x = x.clone().require_grad();
    let w = w.clone().require_grad();
    let y = if fused {
        ternary_linear(x.clone(), w.clone(), quant)
    } else {
        reference::ternary_linear(x.clone().reshape([1024, 1024]), w.clone(), quant).reshape([8, 128, 4096])
    };
    let grads = y.sum().backward();
    // One element of each gradient: waits for the device without timing a full read-back
    // (burn-ndarray copies a shared tensor element by element, ~25 ns per element).
    let _ = w.grad(&grads).unwrap().slice([0..1, 0..1]).into_data();
    let _ = x.grad(&grads).unwrap().slice([0..1, 0..1, 0..1]).into_data();
}

/// The forward's two quantizers alone (`x̃` and `W̃` as `quant` says): the backend's own
/// (`native`) or the tensor ops; one element of each read back.
fn quantize<Bk: TritterBackend>(x: &Tensor<Bk, 2>, w: &Tensor<Bk, 2>, quant: &TernaryQuant, native: bool) {
    let (xq, wq) = if native {
        (Bk::quantize_activation(x.clone(), quant), Bk::quantize_weight(w.clone(), quant))
    } else {
        (
            fake_quantize_activation(x.clone()),
            fake_quantize_weight(w.clone(), quant.weight_scale.expect("a ternary quantization"), quant.weight_eps),
        )
    };
    let _ = xq.slice([0..1, 0..1]).into_data();
    let _ = wq.slice([0..1, 0..1]).into_data();
}

fn linear_rows<AD: tritter::backend::TritterAutodiffBackend>(
    backend: &str,
    device: &AD::Device,
    criterion: &mut Criterion,
    rows: &mut Vec<String>,
) where
    AD::InnerBackend: TritterBackend,
{
    let mut rng = StdRng::seed_from_u64(1);
    // Owned arrays, as parameters and activations are in training (see `with_owned_params`).
    let x = random::<AD, 3>(&mut rng, [8, 128, 1024], device).mul_scalar(1.0);
    let w = random::<AD, 2>(&mut rng, [4096, 1024], device).mul_scalar(1.0);
    let ternary = TernaryQuant::bitnet(WeightScale::PerTensor, WeightQuantEps::Add, Some(8));
    let (x2, w2) = (x.clone().reshape([1024, 1024]).inner(), w.clone().inner());
    let what = "quantizers x̃ 1024×1024 and W̃ 4096×1024 (per tensor), forward";
    criterion.bench_function(&format!("{what}/fused/{backend}"), |b| b.iter(|| quantize(&x2, &w2, &ternary, true)));
    let fused = results::median_seconds(|| quantize(&x2, &w2, &ternary, true), 9);
    let reference = results::median_seconds(|| quantize(&x2, &w2, &ternary, false), 9);
    rows.push(format!("| {backend} | {what}, tensor ops | {:.2} |", reference * 1e3));
    rows.push(format!(
        "| {backend} | {what}, the backend's kernels (**{:.1}×** the tensor ops) | {:.2} |",
        reference / fused,
        fused * 1e3
    ));
    let plain = TernaryQuant::FULL_PRECISION;
    for (quant, what) in
        [(&ternary, "TernaryLinear 1024→4096 (int8 activations)"), (&plain, "full-precision linear 1024→4096")]
    {
        criterion.bench_function(&format!("{what}/fused/{backend}"), |b| b.iter(|| linear_step(&x, &w, quant, true)));
        criterion
            .bench_function(&format!("{what}/reference/{backend}"), |b| b.iter(|| linear_step(&x, &w, quant, false)));
        let fused = results::median_seconds(|| linear_step(&x, &w, quant, true), 5);
        let reference = results::median_seconds(|| linear_step(&x, &w, quant, false), 5);
        rows.push(format!(
            "| {backend} | {what}, 8×128, forward + backward, tensor-op reference | {:.1} |",
            reference * 1e3
        ));
        rows.push(format!(
            "| {backend} | {what}, 8×128, forward + backward, fused (**{:.2}×** the reference) | {:.1} |",
            reference / fused,
            fused * 1e3
        ));
    }
}

/// Forward + backward of the CPU's fused model ops against their tensor-op references, on
/// `small_100m` shapes (4×128 tokens), one gradient element read back.
fn fused_op_rows(criterion: &mut Criterion, rows: &mut Vec<String>) {
    type AD = burn::backend::Autodiff<Cpu>;
    let mut rng = StdRng::seed_from_u64(4);
    let device = Default::default();
    let c = TritterConfig::small_100m();
    let (b, t, d) = (4, 128, c.head_dim());
    let grad = |x: &Tensor<AD, 4>, loss: Tensor<AD, 1>| {
        drop(x.grad(&loss.backward()).unwrap().slice([0..1, 0..1, 0..1, 0..1]).into_data())
    };
    let mut row = |what: &str, fused: &mut dyn FnMut(), reference: &mut dyn FnMut()| {
        criterion.bench_function(&format!("{what}/fused"), |bench| bench.iter(&mut *fused));
        let (f, r) = (results::median_seconds(&mut *fused, 9), results::median_seconds(&mut *reference, 9));
        rows.push(format!("| CPU | {what}, forward + backward, tensor-op reference | {:.2} |", r * 1e3));
        rows.push(format!(
            "| CPU | {what}, forward + backward, fused (**{:.1}×** the reference) | {:.2} |",
            r / f,
            f * 1e3
        ));
    };
    // q, k, v as the model hands them over: `[B, heads, T, d]` views of `[B, T, heads, d]`.
    let q = random::<AD, 4>(&mut rng, [b, t, c.num_heads, d], &device).mul_scalar(20.0).require_grad();
    let kv = random::<AD, 4>(&mut rng, [b, t, c.num_kv_heads, d], &device).mul_scalar(20.0).require_grad();
    let mask = attention_mask(&ids::<AD>(&mut rng, 2, b, t, &device), None);
    let attend = |fused: bool| {
        let (qt, kt) = (q.clone().swap_dims(1, 2), kv.clone().swap_dims(1, 2));
        let out = if fused {
            TritterBackend::grouped_query_attention(qt, kt.clone(), kt, mask.clone())
        } else {
            reference::attention(qt, kt.clone(), kt, mask.clone())
        };
        grad(&q, out.sum());
    };
    row("attention core (GQA 12/4 heads, 128 keys)", &mut || attend(true), &mut || attend(false));
    let logits = random::<AD, 2>(&mut rng, [b * (t - 1), c.vocab_size], &device).mul_scalar(20.0).require_grad();
    let targets = Tensor::<AD, 1, Int>::from_data(
        TensorData::new(
            (0..b * (t - 1)).map(|_| rng.random_range(0..c.vocab_size as i64)).collect::<Vec<_>>(),
            [b * (t - 1)],
        ),
        &device,
    );
    let loss = |fused: bool| {
        let l = if fused {
            TritterBackend::cross_entropy(logits.clone(), targets.clone(), None)
        } else {
            reference::cross_entropy(logits.clone(), targets.clone(), None)
        };
        drop(logits.grad(&l.backward()).unwrap().slice([0..1, 0..1]).into_data());
    };
    row("cross-entropy, 508 × 32 000 logits", &mut || loss(true), &mut || loss(false));
    let x = random::<AD, 4>(&mut rng, [b, t, 1, c.hidden_size], &device).mul_scalar(20.0).require_grad();
    let norm = Norm::<AD>::new(tritter::NormKind::LayerNorm, c.hidden_size, 1e-5, &device);
    let normalize = |fused: bool| {
        let y = if fused {
            norm.forward(x.clone())
        } else {
            reference::norm(
                x.clone().reshape([b * t, c.hidden_size]),
                norm.weight.val(),
                norm.bias.as_ref().map(|b| b.val()),
                1e-5,
            )
            .reshape([b, t, 1, c.hidden_size])
        };
        grad(&x, y.sum());
    };
    row("LayerNorm over 768, 512 rows", &mut || normalize(true), &mut || normalize(false));
    let rope = RotaryEmbedding { theta: c.rope_theta, head_dim: d };
    let rotate = |fused: bool| {
        let y = if fused {
            rope.apply(q.clone(), 0)
        } else {
            let (cos, sin) = rope.tables(0, t);
            reference::rope(q.clone(), cos, sin)
        };
        grad(&q, y.sum());
    };
    row("RoPE, 12 heads × 64", &mut || rotate(true), &mut || rotate(false));
    let gate = random::<AD, 4>(&mut rng, [b, t, 1, c.intermediate_size], &device).mul_scalar(20.0).require_grad();
    let up = random::<AD, 4>(&mut rng, [b, t, 1, c.intermediate_size], &device).mul_scalar(20.0).require_grad();
    let activate = |fused: bool| {
        let y = if fused {
            TritterBackend::gated_activation(gate.clone(), up.clone(), Activation::ReluSquared)
        } else {
            reference::gated_activation(gate.clone(), up.clone(), Activation::ReluSquared)
        };
        grad(&gate, y.sum());
    };
    row("gated squared ReLU, 512 × 2048", &mut || activate(true), &mut || activate(false));
}

/// Median seconds of a training step (forward, backward, AdamW) of the test preset on 8×128.
fn train_step_seconds<AD: tritter::backend::TritterAutodiffBackend>(
    device: &AD::Device,
    criterion: &mut Criterion,
    backend: &str,
) -> f64 {
    let mut rng = StdRng::seed_from_u64(3);
    let test = TritterConfig::test();
    let mut model = Some(TritterModel::<AD>::new(&test, device).unwrap());
    let mut optimizer = adamw::<AD>(&TrainConfig::default());
    let input = ids::<AD>(&mut rng, test.vocab_size, 8, 128, device);
    let mut step = || {
        let m = model.take().unwrap();
        let loss = m.loss(input.clone());
        // Reading the loss waits for the device (the previous step's update included).
        let _ = loss.clone().into_data();
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        model = Some(optimizer.step(1e-3, m, grads));
    };
    let seconds = results::median_seconds(&mut step, 9);
    criterion.bench_function(&format!("train_step/test/8x128/{backend}"), |b| b.iter(&mut step));
    seconds
}

/// Training-step rows of a GPU backend: `CubeBackend` and Burn's fusion backend over it.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn train_step_rows<Bare: tritter::backend::TritterAutodiffBackend, Fused: tritter::backend::TritterAutodiffBackend>(
    backend: &str,
    criterion: &mut Criterion,
    rows: &mut Vec<String>,
) {
    let bare = train_step_seconds::<Bare>(&Default::default(), criterion, backend);
    let fused = train_step_seconds::<Fused>(&Default::default(), criterion, &format!("{backend}+fusion"));
    rows.push(format!("| {backend} | training step, test preset, 8×128, `CubeBackend` | {:.1} |", 1e3 * bare));
    rows.push(format!(
        "| {backend}+fusion | training step, test preset, 8×128, Burn fusion ({:.2}× the `CubeBackend` time) | {:.1} |",
        fused / bare,
        1e3 * fused
    ));
}

fn main() {
    tritter::allocator::keep_freed_memory();
    let mut criterion =
        Criterion::default().sample_size(10).measurement_time(Duration::from_secs(5)).configure_from_args();
    let mut rows = Vec::new();
    let device = Default::default();
    linear_rows::<burn::backend::Autodiff<Cpu>>("CPU", &device, &mut criterion, &mut rows);
    #[cfg(feature = "wgpu")]
    linear_rows::<burn::backend::Autodiff<WgpuCube>>("wgpu", &Default::default(), &mut criterion, &mut rows);
    #[cfg(feature = "wgpu")]
    linear_rows::<burn::backend::Autodiff<tritter::backend::Wgpu>>(
        "wgpu+fusion",
        &Default::default(),
        &mut criterion,
        &mut rows,
    );
    #[cfg(feature = "cuda")]
    linear_rows::<burn::backend::Autodiff<CudaCube>>("CUDA", &Default::default(), &mut criterion, &mut rows);
    #[cfg(feature = "cuda")]
    linear_rows::<burn::backend::Autodiff<tritter::backend::Cuda>>(
        "CUDA+fusion",
        &Default::default(),
        &mut criterion,
        &mut rows,
    );

    // Blocks and the whole model on the CPU, `small_100m` shapes for the blocks.
    let mut rng = StdRng::seed_from_u64(2);
    let config = TritterConfig::small_100m();
    let quant = TernaryQuant::bitnet(config.weight_scale, config.weight_quant_eps, config.activation_bits);
    let attention = Attention::<Cpu>::new(&config, quant, &device);
    let mlp = Mlp::<Cpu>::new(&config, quant, &device);
    let x = random::<Cpu, 3>(&mut rng, [4, 128, config.hidden_size], &device);
    let mask = attention_mask(&ids::<Cpu>(&mut rng, 2, 4, 128, &device), None);
    criterion.bench_function("attention_fwd/small_100m/4x128", |b| {
        b.iter(|| attention.forward(x.clone(), 0, mask.clone()).into_data())
    });
    criterion.bench_function("mlp_fwd/small_100m/4x128", |b| b.iter(|| mlp.forward(x.clone()).into_data()));
    rows.push(format!(
        "| CPU | attention block forward, small_100m, 4×128 | {:.1} |",
        1e3 * results::median_seconds(|| drop(attention.forward(x.clone(), 0, mask.clone()).into_data()), 5)
    ));
    rows.push(format!(
        "| CPU | MLP block forward, small_100m, 4×128 | {:.1} |",
        1e3 * results::median_seconds(|| drop(mlp.forward(x.clone()).into_data()), 5)
    ));

    let test = TritterConfig::test();
    let model = TritterModel::<Cpu>::new(&test, &device).unwrap();
    let input = ids::<Cpu>(&mut rng, test.vocab_size, 8, 128, &device);
    criterion.bench_function("model_fwd/test/8x128", |b| b.iter(|| model.forward(input.clone()).into_data()));
    rows.push(format!(
        "| CPU | whole model forward, test preset, 8×128 | {:.1} |",
        1e3 * results::median_seconds(|| drop(model.forward(input.clone()).into_data()), 9)
    ));

    fused_op_rows(&mut criterion, &mut rows);
    let step = train_step_seconds::<burn::backend::Autodiff<Cpu>>(&device, &mut criterion, "CPU");
    rows.push(format!("| CPU | training step (forward, backward, AdamW), test preset, 8×128 | {:.1} |", 1e3 * step));

    // What Burn's kernel fusion is worth on the GPU backends (`Wgpu` / `Cuda` are `Fusion` over
    // `CubeBackend`; this crate's ternary ops run on both).
    #[cfg(feature = "wgpu")]
    train_step_rows::<burn::backend::Autodiff<WgpuCube>, burn::backend::Autodiff<tritter::backend::Wgpu>>(
        "wgpu",
        &mut criterion,
        &mut rows,
    );
    #[cfg(feature = "cuda")]
    train_step_rows::<burn::backend::Autodiff<CudaCube>, burn::backend::Autodiff<tritter::backend::Cuda>>(
        "CUDA",
        &mut criterion,
        &mut rows,
    );

    results::record(
        "hot_paths",
        &format!(
            "## Hot paths\n\nMachine: {}. Command: `cargo bench --bench hot_paths{}`. Median milliseconds per call (criterion's statistics are printed by the run).\n\n| backend | what | ms |\n|---|---|---|\n{}",
            results::machine(),
            if cfg!(feature = "cuda") { " --features cuda" } else if cfg!(feature = "wgpu") { " --features wgpu" } else { "" },
            rows.join("\n")
        ),
    );
}
