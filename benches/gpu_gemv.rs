//! Batch-1 packed ternary GEMV on a CubeCL device (wgpu, CUDA), and with `TRITTER_GEMV_TOKENS`
//! more tokens per call: the three CubeCL kernels (one unit per output; up to 32 units per
//! output reading consecutive code words; 32 × 64 output tiles from shared memory) against
//! Burn's f32 matmul of the same dense weight, with the effective bandwidth of the packed
//! weight bytes as a fraction of a device copy measured in the same run and, where the caller
//! states it (`TRITTER_GPU_PEAK_GBS`, set by `scripts/device_check.sh` from the card's name),
//! of the card's nominal bandwidth. Each call reads a different copy of the weight (at least
//! 64 MiB in all), so the weights come from device memory, not from the last call's cache.
//!
//! `cargo bench --bench gpu_gemv --features wgpu` (or `cuda`): criterion statistics, then a
//! section of BENCHMARKS.md.

#[cfg(any(feature = "wgpu", feature = "cuda"))]
#[path = "support/results.rs"]
mod results;

#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod device {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use burn::tensor::{Distribution, Tensor, TensorData};
    use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime};
    use criterion::Criterion;
    use rand::{rngs::StdRng, Rng, SeedableRng};
    use tritter::backend::cube::packed::{packed_matmul_into, CubeKernel};
    use tritter::ternary::{PackedLinear, PackedTernary};
    use tritter::WeightScale;

    /// `[out, in]`: a 4096² projection and a 2048 → 5632 MLP projection.
    const SHAPES: [(usize, usize); 2] = [(4096, 4096), (5632, 2048)];
    /// The kernels compared, in the table's column order.
    pub const KERNELS: [CubeKernel; 3] = [CubeKernel::PerOutput, CubeKernel::RowCooperative, CubeKernel::Tiled];
    /// Bytes of weight copies cycled through (more than an H100's 50 MB L2).
    const WORKING_SET: usize = 64 << 20;

    fn sync<Bk: tritter::TritterBackend>(y: &Tensor<Bk, 2>) {
        let _ = y.clone().slice([0..1, 0..1]).into_data();
    }

    /// Median seconds per call over batches of calls, the device drained after each batch.
    fn seconds_per_call<Bk: tritter::TritterBackend>(mut call: impl FnMut(usize) -> Tensor<Bk, 2>) -> f64 {
        sync(&call(0));
        let start = Instant::now();
        let mut calls = 0;
        while start.elapsed() < Duration::from_millis(300) {
            sync(&call(calls));
            calls += 1;
        }
        let per_batch = calls.div_ceil(3).clamp(1, 200);
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                let mut y = call(0);
                for i in 1..per_batch {
                    y = call(i);
                }
                sync(&y);
                t.elapsed().as_secs_f64() / per_batch as f64
            })
            .collect();
        times.sort_by(|a, b| a.total_cmp(b));
        times[2]
    }

    /// GB/s of a device copy (read + write) of 64 MiB (wgpu's default binding limit is 128 MiB).
    fn copy_bandwidth<Bk: tritter::TritterBackend>(device: &Bk::Device) -> f64 {
        let src = Tensor::<Bk, 2>::random([16, 1 << 20], Distribution::Default, device);
        let bytes = 2.0 * (64u64 << 20) as f64;
        bytes / seconds_per_call(|_| src.clone().mul_scalar(1.0)) / 1e9
    }

    /// Tokens per call: 1, or the list in `TRITTER_GEMV_TOKENS` (e.g. `1,4,16,32,128,512`, which
    /// the device script sets to find where the cooperative kernel stops paying and how the tiled
    /// one compares with the f32 matmul on a prefill).
    fn token_counts() -> Vec<usize> {
        let list = std::env::var("TRITTER_GEMV_TOKENS").unwrap_or_else(|_| "1".into());
        let counts: Vec<usize> = list
            .split(',')
            .map(|t| t.trim().parse().unwrap_or_else(|_| panic!("TRITTER_GEMV_TOKENS: `{t}` is not a token count")))
            .collect();
        assert!(counts.iter().all(|&t| t > 0), "TRITTER_GEMV_TOKENS: token counts must be positive, got `{list}`");
        counts
    }

    pub fn rows<R: CubeRuntime, BT: BoolElement>(backend: &str, criterion: &mut Criterion) -> String {
        type Cube<R, BT> = CubeBackend<R, f32, i32, BT>;
        let device = Default::default();
        let mut rng = StdRng::seed_from_u64(11);
        let copy = copy_bandwidth::<Cube<R, BT>>(&device);
        let peak: Option<f64> = std::env::var("TRITTER_GPU_PEAK_GBS").ok().and_then(|v| v.parse().ok());
        let token_counts = token_counts();
        let mut rows = String::new();
        for (out, inp) in SHAPES {
            let values: Vec<i8> = (0..out * inp).map(|_| rng.random_range(-1..=1)).collect();
            let packed =
                Arc::new(PackedTernary::from_values(&values, out, inp, vec![0.05], WeightScale::PerTensor).unwrap());
            let bytes = packed.size_bytes();
            let copies = WORKING_SET.div_ceil(bytes);
            let layers: Vec<PackedLinear<Cube<R, BT>>> =
                (0..copies).map(|_| PackedLinear::with_device_tensors(packed.clone(), None, &device)).collect();
            let dense: Vec<f32> = values.iter().map(|&v| v as f32 * 0.05).collect();
            let dense: Vec<Tensor<Cube<R, BT>, 2>> = (0..WORKING_SET.div_ceil(4 * out * inp))
                .map(|_| Tensor::from_data(TensorData::new(dense.clone(), [out, inp]), &device))
                .collect();
            for &tokens in &token_counts {
                let x = Tensor::<Cube<R, BT>, 2>::random([tokens, inp], Distribution::Default, &device);
                let shape = format!("{out}x{inp}/{tokens}");
                let (x, layers) = (&x, &layers);
                let packed_call = |kernel: CubeKernel| {
                    move |i: usize| packed_matmul_into(kernel, x.clone(), layers[i % layers.len()].weight(), None)
                };
                let f32_call = |i: usize| x.clone().matmul(dense[i % dense.len()].clone().transpose());
                // Every kernel computes the f32 matmul's product before anything is timed.
                let reference: Vec<f32> = f32_call(0).into_data().to_vec().unwrap();
                let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
                for kernel in KERNELS {
                    let got: Vec<f32> = packed_call(kernel)(0).into_data().to_vec().unwrap();
                    let err = got.iter().zip(&reference).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
                    assert!(err < 1e-3, "{backend} {kernel:?} {shape}: relative error {err} against the f32 matmul");
                    if tokens == 1 {
                        criterion.bench_function(&format!("gpu_gemv/{backend}/{kernel:?}/{shape}"), |b| {
                            b.iter(|| sync(&packed_call(kernel)(0)))
                        });
                    }
                }
                if tokens == 1 {
                    criterion.bench_function(&format!("gpu_gemv/{backend}/f32_matmul/{shape}"), |b| {
                        b.iter(|| sync(&f32_call(0)))
                    });
                }
                let f32_s = seconds_per_call(f32_call);
                let gbps = |s: f64| bytes as f64 / s / 1e9;
                let share = |s: f64| match peak {
                    Some(p) => {
                        format!("{:.1}% of copy, {:.1}% of nominal", 100.0 * gbps(s) / copy, 100.0 * gbps(s) / p)
                    }
                    None => format!("{:.1}% of copy", 100.0 * gbps(s) / copy),
                };
                let mut row = format!("| {backend} | {out}×{inp} | {tokens} | {:.4} |", f32_s * 1e3);
                let mut line = format!("{backend} {shape}: f32 {:.4} ms", f32_s * 1e3);
                for kernel in KERNELS {
                    let s = seconds_per_call(packed_call(kernel));
                    row.push_str(&format!(" {:.4} ({:.2}×; {:.3} GB/s, {}) |", s * 1e3, f32_s / s, gbps(s), share(s)));
                    line.push_str(&format!(", {kernel:?} {:.4} ms", s * 1e3));
                }
                println!("{line}");
                rows.push_str(&row);
                rows.push('\n');
            }
        }
        format!(
            "Device copy bandwidth ({backend}, read + write of 64 MiB, same run): {copy:.1} GB/s{}.\n\n{rows}",
            peak.map(|p| format!("; nominal bandwidth given: {p:.0} GB/s")).unwrap_or_default()
        )
    }
}

