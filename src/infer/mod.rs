//! Inference: cached generation with sampling, uncached greedy decoding, task evaluation, chat
//! templates.

pub mod chat;
pub mod generate;
pub mod greedy;
pub mod prompt;
pub mod sampling;

pub use chat::{ChatMessage, ChatTemplate};
pub use generate::{generate, GenerateOptions};
pub use greedy::{generate_greedy, task_accuracy, TaskAccuracy};
pub use prompt::PromptFormat;
pub use sampling::{Sampler, SamplingConfig};
