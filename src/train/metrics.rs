//! Metrics burn-train lacks for language models: perplexity from the mean loss (Burn's needs the
//! full logits on the host), tokens per second, and exact-match accuracy on generated tasks.

use std::sync::Arc;
use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::ElementConversion;
use burn::train::metric::{
    Adaptor, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes, NumericEntry,
    SerializedEntry,
};

use crate::train::step::LmOutput;

fn entry(formatted: String, value: f64, count: usize) -> SerializedEntry {
    SerializedEntry::new(formatted, NumericEntry::Aggregated { aggregated_value: value, count }.serialize())
}

/// The mean loss of a step, read on the metric thread.
pub struct LossValue(pub f64);

impl<B: Backend> Adaptor<LossValue> for LmOutput<B> {
    fn adapt(&self) -> LossValue {
        LossValue(self.loss.clone().into_scalar().elem::<f64>())
    }
}

/// `exp(mean loss)`: per batch, and over the epoch as `exp` of the token-weighted mean loss.
#[derive(Clone)]
pub struct PerplexityFromLoss {
    name: MetricName,
    sum: f64,
    count: usize,
    current: f64,
}

impl Default for PerplexityFromLoss {
    fn default() -> Self {
        Self { name: Arc::new("Perplexity".into()), sum: 0.0, count: 0, current: f64::NAN }
    }
}

impl Metric for PerplexityFromLoss {
    type Input = LossValue;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn update(&mut self, loss: &LossValue, _: &MetricMetadata) -> SerializedEntry {
        self.current = loss.0;
        self.sum += loss.0;
        self.count += 1;
        let running = (self.sum / self.count as f64).exp();
        entry(format!("epoch {running:.3} - batch {:.3}", loss.0.exp()), loss.0.exp(), 1)
    }

    fn clear(&mut self) {
        *self = Self::default();
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes { unit: None, higher_is_better: false }.into()
    }
}

impl Numeric for PerplexityFromLoss {
    fn value(&self) -> NumericEntry {
        NumericEntry::Value(self.current.exp())
    }

    fn running_value(&self) -> NumericEntry {
        NumericEntry::Aggregated { aggregated_value: (self.sum / self.count.max(1) as f64).exp(), count: self.count }
    }
}

/// Tokens a step covered.
pub struct TokenCount(pub usize);

impl<B: Backend> Adaptor<TokenCount> for LmOutput<B> {
    fn adapt(&self) -> TokenCount {
        TokenCount(self.tokens)
    }
}

/// Tokens per second since the first item of the epoch (timed where the metrics run, so it
/// includes everything the training loop does between steps).
#[derive(Clone)]
pub struct TokensPerSecond {
    name: MetricName,
    start: Option<Instant>,
    tokens: usize,
    current: f64,
}

impl Default for TokensPerSecond {
    fn default() -> Self {
        Self { name: Arc::new("Tokens per second".into()), start: None, tokens: 0, current: 0.0 }
    }
}

impl Metric for TokensPerSecond {
    type Input = TokenCount;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn update(&mut self, item: &TokenCount, _: &MetricMetadata) -> SerializedEntry {
        let now = Instant::now();
        match self.start {
            // The first item only starts the clock: its work happened before.
            None => self.start = Some(now),
            Some(start) => {
                self.tokens += item.0;
                self.current = self.tokens as f64 / now.duration_since(start).as_secs_f64().max(1e-9);
            }
        }
        entry(format!("{:.0} tok/s", self.current), self.current, 1)
    }

    fn clear(&mut self) {
        *self = Self::default();
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes { unit: Some("tok/s".into()), higher_is_better: true }.into()
    }
}

impl Numeric for TokensPerSecond {
    fn value(&self) -> NumericEntry {
        NumericEntry::Value(self.current)
    }

    fn running_value(&self) -> NumericEntry {
        NumericEntry::Value(self.current)
    }
}

/// Exact-match results of held-out generated tasks, when a step measured them.
pub struct TaskResults(pub Option<(usize, usize)>);

impl<B: Backend> Adaptor<TaskResults> for LmOutput<B> {
    fn adapt(&self) -> TaskResults {
        TaskResults(self.tasks)
    }
}

/// Held-out task accuracy (%), greedy exact match; keeps the last measurement between
/// evaluations.
#[derive(Clone)]
pub struct TaskAccuracy {
    name: MetricName,
    last: Option<(usize, usize)>,
}

impl Default for TaskAccuracy {
    fn default() -> Self {
        Self { name: Arc::new("Task accuracy".into()), last: None }
    }
}

impl TaskAccuracy {
    fn percent(&self) -> f64 {
        self.last.map_or(f64::NAN, |(correct, total)| 100.0 * correct as f64 / total.max(1) as f64)
    }
}

impl Metric for TaskAccuracy {
    type Input = TaskResults;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn update(&mut self, item: &TaskResults, _: &MetricMetadata) -> SerializedEntry {
        if item.0.is_some() {
            self.last = item.0;
        }
        let formatted = match self.last {
            Some((correct, total)) => format!("{:.1} % ({correct}/{total})", self.percent()),
            None => "not measured yet".into(),
        };
        entry(formatted, self.percent(), self.last.map_or(0, |(_, total)| total))
    }

    fn clear(&mut self) {}

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes { unit: Some("%".into()), higher_is_better: true }.into()
    }
}

impl Numeric for TaskAccuracy {
    fn value(&self) -> NumericEntry {
        NumericEntry::Value(self.percent())
    }

    fn running_value(&self) -> NumericEntry {
        NumericEntry::Value(self.percent())
    }
}
