//! AdamW behind a shared handle: burn-train's `Learner` owns its optimizer and offers no getter,
//! but a step checkpoint needs the optimizer state. The Learner and the training strategy hold
//! clones of one `SharedOptimizer`.

use std::sync::{Arc, Mutex, MutexGuard};

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::LearningRate;
use burn::optim::{GradientsParams, MultiGradientsParams, Optimizer};

use crate::backend::TritterAutodiffBackend;
use crate::model::TritterModel;
use crate::train::config::TrainConfig;
use crate::train::fused_adamw::{FusedAdamW, FusedAdamWConfig};

/// AdamW for a Tritter model: Burn's maths and state, one pass per parameter on the CPU
/// ([`FusedAdamW`]).
pub type TritterAdamW<B> = OptimizerAdaptor<FusedAdamW, TritterModel<B>, B>;

/// AdamW with the run's β, ε and weight decay. Clipping is global-norm and done by the
/// training loop (Burn's own clipping is per tensor).
pub fn adamw<B: TritterAutodiffBackend>(config: &TrainConfig) -> TritterAdamW<B> {
    FusedAdamWConfig::of(config).init()
}

/// An optimizer whose clones share one state.
#[derive(Clone)]
pub struct SharedOptimizer<O> {
    inner: Arc<Mutex<O>>,
}

impl<O> SharedOptimizer<O> {
    pub fn new(optimizer: O) -> Self {
        Self { inner: Arc::new(Mutex::new(optimizer)) }
    }

    fn lock(&self) -> MutexGuard<'_, O> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<M, B, O> Optimizer<M, B> for SharedOptimizer<O>
where
    M: AutodiffModule<B>,
    B: TritterAutodiffBackend,
    O: Optimizer<M, B>,
{
    type Record = O::Record;

    fn step(&mut self, lr: LearningRate, module: M, grads: GradientsParams) -> M {
        self.lock().step(lr, module, grads)
    }

    fn step_multi(&mut self, lr: LearningRate, module: M, grads: MultiGradientsParams) -> M {
        self.lock().step_multi(lr, module, grads)
    }

    fn to_record(&self) -> Self::Record {
        self.lock().to_record()
    }

    fn load_record(self, record: Self::Record) -> Self {
        {
            let mut inner = self.lock();
            *inner = inner.clone().load_record(record);
        }
        self
    }
}

/// The saved state of [`TritterAdamW`] (what step checkpoints hold).
pub type TritterAdamWRecord<B> = <TritterAdamW<B> as Optimizer<TritterModel<B>, B>>::Record;
