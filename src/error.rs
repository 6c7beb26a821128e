//! Errors of the Tritter library. Every variant names the file, field, tensor or value at fault.

use std::path::PathBuf;

/// Everything that can go wrong when building, loading or feeding a Tritter model.
#[derive(Debug, thiserror::Error)]
pub enum TritterError {
    /// A configuration value is out of range or inconsistent with another.
    #[error("invalid config field `{field}`: {reason}")]
    InvalidConfig { field: &'static str, reason: String },

    /// A config file could not be parsed.
    #[error("cannot parse config {}: {source}", path.display())]
    ConfigParse { path: PathBuf, source: serde_json::Error },

    /// Reading or writing a file failed.
    #[error("{action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },

    /// A checkpoint file is not a readable safetensors file.
    #[error("corrupt checkpoint {}: {reason}", path.display())]
    CorruptCheckpoint { path: PathBuf, reason: String },

    /// The config asks for a tensor the checkpoint does not have.
    #[error("checkpoint {} has no tensor `{tensor}` (the config expects it)", path.display())]
    MissingTensor { path: PathBuf, tensor: String },

    /// A tensor in the checkpoint does not have the shape the config implies.
    #[error("tensor `{tensor}` in {} has shape {found:?}, the config expects {expected:?}", path.display())]
    ShapeMismatch { path: PathBuf, tensor: String, expected: Vec<usize>, found: Vec<usize> },

    /// The checkpoint holds tensors the config does not describe.
    #[error("checkpoint {} has tensors the config does not describe: {}", path.display(), tensors.join(", "))]
    UnexpectedTensors { path: PathBuf, tensors: Vec<String> },

    /// A tensor could not be loaded for another reason (dtype, adapter).
    #[error("cannot load tensor `{tensor}` from {}: {reason}", path.display())]
    TensorLoad { path: PathBuf, tensor: String, reason: String },

    /// A token id is not below the vocabulary size.
    #[error("token id {id} at batch {batch}, position {position} is out of range (vocab_size = {vocab_size})")]
    TokenOutOfRange { id: i64, batch: usize, position: usize, vocab_size: usize },

    /// A sequence is longer than the model's context.
    #[error("sequence length {len} exceeds max_seq_len = {max_seq_len}")]
    SequenceTooLong { len: usize, max_seq_len: usize },

    /// A data file or record is malformed; `line` is the line (JSONL, text) or row (parquet).
    #[error("{}{}: {reason}", path.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Data { path: PathBuf, line: Option<usize>, reason: String },

    /// A tokenizer file cannot be loaded or saved.
    #[error("tokenizer {}: {reason}", path.display())]
    Tokenizer { path: PathBuf, reason: String },

    /// The tokenizer produces ids the model has no embedding for.
    #[error("the tokenizer has {tokenizer} tokens but the model's vocab_size is {model}; use a model with vocab_size >= {tokenizer} or a smaller tokenizer")]
    VocabMismatch { tokenizer: usize, model: usize },

    /// The loss or the gradients stopped being finite during training.
    #[error("the loss or gradients are not finite at step {step} (loss {loss}); training stopped{}", checkpoint.as_ref().map(|c| format!(", the last good checkpoint is {}", c.display())).unwrap_or_else(|| ", no checkpoint was saved yet".into()))]
    NonFinite { step: usize, loss: f32, checkpoint: Option<PathBuf> },

    /// The hybrid predictive trainer reported an error.
    #[error("hybrid trainer: {0}")]
    Hybrid(String),

    /// A fresh run was asked for in a directory that holds another run.
    #[error("{} already holds a run ({found}); continue it with resume (tritter train --resume DIR) or replace it with overwrite (--overwrite)", path.display())]
    RunExists { path: PathBuf, found: String },

    /// A resumed run asks for settings its checkpoint cannot continue with.
    #[error("cannot resume from {}: {reason}", path.display())]
    ResumeMismatch { path: PathBuf, reason: String },

    /// A model from another project uses something Tritter cannot represent, or a Tritter model
    /// something the other project cannot; `what` names the config field or tensor.
    #[error("{}: {what}: {reason}", path.display())]
    Unsupported { path: PathBuf, what: String, reason: String },

    /// A data-parallel worker failed or did not answer in time; the last checkpoint is intact.
    #[error("data-parallel training stopped at step {step}: {worker} {reason}")]
    Worker { worker: String, step: usize, reason: String },

    /// An input tensor is malformed in some other way (e.g. empty).
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = TritterError> = std::result::Result<T, E>;
