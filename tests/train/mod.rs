//! Integration tests of training: schedule, data order, gradients, burn-train runs with step
//! checkpoints and exact resume, the non-finite policy and the hybrid predictive trainer.

mod common;

mod config;
mod grads;
mod hybrid;
mod nodes;
mod non_finite;
mod optimizer;
mod parallel;
mod resume;
