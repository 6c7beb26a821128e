//! The training loop, as a burn-train custom learning strategy: AdamW steps with gradient
//! accumulation, global-norm clipping and the non-finite policy, evaluation periods, step
//! checkpoints and exact resume, or the hybrid predictive trainer's phases; all reported
//! through burn-train's event processor so its metrics, dashboard and logs work.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::Progress;
use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use burn::tensor::{ElementConversion, Tensor};
use burn::train::{
    EventProcessorTraining, InferenceStep, Interrupter, Learner, LearnerEvent, LearnerItem, LearningComponentsMarker,
    SupervisedLearningStrategy, SupervisedTrainingEventProcessor, TrainLoader, TrainingComponents, ValidLoader,
};
use serde::{Deserialize, Serialize};

use crate::backend::TritterAutodiffBackend;
use crate::data::{TaskExample, TokenBatch, Tokenizer};
use crate::error::{Result, TritterError};
use crate::infer::{task_accuracy, TaskAccuracy};
use crate::model::TritterModel;
use crate::train::config::{NonFinitePolicy, TrainConfig};
use crate::train::grads::clip_global_norm;
use crate::train::hybrid::{HybridRun, HybridStats};
use crate::train::optimizer::{SharedOptimizer, TritterAdamW};
use crate::train::parallel::Parallel;
use crate::train::schedule::WarmupCosine;
use crate::train::state::{param_ids, save_run_checkpoint, RunState};
use crate::train::step::{batch_tokens, token_weighted, weighted_grads, LmOutput};
use crate::train::workers::Workers;

/// burn-train's component types for a Tritter run.
pub type Components<B> = LearningComponentsMarker<B, WarmupCosine, TritterModel<B>, SharedOptimizer<TritterAdamW<B>>>;

/// Held-out generated tasks to score at each evaluation (greedy exact match).
#[derive(Clone)]
pub struct TaskEval {
    pub tokenizer: Tokenizer,
    pub examples: Vec<TaskExample>,
}

/// One evaluation: the step after which it ran, the seconds since the training call started
/// (evaluations included) and the mean validation loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    pub step: usize,
    pub seconds: f64,
    pub loss: f32,
}

/// What the loop leaves behind for the caller of `launch`.
#[derive(Default)]
pub struct RunReport {
    pub state: Option<RunState>,
    pub error: Option<TritterError>,
    /// Training loss of every step of this process (resumed runs start at the resume step).
    pub losses: Vec<(usize, f32)>,
    /// Validation loss after each evaluation period.
    pub validation: Vec<Validation>,
    pub tasks: Option<TaskAccuracy>,
    pub last_checkpoint: Option<PathBuf>,
    pub interrupted: bool,
    pub hybrid: Option<HybridStats>,
}

pub(crate) struct TritterStrategy<B: TritterAutodiffBackend> {
    pub device: B::Device,
    pub config: TrainConfig,
    pub run_dir: PathBuf,
    pub start: RunState,
    pub optimizer: SharedOptimizer<TritterAdamW<B>>,
    pub tasks: Option<TaskEval>,
    /// The devices of a data-parallel run; one device: plain training.
    pub parallel: Parallel<B::Device>,
    pub report: Arc<Mutex<RunReport>>,
    /// When the training call started (for [`Validation::seconds`]).
    pub started: Instant,
}

type EventProcessor<B> = SupervisedTrainingEventProcessor<Components<B>>;

impl<B: TritterAutodiffBackend> SupervisedLearningStrategy<Components<B>> for TritterStrategy<B> {
    fn fit(
        &self,
        components: TrainingComponents<Components<B>>,
        mut learner: Learner<Components<B>>,
        dataloader_train: TrainLoader<Components<B>>,
        dataloader_valid: ValidLoader<Components<B>>,
        _starting_epoch: usize,
    ) -> (TritterModel<B>, EventProcessor<B>) {
        let mut events = components.event_processor;
        let result = self.run(&mut learner, &mut events, &components.interrupter, dataloader_train, dataloader_valid);
        if let Err(error) = result {
            tracing::error!(%error, "training stopped");
            self.report().error = Some(error);
        }
        (learner.model(), events)
    }
}