/// Which kernel the packed model picks, in words.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn choice() -> String {
    use tritter::backend::cube::packed::CubeKernel;
    format!(
        "The packed model uses, on a device with plane operations (a GPU), `cooperative` up to {} tokens and `tiled` above; elsewhere (lavapipe) `per output` below {} tokens and `tiled` from there.",
        CubeKernel::COOPERATIVE_MAX_TOKENS,
        CubeKernel::TILED_MIN_TOKENS_WITHOUT_PLANES
    )
}

fn main() {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    {
        let mut criterion = criterion::Criterion::default()
            .sample_size(10)
            .measurement_time(std::time::Duration::from_secs(2))
            .configure_from_args();
        let sections = [
            #[cfg(feature = "wgpu")]
            device::rows::<burn::backend::wgpu::WgpuRuntime, u32>("wgpu", &mut criterion),
            #[cfg(feature = "cuda")]
            device::rows::<burn_cubecl::cubecl::cuda::CudaRuntime, u8>("CUDA", &mut criterion),
        ];
        let (notes, rows): (Vec<_>, Vec<_>) = sections.iter().map(|s| s.split_once("\n\n").unwrap()).unzip();
        let gpu = std::env::var("TRITTER_GPU_NAME").map(|n| format!(", GPU {n}")).unwrap_or_default();
        let features = if cfg!(feature = "cuda") { "cuda" } else { "wgpu" };
        let tokens =
            std::env::var("TRITTER_GEMV_TOKENS").map(|t| format!("TRITTER_GEMV_TOKENS={t} ")).unwrap_or_default();
        results::record(
            "gpu_gemv",
            &format!(
                "## Packed ternary GEMV at batch 1 (and more tokens), on the device\n\nMachine: {}{gpu}. Command: `{tokens}cargo bench --bench gpu_gemv --features {features}`. `x · W̃ᵀ` for a few tokens (1 unless `TRITTER_GEMV_TOKENS` lists others) with f32 activations (the product kernel alone; int8 activations add one pass of the quantizer kernel), shape = out × in; milliseconds per call (median over batches of calls, the device drained after each batch), speed-up against Burn's f32 matmul of the same dense weight in parentheses, bandwidth = packed weight bytes / time. `per output` = one unit per output; `cooperative` = 32 units per output reading consecutive code words, partial sums added in shared memory; `tiled` = 32 tokens × 64 outputs per cube from activations and decoded codes staged in shared memory. {} Each call reads another copy of the weight (≥ 64 MiB in all). {}\n\n| backend | shape | tokens | f32 matmul ms | per output ms | cooperative ms | tiled ms |\n|---|---|---|---|---|---|---|\n{}",
                results::machine(),
                choice(),
                notes.join(" "),
                rows.concat()
            ),
        );
    }
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    println!("gpu_gemv: build with --features wgpu or --features cuda");
}
