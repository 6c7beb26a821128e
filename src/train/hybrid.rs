//! The hybrid predictive trainer (`hybrid-predict-trainer-rs`) on a Tritter model.
//!
//! The crate alternates Full steps (forward + backward + optimizer) with Predict steps (forward
//! only) and Correct steps. It only predicts eight unsigned magnitudes (one per parameter group:
//! embed, attention q/k/v/out, mlp up/down, lm_head), so the update itself comes from us: during
//! Full steps every parameter keeps an exponential average of its optimizer update per unit of
//! learning rate (its "drift"); a Predict step moves each parameter by `lr · drift`, scaled by
//! its group's predicted magnitude relative to the mean of the eight. A Correct step applies
//! the crate's signed per-group corrections the same way (a fraction of `lr · drift`, clamped
//! to ±0.5), skipping non-finite values.
//!
//! The crate's side effects are contained: no checkpoint files (`save_interval = 0`) and its
//! phase-transition `println!` is captured and routed to `tracing`. Its predictor uses an
//! unseeded RNG, so hybrid runs are not bit-reproducible and resume restarts the predictor.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsParams, Optimizer as _};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};
use hybrid_predict_trainer_rs as hpt;
use hpt::state::WeightDelta;
use hpt::{GradientInfo, HybridResult, HybridTrainer, HybridTrainerConfig, HybridTrainingError, Phase};

use crate::config::TritterConfig;
use crate::data::TokenBatch;
use crate::error::{Result, TritterError};
use crate::model::TritterModel;
use crate::train::config::{HybridOptions, TrainConfig};
use crate::train::grads::clip_global_norm;
use crate::train::optimizer::{adamw, SharedOptimizer, TritterAdamW};
use crate::train::state::param_ids;
use crate::train::step::batch_tokens;

impl<B: Backend> hpt::Batch for TokenBatch<B> {
    fn batch_size(&self) -> usize {
        self.input_ids.dims()[0]
    }
}

/// Counts of what the hybrid run did; `predicted_update_norm` is the summed L2 norm of every
/// weight change applied by Predict steps (zero would mean Predict did nothing).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HybridStats {
    pub warmup_steps: usize,
    pub full_steps: usize,
    pub predict_steps: usize,
    pub correct_steps: usize,
    pub forward_passes: usize,
    pub backward_passes: usize,
    pub predicted_update_norm: f64,
    pub corrections_applied: usize,
}

/// The crate's parameter groups, by our parameter paths; `None` for norms (they follow the mean).
fn group_of(path: &str) -> Option<&'static str> {
    const GROUPS: [(&str, &str); 8] = [
        ("embed_tokens", "embed"),
        ("q_proj", "attention.q"),
        ("k_proj", "attention.k"),
        ("v_proj", "attention.v"),
        ("o_proj", "attention.out"),
        ("gate_proj", "mlp.up"),
        ("up_proj", "mlp.up"),
        ("down_proj", "mlp.down"),
    ];
    if path.starts_with("lm_head") {
        return Some("lm_head");
    }
    GROUPS.iter().find(|(part, _)| path.split('.').any(|p| p == *part)).map(|(_, group)| *group)
}

fn hybrid_error(detail: impl ToString) -> (HybridTrainingError, Option<hpt::RecoveryAction>) {
    (HybridTrainingError::IntegrationError { crate_name: "tritter".into(), detail: detail.to_string() }, None)
}

/// Moves every parameter by `drift · scale(group)`, keeping it a trainable leaf.
struct ApplyDrift<'a> {
    drift: &'a GradientsParams,
    scale: &'a dyn Fn(ParamId) -> f64,
    squared_norm: f64,
}

impl<B: AutodiffBackend> ModuleMapper<B> for ApplyDrift<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let scale = (self.scale)(id);
        let tensor = match self.drift.get::<B::InnerBackend, D>(id) {
            Some(drift) if scale != 0.0 => {
                let change = drift.mul_scalar(scale);
                self.squared_norm += change.clone().square().sum().into_scalar().elem::<f64>();
                let moved = Tensor::from_inner(tensor.inner() + change);
                moved.require_grad()
            }
            _ => tensor,
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// Folds `(after - before) / lr` into the drift average of every parameter.
struct RecordUpdate<'a, B: AutodiffBackend> {
    before: GradientsParams,
    drift: &'a mut GradientsParams,
    inv_lr: f64,
    keep: f64,
    _b: std::marker::PhantomData<B>,
}

struct Snapshot<B: AutodiffBackend>(GradientsParams, std::marker::PhantomData<B>);

impl<B: AutodiffBackend> ModuleVisitor<B> for Snapshot<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.register::<B::InnerBackend, D>(param.id, param.val().inner());
    }
}

