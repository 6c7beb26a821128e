//! Tokenizers: exact round trips, BPE training, saving and loading, vocabulary checks.

use rand::Rng;
use tritter::data::{train_bpe, BpeOptions, Tokenizer};
use tritter::TritterError;

use crate::data::common::{fresh_rng, temp_dir, unicode_text};

#[test]
fn byte_tokenizer_round_trips_any_utf8() {
    let mut rng = fresh_rng("byte_tokenizer_round_trips_any_utf8");
    let tokenizer = Tokenizer::bytes();
    assert_eq!(tokenizer.vocab_size(), 260);
    let special = tokenizer.special_ids();
    assert_eq!((special.pad, special.bos, special.eos, special.unk), (0, Some(1), 2, Some(3)));
    for _ in 0..200 {
        let words = rng.random_range(0..50);
        let text = unicode_text(&mut rng, words);
        let ids = tokenizer.encode(&text).unwrap();
        assert_eq!(ids.len(), text.len(), "one id per byte");
        assert!(ids.iter().all(|&id| (4..260).contains(&id)));
        assert_eq!(tokenizer.decode(&ids).unwrap(), text);
    }
    // Special ids are skipped when decoding.
    assert_eq!(tokenizer.decode(&[2, 4 + b'h' as u32, 0, 4 + b'i' as u32, 1]).unwrap(), "hi");
}

/// Ids beyond the tokenizer's vocabulary (a model's can be larger) are shown, not dropped.
#[test]
fn ids_the_tokenizer_lacks_are_shown() {
    let mut rng = fresh_rng("ids_the_tokenizer_lacks_are_shown");
    let corpus: Vec<String> = (0..100).map(|_| unicode_text(&mut rng, 20)).collect();
    let bpe =
        train_bpe(corpus.iter(), &BpeOptions { vocab_size: 300, min_frequency: 2, show_progress: false }).unwrap();
    for tokenizer in [Tokenizer::bytes(), bpe] {
        let (left, right) = (unicode_text(&mut rng, 3), unicode_text(&mut rng, 3));
        let unknown = tokenizer.vocab_size() as u32 + rng.random_range(0..1000);
        let ids: Vec<u32> =
            [tokenizer.encode(&left).unwrap(), vec![unknown], tokenizer.encode(&right).unwrap()].concat();
        assert_eq!(tokenizer.decode(&ids).unwrap(), format!("{left}<id {unknown}>{right}"), "{}", tokenizer.describe());
        assert_eq!(tokenizer.decode(&[unknown, unknown]).unwrap(), format!("<id {unknown}><id {unknown}>"));
    }
}

#[test]
fn bpe_trains_round_trips_and_reloads() {
    let mut rng = fresh_rng("bpe_trains_round_trips_and_reloads");
    let corpus: Vec<String> = (0..300).map(|_| unicode_text(&mut rng, 40)).collect();
    let options = BpeOptions { vocab_size: 600, min_frequency: 2, show_progress: false };
    let tokenizer = train_bpe(corpus.iter(), &options).unwrap();
    assert!(tokenizer.vocab_size() <= 600 && tokenizer.vocab_size() > 260, "vocab {}", tokenizer.vocab_size());
    let special = tokenizer.special_ids();
    assert_eq!((special.pad, special.bos, special.eos, special.unk), (0, Some(1), 2, Some(3)));

    // Unseen Unicode-heavy text round-trips exactly, and merges make it shorter than bytes.
    let (mut ids_total, mut bytes_total) = (0, 0);
    for _ in 0..100 {
        let words = rng.random_range(1..60);
        let text = unicode_text(&mut rng, words);
        let ids = tokenizer.encode(&text).unwrap();
        assert!(ids.iter().all(|&id| (id as usize) < tokenizer.vocab_size()));
        assert_eq!(tokenizer.decode(&ids).unwrap(), text);
        ids_total += ids.len();
        bytes_total += text.len();
    }
    assert!(ids_total * 10 < bytes_total * 9, "BPE did not compress: {ids_total} ids for {bytes_total} bytes");

    // Saved as tokenizer.json and loaded back, it encodes identically.
    let dir = temp_dir();
    let path = dir.path().join("tokenizer.json");
    tokenizer.save(&path).unwrap();
    let loaded = Tokenizer::from_file(&path).unwrap();
    assert_eq!(loaded.special_ids(), special);
    for text in corpus.iter().take(20) {
        assert_eq!(loaded.encode(text).unwrap(), tokenizer.encode(text).unwrap());
    }
    assert_eq!(loaded.fingerprint(), tokenizer.fingerprint());
    assert_ne!(loaded.fingerprint(), Tokenizer::bytes().fingerprint());
}

#[test]
fn vocabulary_must_fit_the_model() {
    let tokenizer = Tokenizer::bytes();
    tokenizer.check_fits(260).unwrap();
    tokenizer.check_fits(512).unwrap();
    let err = tokenizer.check_fits(256).unwrap_err();
    assert!(matches!(err, TritterError::VocabMismatch { tokenizer: 260, model: 256 }));
    let message = err.to_string();
    assert!(message.contains("260") && message.contains("256"), "{message}");
}

#[test]
fn bad_tokenizer_files_are_named_errors() {
    let dir = temp_dir();
    let missing = dir.path().join("nope.json");
    assert!(Tokenizer::from_file(&missing).unwrap_err().to_string().contains("nope.json"));
    let garbage = dir.path().join("tokenizer.json");
    std::fs::write(&garbage, "{ not json").unwrap();
    let err = Tokenizer::from_file(&garbage).unwrap_err();
    assert!(matches!(err, TritterError::Tokenizer { .. }) && err.to_string().contains("tokenizer.json"), "{err}");
    assert!(train_bpe(["a"].iter(), &BpeOptions { vocab_size: 100, ..Default::default() }).is_err());
}

/// The fast byte-level BPE path gives exactly the ids of the `tokenizers` crate's own encoder,
/// on random Unicode text full of whitespace runs, contractions, digits and punctuation.
#[test]
fn fast_bpe_path_equals_the_tokenizers_crate() {
    let mut rng = fresh_rng("fast_bpe_path_equals_the_tokenizers_crate");
    let mut corpus: Vec<String> = (0..300).map(|_| unicode_text(&mut rng, 40)).collect();
    corpus.push("it's we're they've I'm you'll he'd 123 4567  x\t\ty \n\n z   ".into());
    let tokenizer = train_bpe(corpus.iter(), &BpeOptions { vocab_size: 700, ..Default::default() }).unwrap();
    assert!(tokenizer.has_fast_path());
    let tricky = [
        "",
        " ",
        "  ",
        "a  b",
        "a \n b",
        "a\n\nb",
        "end  ",
        "\t\tx",
        "'s's 't'",
        "x's  'll",
        "1 2  3   4",
        "!!  ??",
        " \u{3000}x",
        "a\u{a0}\u{a0}b",
        "<eos> inside",
        "x<pad>y",
    ];
    for text in tricky.iter().map(|s| s.to_string()).chain((0..300).map(|_| {
        let words = rng.random_range(0..80);
        unicode_text(&mut rng, words)
    })) {
        assert_eq!(tokenizer.encode(&text).unwrap(), tokenizer.encode_reference(&text).unwrap(), "{text:?}");
    }
}
