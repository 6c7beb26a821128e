//! Tokenizers: a Hugging Face `tokenizer.json` (via the `tokenizers` crate) or the built-in
//! byte-level fallback, behind one type whose special-token ids come from the tokenizer itself.

use std::path::Path;
use std::sync::Arc;

use crate::data::fast_bpe::FastByteLevelBpe;
use crate::error::{Result, TritterError};

/// The special tokens Tritter trains with, in the order the byte tokenizer and BPE training
/// give them ids 0..4.
pub const SPECIAL_TOKENS: [&str; 4] = ["<pad>", "<bos>", "<eos>", "<unk>"];

/// Names other tokenizers use for end-of-sequence, tried in order after `<eos>`.
const EOS_NAMES: [&str; 6] = ["<eos>", "</s>", "<|endoftext|>", "<|end_of_text|>", "<|eot_id|>", "[SEP]"];
/// Names used for padding, tried in order after the tokenizer's own padding setting.
const PAD_NAMES: [&str; 4] = ["<pad>", "[PAD]", "<|pad|>", "<|padding|>"];
const BOS_NAMES: [&str; 4] = ["<bos>", "<s>", "<|begin_of_text|>", "[CLS]"];

/// The ids of the special tokens a tokenizer defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    /// Separates documents when packing; ends generation.
    pub eos: u32,
    /// Fills the last partial window; use it as the model's `pad_token_id`. Falls back to
    /// `eos` when the tokenizer defines no pad token.
    pub pad: u32,
    pub bos: Option<u32>,
    pub unk: Option<u32>,
}

/// A tokenizer: text ↔ token ids.
#[derive(Debug, Clone)]
pub enum Tokenizer {
    /// 4 special tokens (ids 0..4, [`SPECIAL_TOKENS`]) then the 256 byte values (ids 4..260).
    /// Round-trips any UTF-8 text exactly.
    Bytes,
    /// A Hugging Face tokenizer, with a fast path for byte-level BPE (see [`FastByteLevelBpe`]).
    Hf { tokenizer: Box<tokenizers::Tokenizer>, special: SpecialIds, fast: Option<Arc<FastByteLevelBpe>> },
}

/// Offset of byte `b` in the byte tokenizer: id = b + BYTE_OFFSET.
const BYTE_OFFSET: u32 = SPECIAL_TOKENS.len() as u32;

impl Tokenizer {
    /// The byte-level fallback tokenizer.
    pub fn bytes() -> Self {
        Tokenizer::Bytes
    }

