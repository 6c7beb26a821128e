//! Linear warmup then cosine decay: the usual LLM learning-rate schedule, as a Burn `LrScheduler`,
//! with BitNet b1.58's optional cooldown stage.

use burn::lr_scheduler::LrScheduler;
use burn::optim::LearningRate;
use burn::tensor::backend::Backend;

/// `lr(t)` for optimizer step `t = 1, 2, …`: `peak · t / warmup` during warmup, then a cosine
/// from `peak` down to `peak · min_ratio` at `t = total`, constant after; times `ratio` after
/// step `cooldown = Some((step, ratio))`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmupCosine {
    pub peak: f64,
    pub min_ratio: f64,
    pub warmup: usize,
    pub total: usize,
    pub cooldown: Option<(usize, f64)>,
    /// Steps taken so far (the scheduler's whole state).
    pub step: usize,
}

impl WarmupCosine {
    pub fn new(peak: f64, min_ratio: f64, warmup: usize, total: usize) -> Self {
        Self { peak, min_ratio, warmup, total, cooldown: None, step: 0 }
    }

    /// The schedule of a run: its warmup, cosine and cooldown.
    pub fn of(config: &crate::train::TrainConfig) -> Self {
        let cooldown = config.cooldown.map(|c| (c.first_stage_steps(config.steps), c.lr_ratio));
        Self { cooldown, ..Self::new(config.learning_rate, config.min_lr_ratio, config.warmup_steps, config.steps) }
    }

    /// The learning rate of step `t` (1-based), without changing the state.
    pub fn lr_at(&self, t: usize) -> f64 {
        if t <= self.warmup && self.warmup > 0 {
            return self.peak * t as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((t - self.warmup) as f64 / span).min(1.0);
        let floor = self.peak * self.min_ratio;
        let lr = floor + (self.peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        match self.cooldown {
            Some((start, ratio)) if t > start => lr * ratio,
            _ => lr,
        }
    }
}

impl LrScheduler for WarmupCosine {
    type Record<B: Backend> = usize;

    fn step(&mut self) -> LearningRate {
        self.step += 1;
        self.lr_at(self.step)
    }

    fn to_record<B: Backend>(&self) -> usize {
        self.step
    }

    fn load_record<B: Backend>(mut self, step: usize) -> Self {
        self.step = step;
        self
    }
}
