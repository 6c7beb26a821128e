//! The token cache, packing into windows, splits, mixtures and the Burn batcher.

use std::sync::Arc;

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::Dataset;
use rand::Rng;
use tritter::data::{
    prepare_corpus, split_of, DataSpec, PrepareOptions, SourceOptions, Split, TokenBatcher, TokenWindows, Tokenizer,
    WeightedMixture,
};

use crate::data::common::{fresh_rng, jsonl, temp_dir, unicode_text, write};

type B = burn::backend::NdArray<f32>;

fn options(cache: &std::path::Path, val_fraction: f64) -> PrepareOptions {
    PrepareOptions { source: SourceOptions::default(), val_fraction, cache_dir: cache.to_path_buf() }
}

#[test]
fn packing_covers_every_token_exactly_once() {
    let mut rng = fresh_rng("packing_covers_every_token_exactly_once");
    let dir = temp_dir();
    let docs: Vec<String> = (0..rng.random_range(50..200))
        .map(|_| {
            let n = rng.random_range(1..30);
            unicode_text(&mut rng, n)
        })
        .collect();
    let path = write(dir.path(), "docs.jsonl", jsonl("text", &docs));
    let tokenizer = Tokenizer::bytes();
    let corpus = prepare_corpus(&path, &tokenizer, &options(&dir.path().join("cache"), 0.2), &mut |_| {}).unwrap();
    assert!(!corpus.reused);

    // The expected streams: documents in file order, each followed by EOS, split by hash.
    let eos = tokenizer.special_ids().eos;
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for doc in &docs {
        let stream = if split_of(doc, 0.2) == Split::Validation { &mut val } else { &mut train };
        stream.extend(tokenizer.encode(doc).unwrap());
        stream.push(eos);
    }
    assert!(!val.is_empty() && !train.is_empty(), "both splits should be used with 20% validation");
    assert_eq!(corpus.index.train_tokens as usize, train.len());
    assert_eq!(corpus.index.val_tokens as usize, val.len());
    assert_eq!(corpus.index.train_documents + corpus.index.val_documents, docs.len() as u64);

    let pad = tokenizer.special_ids().pad;
    let seq_len = rng.random_range(1..40);
    for (stream, expected) in [(corpus.train, train), (corpus.validation, val)] {
        let windows = TokenWindows::new(Arc::new(stream), seq_len, pad);
        assert_eq!(windows.len(), expected.len().div_ceil(seq_len + 1));
        let mut joined = Vec::new();
        for i in 0..windows.len() {
            let w = windows.get(i).unwrap();
            assert_eq!(w.len(), seq_len + 1);
            joined.extend(w);
        }
        assert!(windows.get(windows.len()).is_none());
        // Exactly the stream, then only padding to fill the last window.
        assert_eq!(&joined[..expected.len()], &expected[..]);
        assert!(joined[expected.len()..].iter().all(|&t| t == pad));
        assert!(joined.len() - expected.len() <= seq_len);
    }
}

#[test]
fn cache_is_reused_and_invalidated() {
    let mut rng = fresh_rng("cache_is_reused_and_invalidated");
    let dir = temp_dir();
    let cache = dir.path().join("cache");
    let docs: Vec<String> = (0..30).map(|_| unicode_text(&mut rng, 10)).collect();
    let path = write(dir.path(), "docs.jsonl", jsonl("text", &docs));
    let bytes = Tokenizer::bytes();
    let first = prepare_corpus(&path, &bytes, &options(&cache, 0.1), &mut |_| {}).unwrap();
    let again = prepare_corpus(&path, &bytes, &options(&cache, 0.1), &mut |_| {}).unwrap();
    assert!(!first.reused && again.reused);
    assert_eq!(first.index, again.index);

    // Other options or tokenizer: another cache.
    let other_split = prepare_corpus(&path, &bytes, &options(&cache, 0.3), &mut |_| {}).unwrap();
    assert!(!other_split.reused);
    assert_ne!(other_split.index.key, first.index.key);
    let bpe =
        tritter::data::train_bpe(docs.iter(), &tritter::data::BpeOptions { vocab_size: 300, ..Default::default() })
            .unwrap();
    let with_bpe = prepare_corpus(&path, &bpe, &options(&cache, 0.1), &mut |_| {}).unwrap();
    assert!(!with_bpe.reused);
    assert_ne!(with_bpe.index.key, first.index.key);

    // A changed source file (new content, new size and mtime) is tokenized again.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut more = docs.clone();
    more.push("one more document".into());
    write(dir.path(), "docs.jsonl", jsonl("text", &more));
    let changed = prepare_corpus(&path, &bytes, &options(&cache, 0.1), &mut |_| {}).unwrap();
    assert!(!changed.reused);
    assert_eq!(changed.index.stats.documents, 31);

    // A damaged cache is rebuilt rather than misread.
    std::fs::write(changed.dir.join("train.bin"), b"xx").unwrap();
    let rebuilt = prepare_corpus(&path, &bytes, &options(&cache, 0.1), &mut |_| {}).unwrap();
    assert!(!rebuilt.reused);
    assert_eq!(rebuilt.index, changed.index);
}

