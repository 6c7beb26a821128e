//! Resumable run checkpoints: `RUN/checkpoints/step-NNNNNNNN/` holds the model (a normal
//! checkpoint directory that loads anywhere), the optimizer state and `run_state.json` (step,
//! data position, counters, the training config). Each is written into a temporary directory
//! that is renamed into place, then `checkpoints/latest` is switched atomically, so a crash
//! mid-save leaves the previous checkpoint as the latest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, NamedMpkFileRecorder, Record, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::backend::TritterAutodiffBackend;
use crate::checkpoint::CONFIG_FILE;
use crate::config::TritterConfig;
use crate::error::{Result, TritterError};
use crate::io::write_atomic;
use crate::model::TritterModel;
use crate::train::config::TrainConfig;

const CHECKPOINTS: &str = "checkpoints";
const LATEST: &str = "latest";
const MODEL_DIR: &str = "model";
const OPTIMIZER: &str = "optimizer";
const STATE_FILE: &str = "run_state.json";

/// Everything about a run's progress that is not a tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Optimizer steps taken (or predicted, in hybrid mode).
    pub step: usize,
    /// Training samples (windows) consumed: the data position.
    pub samples: usize,
    /// Backward passes computed so far.
    pub backward_passes: usize,
    /// Steps whose update was skipped because the loss or gradients were not finite.
    pub skipped_steps: usize,
    /// Loss of the last step.
    pub last_loss: f32,
    pub train_config: TrainConfig,
    /// Parameter path → Burn `ParamId`, so the optimizer state (keyed by id) finds its
    /// parameters again after the model is reloaded from safetensors.
    pub param_ids: BTreeMap<String, u64>,
}

impl RunState {
    /// The state of a run that has not taken a step.
    pub fn fresh(config: &TrainConfig) -> Self {
        Self {
            step: 0,
            samples: 0,
            backward_passes: 0,
            skipped_steps: 0,
            last_loss: f32::NAN,
            train_config: config.clone(),
            param_ids: Default::default(),
        }
    }
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> TritterError + 'a {
    move |source| TritterError::Io { action, path: path.to_path_buf(), source }
}

/// Paths skip enum variants (`Projection::Latent`), as the checkpoints' tensor names do.
fn enter(path: &mut Vec<String>, name: &str, container: &str) {
    if !container.starts_with("Enum:") {
        path.push(name.to_string());
    }
}

fn exit(path: &mut Vec<String>, container: &str) {
    if !container.starts_with("Enum:") {
        path.pop();
    }
}

#[derive(Default)]
struct IdCollector {
    path: Vec<String>,
    ids: BTreeMap<String, u64>,
}

impl<B: Backend> ModuleVisitor<B> for IdCollector {
    fn enter_module(&mut self, name: &str, container: &str) {
        enter(&mut self.path, name, container);
    }

    fn exit_module(&mut self, _: &str, container: &str) {
        exit(&mut self.path, container);
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.ids.insert(self.path.join("."), param.id.val());
    }
}

/// Parameter path (e.g. `model.layers.0.self_attn.q_proj.weight`) → id of every float parameter.
pub fn param_ids<B: Backend, M: Module<B>>(model: &M) -> BTreeMap<String, u64> {
    let mut collector = IdCollector::default();
    model.visit(&mut collector);
    collector.ids
}

struct IdSetter<'a> {
    ids: &'a BTreeMap<String, u64>,
    path: Vec<String>,
    missing: Vec<String>,
}

