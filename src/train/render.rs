//! A plain-text dashboard for burn-train: one line per `every` steps and one per evaluation,
//! handed to a callback (the library itself never prints). burn-train's own CLI renderer
//! prints a progress struct per batch and no metric values.

use std::collections::{BTreeMap, HashMap};

use burn::train::metric::{MetricDefinition, MetricId};
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, TrainingProgress,
};

/// Where rendered lines go.
pub type LineSink = Box<dyn FnMut(&str) + Send + Sync>;

/// Renders metrics as lines like `step 200/1500  Loss 2.113  Perplexity 8.27  …`.
pub struct LineRenderer {
    every: usize,
    sink: LineSink,
    names: HashMap<MetricId, String>,
    train: BTreeMap<String, String>,
    valid: BTreeMap<String, String>,
}

impl LineRenderer {
    pub fn new(every: usize, sink: LineSink) -> Self {
        Self { every: every.max(1), sink, names: HashMap::new(), train: BTreeMap::new(), valid: BTreeMap::new() }
    }

    /// Records a metric: its latest batch value for training lines, its running value over the
    /// evaluation (`running`) for validation lines.
    fn record(
        names: &HashMap<MetricId, String>,
        into: &mut BTreeMap<String, String>,
        state: MetricState,
        running: bool,
    ) {
        let (entry, value) = match state {
            MetricState::Generic(entry) => (entry, None),
            MetricState::Numeric(entry, value) => (entry, Some(value.current())),
        };
        let Some(name) = names.get(&entry.metric_id) else { return };
        let formatted = &entry.serialized_entry.formatted;
        // Burn formats numeric metrics as "epoch <running> - batch <current>".
        if running {
            let epoch = formatted.strip_prefix("epoch ").and_then(|f| f.split(" - batch").next());
            into.insert(name.clone(), epoch.unwrap_or(formatted).trim().to_string());
            return;
        }
        let text = match value {
            Some(v) if name == "Learning Rate" => format!("{v:.2e}"),
            Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
            Some(v) => format!("{v:.3}"),
            None => formatted.clone(),
        };
        into.insert(name.clone(), text);
    }

    fn line(metrics: &BTreeMap<String, String>) -> String {
        metrics.iter().map(|(name, value)| format!("{name} {value}")).collect::<Vec<_>>().join("  ")
    }
}

impl MetricsRendererTraining for LineRenderer {
    fn update_train(&mut self, state: MetricState) {
        Self::record(&self.names, &mut self.train, state, false);
    }

    fn update_valid(&mut self, state: MetricState) {
        Self::record(&self.names, &mut self.valid, state, true);
    }

    fn render_train(&mut self, item: TrainingProgress) {
        if item.iteration.is_multiple_of(self.every) || item.progress.items_processed >= item.progress.items_total {
            let line = format!("step {:>6}  {}", item.iteration, Self::line(&self.train));
            (self.sink)(&line);
        }
    }

    fn render_valid(&mut self, item: TrainingProgress) {
        if item.progress.items_processed >= item.progress.items_total {
            let line = format!("  validation after step {}: {}", item.iteration, Self::line(&self.valid));
            (self.sink)(&line);
        }
    }

    fn on_train_end(&mut self, _: Option<burn::train::LearnerSummary>) -> Result<(), Box<dyn core::error::Error>> {
        Ok(())
    }
}

impl MetricsRendererEvaluation for LineRenderer {
    fn update_test(&mut self, _: EvaluationName, _: MetricState) {}
    fn render_test(&mut self, _: EvaluationProgress) {}
}

impl MetricsRenderer for LineRenderer {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names.insert(definition.metric_id, definition.name);
    }
}
