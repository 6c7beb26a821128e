//! The workers of a data-parallel run: one thread per device, each with its own replica and its
//! own AdamW. Each step the training loop splits the batch by rows over every worker of every
//! node (each node reads the same batches and keeps its workers' rows); a worker
//! weights its share's loss by its share of the step's target tokens, all-reduces (sums) loss and
//! gradients with burn-collective in one flat tensor, clips to the global norm of the sum and
//! steps. Every worker sees the same reduced values, so replicas and optimizer states stay
//! identical without sharing any state.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use burn::collective::{self, CollectiveConfig, PeerId, ReduceOperation};
use burn::module::Module;
use burn::optim::Optimizer;
use burn::tensor::{ElementConversion, Tensor, TensorPrimitive};

use crate::backend::TritterAutodiffBackend;
use crate::data::TokenBatch;
use crate::error::{Result, TritterError};
use crate::model::TritterModel;
use crate::train::config::TrainConfig;
use crate::train::grads::{clip_global_norm, flatten_grads, unflatten_grads};
use crate::train::optimizer::{adamw, SharedOptimizer, TritterAdamW};
use crate::train::parallel::Parallel;
use crate::train::step::{batch_tokens, shares_of, target_tokens, weighted_grads};

/// burn-collective's server is one per process and backend: one data-parallel run at a time.
static COLLECTIVE: Mutex<()> = Mutex::new(());

enum Job<B: TritterAutodiffBackend> {
    /// The worker's micro-batches of one step with their weights, and the learning rate.
    Step { shares: Vec<(TokenBatch<B>, f64)>, lr: f64 },
    /// Send the replica back (for evaluation and checkpoints).
    Model,
}

/// A worker's answer: the step's reduced loss and gradient norm, or its replica.
enum Done<B: TritterAutodiffBackend> {
    Step { loss: Tensor<B::InnerBackend, 1>, value: f32, norm: f64 },
    Model(Box<TritterModel<B>>),
}

type Reply<B> = (usize, std::result::Result<Done<B>, String>);

/// What the training loop learns from a data-parallel step.
pub(crate) struct ParallelStep<B: TritterAutodiffBackend> {
    pub loss: Tensor<B::InnerBackend, 1>,
    pub value: f32,
    pub norm: f64,
    pub tokens: usize,
}

/// This process's workers, driven by the training loop.
pub(crate) struct Workers<B: TritterAutodiffBackend> {
    jobs: Vec<SyncSender<Job<B>>>,
    replies: Receiver<Reply<B>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    parallel: Parallel<B::Device>,
    pad: Option<usize>,
    _collective: MutexGuard<'static, ()>,
}

impl<B: TritterAutodiffBackend> Workers<B> {
    /// Starts one worker per device of `parallel`, each with a copy of `model` and of
    /// `optimizer`'s state; worker 0 steps `optimizer` itself (what checkpoints save).
    pub fn spawn(
        model: &TritterModel<B>,
        optimizer: &SharedOptimizer<TritterAdamW<B>>,
        config: &TrainConfig,
        parallel: &Parallel<B::Device>,
    ) -> Result<Self> {
        let guard = COLLECTIVE.lock().unwrap_or_else(|p| p.into_inner());
        reset_collective::<B>();
        let settings = parallel.collective_config()?;
        let (reply, replies) = sync_channel(parallel.devices.len());
        let (mut jobs, mut threads) = (Vec::new(), Vec::new());
        for (i, device) in parallel.devices.iter().enumerate() {
            let optimizer = match i {
                0 => optimizer.clone(),
                _ => SharedOptimizer::new(adamw::<B>(config)).load_record(optimizer.to_record()),
            };
            let worker = Worker {
                index: parallel.first_worker() + i,
                device: device.clone(),
                model: model.clone().fork(device),
                optimizer,
                grad_clip: config.grad_clip,
                across_machines: parallel.nodes.is_some(),
                workers: parallel.total_workers(),
                reply: reply.clone(),
            };
            let (job, receiver) = sync_channel(1);
            let settings = settings.clone();
            let name = format!("tritter-worker-{}", worker.index);
            let thread = std::thread::Builder::new().name(name).spawn(move || worker.run(settings, receiver));
            threads.push(thread.map_err(|e| TritterError::InvalidInput(format!("cannot start a worker: {e}")))?);
            jobs.push(job);
        }
        let pad = model.config().pad_token_id;
        Ok(Self { jobs, replies, threads, parallel: parallel.clone(), pad, _collective: guard })
    }

