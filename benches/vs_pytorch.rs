//! One measurement of Tritter for the side-by-side comparison with the PyTorch reference
//! (`bench/pytorch/compare.py` runs this and `bench/pytorch/torch_bench.py` once per row, each
//! in a fresh process so the peak memory is the row's own).
//!
//! `cargo bench --bench vs_pytorch -- --preset test --what train --batch 8 --seq 128 --iters 10`
//! prints `{"tokens_per_s": .., "peak_rss_mib": ..}`. `--what` is `forward`, `train` (forward,
//! backward, AdamW step), `generate` (batch 1, fake-quantized f32) or `generate-packed`.
//! Without arguments it runs the `test` rows.

use std::time::Instant;

use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{Int, Tensor, TensorData};
use rand::{rngs::StdRng, Rng, SeedableRng};
use tritter::infer::{generate, GenerateOptions};
use tritter::train::FusedAdamWConfig;
use tritter::{TritterConfig, TritterModel};

type B = burn::backend::NdArray<f32>;
type AD = burn::backend::Autodiff<B>;

struct Args {
    preset: String,
    what: String,
    batch: usize,
    seq: usize,
    iters: usize,
}

fn parse() -> Option<Args> {
    let argv: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if argv.is_empty() {
        return None;
    }
    let get = |name: &str, default: &str| -> String {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    Some(Args {
        preset: get("--preset", "test"),
        what: get("--what", "forward"),
        batch: get("--batch", "8").parse().expect("--batch"),
        seq: get("--seq", "128").parse().expect("--seq"),
        iters: get("--iters", "10").parse().expect("--iters"),
    })
}

fn ids<Bk: burn::tensor::backend::Backend>(
    rng: &mut StdRng,
    config: &TritterConfig,
    batch: usize,
    seq: usize,
) -> Tensor<Bk, 2, Int> {
    let ids: Vec<i64> = (0..batch * seq).map(|_| rng.random_range(0..config.vocab_size as i64)).collect();
    Tensor::from_data(TensorData::new(ids, [batch, seq]), &Default::default())
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Tokens per second of `iters` timed repetitions after one warm-up.
fn rate(tokens: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    (tokens * iters) as f64 / t.elapsed().as_secs_f64()
}

fn measure(a: &Args) -> f64 {
    let config = TritterConfig::from_preset(&a.preset).expect("preset");
    let mut rng = StdRng::seed_from_u64(1);
    let device = Default::default();
    match a.what.as_str() {
        "forward" => {
            let model = TritterModel::<B>::new(&config, &device).unwrap();
            let input = ids::<B>(&mut rng, &config, a.batch, a.seq);
            rate(a.batch * a.seq, a.iters, || drop(model.forward(input.clone()).into_data()))
        }
        "train" => {
            // As the README's library example trains: Burn's Optimizer API, the crate's AdamW.
            let mut model = Some(TritterModel::<AD>::new(&config, &device).unwrap());
            let mut optimizer = FusedAdamWConfig::new().with_weight_decay(0.1).init();
            let input = ids::<AD>(&mut rng, &config, a.batch, a.seq);
            rate(a.batch * a.seq, a.iters, || {
                let m = model.take().unwrap();
                let loss = m.loss(input.clone());
                let grads = GradientsParams::from_grads(loss.backward(), &m);
                model = Some(optimizer.step(1e-3, m, grads));
            })
        }
        "generate" | "generate-packed" => {
            let mut model = TritterModel::<B>::new(&config, &device).unwrap();
            if a.what == "generate-packed" {
                model = model.into_packed().unwrap();
            }
            let prompt: Vec<u32> = (0..a.seq).map(|_| rng.random_range(0..config.vocab_size as u32)).collect();
            let options = GenerateOptions { max_new_tokens: a.iters, ..Default::default() };
            // One generation of `iters` tokens after the prompt, timed after a warm-up.
            rate(a.iters, 1, || {
                drop(generate(&model, std::slice::from_ref(&prompt), &options, &mut |_, _| {}).unwrap())
            })
        }
        other => panic!("unknown --what {other}"),
    }
}

fn main() {
    let rows = match parse() {
        Some(args) => vec![args],
        None => ["forward", "train", "generate", "generate-packed"]
            .iter()
            .map(|w| Args {
                preset: "test".into(),
                what: w.to_string(),
                batch: 8,
                seq: if w.starts_with("generate") { 16 } else { 128 },
                iters: 32,
            })
            .collect(),
    };
    for a in rows {
        let tokens_per_s = measure(&a);
        println!(
            "{{\"preset\": \"{}\", \"what\": \"{}\", \"tokens_per_s\": {tokens_per_s:.2}, \"peak_rss_mib\": {:.1}}}",
            a.preset,
            a.what,
            peak_rss_mib()
        );
    }
}
