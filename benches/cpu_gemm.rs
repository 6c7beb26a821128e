//! The CPU products behind the training projection: GFLOP/s of burn-ndarray's matmul and of this
//! crate's `gemm`-crate path (`TritterBackend::matmul_{nt,nn,tn}` of the CPU backend) on a square
//! 2048 product and on the `small_100m` projection shapes at 4×128 tokens (forward `x · Wᵀ`, input
//! gradient `g · W`, weight gradient `gᵀ · x`).
//!
//! `cargo bench --bench cpu_gemm` (criterion statistics, then a section of BENCHMARKS.md).

#[path = "support/results.rs"]
mod results;

use std::time::Duration;

use burn::tensor::{Distribution, Tensor};
use criterion::Criterion;
use tritter::backend::TritterBackend;

type Cpu = burn::backend::NdArray<f32>;

fn random(shape: [usize; 2]) -> Tensor<Cpu, 2> {
    // `mul_scalar(1.0)`: an owned array, as parameters and activations are in training.
    Tensor::<Cpu, 2>::random(shape, Distribution::Normal(0.0, 1.0), &Default::default()).mul_scalar(1.0)
}

fn main() {
    let mut criterion =
        Criterion::default().sample_size(10).measurement_time(Duration::from_secs(3)).configure_from_args();
    let mut rows = Vec::new();
    // (what, m, k, n): the product is [m, k] · [k, n].
    let cases = [
        ("square", 2048, 2048, 2048),
        ("forward q/o 768→768", 512, 768, 768),
        ("forward gate/up 768→2048", 512, 768, 2048),
        ("forward down 2048→768", 512, 2048, 768),
        ("forward LM head 768→32000", 512, 768, 32000),
        ("input gradient, down", 512, 768, 2048),
        ("weight gradient, gate/up", 2048, 512, 768),
    ];
    for (what, m, k, n) in cases {
        let flop = 2.0 * (m * k * n) as f64;
        // Each form with its operands as training has them: the weight [out, in] row-major.
        let (burn_s, ours_s, form) = if what.starts_with("forward") || what == "square" {
            let (x, w) = (random([m, k]), random([n, k]));
            let burn = || drop(x.clone().matmul(w.clone().transpose()).into_primitive());
            let ours = || drop(Cpu::matmul_nt(x.clone(), w.clone()).into_primitive());
            criterion.bench_function(&format!("burn/{what}"), |b| b.iter(burn));
            criterion.bench_function(&format!("ours/{what}"), |b| b.iter(ours));
            (results::median_seconds(burn, 5), results::median_seconds(ours, 5), "x · Wᵀ")
        } else if what.starts_with("input") {
            let (g, w) = (random([m, k]), random([k, n]));
            let burn = || drop(g.clone().matmul(w.clone()).into_primitive());
            let ours = || drop(Cpu::matmul_nn(g.clone(), w.clone()).into_primitive());
            (results::median_seconds(burn, 5), results::median_seconds(ours, 5), "g · W")
        } else {
            let (g, x) = (random([k, m]), random([k, n]));
            let burn = || drop(g.clone().transpose().matmul(x.clone()).into_primitive());
            let ours = || drop(Cpu::matmul_tn(g.clone(), x.clone()).into_primitive());
            (results::median_seconds(burn, 5), results::median_seconds(ours, 5), "gᵀ · x")
        };
        rows.push(format!(
            "| {what} | {form} | {m}×{k}×{n} | {:.0} | {:.0} | {:.2}× |",
            flop / burn_s / 1e9,
            flop / ours_s / 1e9,
            burn_s / ours_s
        ));
    }
    results::record(
        "cpu_gemm",
        &format!(
            "## CPU products of the training projection\n\nMachine: {}. Command: `cargo bench --bench cpu_gemm`. GFLOP/s (median of 5 calls, 2 threads): burn-ndarray's matmul against this crate's path (`gemm` crate on strided operands; `x · Wᵀ` transposes W first when out ≤ in). For scale, PyTorch 2.15 (MKL) on the same machine with 2 threads ran 186 GFLOP/s on the square product and 184-199 on 1024×1024×4096 / 1024×4096×1024 (`torch.set_num_threads(2); a @ b`).\n\n| product | form | m×k×n | burn-ndarray | ours | ours / burn |\n|---|---|---|---|---|---|\n{}",
            results::machine(),
            rows.join("\n")
        ),
    );
}
