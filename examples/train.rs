//! Trains the `test` preset on the built-in generated task corpus (addition, copying,
//! reversing, counting, sorting), then measures exact-match accuracy on held-out tasks.
//!
//! `cargo run --release --example train [-- --steps N --lr LR --batch B --seq T --out DIR]`
//! Backend: the CPU by default; `--features wgpu` or `--features cuda` pick those.

use std::sync::Arc;
use std::time::Instant;

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::Dataset;
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use tritter::backend::Autodiff;
use tritter::data::{generate_tasks, prepare_corpus, write_task_corpus, PrepareOptions, TokenBatch, TokenBatcher, TokenWindows, Tokenizer};
use tritter::infer::task_accuracy;
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
    let mut args = Args { steps: 1500, lr: 1e-2, batch: 16, seq: 64, out: "runs/train-example".into() };
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
                println!("usage: train [--steps 1500] [--lr 1e-2] [--batch 16] [--seq 64] [--out runs/train-example]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    Ok(args)
}

fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2);
    });
    let device = Default::default();
    let tokenizer = Tokenizer::bytes();
    let mut config = TritterConfig::test();
    config.pad_token_id = Some(tokenizer.special_ids().pad as usize);
    if args.seq + 1 > config.max_seq_len || args.seq < 1 {
        fail(format!("--seq must be in 1..{}", config.max_seq_len));
    }
    tokenizer.check_fits(config.vocab_size).unwrap_or_else(|e| fail(e));

    // Data: 50K generated examples as JSONL, tokenized into the cache (reused on later runs).
    let corpus_path = std::path::Path::new(&args.out).join("tasks.jsonl");
    if !corpus_path.exists() {
        write_task_corpus(&corpus_path, 1, 50_000).unwrap_or_else(|e| fail(e));
    }
    let options = PrepareOptions { val_fraction: 0.02, cache_dir: "runs/cache".into(), ..Default::default() };
    let corpus = prepare_corpus(&corpus_path, &tokenizer, &options, &mut |_| {}).unwrap_or_else(|e| fail(e));
    let pad = tokenizer.special_ids().pad;
    let train_windows = TokenWindows::new(Arc::new(corpus.train), args.seq, pad);
    let val_windows = TokenWindows::new(Arc::new(corpus.validation), args.seq, pad);
    println!(
        "Data: generated tasks, {} training / {} validation tokens ({} windows of {}), {} tokenizer",
        corpus.index.train_tokens,
        corpus.index.val_tokens,
        train_windows.len(),
        args.seq + 1,
        tokenizer.describe()
    );
    let val_batch = TokenBatcher.batch_of::<Inner>(&val_windows, 64, &device);
    let loader = DataLoaderBuilder::<Train, _, _>::new(TokenBatcher).batch_size(args.batch).shuffle(42).build(train_windows);

    let mut model = TritterModel::<Train>::new(&config, &device).unwrap_or_else(|e| fail(e));
    println!("Model: the `test` preset, {} parameters, ternary weights, int8 activations, on {BACKEND}", model.num_params());
    let mut optim = AdamWConfig::new().with_beta_2(0.95).with_weight_decay(0.1).init();
    let started = Instant::now();
    let (mut step, mut tokens) = (0, 0usize);
    let mut first = None;
    'training: loop {
        for TokenBatch { input_ids } in loader.iter() {
            step += 1;
            tokens += input_ids.dims().iter().product::<usize>();
            let loss = model.loss(input_ids);
            let value: f32 = loss.clone().into_scalar();
            if !value.is_finite() {
                fail(format!("loss is {value} at step {step}; stopping"));
            }
            first.get_or_insert(value);
            // Linear warmup over the first 5% of steps, then cosine decay to 10%.
            let progress = step as f64 / args.steps as f64;
            let warmup = 0.05;
            let lr = if progress < warmup {
                args.lr * progress / warmup
            } else {
                args.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * (progress - warmup) / (1.0 - warmup)).cos()))
            };
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            if step == 1 || step % 100 == 0 || step == args.steps {
                println!("step {step:>5}  loss {value:.4}  lr {lr:.2e}  {:.0} tokens/s", tokens as f64 / started.elapsed().as_secs_f64());
            }
            if step == args.steps {
                break 'training;
            }
        }
    }
    let train_time = started.elapsed();
    let model = model.valid();
    let val_loss: f32 = model.loss(val_batch.input_ids).into_scalar();
    let held_out = generate_tasks(1, 250, true);
    let accuracy = task_accuracy(&model, &tokenizer, &held_out).unwrap_or_else(|e| fail(e));
    model.save_checkpoint(&args.out).unwrap_or_else(|e| fail(e));

    println!("\nTrained {step} steps in {train_time:.1?} ({:.0} tokens/s).", tokens as f64 / train_time.as_secs_f64());
    println!("Loss: {:.3} -> validation {:.3} (uniform guess: {:.3}).", first.unwrap_or(f32::NAN), val_loss, (config.vocab_size as f32).ln());
    println!("Held-out task accuracy (exact match, greedy): {:.1}% of {}", 100.0 * accuracy.accuracy(), accuracy.total);
    for (task, (correct, total)) in &accuracy.per_task {
        println!("  {:<8} {correct:>3}/{total}", task.name());
    }
    println!("Checkpoint: {}/ (config.json + model.safetensors)", args.out);
}
