//! Generation tokens/s at batch 1: the packed model (2-bit codes, the backend's packed matmul)
//! against the fake-quantized f32 model it came from, for the `test` and `small_100m` presets on
//! the CPU, and on wgpu when built with `--features wgpu` (on `CubeBackend` and on Burn's fusion
//! backend over it, which is `burn::backend::Wgpu`). Goal: packed ≥ 2× on the CPU.
//!
//! `cargo bench --bench generation [--features wgpu]` (writes a section of BENCHMARKS.md).

#[path = "support/results.rs"]
mod results;

use std::time::Instant;

use rand::{rngs::StdRng, Rng, SeedableRng};
use tritter::infer::{generate, GenerateOptions};
use tritter::{TritterConfig, TritterModel};

const PROMPT: usize = 16;

/// The wgpu backend without Burn's fusion (`burn::backend::Wgpu` is the fusion backend over it).
#[cfg(feature = "wgpu")]
type WgpuCube = burn_cubecl::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>;

/// Median seconds of 3 greedy generations of `new` tokens after a `PROMPT`-token prompt.
fn seconds<Bk: tritter::TritterBackend>(model: &TritterModel<Bk>, prompt: &[u32], new: usize) -> f64 {
    let options = GenerateOptions { max_new_tokens: new, ..Default::default() };
    let run = || {
        let t = Instant::now();
        let out = generate(model, &[prompt.to_vec()], &options, &mut |_, _| {}).unwrap();
        assert_eq!(out[0].len(), new);
        t.elapsed().as_secs_f64()
    };
    run(); // warm-up (kernel compilation on GPU backends)
    let mut times: Vec<f64> = (0..3).map(|_| run()).collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[1]
}

/// One table row per preset: tokens/s of the f32 model, of the packed model, and the ratio.
fn measure<Bk: tritter::TritterBackend>(backend: &str, presets: &[(&str, usize)], device: &Bk::Device) -> String {
    let mut rows = String::new();
    for &(preset, new) in presets {
        let config = TritterConfig::from_preset(preset).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let prompt: Vec<u32> = (0..PROMPT).map(|_| rng.random_range(0..config.vocab_size as u32)).collect();
        let model = TritterModel::<Bk>::new(&config, device).unwrap();
        let latent = new as f64 / seconds(&model, &prompt, new);
        let packed_model = model.into_packed().unwrap();
        let packed = new as f64 / seconds(&packed_model, &prompt, new);
        let ratio = packed / latent;
        println!("{backend} {preset}: f32 {latent:.1} tok/s, packed {packed:.1} tok/s ({ratio:.2}×)");
        rows.push_str(&format!("| {backend} | {preset} | {new} | {latent:.1} | {packed:.1} | {ratio:.2}× |\n"));
    }
    rows
}

fn main() {
    let rows = measure::<burn::backend::NdArray<f32>>(
        "CPU (ndarray)",
        &[("test", 64), ("small_100m", 32)],
        &Default::default(),
    );
    #[cfg(feature = "wgpu")]
    let rows = rows + &measure::<WgpuCube>("wgpu", &[("test", 64), ("small_100m", 16)], &Default::default());
    #[cfg(feature = "wgpu")]
    let rows =
        rows + &measure::<burn::backend::Wgpu>("wgpu+fusion", &[("test", 64), ("small_100m", 16)], &Default::default());
    #[cfg(feature = "cuda")]
    let rows = rows + &measure::<burn::backend::Cuda>("CUDA", &[("test", 64), ("small_100m", 64)], &Default::default());
    let gpu_note = if cfg!(any(feature = "wgpu", feature = "cuda")) {
        " On wgpu/CUDA the packed model quantizes activations with the CubeCL quantizer kernel and runs the CubeCL packed kernel (codes decoded on the fly; on a GPU up to 16 tokens with 32 units per output row, on lavapipe up to 7 tokens with one unit per output, and above that in tiles of 32 tokens × 64 outputs staged in shared memory; under fusion quantizer and product as one registered fusion operation); lavapipe is Mesa's CPU Vulkan driver, so its rows measure a CPU emulating a GPU."
    } else {
        " Build with `--features wgpu` (or `cuda`) to add GPU rows."
    };
    let features = match (cfg!(feature = "wgpu"), cfg!(feature = "cuda")) {
        (true, true) => " --features wgpu,cuda",
        (true, false) => " --features wgpu",
        (false, true) => " --features cuda",
        (false, false) => "",
    };
    results::record(
        "generation",
        &format!(
            "## Generation at batch 1: packed vs fake-quantized f32\n\nMachine: {}. Command: `cargo bench --bench generation{}`. Greedy generation with the KV cache after a {PROMPT}-token prompt (prefill included), median of 3 runs after a warm-up; tokens/s of new tokens. The f32 model quantizes its latent weights in every forward (the training forward); the packed model holds 2-bit codes and runs the backend's packed matmul (on the CPU the int8 × 2-bit kernel).{gpu_note} Goal on the CPU: packed ≥ 2×.\n\n| backend | preset | new tokens | f32 tokens/s | packed tokens/s | packed / f32 |\n|---|---|---|---|---|---|\n{rows}",
            results::machine(),
            features,
        ),
    );
}