impl<B: TritterAutodiffBackend> TritterStrategy<B> {
    fn report(&self) -> std::sync::MutexGuard<'_, RunReport> {
        self.report.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn period_of(&self, step: usize) -> usize {
        match self.config.eval_every {
            0 => 1,
            every => (step.max(1) - 1) / every + 1,
        }
    }

    fn run(
        &self,
        learner: &mut Learner<Components<B>>,
        events: &mut EventProcessor<B>,
        interrupter: &Interrupter,
        dataloader_train: TrainLoader<Components<B>>,
        dataloader_valid: ValidLoader<Components<B>>,
    ) -> Result<()> {
        let cfg = &self.config;
        let mut state = self.start.clone();
        learner.load_scheduler(state.step);
        let loader = dataloader_train.to_device(&self.device).slice(state.samples, cfg.total_samples());
        let mut batches = loader.iter();
        let mut hybrid = match &cfg.hybrid {
            Some(options) => Some(HybridRun::new(learner.model(), self.optimizer.clone(), cfg, options)?),
            None => None,
        };
        let mut workers = match self.parallel.is_parallel() {
            true => Some(Workers::spawn(&learner.model(), &self.optimizer, cfg, &self.parallel)?),
            false => None,
        };
        let mut non_finite_in_row = 0;
        while state.step < cfg.steps {
            if interrupter.should_stop() {
                self.report().interrupted = true;
                tracing::info!(step = state.step, reason = ?interrupter.get_message(), "training interrupted");
                break;
            }
            learner.lr_step();
            let lr = learner.lr_current();
            let mut next_batch = || {
                let samples = state.samples;
                batches
                    .next()
                    .ok_or_else(|| TritterError::InvalidInput(format!("training data ran out after {samples} samples")))
            };
            let step = match (hybrid.as_mut(), workers.as_mut()) {
                (Some(hybrid), _) => hybrid_step(hybrid, learner, next_batch()?, lr)?,
                (None, Some(workers)) => self.parallel_step(workers, learner, &mut next_batch, lr, state.step + 1)?,
                (None, None) => self.adamw_step(learner, &mut next_batch)?,
            };
            state.backward_passes += step.backward_passes;
            state.samples += cfg.batch_size * if hybrid.is_some() { 1 } else { cfg.grad_accum };
            state.step += 1;
            state.last_loss = step.value;
            self.non_finite_policy(&mut state, &step, &mut non_finite_in_row)?;
            self.end_of_step(learner, events, &dataloader_valid, &state, step, lr)?;
        }
        if let Some(hybrid) = hybrid {
            self.report().hybrid = Some(hybrid.stats());
        }
        if let Some(mut workers) = workers {
            learner.load_model(workers.model(state.step)?.into_record());
            workers.finish();
        }
        if self.report().interrupted && state.step > 0 && self.parallel.is_lead() {
            self.checkpoint(learner, &state)?;
        }
        self.report().state = Some(state);
        Ok(())
    }

    /// One optimizer step of plain training: `grad_accum` forward/backward passes, their
    /// gradients weighted by each micro-batch's share of the step's target tokens (the gradient
    /// of the mean loss over all of them), clipped to the global norm, then AdamW unless the
    /// loss or the gradients are not finite.
    fn adamw_step(
        &self,
        learner: &mut Learner<Components<B>>,
        next_batch: &mut impl FnMut() -> Result<TokenBatch<B>>,
    ) -> Result<StepResult<B>> {
        let cfg = &self.config;
        let model = learner.model();
        let batches = self.step_batches(next_batch)?;
        let tokens = batches.iter().map(batch_tokens).sum();
        let (grads, loss) = weighted_grads(&model, token_weighted(batches, model.config().pad_token_id));
        let (grads, norm) = match grads {
            Some(grads) => clip_global_norm(&model, grads, cfg.grad_clip),
            None => (Default::default(), f64::NAN),
        };
        let value: f32 = loss.clone().into_scalar().elem();
        if value.is_finite() && norm.is_finite() {
            learner.optimizer_step(grads);
        }
        Ok(StepResult { loss, value, tokens, finite_grads: norm.is_finite(), backward_passes: cfg.grad_accum })
    }

