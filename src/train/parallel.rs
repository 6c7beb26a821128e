//! Where the replicas of a data-parallel run live.

use std::time::Duration;

use crate::error::{Result, TritterError};

/// Data-parallel training: one worker thread and model replica per device; each step's batch is
/// split by rows over the workers, and their gradients are summed with burn-collective's
/// all-reduce (weighted so the sum equals the whole batch's gradient).
#[derive(Debug, Clone)]
pub struct Parallel<D> {
    /// This process's devices, one worker each (the same device may repeat, e.g. the CPU).
    pub devices: Vec<D>,
    /// How long the training loop waits for its workers' step before it ends the run with an
    /// error naming the worker.
    pub timeout: Duration,
}

/// The default wait for a step.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

impl<D: Clone> Parallel<D> {
    /// One worker on `device`: plain training.
    pub fn single(device: &D) -> Self {
        Self { devices: vec![device.clone()], timeout: DEFAULT_TIMEOUT }
    }

    /// `count` workers on `device` (the CPU's way of running several workers).
    pub fn repeated(device: &D, count: usize) -> Self {
        Self { devices: vec![device.clone(); count], ..Self::single(device) }
    }

    /// Whether the run needs the collective (more than one worker).
    pub fn is_parallel(&self) -> bool {
        self.devices.len() > 1
    }

    /// Checks the settings, naming the bad one.
    pub fn validate(&self, batch_size: usize) -> Result<()> {
        let bad = |field: &'static str, reason: String| Err(TritterError::InvalidConfig { field, reason });
        if self.devices.is_empty() {
            return bad("devices", "at least one device is needed".into());
        }
        if self.timeout.is_zero() {
            return bad("timeout", "must be longer than 0 s".into());
        }
        if batch_size < self.devices.len() {
            let reason = format!(
                "{batch_size} rows cannot be split over {} workers (one row each at least)",
                self.devices.len()
            );
            return bad("batch_size", reason);
        }
        Ok(())
    }
}
