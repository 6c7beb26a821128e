//! Tokenize-and-pack throughput: a generated 100 MB JSONL corpus read, tokenized on all cores
//! and written to the token cache, with the byte tokenizer and an 8K BPE tokenizer.
//! Goal: ≥ 20 MB/s of text, so data preparation is never the bottleneck.
//!
//! `cargo bench --bench data_prep` (criterion statistics, then a section of BENCHMARKS.md).

#[path = "support/results.rs"]
mod results;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use rand::{rngs::StdRng, Rng, SeedableRng};
use tritter::data::{prepare_corpus, train_bpe, BpeOptions, PrepareOptions, Tokenizer};

const CORPUS_BYTES: usize = 100 << 20;

/// Prose-like documents: Zipf-distributed pseudo-words with punctuation and some non-ASCII.
fn documents(seed: u64) -> impl Iterator<Item = String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let syllables = ["ka", "to", "ri", "an", "el", "mo", "su", "ve", "lin", "dor", "ä", "é", "ß", "語", "th", "qu"];
    let words: Vec<String> = (0..5000)
        .map(|_| (0..rng.random_range(1..4)).map(|_| syllables[rng.random_range(0..syllables.len())]).collect())
        .collect();
    std::iter::from_fn(move || {
        let len = rng.random_range(200..4000);
        let mut doc = String::with_capacity(len + 16);
        while doc.len() < len {
            let rank = (1.0 / rng.random_range(1e-4f64..1.0)) as usize; // Zipf-like
            doc.push_str(&words[rank.min(words.len()) - 1]);
            doc.push_str(match rng.random_range(0..20) {
                0 => ". ",
                1 => ", ",
                2 => "\n",
                _ => " ",
            });
        }
        Some(doc)
    })
}

/// Writes the corpus as JSONL and returns its path and the bytes of text in it.
fn write_corpus(dir: &Path) -> (PathBuf, u64) {
    let path = dir.join("corpus.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut text_bytes = 0;
    for doc in documents(1) {
        if text_bytes >= CORPUS_BYTES {
            break;
        }
        text_bytes += doc.len();
        serde_json::to_writer(&mut out, &serde_json::json!({ "text": doc })).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
    (path, text_bytes as u64)
}

fn prepare(path: &Path, tokenizer: &Tokenizer, cache: &Path) -> u64 {
    let _ = std::fs::remove_dir_all(cache);
    let options = PrepareOptions { cache_dir: cache.to_path_buf(), ..Default::default() };
    let corpus = prepare_corpus(path, tokenizer, &options, &mut |_| {}).unwrap();
    assert!(!corpus.reused);
    corpus.index.train_tokens + corpus.index.val_tokens
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (path, text_bytes) = write_corpus(dir.path());
    let bpe = train_bpe(documents(2).take(1000), &BpeOptions { vocab_size: 8192, ..Default::default() }).unwrap();
    let tokenizers = [("bytes", Tokenizer::bytes()), ("bpe-8k", bpe)];
    let cache = dir.path().join("cache");

    let mut criterion =
        Criterion::default().sample_size(10).measurement_time(Duration::from_secs(30)).configure_from_args();
    let mut group = criterion.benchmark_group("data_prep");
    group.throughput(Throughput::Bytes(text_bytes));
    for (name, tokenizer) in &tokenizers {
        group.bench_function(*name, |b| {
            b.iter_batched(|| (), |()| prepare(&path, tokenizer, &cache), BatchSize::PerIteration)
        });
    }
    group.finish();

    // The results file: the median of 3 timed runs of each.
    let mut rows = String::new();
    for (name, tokenizer) in &tokenizers {
        let mut runs: Vec<(f64, u64)> = (0..3)
            .map(|_| {
                let started = Instant::now();
                let tokens = prepare(&path, tokenizer, &cache);
                (started.elapsed().as_secs_f64(), tokens)
            })
            .collect();
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (seconds, tokens) = runs[1];
        let mb_s = text_bytes as f64 / 1e6 / seconds;
        rows.push_str(&format!(
            "| {name} ({} ids) | {:.1} | {seconds:.2} | {:.1} | {:.1}M | {} |\n",
            tokenizer.vocab_size(),
            text_bytes as f64 / 1e6,
            mb_s,
            tokens as f64 / 1e6,
            if mb_s >= 20.0 { "yes" } else { "no" }
        ));
    }
    results::record(
        "data_prep",
        &format!(
            "## Data preparation: tokenize and pack\n\nMachine: {}. Command: `cargo bench --bench data_prep`. A generated JSONL corpus read, tokenized on all cores (rayon) and written to the token cache; median of 3 runs.\n\n| tokenizer | text MB | seconds | MB/s | tokens | goal ≥ 20 MB/s |\n|---|---|---|---|---|---|\n{rows}",
            results::machine()
        ),
    );
}