    /// One optimizer step of a data-parallel run; the Learner's model (what evaluation and
    /// checkpoints read) is brought up to date with the first worker's replica when one is due.
    fn parallel_step(
        &self,
        workers: &mut Workers<B>,
        learner: &mut Learner<Components<B>>,
        next_batch: &mut impl FnMut() -> Result<TokenBatch<B>>,
        lr: f64,
        step: usize,
    ) -> Result<StepResult<B>> {
        let batches = self.step_batches(next_batch)?;
        let done = workers.step(batches, lr, step)?;
        if self.evaluates_after(step) || self.checkpoints_after(step) {
            learner.load_model(workers.model(step)?.into_record());
        }
        let backward_passes = self.config.grad_accum;
        Ok(StepResult {
            loss: done.loss,
            value: done.value,
            tokens: done.tokens,
            finite_grads: done.norm.is_finite(),
            backward_passes,
        })
    }

    /// The `grad_accum` micro-batches of one optimizer step.
    fn step_batches(&self, next_batch: &mut impl FnMut() -> Result<TokenBatch<B>>) -> Result<Vec<TokenBatch<B>>> {
        (0..self.config.grad_accum).map(|_| next_batch()).collect()
    }

    /// Whether this process evaluates after `step` (only node 0 of a run over machines does).
    fn evaluates_after(&self, step: usize) -> bool {
        self.parallel.is_lead() && self.due(step, self.config.eval_every)
    }

    /// Whether this process saves a checkpoint after `step` (only node 0 of a run over machines).
    fn checkpoints_after(&self, step: usize) -> bool {
        self.parallel.is_lead() && self.due(step, self.config.checkpoint_every)
    }

    /// Whether something done every `every` steps (0: never) and after the last step is due.
    fn due(&self, step: usize, every: usize) -> bool {
        step == self.config.steps || (every > 0 && step.is_multiple_of(every))
    }

    /// Counts a step whose loss or gradients were not finite and stops the run as
    /// `on_non_finite` says (after `max_skipped_steps` in a row when skipping).
    fn non_finite_policy(&self, state: &mut RunState, step: &StepResult<B>, in_row: &mut usize) -> Result<()> {
        if step.value.is_finite() && step.finite_grads {
            *in_row = 0;
            return Ok(());
        }
        *in_row += 1;
        state.skipped_steps += 1;
        let checkpoint = self.report().last_checkpoint.clone();
        let error = TritterError::NonFinite { step: state.step, loss: step.value, checkpoint };
        match self.config.on_non_finite {
            NonFinitePolicy::Stop => Err(error),
            NonFinitePolicy::Skip if *in_row > self.config.max_skipped_steps => Err(error),
            NonFinitePolicy::Skip => {
                tracing::warn!(%error, "skipping the update");
                Ok(())
            }
        }
    }

    /// Reports the step to burn-train's event processor, then evaluates at the end of an
    /// evaluation period and saves a step checkpoint when one is due.
    fn end_of_step(
        &self,
        learner: &Learner<Components<B>>,
        events: &mut EventProcessor<B>,
        dataloader_valid: &ValidLoader<Components<B>>,
        state: &RunState,
        step: StepResult<B>,
        lr: f64,
    ) -> Result<()> {
        let cfg = &self.config;
        self.report().losses.push((state.step, step.value));
        let progress = Progress { items_processed: state.samples, items_total: cfg.total_samples() };
        let (period, periods) = (self.period_of(state.step), cfg.eval_periods());
        let item =
            LearnerItem::new(LmOutput::new(step.loss, step.tokens), progress, period, periods, state.step, Some(lr));
        events.process_train(LearnerEvent::ProcessedItem(item));
        if self.evaluates_after(state.step) {
            events.process_train(LearnerEvent::EndEpoch(period));
            self.evaluate(learner, events, dataloader_valid, period, periods, state.step)?;
        }
        if self.checkpoints_after(state.step) {
            self.checkpoint(learner, state)?;
        }
        Ok(())
    }

