//! Training: a burn-train `Learner` run through Tritter's own learning strategy (step
//! checkpoints, exact resume, accumulation, global-norm clipping, non-finite handling) or the
//! hybrid predictive trainer.

pub mod config;
pub mod fused_adamw;
pub mod grads;
pub mod hybrid;
pub mod main_job;
pub mod metrics;
pub mod optimizer;
pub mod order;
pub mod parallel;
pub mod render;
pub mod run;
pub mod schedule;
pub mod state;
pub mod step;
pub mod strategy;
pub mod summary;
mod terminal;
mod workers;

pub use burn::train::Interrupter;
pub use config::{Cooldown, HybridOptions, NonFinitePolicy, TrainConfig};
pub use fused_adamw::{FusedAdamW, FusedAdamWConfig};
pub use hybrid::{create_trainer_with_config, HybridStats};
pub use main_job::MainJob;
pub use parallel::{Nodes, Parallel};
pub use run::{train, train_parallel, Dashboard, TrainData, TrainOptions, TrainOutcome};
pub use schedule::WarmupCosine;
pub use state::{
    load_run_checkpoint, prepare_fresh_run_dir, read_resume_point, resolve_run_checkpoint, ResumePoint, RunState,
};
pub use step::LmOutput;
pub use strategy::{TaskEval, Validation};
pub use summary::{RunSummary, SUMMARY_FILE};
