//! The pre-tokenized corpus cache: documents are tokenized once (in parallel), joined with EOS
//! and written as a compact binary token stream (u16 when the vocabulary fits, else u32) per
//! split, with an `index.json`. Training memory-maps the streams, so corpora larger than RAM
//! train in bounded memory. The cache is keyed by a hash of the source files (path, size,
//! modification time), the tokenizer and the options, and reused while they are unchanged.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::source::{for_each_document, list_files, SourceOptions, SourceStats};
use crate::data::tokenizer::Tokenizer;
use crate::error::{Result, TritterError};

/// Bumped whenever the cache layout changes, so old caches are rebuilt rather than misread.
const FORMAT_VERSION: u32 = 1;
/// Documents are tokenized in parallel chunks of about this many bytes of text.
const CHUNK_BYTES: usize = 8 << 20;

/// Width of the stored token ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenWidth {
    U16,
    U32,
}

impl TokenWidth {
    fn for_vocab(vocab_size: usize) -> Self {
        if vocab_size <= 1 << 16 {
            TokenWidth::U16
        } else {
            TokenWidth::U32
        }
    }
    fn bytes(self) -> usize {
        match self {
            TokenWidth::U16 => 2,
            TokenWidth::U32 => 4,
        }
    }
}

/// Which split a document belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Validation,
}

/// Puts a document in the validation split when the hash of its text falls in the
/// `val_fraction` range: stable across runs, file orderings and machines, and duplicate
/// documents always land together (no train/validation leakage).
pub fn split_of(text: &str, val_fraction: f64) -> Split {
    let bucket = xxhash_rust::xxh3::xxh3_64(text.as_bytes()) % 1_000_000;
    if (bucket as f64) < val_fraction * 1_000_000.0 {
        Split::Validation
    } else {
        Split::Train
    }
}

/// Options of [`prepare_corpus`].
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    pub source: SourceOptions,
    /// Fraction of documents held out for validation (by hash of their text).
    pub val_fraction: f64,
    /// Where caches live (one subdirectory per key).
    pub cache_dir: PathBuf,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self { source: SourceOptions::default(), val_fraction: 0.01, cache_dir: PathBuf::from("runs/cache") }
    }
}

/// What a cache holds; stored as `index.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusIndex {
    pub format_version: u32,
    pub key: String,
    pub source: PathBuf,
    pub tokenizer: String,
    pub vocab_size: usize,
    pub width: TokenWidth,
    pub eos: u32,
    pub pad: u32,
    pub train_tokens: u64,
    pub val_tokens: u64,
    pub train_documents: u64,
    pub val_documents: u64,
    pub val_fraction: f64,
    pub stats: SourceStats,
}

/// A memory-mapped stream of token ids.
#[derive(Debug)]
pub struct TokenStream {
    map: Option<Mmap>,
    width: TokenWidth,
    len: usize,
}

impl TokenStream {
    fn open(path: &Path, width: TokenWidth, len: u64) -> Result<Self> {
        let file = File::open(path).map_err(|source| TritterError::Io {
            action: "cannot open",
            path: path.to_path_buf(),
            source,
        })?;
        let size = file
            .metadata()
            .map_err(|source| TritterError::Io { action: "cannot stat", path: path.to_path_buf(), source })?
            .len();
        if size != len * width.bytes() as u64 {
            return Err(TritterError::Data {
                path: path.to_path_buf(),
                line: None,
                reason: format!("cache file has {size} bytes, its index says {len} tokens"),
            });
        }
        // Empty files cannot be mapped; an empty stream needs no map.
        let map = if size == 0 {
            None
        } else {
            // SAFETY: the cache file is written once, renamed into place and never modified.
            Some(unsafe { Mmap::map(&file) }.map_err(|source| TritterError::Io {
                action: "cannot map",
                path: path.to_path_buf(),
                source,
            })?)
        };
        Ok(Self { map, width, len: len as usize })
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends tokens `start..end` to `out`.
    pub fn read_into(&self, start: usize, end: usize, out: &mut Vec<u32>) {
        assert!(start <= end && end <= self.len, "token range {start}..{end} outside 0..{}", self.len);
        let Some(map) = &self.map else { return };
        match self.width {
            TokenWidth::U16 => {
                out.extend(map[start * 2..end * 2].chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as u32))
            }
            TokenWidth::U32 => out
                .extend(map[start * 4..end * 4].chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        }
    }
}

/// A tokenized corpus: index plus memory-mapped train and validation streams.
#[derive(Debug)]
pub struct TokenCorpus {
    pub index: CorpusIndex,
    pub dir: PathBuf,
    pub train: TokenStream,
    pub validation: TokenStream,
    /// Whether an existing cache was reused.
    pub reused: bool,
}

/// Progress of [`prepare_corpus`]: documents and text bytes tokenized so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrepareProgress {
    pub documents: u64,
    pub text_bytes: u64,
}

