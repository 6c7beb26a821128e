//! A fast encoder for byte-level BPE tokenizers of the GPT-2 kind (the kind [`crate::data::bpe`]
//! trains): it splits text with the GPT-2 pattern on the `regex` crate, maps each piece to
//! byte-level characters and caches each piece's ids, so the Zipf-distributed words of real
//! text are merged once. It gives exactly the ids of `tokenizers::Tokenizer::encode_fast` (a
//! test checks this on random Unicode text) and is used only where that is guaranteed: no
//! normaliser, a `ByteLevel` pre-tokenizer with its regex and no prefix space, a BPE model
//! without dropout, and text that contains no added-token string.

use std::collections::HashMap;
use std::sync::Mutex;

use tokenizers::models::ModelWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::Model;

/// Pieces cached per shard before a shard is cleared (bounds memory on huge vocabularies of words).
const CACHE_LIMIT: usize = 1 << 20;

pub struct FastByteLevelBpe {
    /// GPT-2's pattern without its `\s+(?!\S)` lookahead, which [`Self::pieces`] applies by hand.
    pattern: regex::Regex,
    byte_char: [char; 256],
    added_tokens: Vec<String>,
    caches: Vec<Mutex<HashMap<String, Vec<u32>>>>,
}

impl std::fmt::Debug for FastByteLevelBpe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastByteLevelBpe").finish_non_exhaustive()
    }
}

/// GPT-2's byte → printable character table (as in `tokenizers`' byte-level pre-tokenizer).
pub(crate) fn byte_char_table() -> [char; 256] {
    let mut printable: Vec<u8> = (b'!'..=b'~').chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut chars: Vec<u32> = printable.iter().map(|&b| b as u32).collect();
    let mut n = 0;
    for b in 0..=255u8 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    let mut table = ['\0'; 256];
    for (b, c) in printable.into_iter().zip(chars) {
        table[b as usize] = char::from_u32(c).expect("valid char");
    }
    table
}

impl FastByteLevelBpe {
    /// The fast encoder for `tokenizer`, or `None` when it is not of the supported kind.
    pub fn for_tokenizer(tokenizer: &tokenizers::Tokenizer) -> Option<Self> {
        if tokenizer.get_normalizer().is_some() {
            return None;
        }
        match tokenizer.get_pre_tokenizer() {
            Some(PreTokenizerWrapper::ByteLevel(b)) if b.use_regex && !b.add_prefix_space => {}
            _ => return None,
        }
        match tokenizer.get_model() {
            ModelWrapper::BPE(bpe) if bpe.dropout.is_none_or(|d| d == 0.0) => {}
            _ => return None,
        }
        let pattern = regex::Regex::new(r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+")
            .expect("valid pattern");
        let added_tokens = tokenizer.get_added_tokens_decoder().into_values().map(|t| t.content).collect();
        let shards = rayon::current_num_threads().max(1);
        Some(Self {
            pattern,
            byte_char: byte_char_table(),
            added_tokens,
            caches: (0..shards).map(|_| Mutex::default()).collect(),
        })
    }

    /// The pre-tokenized pieces of `text`, as GPT-2's pattern splits it.
    fn pieces<'a>(&'a self, text: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let mut pos = 0;
        std::iter::from_fn(move || {
            if pos >= text.len() {
                return None;
            }
            let m = self.pattern.find_at(text, pos).expect("the pattern matches every character");
            debug_assert_eq!(m.start(), pos);
            let mut end = m.end();
            let piece = &text[pos..end];
            // `\s+(?!\S)`: a whitespace run followed by a non-space leaves its last character to
            // the next piece (where a final ' ' joins the word it precedes).
            if end < text.len() && piece.chars().all(char::is_whitespace) {
                let last = piece.chars().next_back().expect("non-empty");
                if piece.len() > last.len_utf8() {
                    end -= last.len_utf8();
                }
            }
            let piece = &text[pos..end];
            pos = end;
            Some(piece)
        })
    }

    /// The ids of `text`, or `None` when it contains an added token (use the full encoder).
    pub fn encode(&self, model: &ModelWrapper, text: &str) -> Option<tokenizers::Result<Vec<u32>>> {
        if self.added_tokens.iter().any(|t| text.contains(t.as_str())) {
            return None;
        }
        let shard = rayon::current_thread_index().unwrap_or(0) % self.caches.len();
        let mut cache = self.caches[shard].lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > CACHE_LIMIT {
            cache.clear();
        }
        let mut ids = Vec::with_capacity(text.len() / 3);
        let mut mapped = String::new();
        for piece in self.pieces(text) {
            if let Some(hit) = cache.get(piece) {
                ids.extend_from_slice(hit);
                continue;
            }
            mapped.clear();
            mapped.extend(piece.bytes().map(|b| self.byte_char[b as usize]));
            let piece_ids: Vec<u32> = match model.tokenize(&mapped) {
                Ok(tokens) => tokens.into_iter().map(|t| t.id).collect(),
                Err(e) => return Some(Err(e)),
            };
            ids.extend_from_slice(&piece_ids);
            cache.insert(piece.to_string(), piece_ids);
        }
        Some(Ok(ids))
    }
}
