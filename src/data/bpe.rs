//! Training a byte-level BPE tokenizer (GPT-2 style: byte alphabet, regex pre-splitting, no
//! normaliser, so decoding reproduces the input exactly) on the user's documents.

use std::path::Path;

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

use crate::data::source::{for_each_document, SourceOptions, SourceStats};
use crate::data::tokenizer::{Tokenizer, SPECIAL_TOKENS};
use crate::error::{Result, TritterError};

/// Options of [`train_bpe`].
#[derive(Debug, Clone)]
pub struct BpeOptions {
    /// Size of the vocabulary, the 4 special tokens and 256 bytes included.
    pub vocab_size: usize,
    /// Pairs seen fewer times are not merged.
    pub min_frequency: u64,
    /// Let the `tokenizers` crate draw its progress bar on stderr (for command-line tools).
    pub show_progress: bool,
}

impl Default for BpeOptions {
    fn default() -> Self {
        Self { vocab_size: 8192, min_frequency: 2, show_progress: false }
    }
}

/// Trains a byte-level BPE tokenizer on `documents`. Special tokens `<pad>`, `<bos>`, `<eos>`,
/// `<unk>` get ids 0..4.
pub fn train_bpe<I, S>(documents: I, options: &BpeOptions) -> Result<Tokenizer>
where
    I: Iterator<Item = S> + Send,
    S: AsRef<str> + Send,
{
    let minimum = SPECIAL_TOKENS.len() + 256;
    if options.vocab_size < minimum {
        return Err(TritterError::InvalidInput(format!(
            "BPE vocab_size must be at least {minimum} (4 special tokens + 256 bytes), got {}",
            options.vocab_size
        )));
    }
    let byte_level = ByteLevel::default().add_prefix_space(false).trim_offsets(false);
    let mut tokenizer = tokenizers::Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(byte_level)).with_decoder(Some(byte_level));
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(options.vocab_size)
        .min_frequency(options.min_frequency)
        .show_progress(options.show_progress)
        .special_tokens(SPECIAL_TOKENS.iter().map(|t| AddedToken::from(*t, true)).collect())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    tokenizer
        .train(&mut trainer, documents)
        .map_err(|e| TritterError::InvalidInput(format!("BPE training failed: {e}")))?;
    Tokenizer::from_hf(tokenizer).map_err(TritterError::InvalidInput)
}

/// Trains on every document of a file or directory, streamed through a bounded channel from a
/// reader thread (memory stays bounded by the trainer's word counts, not the corpus size).
pub fn train_bpe_on(
    source: &Path,
    source_options: &SourceOptions,
    options: &BpeOptions,
) -> Result<(Tokenizer, SourceStats)> {
    let (sender, receiver) = std::sync::mpsc::sync_channel::<String>(1024);
    let path = source.to_path_buf();
    let reader_options = source_options.clone();
    let reader = std::thread::spawn(move || {
        let mut stats = SourceStats::default();
        for_each_document(&path, &reader_options, &mut stats, &mut |doc| {
            // A closed channel means training stopped early; stop reading too.
            let _ = sender.send(doc);
            Ok(())
        })
        .map(|()| stats)
    });
    let trained = train_bpe(receiver.into_iter(), options);
    let stats = reader.join().expect("document reader thread panicked")?;
    if stats.documents == 0 {
        return Err(TritterError::Data {
            path: source.to_path_buf(),
            line: None,
            reason: "the dataset is empty".into(),
        });
    }
    Ok((trained?, stats))
}