impl<B: Backend> ModuleMapper<B> for IdSetter<'_> {
    fn enter_module(&mut self, name: &str, container: &str) {
        enter(&mut self.path, name, container);
    }

    fn exit_module(&mut self, _: &str, container: &str) {
        exit(&mut self.path, container);
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let path = self.path.join(".");
        let id = match self.ids.get(&path) {
            Some(&saved) => ParamId::from(saved),
            None => {
                self.missing.push(path);
                id
            }
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// Gives the parameters of `model` the ids in `ids` (by path); errors if one is missing.
pub fn restore_param_ids<B: Backend, M: Module<B>>(
    model: M,
    ids: &BTreeMap<String, u64>,
    state_file: &Path,
) -> Result<M> {
    let mut setter = IdSetter { ids, path: Vec::new(), missing: Vec::new() };
    let model = model.map(&mut setter);
    if !setter.missing.is_empty() {
        return Err(TritterError::CorruptCheckpoint {
            path: state_file.to_path_buf(),
            reason: format!("no parameter id for {}", setter.missing.join(", ")),
        });
    }
    Ok(model)
}

type OptimRecorder = NamedMpkFileRecorder<FullPrecisionSettings>;

/// The directory of the run's checkpoints.
pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join(CHECKPOINTS)
}

/// Saves a resumable checkpoint of step `state.step`, switches `latest` to it and deletes all
/// but the newest `keep` step checkpoints. Returns its directory.
pub fn save_run_checkpoint<B: TritterAutodiffBackend, R: Record<B>>(
    run_dir: &Path,
    model: &TritterModel<B>,
    optimizer: R,
    state: &RunState,
    keep: usize,
) -> Result<PathBuf> {
    let root = checkpoints_dir(run_dir);
    std::fs::create_dir_all(&root).map_err(io_error("cannot create checkpoint directory", &root))?;
    let name = format!("step-{:08}", state.step);
    let dir = root.join(&name);
    let tmp = root.join(format!(".{name}.tmp{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_error("cannot remove stale temporary checkpoint", &tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io_error("cannot create checkpoint directory", &tmp))?;
    if let Err(error) = write_checkpoint_files(&tmp, model, optimizer, state) {
        let _ = std::fs::remove_dir_all(&tmp); // e.g. a full disk: no half-written checkpoint stays
        return Err(error);
    }

    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io_error("cannot replace checkpoint", &dir))?;
    }
    std::fs::rename(&tmp, &dir).map_err(io_error("cannot rename checkpoint into place", &dir))?;
    write_atomic(&root.join(LATEST), name.as_bytes())?;
    prune(&root, keep)?;
    tracing::info!(dir = %dir.display(), step = state.step, "saved run checkpoint");
    Ok(dir)
}

/// The model, optimizer state and run state of a step checkpoint, written into `dir`. The
/// optimizer state is encoded in memory and written like every other file, so a failed write
/// reports the OS error (e.g. "No space left on device").
fn write_checkpoint_files<B: TritterAutodiffBackend, R: Record<B>>(
    dir: &Path,
    model: &TritterModel<B>,
    optimizer: R,
    state: &RunState,
) -> Result<()> {
    model.valid().save_checkpoint(dir.join(MODEL_DIR))?;
    let optimizer_path = dir.join(OPTIMIZER).with_extension("mpk");
    let bytes = NamedMpkBytesRecorder::<FullPrecisionSettings>::new().record(optimizer, ()).map_err(|e| {
        TritterError::CorruptCheckpoint {
            path: optimizer_path.clone(),
            reason: format!("cannot encode optimizer state: {e}"),
        }
    })?;
    write_atomic(&optimizer_path, &bytes)?;
    let json = serde_json::to_string_pretty(state).expect("run state serialises");
    write_atomic(&dir.join(STATE_FILE), json.as_bytes())
}

/// Makes `run_dir` ready for a fresh run. An earlier run's step checkpoints or final model there
/// are refused: the new run's checkpoints would be pruned against the old ones by step number
/// (losing the new run's own), and `latest` would mix the two. With `overwrite` they are removed.
pub fn prepare_fresh_run_dir(run_dir: &Path, overwrite: bool) -> Result<()> {
    let root = checkpoints_dir(run_dir);
    let mut found: Vec<PathBuf> = std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-") || n == LATEST))
        .collect();
    found.sort();
    let model = run_dir.join(MODEL_DIR);
    if model.join(CONFIG_FILE).is_file() {
        found.push(model.clone());
    }
    if found.is_empty() {
        return Ok(());
    }
    if !overwrite {
        let names: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
        return Err(TritterError::RunExists { path: run_dir.to_path_buf(), found: names.join(", ") });
    }
    for path in [root, model] {
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(io_error("cannot remove the earlier run's", &path))?;
        }
    }
    tracing::info!(dir = %run_dir.display(), "removed an earlier run (overwrite)");
    Ok(())
}

/// Removes the half-written `.step-*.tmp*` directories a crashed run left behind.
pub fn remove_stale_temporaries(run_dir: &Path) -> Result<()> {
    let root = checkpoints_dir(run_dir);
    for entry in std::fs::read_dir(&root).into_iter().flatten().filter_map(|e| e.ok()) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() && name.starts_with(".step-") && name.contains(".tmp") {
            std::fs::remove_dir_all(&path).map_err(io_error("cannot remove stale temporary checkpoint", &path))?;
            tracing::info!(dir = %path.display(), "removed a crashed run's partial checkpoint");
        }
    }
    Ok(())
}