#[test]
fn empty_dataset_is_an_error_and_progress_is_reported() {
    let dir = temp_dir();
    let path = write(dir.path(), "bad.jsonl", "{\"title\": 1}\n");
    let skipping = PrepareOptions {
        source: SourceOptions { skip_bad_records: true, ..Default::default() },
        ..options(&dir.path().join("c"), 0.0)
    };
    let err = prepare_corpus(&path, &Tokenizer::bytes(), &skipping, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("empty") && err.contains("bad.jsonl") && err.contains("1 records skipped"), "{err}");

    let docs: Vec<String> = (0..100).map(|i| format!("document number {i}")).collect();
    let good = write(dir.path(), "good.jsonl", jsonl("text", &docs));
    let mut last = tritter::data::PrepareProgress::default();
    prepare_corpus(&good, &Tokenizer::bytes(), &options(&dir.path().join("c"), 0.0), &mut |p| last = p).unwrap();
    assert_eq!(last.documents, 100);
    assert_eq!(last.text_bytes, docs.iter().map(|d| d.len() as u64).sum::<u64>());
}

#[test]
fn validation_split_is_stable_and_near_its_fraction() {
    let mut rng = fresh_rng("validation_split_is_stable_and_near_its_fraction");
    let docs: Vec<String> = (0..20_000).map(|i| format!("{i} {}", rng.random::<u64>())).collect();
    let val = docs.iter().filter(|d| split_of(d, 0.1) == Split::Validation).count();
    assert!((1_700..=2_300).contains(&val), "{val} of 20000 in validation at 10%");
    // Deterministic, and monotone in the fraction (a document never leaves validation when it grows).
    for d in docs.iter().take(2000) {
        assert_eq!(split_of(d, 0.1), split_of(d, 0.1));
        if split_of(d, 0.1) == Split::Validation {
            assert_eq!(split_of(d, 0.2), Split::Validation);
        }
    }
    assert!(docs.iter().all(|d| split_of(d, 0.0) == Split::Train));
}

/// A tiny in-memory dataset of windows `[part, index]`.
struct Fixed(u32, usize);
impl Dataset<Vec<u32>> for Fixed {
    fn get(&self, index: usize) -> Option<Vec<u32>> {
        (index < self.1).then(|| vec![self.0, index as u32])
    }
    fn len(&self) -> usize {
        self.1
    }
}