/// The cache key of `source` under `tokenizer` and `options`.
pub fn cache_key(source: &Path, tokenizer: &Tokenizer, options: &PrepareOptions) -> Result<String> {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&FORMAT_VERSION.to_le_bytes());
    for file in list_files(source)? {
        let meta = std::fs::metadata(&file).map_err(|source| TritterError::Io {
            action: "cannot stat",
            path: file.clone(),
            source,
        })?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let canonical = file.canonicalize().unwrap_or(file);
        hasher.update(canonical.to_string_lossy().as_bytes());
        hasher.update(&meta.len().to_le_bytes());
        hasher.update(&mtime.to_le_bytes());
    }
    hasher.update(&tokenizer.fingerprint().to_le_bytes());
    hasher.update(serde_json::to_string(&options.source).expect("options serialise").as_bytes());
    hasher.update(&options.val_fraction.to_le_bytes());
    Ok(format!("{:016x}", hasher.digest()))
}

/// Tokenizes `source` (a file or directory) into the cache, or reuses the cache when the
/// source, tokenizer and options are unchanged.
pub fn prepare_corpus(
    source: &Path,
    tokenizer: &Tokenizer,
    options: &PrepareOptions,
    progress: &mut dyn FnMut(PrepareProgress),
) -> Result<TokenCorpus> {
    if !(0.0..1.0).contains(&options.val_fraction) {
        return Err(TritterError::InvalidInput(format!(
            "val_fraction must be in [0, 1), got {}",
            options.val_fraction
        )));
    }
    let key = cache_key(source, tokenizer, options)?;
    let dir = options.cache_dir.join(&key);
    if dir.join("index.json").is_file() {
        match open_corpus(&dir) {
            Ok(mut corpus) => {
                tracing::info!(dir = %dir.display(), "reusing token cache");
                corpus.reused = true;
                return Ok(corpus);
            }
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "token cache unreadable; rebuilding"),
        }
    }
    build_corpus(source, tokenizer, options, &key, &dir, progress)?;
    open_corpus(&dir)
}

/// Opens a cache directory written by [`prepare_corpus`].
pub fn open_corpus(dir: &Path) -> Result<TokenCorpus> {
    let index_path = dir.join("index.json");
    let text = std::fs::read_to_string(&index_path).map_err(|source| TritterError::Io {
        action: "cannot read",
        path: index_path.clone(),
        source,
    })?;
    let index: CorpusIndex = serde_json::from_str(&text).map_err(|e| TritterError::Data {
        path: index_path.clone(),
        line: None,
        reason: e.to_string(),
    })?;
    if index.format_version != FORMAT_VERSION {
        return Err(TritterError::Data {
            path: index_path,
            line: None,
            reason: format!("cache format {} (expected {FORMAT_VERSION})", index.format_version),
        });
    }
    let train = TokenStream::open(&dir.join("train.bin"), index.width, index.train_tokens)?;
    let validation = TokenStream::open(&dir.join("val.bin"), index.width, index.val_tokens)?;
    Ok(TokenCorpus { index, dir: dir.to_path_buf(), train, validation, reused: false })
}

/// A token stream being written.
struct StreamWriter {
    out: BufWriter<File>,
    width: TokenWidth,
    tokens: u64,
    documents: u64,
    path: PathBuf,
}

impl StreamWriter {
    fn create(path: PathBuf, width: TokenWidth) -> Result<Self> {
        let file = File::create(&path).map_err(|source| TritterError::Io {
            action: "cannot create",
            path: path.clone(),
            source,
        })?;
        Ok(Self { out: BufWriter::with_capacity(1 << 20, file), width, tokens: 0, documents: 0, path })
    }