    /// One optimizer step over `batches` (the step's micro-batches, whole).
    pub fn step(&mut self, batches: Vec<TokenBatch<B>>, lr: f64, step: usize) -> Result<ParallelStep<B>> {
        let tokens = batches.iter().map(batch_tokens).sum();
        let first = self.parallel.first_worker();
        let mut parts = Vec::new();
        for batch in batches {
            let rows = batch.input_ids.dims()[0];
            for (worker, (start, len)) in row_parts(rows, self.parallel.total_workers()).enumerate() {
                let part = batch.rows(start, len);
                parts.push((target_tokens(&part, self.pad), (worker, part)));
            }
        }
        let mut shares: Vec<Vec<(TokenBatch<B>, f64)>> = self.jobs.iter().map(|_| Vec::new()).collect();
        for ((worker, part), weight) in shares_of(parts) {
            if let Some(local) = worker.checked_sub(first).filter(|&local| local < shares.len()) {
                shares[local].push((part.to_device(&self.parallel.devices[local]), weight));
            }
        }
        for (i, shares) in shares.into_iter().enumerate() {
            if self.jobs[i].send(Job::Step { shares, lr }).is_err() {
                return Err(self.failed_worker(first + i, step, "has stopped".into()));
            }
        }
        match self.collect(step)?.swap_remove(0) {
            Done::Step { loss, value, norm } => Ok(ParallelStep { loss, value, norm, tokens }),
            Done::Model(_) => unreachable!("a step job is answered with a step"),
        }
    }

    /// This process's first worker's replica.
    pub fn model(&mut self, step: usize) -> Result<TritterModel<B>> {
        let first = self.parallel.first_worker();
        if self.jobs[0].send(Job::Model).is_err() {
            return Err(self.failed_worker(first, step, "has stopped".into()));
        }
        match self.replies.recv_timeout(self.parallel.timeout) {
            Ok((_, Ok(Done::Model(model)))) => Ok(*model),
            Ok((index, Err(reason))) => Err(self.failed_worker(index, step, reason)),
            Ok(_) | Err(_) => Err(self.failed_worker(first, step, "did not hand over its model in time".into())),
        }
    }

    /// Ends the workers after a run that went well.
    pub fn finish(mut self) {
        self.jobs.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }

    /// Every local worker's answer to the step, in worker order, or the first failure.
    fn collect(&mut self, step: usize) -> Result<Vec<Done<B>>> {
        let deadline = Instant::now() + self.parallel.timeout;
        let first = self.parallel.first_worker();
        let mut done: Vec<Option<Done<B>>> = self.jobs.iter().map(|_| None).collect();
        while let Some(waiting) = done.iter().position(Option::is_none) {
            match self.replies.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((index, Ok(answer))) => done[index - first] = Some(answer),
                Ok((index, Err(reason))) => return Err(self.failed_worker(index, step, reason)),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    let nodes = if self.parallel.nodes.is_some() {
                        " (it waits for every node: one is stuck or gone)"
                    } else {
                        ""
                    };
                    let reason =
                        format!("did not finish step {step} within {} s{nodes}", self.parallel.timeout.as_secs_f64());
                    return Err(self.failed_worker(first + waiting, step, reason));
                }
            }
        }
        Ok(done.into_iter().map(|d| d.expect("all answered")).collect())
    }

    /// The error for a failed worker (by global index); unblocks the others (their collective
    /// calls fail).
    fn failed_worker(&self, index: usize, step: usize, reason: String) -> TritterError {
        reset_collective::<B>();
        let device = &self.parallel.devices[index - self.parallel.first_worker()];
        TritterError::Worker { worker: format!("worker {index} ({device:?})"), step, reason }
    }
}

/// One worker thread's state.
struct Worker<B: TritterAutodiffBackend> {
    index: usize,
    device: B::Device,
    model: TritterModel<B>,
    optimizer: SharedOptimizer<TritterAdamW<B>>,
    grad_clip: Option<f32>,
    /// Whether the all-reduce reaches other machines (a failure then usually means one left).
    across_machines: bool,
    /// Workers over all nodes.
    workers: usize,
    reply: SyncSender<Reply<B>>,
}

