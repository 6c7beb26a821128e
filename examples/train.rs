//! Trains the `test` preset on generated counting sequences and prints the loss falling.
//!
//! `cargo run --release --example train [-- --steps N --lr LR --batch B --seq T --out DIR]`
//! Backend: the CPU by default; `--features wgpu` or `--features cuda` pick those.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use tritter::backend::Autodiff;
use tritter::{TritterConfig, TritterModel};

#[cfg(feature = "cuda")]
type Inner = tritter::backend::Cuda;
#[cfg(feature = "cuda")]
const BACKEND: &str = "CUDA";
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
type Inner = tritter::backend::Wgpu;
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
const BACKEND: &str = "wgpu";
#[cfg(all(feature = "ndarray", not(any(feature = "wgpu", feature = "cuda"))))]
type Inner = tritter::backend::Cpu;
#[cfg(all(feature = "ndarray", not(any(feature = "wgpu", feature = "cuda"))))]
const BACKEND: &str = "the CPU (ndarray)";
type Train = Autodiff<Inner>;

struct Args {
    steps: usize,
    lr: f64,
    batch: usize,
    seq: usize,
    out: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { steps: 300, lr: 1e-2, batch: 8, seq: 64, out: "runs/train-example".into() };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--steps" => args.steps = value()?.parse().map_err(|e| format!("--steps: {e}"))?,
            "--lr" => args.lr = value()?.parse().map_err(|e| format!("--lr: {e}"))?,
            "--batch" => args.batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--seq" => args.seq = value()?.parse().map_err(|e| format!("--seq: {e}"))?,
            "--out" => args.out = value()?,
            "-h" | "--help" => {
                println!("usage: train [--steps 300] [--lr 1e-2] [--batch 8] [--seq 64] [--out runs/train-example]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    Ok(args)
}

/// A batch of counting sequences `x_t = (a + k·t) mod V` with a random start `a` and step
/// `k ∈ {1, 2, 3}`: the next token follows from the last two, so a model that learns shows a
/// loss falling from ln V towards 0. (A tiny xorshift keeps the example dependency-free.)
fn counting_batch<B: Backend>(state: &mut u64, batch: usize, seq: usize, vocab: usize, device: &B::Device) -> Tensor<B, 2, Int> {
    let mut next = || {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    };
    let mut ids = Vec::with_capacity(batch * seq);
    for _ in 0..batch {
        let (start, step) = (next() as usize % vocab, 1 + next() as usize % 3);
        ids.extend((0..seq).map(|t| ((start + step * t) % vocab) as i64));
    }
    Tensor::from_data(TensorData::new(ids, [batch, seq]), device)
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2);
    });
    let device = Default::default();
    let config = TritterConfig::test();
    if args.seq > config.max_seq_len || args.seq < 2 {
        eprintln!("error: --seq must be in 2..={}", config.max_seq_len);
        std::process::exit(2);
    }
    let mut model = TritterModel::<Train>::new(&config, &device).expect("the test preset is valid");
    println!(
        "Training the `test` preset ({} parameters, ternary weights, int8 activations) on {}",
        model.num_params(),
        BACKEND
    );
    println!("Data: counting sequences x_t = (a + k·t) mod {}, batch {}×{}", config.vocab_size, args.batch, args.seq);
    let mut optim = AdamWConfig::new().with_beta_2(0.95).with_weight_decay(0.1).init();
    let mut rng_state = 0x9E37_79B9_7F4A_7C15u64;
    let started = Instant::now();
    let mut first = None;
    let mut last = f32::NAN;
    for step in 1..=args.steps {
        let ids = counting_batch::<Train>(&mut rng_state, args.batch, args.seq, config.vocab_size, &device);
        let loss = model.loss(ids);
        last = loss.clone().into_scalar();
        if !last.is_finite() {
            eprintln!("error: loss is {last} at step {step}; stopping");
            std::process::exit(1);
        }
        first.get_or_insert(last);
        // Linear warmup over the first 10% of steps, then constant.
        let lr = args.lr * (step as f64 / (args.steps as f64 * 0.1).max(1.0)).min(1.0);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
        if step == 1 || step % 25 == 0 || step == args.steps {
            let tokens = step * args.batch * args.seq;
            println!(
                "step {step:>5}  loss {last:.4}  lr {lr:.2e}  {:.0} tokens/s",
                tokens as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let valid = model.valid();
    let held_out = counting_batch::<Inner>(&mut rng_state, args.batch, args.seq, config.vocab_size, &device);
    let eval: f32 = valid.loss(held_out).into_scalar();
    valid.save_checkpoint(&args.out).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1);
    });
    println!(
        "\nDone in {:.1?}: training loss {:.3} -> {:.3}, held-out loss {:.3} (uniform guess: {:.3}).",
        started.elapsed(),
        first.unwrap_or(f32::NAN),
        last,
        eval,
        (config.vocab_size as f32).ln()
    );
    println!("Checkpoint: {}/ (config.json + model.safetensors)", args.out);
}