    fn push_document(&mut self, ids: &[u32], eos: u32) -> Result<()> {
        let mut bytes = Vec::with_capacity((ids.len() + 1) * self.width.bytes());
        for &id in ids.iter().chain(std::iter::once(&eos)) {
            match self.width {
                TokenWidth::U16 => bytes.extend_from_slice(&(id as u16).to_le_bytes()),
                TokenWidth::U32 => bytes.extend_from_slice(&id.to_le_bytes()),
            }
        }
        self.out.write_all(&bytes).map_err(|source| TritterError::Io {
            action: "cannot write",
            path: self.path.clone(),
            source,
        })?;
        self.tokens += ids.len() as u64 + 1;
        self.documents += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<(u64, u64)> {
        self.out.flush().map_err(|source| TritterError::Io {
            action: "cannot write",
            path: self.path.clone(),
            source,
        })?;
        self.out.get_ref().sync_all().map_err(|source| TritterError::Io {
            action: "cannot sync",
            path: self.path.clone(),
            source,
        })?;
        Ok((self.tokens, self.documents))
    }
}

fn build_corpus(
    source: &Path,
    tokenizer: &Tokenizer,
    options: &PrepareOptions,
    key: &str,
    dir: &Path,
    progress: &mut dyn FnMut(PrepareProgress),
) -> Result<()> {
    std::fs::create_dir_all(&options.cache_dir).map_err(|e| TritterError::Io {
        action: "cannot create",
        path: options.cache_dir.clone(),
        source: e,
    })?;
    let tmp = options.cache_dir.join(format!("{key}.tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| TritterError::Io {
        action: "cannot create",
        path: tmp.clone(),
        source: e,
    })?;
    let width = TokenWidth::for_vocab(tokenizer.vocab_size());
    let special = tokenizer.special_ids();
    let mut train = StreamWriter::create(tmp.join("train.bin"), width)?;
    let mut val = StreamWriter::create(tmp.join("val.bin"), width)?;

    let mut stats = SourceStats::default();
    let mut chunk: Vec<String> = Vec::new();
    let mut chunk_bytes = 0;
    let mut done = PrepareProgress::default();
    let mut flush = |chunk: &mut Vec<String>, train: &mut StreamWriter, val: &mut StreamWriter| -> Result<()> {
        let encoded: Vec<Result<(Split, Vec<u32>)>> =
            chunk.par_iter().map(|text| Ok((split_of(text, options.val_fraction), tokenizer.encode(text)?))).collect();
        for (text, item) in chunk.iter().zip(encoded) {
            let (split, ids) = item?;
            match split {
                Split::Train => train.push_document(&ids, special.eos)?,
                Split::Validation => val.push_document(&ids, special.eos)?,
            }
            done.documents += 1;
            done.text_bytes += text.len() as u64;
        }
        chunk.clear();
        progress(done);
        Ok(())
    };
    for_each_document(source, &options.source, &mut stats, &mut |text| {
        chunk_bytes += text.len();
        chunk.push(text);
        if chunk_bytes >= CHUNK_BYTES {
            chunk_bytes = 0;
            flush(&mut chunk, &mut train, &mut val)?;
        }
        Ok(())
    })?;
    flush(&mut chunk, &mut train, &mut val)?;
    if stats.documents == 0 {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(TritterError::Data {
            path: source.to_path_buf(),
            line: None,
            reason: format!("the dataset is empty ({} files, {} records skipped)", stats.files, stats.skipped_records),
        });
    }
    let (train_tokens, train_documents) = train.finish()?;
    let (val_tokens, val_documents) = val.finish()?;
    let index = CorpusIndex {
        format_version: FORMAT_VERSION,
        key: key.to_string(),
        source: source.to_path_buf(),
        tokenizer: tokenizer.describe(),
        vocab_size: tokenizer.vocab_size(),
        width,
        eos: special.eos,
        pad: special.pad,
        train_tokens,
        val_tokens,
        train_documents,
        val_documents,
        val_fraction: options.val_fraction,
        stats,
    };
    crate::io::write_atomic(
        &tmp.join("index.json"),
        serde_json::to_string_pretty(&index).expect("index serialises").as_bytes(),
    )?;
    let _ = std::fs::remove_dir_all(dir); // a stale or corrupt cache under the same key
    std::fs::rename(&tmp, dir).map_err(|source| TritterError::Io {
        action: "cannot move cache into place",
        path: dir.to_path_buf(),
        source,
    })?;
    tracing::info!(dir = %dir.display(), train_tokens, val_tokens, "wrote token cache");
    Ok(())
}