    /// Loads a Hugging Face `tokenizer.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let tokenizer = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| TritterError::Tokenizer { path: path.to_path_buf(), reason: e.to_string() })?;
        Self::from_hf(tokenizer).map_err(|reason| TritterError::Tokenizer { path: path.to_path_buf(), reason })
    }

    /// Wraps a Hugging Face tokenizer, finding its special tokens.
    pub fn from_hf(tokenizer: tokenizers::Tokenizer) -> std::result::Result<Self, String> {
        let find = |names: &[&str]| names.iter().find_map(|n| tokenizer.token_to_id(n));
        let eos = find(&EOS_NAMES).ok_or_else(|| {
            format!("the tokenizer defines no end-of-sequence token (looked for {})", EOS_NAMES.join(", "))
        })?;
        let pad = tokenizer.get_padding().map(|p| p.pad_id).or_else(|| find(&PAD_NAMES)).unwrap_or(eos);
        let special = SpecialIds { eos, pad, bos: find(&BOS_NAMES), unk: find(&["<unk>", "[UNK]"]) };
        let fast = FastByteLevelBpe::for_tokenizer(&tokenizer).map(Arc::new);
        Ok(Tokenizer::Hf { tokenizer: Box::new(tokenizer), special, fast })
    }

    /// Saves a Hugging Face tokenizer as `tokenizer.json` (atomically). The byte tokenizer has
    /// no file: it is selected by not giving one.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        match self {
            Tokenizer::Bytes => Err(TritterError::Tokenizer {
                path: path.to_path_buf(),
                reason: "the byte tokenizer is built in and is not saved to a file".into(),
            }),
            Tokenizer::Hf { tokenizer, .. } => {
                let json = tokenizer
                    .to_string(true)
                    .map_err(|e| TritterError::Tokenizer { path: path.to_path_buf(), reason: e.to_string() })?;
                crate::io::write_atomic(path, json.as_bytes())
            }
        }
    }

    /// Number of ids the tokenizer can produce (added tokens included).
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Bytes => BYTE_OFFSET as usize + 256,
            Tokenizer::Hf { tokenizer, .. } => tokenizer.get_vocab_size(true),
        }
    }

    /// The special-token ids this tokenizer defines.
    pub fn special_ids(&self) -> SpecialIds {
        match self {
            Tokenizer::Bytes => SpecialIds { pad: 0, bos: Some(1), eos: 2, unk: Some(3) },
            Tokenizer::Hf { special, .. } => *special,
        }
    }

    /// Refuses a tokenizer whose ids do not all fit a model with `model_vocab_size` embeddings.
    pub fn check_fits(&self, model_vocab_size: usize) -> Result<()> {
        if self.vocab_size() > model_vocab_size {
            return Err(TritterError::VocabMismatch { tokenizer: self.vocab_size(), model: model_vocab_size });
        }
        Ok(())
    }

    /// Token ids of `text` (no special tokens added) through the `tokenizers` crate alone,
    /// bypassing the fast path; the reference the fast path is tested against.
    pub fn encode_reference(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Bytes => self.encode(text),
            Tokenizer::Hf { tokenizer, .. } => tokenizer
                .encode_fast(text, false)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| TritterError::InvalidInput(format!("tokenizer failed: {e}"))),
        }
    }

    /// Whether encoding takes the fast byte-level BPE path.
    pub fn has_fast_path(&self) -> bool {
        matches!(self, Tokenizer::Hf { fast: Some(_), .. })
    }

    /// Token ids of `text` (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Bytes => Ok(text.bytes().map(|b| b as u32 + BYTE_OFFSET).collect()),
            Tokenizer::Hf { tokenizer, fast, .. } => {
                match fast.as_ref().and_then(|f| f.encode(tokenizer.get_model(), text)) {
                    Some(ids) => ids.map_err(|e| TritterError::InvalidInput(format!("tokenizer failed: {e}"))),
                    None => self.encode_reference(text),
                }
            }
        }
    }

    /// Text of `ids`, skipping special tokens. Invalid UTF-8 (e.g. a cut multi-byte character)
    /// is replaced by U+FFFD. An id the tokenizer does not have (a model's vocabulary can be
    /// larger) is shown as `<id N>`, not dropped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let known = self.vocab_size() as u32;
        if let Some(at) = ids.iter().position(|&id| id >= known) {
            let (head, tail) = (self.decode_known(&ids[..at])?, self.decode(&ids[at + 1..])?);
            return Ok(format!("{head}<id {}>{tail}", ids[at]));
        }
        self.decode_known(ids)
    }

    fn decode_known(&self, ids: &[u32]) -> Result<String> {
        match self {
            Tokenizer::Bytes => {
                let bytes: Vec<u8> = ids
                    .iter()
                    .filter(|&&id| (BYTE_OFFSET..BYTE_OFFSET + 256).contains(&id))
                    .map(|&id| (id - BYTE_OFFSET) as u8)
                    .collect();
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
            Tokenizer::Hf { tokenizer, .. } => {
                tokenizer.decode(ids, true).map_err(|e| TritterError::InvalidInput(format!("tokenizer failed: {e}")))
            }
        }
    }

    /// A short description for logs and summaries.
    pub fn describe(&self) -> String {
        match self {
            Tokenizer::Bytes => "byte-level (260 ids)".into(),
            Tokenizer::Hf { .. } => format!("tokenizer.json ({} ids)", self.vocab_size()),
        }
    }

    /// A stable fingerprint of the tokenizer, part of the token cache key.
    pub fn fingerprint(&self) -> u64 {
        match self {
            Tokenizer::Bytes => xxhash_rust::xxh3::xxh3_64(b"tritter-bytes-v1"),
            Tokenizer::Hf { tokenizer, .. } => {
                xxhash_rust::xxh3::xxh3_64(tokenizer.to_string(false).unwrap_or_default().as_bytes())
            }
        }
    }
}