impl<B: AutodiffBackend> ModuleVisitor<B> for RecordUpdate<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some(before) = self.before.remove::<B::InnerBackend, D>(param.id) else {
            return;
        };
        let update = (param.val().inner() - before).mul_scalar(self.inv_lr);
        let drift = match self.drift.remove::<B::InnerBackend, D>(param.id) {
            Some(old) => old.mul_scalar(self.keep) + update.mul_scalar(1.0 - self.keep),
            None => update,
        };
        self.drift.register(param.id, drift);
    }
}

/// A Tritter model as the crate's `Model`: Full-step forwards build the autodiff graph,
/// Predict/Correct forwards run without it.
pub struct HybridModel<B: AutodiffBackend> {
    model: TritterModel<B>,
    pending: Option<Tensor<B, 1>>,
    grads: Option<(GradientsParams, f64)>,
    train_next: Arc<AtomicBool>,
    drift: GradientsParams,
    has_drift: bool,
    groups: HashMap<ParamId, &'static str>,
    lr: Arc<Mutex<f64>>,
    clip: Option<f32>,
    keep: f64,
    last_loss: f32,
    stats: Arc<Mutex<HybridStats>>,
}

impl<B: AutodiffBackend> HybridModel<B> {
    pub fn model(&self) -> &TritterModel<B> {
        &self.model
    }

    fn lr(&self) -> f64 {
        *self.lr.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, HybridStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves the weights by `lr · drift · scale(group)`; returns the L2 norm of the change.
    fn apply_drift(&mut self, group_scale: &HashMap<&'static str, f64>, default: f64) -> f64 {
        let lr = self.lr();
        let groups = &self.groups;
        let scale = |id: ParamId| lr * groups.get(&id).and_then(|g| group_scale.get(g)).copied().unwrap_or(default);
        let mut mapper = ApplyDrift { drift: &self.drift, scale: &scale, squared_norm: 0.0 };
        self.model = self.model.clone().map(&mut mapper);
        mapper.squared_norm.sqrt()
    }

    fn record_update(&mut self, before: GradientsParams, lr: f64) {
        let keep = if self.has_drift { self.keep } else { 0.0 };
        let mut visitor = RecordUpdate::<B> {
            before,
            drift: &mut self.drift,
            inv_lr: 1.0 / lr.max(1e-30),
            keep,
            _b: std::marker::PhantomData,
        };
        self.model.visit(&mut visitor);
        self.has_drift = true;
    }
}

impl<B: AutodiffBackend> hpt::Model<TokenBatch<B>> for HybridModel<B> {
    fn forward(&mut self, batch: &TokenBatch<B>) -> HybridResult<f32> {
        let loss = if self.train_next.swap(false, Ordering::SeqCst) {
            let loss = self.model.loss(batch.input_ids.clone());
            let value = loss.clone().into_scalar().elem::<f32>();
            self.pending = Some(loss);
            value
        } else {
            self.model.valid().loss(batch.input_ids.clone().inner()).into_scalar().elem::<f32>()
        };
        self.last_loss = loss;
        self.stats().forward_passes += 1;
        Ok(loss)
    }

    fn backward(&mut self) -> HybridResult<GradientInfo> {
        let loss = self.pending.take().ok_or_else(|| hybrid_error("backward without a training forward"))?;
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        let (grads, norm) = clip_global_norm(&self.model, grads, self.clip);
        self.grads = Some((grads, norm));
        self.stats().backward_passes += 1;
        Ok(GradientInfo { loss: self.last_loss, gradient_norm: norm as f32, per_param_norms: None })
    }

    fn clear_forward_state(&mut self) {
        self.pending = None;
    }

    fn parameter_count(&self) -> usize {
        self.model.num_params()
    }