    fn checkpoint(&self, learner: &Learner<Components<B>>, state: &RunState) -> Result<()> {
        let model = learner.model();
        let state = RunState { param_ids: param_ids(&model), ..state.clone() };
        let dir = save_run_checkpoint(
            &self.run_dir,
            &model,
            self.optimizer.to_record(),
            &state,
            self.config.keep_checkpoints,
        )?;
        self.report().last_checkpoint = Some(dir);
        Ok(())
    }

    /// Validation loss over the first `eval_batches` batches, plus task accuracy when asked.
    fn evaluate(
        &self,
        learner: &Learner<Components<B>>,
        events: &mut EventProcessor<B>,
        dataloader_valid: &ValidLoader<Components<B>>,
        period: usize,
        periods: usize,
        step: usize,
    ) -> Result<()> {
        let model = learner.model().valid();
        let items = (self.config.eval_batches * self.config.batch_size).min(dataloader_valid.num_items());
        let mut outputs = Vec::new();
        if items > 0 {
            let loader = dataloader_valid.slice(0, items);
            for batch in loader.iter() {
                let rows = batch.input_ids.dims()[0];
                outputs.push((rows, InferenceStep::step(&model, batch)));
            }
        }
        let mut tasks = None;
        if let Some(eval) = &self.tasks {
            let accuracy = task_accuracy(&model, &eval.tokenizer, &eval.examples)?;
            tasks = Some((accuracy.correct, accuracy.total));
            self.report().tasks = Some(accuracy);
        }
        if outputs.is_empty() && tasks.is_none() {
            return Ok(());
        }
        let mut mean = 0.0;
        for (_, out) in &outputs {
            mean += out.loss.clone().into_scalar().elem::<f64>() / outputs.len() as f64;
        }
        if !outputs.is_empty() {
            let seconds = self.started.elapsed().as_secs_f64();
            self.report().validation.push(Validation { step, seconds, loss: mean as f32 });
        }
        if let (Some((_, last)), Some(tasks)) = (outputs.last_mut(), tasks) {
            last.tasks = Some(tasks);
        }
        let total = outputs.iter().map(|(rows, _)| rows).sum::<usize>().max(1);
        let mut done = 0;
        for (rows, out) in outputs {
            done += rows;
            let progress = Progress { items_processed: done, items_total: total };
            events.process_valid(LearnerEvent::ProcessedItem(LearnerItem::new(
                out, progress, period, periods, step, None,
            )));
        }
        events.process_valid(LearnerEvent::EndEpoch(period));
        Ok(())
    }
}

/// What one optimizer step leaves: the mean loss (for the metrics) and its value read back once,
/// the target tokens seen, whether the gradients were finite, and the backward passes run.
struct StepResult<B: TritterAutodiffBackend> {
    loss: Tensor<B::InnerBackend, 1>,
    value: f32,
    tokens: usize,
    finite_grads: bool,
    backward_passes: usize,
}

/// One step of the hybrid predictive trainer; the Learner's model (what checkpoints and
/// validation read) is kept current with it.
fn hybrid_step<B: TritterAutodiffBackend>(
    hybrid: &mut HybridRun<B>,
    learner: &mut Learner<Components<B>>,
    batch: TokenBatch<B>,
    lr: f64,
) -> Result<StepResult<B>> {
    let step = hybrid.step(batch, lr)?;
    learner.load_model(hybrid.model().into_record());
    let backward_passes = step.backward as usize;
    Ok(StepResult { loss: step.loss, value: step.value, tokens: step.tokens, finite_grads: true, backward_passes })
}