#[test]
fn weighted_mixture_follows_weights_deterministically() {
    let mixture =
        WeightedMixture::new(vec![(Fixed(0, 100), 1.0), (Fixed(1, 50), 3.0), (Fixed(2, 10), 0.5)], 7).unwrap();
    assert_eq!(mixture.len(), 160);
    let items: Vec<Vec<u32>> = (0..mixture.len()).map(|i| mixture.get(i).unwrap()).collect();
    let count = |part| items.iter().filter(|w| w[0] == part).count();
    // 160 · (1, 3, 0.5) / 4.5 = 35.6, 106.7, 17.8: floors 35, 106, 17 and the two largest
    // remainders get one more, so the epoch keeps exactly 160 windows.
    assert_eq!((count(0), count(1), count(2)), (35, 107, 18));
    // Downsampled parts never repeat a window; upsampled parts use every window.
    let distinct =
        |part| items.iter().filter(|w| w[0] == part).map(|w| w[1]).collect::<std::collections::HashSet<_>>().len();
    assert_eq!(distinct(0), 35);
    assert_eq!(distinct(1), 50);
    assert_eq!(distinct(2), 10);
    let again = WeightedMixture::new(vec![(Fixed(0, 100), 1.0), (Fixed(1, 50), 3.0), (Fixed(2, 10), 0.5)], 7).unwrap();
    assert!((0..160).all(|i| again.get(i) == mixture.get(i)));

    assert_eq!("data/a.jsonl:2.5".parse::<DataSpec>().unwrap(), DataSpec { path: "data/a.jsonl".into(), weight: 2.5 });
    assert_eq!("data/a:b.jsonl".parse::<DataSpec>().unwrap(), DataSpec { path: "data/a:b.jsonl".into(), weight: 1.0 });
    assert!("x.jsonl:-1".parse::<DataSpec>().is_err());
}

#[test]
fn batches_flow_through_burns_data_loader() {
    let mut rng = fresh_rng("batches_flow_through_burns_data_loader");
    let dir = temp_dir();
    let docs: Vec<String> = (0..80).map(|_| unicode_text(&mut rng, 12)).collect();
    let path = write(dir.path(), "docs.jsonl", jsonl("text", &docs));
    let tokenizer = Tokenizer::bytes();
    let corpus = prepare_corpus(&path, &tokenizer, &options(&dir.path().join("cache"), 0.0), &mut |_| {}).unwrap();
    let seq_len = 16;
    let windows = TokenWindows::new(Arc::new(corpus.train), seq_len, tokenizer.special_ids().pad);
    let total = windows.len();
    let loader = DataLoaderBuilder::<B, _, _>::new(TokenBatcher::default())
        .batch_size(4)
        .shuffle(3)
        .num_workers(2)
        .build(windows);
    let mut seen = 0;
    for batch in loader.iter() {
        let [b, t] = batch.input_ids.dims();
        assert_eq!(t, seq_len + 1);
        assert!(b <= 4);
        let ids: Vec<i64> = batch.input_ids.into_data().convert::<i64>().to_vec().unwrap();
        assert!(ids.iter().all(|&id| (0..260).contains(&id)));
        seen += b;
    }
    assert_eq!(seen, total);
}

/// A vocabulary over 65536 ids is stored as u32 (and read back exactly).
#[test]
fn large_vocabularies_use_u32_tokens() {
    let dir = temp_dir();
    let n = 70_000;
    let mut vocab = serde_json::Map::new();
    for i in 0..n {
        vocab.insert(format!("w{i}"), serde_json::json!(i));
    }
    vocab.insert("<unk>".into(), serde_json::json!(n));
    vocab.insert("<eos>".into(), serde_json::json!(n + 1));
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
        "pre_tokenizer": { "type": "WhitespaceSplit" }, "post_processor": null, "decoder": null,
        "model": { "type": "WordLevel", "vocab": vocab, "unk_token": "<unk>" }
    });
    let tokenizer_path = write(dir.path(), "tokenizer.json", json.to_string());
    let tokenizer = Tokenizer::from_file(&tokenizer_path).unwrap();
    assert_eq!(tokenizer.vocab_size(), n + 2);
    assert_eq!(tokenizer.special_ids().eos, n as u32 + 1);
    let docs: Vec<String> = vec!["w1 w69999 w65536".into(), "w65535 nope".into()];
    let path = write(dir.path(), "docs.jsonl", jsonl("text", &docs));
    let corpus = prepare_corpus(&path, &tokenizer, &options(&dir.path().join("cache"), 0.0), &mut |_| {}).unwrap();
    assert_eq!(corpus.index.width, tritter::data::corpus::TokenWidth::U32);
    let mut tokens = Vec::new();
    corpus.train.read_into(0, corpus.train.len(), &mut tokens);
    let eos = n as u32 + 1;
    assert_eq!(tokens, [1, 69_999, 65_536, eos, 65_535, n as u32, eos]);
    assert_eq!(std::fs::metadata(corpus.dir.join("train.bin")).unwrap().len(), 7 * 4);
}