    fn apply_weight_delta(&mut self, delta: &WeightDelta) -> HybridResult<()> {
        if !self.has_drift {
            return Ok(());
        }
        let finite: Vec<(&str, f64)> = delta
            .deltas
            .iter()
            .filter_map(|(k, v)| v.first().map(|&x| (k.as_str(), x as f64)))
            .filter(|(_, x)| x.is_finite())
            .collect();
        if delta.metadata.is_predicted {
            // Relative magnitudes: the crate's absolute scale is not calibrated to our optimizer.
            let positive: Vec<f64> = finite.iter().map(|&(_, x)| x).filter(|x| *x > 0.0).collect();
            let mean = positive.iter().sum::<f64>() / positive.len().max(1) as f64;
            let mut scale = HashMap::new();
            for (key, value) in &finite {
                if let Some(group) = GROUP_NAMES.iter().find(|g| *g == key) {
                    let relative = if mean > 0.0 { value / mean } else { 1.0 };
                    scale.insert(*group, relative.clamp(0.25, 4.0));
                }
            }
            let norm = self.apply_drift(&scale, 1.0);
            self.stats().predicted_update_norm += norm;
        } else {
            let mut scale = HashMap::new();
            for (key, value) in &finite {
                if let Some(group) = GROUP_NAMES.iter().find(|g| *g == key) {
                    scale.insert(*group, value.clamp(-0.5, 0.5));
                }
            }
            if scale.values().any(|v| *v != 0.0) {
                self.apply_drift(&scale, 0.0);
                self.stats().corrections_applied += 1;
            }
        }
        Ok(())
    }
}

const GROUP_NAMES: [&str; 8] =
    ["embed", "attention.q", "attention.k", "attention.v", "attention.out", "mlp.up", "mlp.down", "lm_head"];

/// AdamW as the crate's `Optimizer`; it also records each update into the model's drift.
pub struct HybridOptimizer<B: AutodiffBackend> {
    adamw: SharedOptimizer<TritterAdamW<B>>,
    lr: Arc<Mutex<f64>>,
    train_next: Arc<AtomicBool>,
}

impl<B: AutodiffBackend> hpt::Optimizer<HybridModel<B>, TokenBatch<B>> for HybridOptimizer<B> {
    fn step(&mut self, model: &mut HybridModel<B>, _: &GradientInfo) -> HybridResult<()> {
        let (grads, norm) = model.grads.take().ok_or_else(|| hybrid_error("optimizer step without gradients"))?;
        if !norm.is_finite() || !model.last_loss.is_finite() {
            tracing::warn!(norm, loss = model.last_loss, "hybrid: non-finite gradients, update skipped");
            return Ok(());
        }
        let lr = *self.lr.lock().unwrap_or_else(|p| p.into_inner());
        let mut before = Snapshot::<B>(GradientsParams::new(), std::marker::PhantomData);
        model.model.visit(&mut before);
        model.model = self.adamw.step(lr, model.model.clone(), grads);
        model.record_update(before.0, lr);
        Ok(())
    }

    fn learning_rate(&self) -> f32 {
        *self.lr.lock().unwrap_or_else(|p| p.into_inner()) as f32
    }

    fn set_learning_rate(&mut self, lr: f32) {
        *self.lr.lock().unwrap_or_else(|p| p.into_inner()) = lr as f64;
    }

    fn zero_grad(&mut self) {
        self.train_next.store(true, Ordering::SeqCst);
    }
}

/// The crate's trainer over a Tritter model.
pub type TritterHybridTrainer<B> = HybridTrainer<HybridModel<B>, HybridOptimizer<B>>;

/// Wraps `model` and `adamw` for the crate; `lr` is shared with the caller's schedule.
fn wrap<B: AutodiffBackend>(
    model: TritterModel<B>,
    adamw: SharedOptimizer<TritterAdamW<B>>,
    lr: Arc<Mutex<f64>>,
    clip: Option<f32>,
    history: usize,
    stats: Arc<Mutex<HybridStats>>,
) -> (HybridModel<B>, HybridOptimizer<B>) {
    let train_next = Arc::new(AtomicBool::new(false));
    let groups = param_ids(&model)
        .into_iter()
        .filter_map(|(path, id)| group_of(&path).map(|g| (ParamId::from(id), g)))
        .collect();
    let model = HybridModel {
        model,
        pending: None,
        grads: None,
        train_next: train_next.clone(),
        drift: GradientsParams::new(),
        has_drift: false,
        groups,
        lr: lr.clone(),
        clip,
        keep: 1.0 - 1.0 / history.max(1) as f64,
        last_loss: f32::NAN,
        stats,
    };
    (model, HybridOptimizer { adamw, lr, train_next })
}

/// The crate's recurrent predictor at a quarter of its default width (GRU state 64 instead of
/// 256, 16 × 16 instead of 32 × 32 categorical latents; 3 ensemble members as by default). The
/// crate runs it on the CPU, scalar, every step (a 10-step rollout per member for its confidence
/// alone): at the default width it took 21% of a `test`-preset hybrid run's CPU time and made
/// `--hybrid` slower than plain AdamW; at this width 3%, with the same validation loss within
/// run-to-run noise (README, Hybrid predictive training). Its output only scales our updates by
/// group (relative to their mean) and gates the phases.
const PREDICTOR: hpt::config::PredictorConfig =
    hpt::config::PredictorConfig::RSSM { deterministic_dim: 64, stochastic_dim: 16, num_categoricals: 16, ensemble_size: 3 };

/// The crate's config for our options: its predictor as [`PREDICTOR`], its file checkpoints off.
pub fn hybrid_trainer_config(options: &HybridOptions) -> HybridTrainerConfig {
    let mut config = HybridTrainerConfig::builder()
        .warmup_steps(options.warmup_steps)
        .full_steps(options.full_steps)
        .max_predict_steps(options.max_predict_steps)
        .confidence_threshold(options.confidence_threshold)
        .predictor_config(PREDICTOR)
        .build();
    config.checkpoint_config.save_interval = 0;
    config
}

/// The seed crate's entry point: a fresh model of `model_config` under the hybrid trainer with
/// AdamW (defaults of [`TrainConfig`]) at a constant `learning_rate`. Drive it with
/// `trainer.step(&batch)`. The trainer writes no files (`save_interval` is forced to 0).
pub fn create_trainer_with_config<B: AutodiffBackend>(
    model_config: &TritterConfig,
    mut trainer_config: HybridTrainerConfig,
    learning_rate: f32,
    device: &B::Device,
) -> Result<TritterHybridTrainer<B>> {
    let model = TritterModel::<B>::new(model_config, device)?;
    let train = TrainConfig::default();
    let lr = Arc::new(Mutex::new(learning_rate as f64));
    let stats = Arc::new(Mutex::new(HybridStats::default()));
    let history = HybridOptions::default().history;
    let (model, optimizer) = wrap(model, SharedOptimizer::new(adamw::<B>(&train)), lr, train.grad_clip, history, stats);
    trainer_config.checkpoint_config.save_interval = 0;
    HybridTrainer::new(model, optimizer, trainer_config).map_err(|(e, _)| TritterError::Hybrid(e.to_string()))
}

/// One hybrid step as the training loop sees it.
pub struct HybridStep<B: Backend> {
    pub loss: Tensor<B, 1>,
    /// `loss` as a number.
    pub value: f32,
    pub tokens: usize,
    pub backward: bool,
    pub phase: Phase,
}

/// The hybrid trainer inside Tritter's training loop (see [`crate::train::strategy`]).
pub struct HybridRun<B: AutodiffBackend> {
    trainer: TritterHybridTrainer<B>,
    lr: Arc<Mutex<f64>>,
    stats: Arc<Mutex<HybridStats>>,
}

impl<B: AutodiffBackend> HybridRun<B> {
    pub fn new(
        model: TritterModel<B>,
        adamw: SharedOptimizer<TritterAdamW<B>>,
        config: &TrainConfig,
        options: &HybridOptions,
    ) -> Result<Self> {
        let lr = Arc::new(Mutex::new(config.learning_rate));
        let stats = Arc::new(Mutex::new(HybridStats::default()));
        let (model, optimizer) = wrap(model, adamw, lr.clone(), config.grad_clip, options.history, stats.clone());
        let trainer = HybridTrainer::new(model, optimizer, hybrid_trainer_config(options))
            .map_err(|(e, _)| TritterError::Hybrid(e.to_string()))?;
        Ok(Self { trainer, lr, stats })
    }

