//! Inference: greedy generation and task evaluation.

pub mod greedy;

pub use greedy::{generate_greedy, task_accuracy, TaskAccuracy};