fn prune(root: &Path, keep: usize) -> Result<()> {
    let mut steps: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(io_error("cannot list checkpoints", root))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-")))
        .collect();
    steps.sort();
    for old in steps.iter().rev().skip(keep.max(1)) {
        std::fs::remove_dir_all(old).map_err(io_error("cannot delete old checkpoint", old))?;
    }
    Ok(())
}

/// The step checkpoint `path` names: a run directory (its latest checkpoint), a `checkpoints`
/// directory, or one `step-…` directory.
pub fn resolve_run_checkpoint(path: &Path) -> Result<PathBuf> {
    if path.join(STATE_FILE).is_file() {
        return Ok(path.to_path_buf());
    }
    for root in [path.join(CHECKPOINTS), path.to_path_buf()] {
        let latest = root.join(LATEST);
        if latest.is_file() {
            let name = std::fs::read_to_string(&latest).map_err(io_error("cannot read", &latest))?;
            let dir = root.join(name.trim());
            if !dir.join(STATE_FILE).is_file() {
                return Err(TritterError::CorruptCheckpoint {
                    path: latest,
                    reason: format!("points to {} which has no {STATE_FILE}", dir.display()),
                });
            }
            return Ok(dir);
        }
    }
    Err(TritterError::Io {
        action: "no resumable checkpoint in",
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("expected {STATE_FILE}, checkpoints/{LATEST} or {LATEST}"),
        ),
    })
}

/// A loaded step checkpoint: the model with its original parameter ids, the optimizer record
/// and the run state.
pub struct RunCheckpoint<B: AutodiffBackend, R> {
    pub dir: PathBuf,
    pub model: TritterModel<B>,
    pub optimizer: R,
    pub state: RunState,
}

/// What a step checkpoint says about its run, read without its tensors: enough to continue the
/// run with its own settings in its own directory.
#[derive(Debug, Clone)]
pub struct ResumePoint {
    /// The step checkpoint directory.
    pub dir: PathBuf,
    /// The run directory it belongs to (`RUN` of `RUN/checkpoints/step-…`), if it is in one.
    pub run_dir: Option<PathBuf>,
    pub state: RunState,
    /// The config of the checkpoint's model.
    pub model_config: TritterConfig,
}

/// Reads the run state and model config of the step checkpoint `path` names (see
/// [`resolve_run_checkpoint`]).
pub fn read_resume_point(path: &Path) -> Result<ResumePoint> {
    let dir = resolve_run_checkpoint(path)?;
    let state_file = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_file).map_err(io_error("cannot read", &state_file))?;
    let state: RunState = serde_json::from_str(&text)
        .map_err(|e| TritterError::CorruptCheckpoint { path: state_file.clone(), reason: e.to_string() })?;
    let model_config = TritterConfig::from_json_file(dir.join(MODEL_DIR).join(CONFIG_FILE))?;
    let parent = dir.parent().filter(|p| p.file_name().is_some_and(|n| n == CHECKPOINTS));
    let run_dir = parent.map(|p| match p.parent() {
        Some(run) if !run.as_os_str().is_empty() => run.to_path_buf(),
        _ => PathBuf::from("."),
    });
    Ok(ResumePoint { dir, run_dir, state, model_config })
}

/// Loads what [`save_run_checkpoint`] wrote (see [`resolve_run_checkpoint`] for `path`).
pub fn load_run_checkpoint<B: TritterAutodiffBackend, R: Record<B>>(
    path: &Path,
    device: &B::Device,
) -> Result<RunCheckpoint<B, R>> {
    let ResumePoint { dir, state, .. } = read_resume_point(path)?;
    let state_file = dir.join(STATE_FILE);
    let model = TritterModel::<B>::load_checkpoint(dir.join(MODEL_DIR), device)?;
    let model = restore_param_ids(model, &state.param_ids, &state_file)?;
    let optimizer_path = dir.join(OPTIMIZER);
    let optimizer = Recorder::<B>::load(&OptimRecorder::new(), optimizer_path.clone(), device).map_err(|e| {
        TritterError::CorruptCheckpoint { path: optimizer_path.with_extension("mpk"), reason: e.to_string() }
    })?;
    Ok(RunCheckpoint { dir, model, optimizer, state })
}

/// The model directory inside a step checkpoint (loads with `TritterModel::load_checkpoint`).
pub fn model_dir(step_checkpoint: &Path) -> PathBuf {
    step_checkpoint.join(MODEL_DIR)
}