    /// Runs one step at learning rate `lr`; the crate's console output is routed to `tracing`.
    pub fn step(&mut self, batch: TokenBatch<B>, lr: f64) -> Result<HybridStep<B::InnerBackend>> {
        *self.lr.lock().unwrap_or_else(|p| p.into_inner()) = lr;
        let tokens = batch_tokens(&batch);
        let device = batch.input_ids.device();
        let result = with_stdout_routed(|| self.trainer.step(&batch))
            .map_err(|(e, action)| TritterError::Hybrid(format!("{e} (suggested recovery: {action:?})")))?;
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        match result.phase {
            Phase::Warmup => stats.warmup_steps += 1,
            Phase::Full => stats.full_steps += 1,
            Phase::Predict => stats.predict_steps += 1,
            Phase::Correct => stats.correct_steps += 1,
        }
        Ok(HybridStep {
            loss: Tensor::from_floats([result.loss], &device),
            value: result.loss,
            tokens,
            backward: result.phase.computes_backward(),
            phase: result.phase,
        })
    }

    pub fn model(&self) -> TritterModel<B> {
        self.trainer.model().model.clone()
    }

    pub fn stats(&self) -> HybridStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Runs `f` with the process's stdout captured; lines the crate prints ("Phase transition: …")
/// go to `tracing::debug!`, anything else is written back to stdout unchanged.
fn with_stdout_routed<T>(f: impl FnOnce() -> T) -> T {
    let Ok(mut redirect) = gag::BufferRedirect::stdout() else {
        return f();
    };
    let result = f();
    let _ = std::io::stdout().flush();
    let mut captured = Vec::new();
    let _ = redirect.read_to_end(&mut captured);
    drop(redirect);
    if !captured.is_empty() {
        let text = String::from_utf8_lossy(&captured);
        let mut passthrough = String::new();
        for line in text.split_inclusive('\n') {
            if line.starts_with("Phase transition") {
                tracing::debug!(target: "tritter::hybrid", "{}", line.trim_end());
            } else {
                passthrough.push_str(line);
            }
        }
        if !passthrough.is_empty() {
            let mut out = std::io::stdout();
            let _ = out.write_all(passthrough.as_bytes());
            let _ = out.flush();
        }
    }
    result
}