impl<B: TritterAutodiffBackend> Worker<B> {
    fn peer(&self) -> PeerId {
        PeerId::from(self.index as u32)
    }

    /// Joins the collective, then answers jobs until the training loop hangs up or a job fails
    /// (a panic, in Burn or in burn-collective, is a failure with its message).
    fn run(mut self, settings: CollectiveConfig, jobs: Receiver<Job<B>>) {
        let (index, reply) = (self.index, self.reply.clone());
        let (peer, device) = (self.peer(), self.device.clone());
        let joined = std::panic::catch_unwind(AssertUnwindSafe(|| {
            collective::register::<B::InnerBackend>(peer, device, settings)
        }));
        let joined =
            joined.map_err(|panic| panic_message(panic.as_ref())).and_then(|r| r.map_err(|e| format!("{e:?}")));
        if let Err(reason) = joined {
            let _ = reply.send((index, Err(format!("cannot join the collective: {reason}"))));
            return;
        }
        while let Ok(job) = jobs.recv() {
            let answer = std::panic::catch_unwind(AssertUnwindSafe(|| match job {
                Job::Model => Ok(Done::Model(Box::new(self.model.clone()))),
                Job::Step { shares, lr } => self.step(shares, lr),
            }))
            .unwrap_or_else(|panic| Err(panic_message(panic.as_ref())));
            let failed = answer.is_err();
            if reply.send((index, answer)).is_err() || failed {
                return;
            }
        }
        let _ = std::panic::catch_unwind(|| collective::finish_collective::<B::InnerBackend>(peer));
    }

    /// Sums loss and gradients over all workers (with a 1 per worker, which checks that every
    /// node runs as many workers as this one assumes: the rows each takes depend on it), clips
    /// and steps.
    fn step(&mut self, shares: Vec<(TokenBatch<B>, f64)>, lr: f64) -> std::result::Result<Done<B>, String> {
        let (grads, loss) = weighted_grads(&self.model, shares);
        let head = Tensor::cat(vec![loss.clone(), Tensor::ones([1], &loss.device())], 0);
        let flat = flatten_grads(&self.model, grads.unwrap_or_default(), head);
        let sum = collective::all_reduce::<B::InnerBackend>(
            self.peer(),
            flat.into_primitive().tensor(),
            ReduceOperation::Sum,
        )
        .map_err(|e| {
            let nodes = if self.across_machines { " (another node stopped or cannot be reached)" } else { "" };
            format!("all-reduce failed: {e:?}{nodes}")
        })?;
        let (grads, head) = unflatten_grads(&self.model, Tensor::from_primitive(TensorPrimitive::Float(sum)), 2);
        let workers: f32 = head.clone().narrow(0, 1, 1).into_scalar().elem();
        if workers != self.workers as f32 {
            return Err(format!(
                "the all-reduce summed {workers} workers where {} were expected: every node must run \
                 with the same number of devices",
                self.workers
            ));
        }
        let loss = head.narrow(0, 0, 1);
        let (grads, norm) = clip_global_norm(&self.model, grads, self.grad_clip);
        let value: f32 = loss.clone().into_scalar().elem();
        if value.is_finite() && norm.is_finite() {
            self.model = self.optimizer.step(lr, self.model.clone(), grads);
        }
        Ok(Done::Step { loss, value, norm })
    }
}

/// The rows of each of `workers` parts of a batch of `rows`: contiguous, the first
/// `rows % workers` parts a row longer.
fn row_parts(rows: usize, workers: usize) -> impl Iterator<Item = (usize, usize)> {
    let (base, extra) = (rows / workers, rows % workers);
    (0..workers).map(move |w| (w * base + w.min(extra), base + usize::from(w < extra)))
}

/// Clears burn-collective's server of the last run's peers and pending operations (which fails
/// the operations, freeing any worker blocked in them). A server that died with a panic cannot
/// be reset; the next registration reports that.
fn reset_collective<B: TritterAutodiffBackend>() {
    let _ = std::panic::catch_unwind(collective::reset_collective::<B::InnerBackend>);
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
    format!("panicked: {}", text.unwrap_or_else(|| "(no message)".into()))
}
