//! The token windows of a training run: the generated task corpus, or the user's sources mixed
//! by weight, each tokenized once into the token cache.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataset::{Dataset, InMemDataset};

use crate::data::{
    prepare_corpus, task_corpus, AnswerTargets, DataSpec, PrepareOptions, PrepareProgress, TokenWindows, Tokenizer,
    WeightedMixture,
};
use crate::error::{Result, TritterError};

/// A token dataset a training run shares with its data loaders.
pub type SharedDataset = Arc<dyn Dataset<Vec<u32>>>;

/// The file the generated tasks are written to (once) inside the cache directory.
pub const GENERATED_TASKS_FILE: &str = "generated-tasks.jsonl";

/// Training and validation windows of `seq_len + 1` tokens, and what each source held.
pub struct TrainingSets {
    pub train: SharedDataset,
    pub valid: SharedDataset,
    pub sources: Vec<PreparedSource>,
    /// For the generated tasks: the loss covers the answers only (see [`AnswerTargets`]).
    pub answers: Option<AnswerTargets>,
}

/// One tokenized source.
#[derive(Debug, Clone)]
pub struct PreparedSource {
    pub path: PathBuf,
    pub train_tokens: u64,
    pub val_tokens: u64,
    /// Whether the token cache already held it.
    pub reused: bool,
}

/// The windows of `specs` (mixed by their weights with `seed`), or of the generated tasks when
/// `specs` is empty. `progress` sees each source's tokenizing progress.
pub fn training_sets(
    specs: &[DataSpec],
    tokenizer: &Tokenizer,
    options: &PrepareOptions,
    seq_len: usize,
    seed: u64,
    progress: &mut dyn FnMut(&Path, PrepareProgress),
) -> Result<TrainingSets> {
    if specs.is_empty() {
        let path = options.cache_dir.join(GENERATED_TASKS_FILE);
        // Rewritten when this version generates other examples, so a cache made by an older
        // version does not train on an old task format.
        let corpus = task_corpus(1, 50_000);
        if std::fs::read(&path).ok().as_deref() != Some(corpus.as_slice()) {
            crate::io::create_parent(&path)?;
            crate::io::write_atomic(&path, &corpus)?;
        }
        let (train, valid, source) = windows_of(&path, tokenizer, options, seq_len, progress)?;
        let answers = AnswerTargets::for_tokenizer(tokenizer)?;
        return Ok(TrainingSets { train: Arc::new(train), valid: Arc::new(valid), sources: vec![source], answers });
    }
    let (mut train_parts, mut valid_parts, mut sources) = (Vec::new(), Vec::new(), Vec::new());
    for spec in specs {
        let (train, valid, source) = windows_of(&spec.path, tokenizer, options, seq_len, progress)?;
        train_parts.push((train, spec.weight));
        if !valid.is_empty() {
            valid_parts.push((valid, spec.weight));
        }
        sources.push(source);
    }
    let valid: SharedDataset = if valid_parts.is_empty() {
        Arc::new(InMemDataset::new(Vec::<Vec<u32>>::new()))
    } else {
        Arc::new(WeightedMixture::new(valid_parts, seed)?)
    };
    Ok(TrainingSets { train: Arc::new(WeightedMixture::new(train_parts, seed)?), valid, sources, answers: None })
}

/// One source's training and validation windows.
fn windows_of(
    path: &Path,
    tokenizer: &Tokenizer,
    options: &PrepareOptions,
    seq_len: usize,
    progress: &mut dyn FnMut(&Path, PrepareProgress),
) -> Result<(TokenWindows, TokenWindows, PreparedSource)> {
    let corpus = prepare_corpus(path, tokenizer, options, &mut |p| progress(path, p))?;
    let source = PreparedSource {
        path: path.to_path_buf(),
        train_tokens: corpus.index.train_tokens,
        val_tokens: corpus.index.val_tokens,
        reused: corpus.reused,
    };
    let window = seq_len + 1;
    if source.train_tokens < window as u64 {
        // Padding would fill the window and the loss would see no target (it "trains" to 0).
        return Err(TritterError::InvalidInput(format!(
            "{}: its training split holds {} tokens ({} documents), fewer than one window of seq_len + 1 = {window}; \
             give more data or a smaller seq_len",
            path.display(),
            source.train_tokens,
            corpus.index.stats.documents
        )));
    }
    let pad = tokenizer.special_ids().pad;
    let train = TokenWindows::new(Arc::new(corpus.train), seq_len, pad);
    let valid = TokenWindows::new(Arc::new(corpus.validation), seq_len, pad);
    Ok((train, valid, source))
}
