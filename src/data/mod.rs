//! Data: tokenizers, document sources, the token cache, Burn datasets, the generated tasks, and
//! the training sets a run is given.

pub mod answers;
pub mod bpe;
pub mod corpus;
pub mod dataset;
pub mod fast_bpe;
pub mod generated;
pub mod rust_sources;
pub mod source;
pub mod tokenizer;
pub mod training_sets;

pub use answers::AnswerTargets;
pub use bpe::{train_bpe, train_bpe_on, BpeOptions};
pub use corpus::{
    open_corpus, prepare_corpus, split_of, CorpusIndex, PrepareOptions, PrepareProgress, Split, TokenCorpus,
    TokenStream,
};
pub use dataset::{DataSpec, TokenBatch, TokenBatcher, TokenWindows, WeightedMixture};
pub use generated::{generate_tasks, task_corpus, task_stream, write_task_corpus, Task, TaskExample};
pub use rust_sources::{read_crate_list, write_rust_corpus, CrateVersion, RustCorpusStats};
pub use source::{for_each_document, list_files, SourceOptions, SourceStats, TextSplit};
pub use tokenizer::{SpecialIds, Tokenizer};
pub use training_sets::{training_sets, PreparedSource, SharedDataset, TrainingSets};
