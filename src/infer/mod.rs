//! Inference: cached generation with sampling, uncached greedy decoding, task evaluation.

pub mod generate;
pub mod greedy;
pub mod sampling;

pub use generate::{generate, GenerateOptions};
pub use greedy::{generate_greedy, task_accuracy, TaskAccuracy};
pub use sampling::{Sampler, SamplingConfig};
