//! Burn integration: token streams cut into `seq_len + 1` windows as a `Dataset`, weighted
//! mixtures of several corpora, and a `Batcher` that makes `[batch, seq_len + 1]` id tensors.

use std::path::PathBuf;
use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::data::answers::AnswerTargets;
use crate::data::corpus::TokenStream;
use crate::error::{Result, TritterError};
use crate::train::order::{mix, permute};

/// A token stream cut into consecutive, non-overlapping windows of `seq_len + 1` tokens, so
/// every token appears in exactly one window per epoch. The last window, if partial, is padded
/// with `pad` (set the model's `pad_token_id` to it so the loss ignores the padding).
#[derive(Debug, Clone)]
pub struct TokenWindows {
    stream: Arc<TokenStream>,
    window: usize,
    pad: u32,
}

impl TokenWindows {
    pub fn new(stream: Arc<TokenStream>, seq_len: usize, pad: u32) -> Self {
        assert!(seq_len > 0, "seq_len must be > 0");
        Self { stream, window: seq_len + 1, pad }
    }
}

impl Dataset<Vec<u32>> for TokenWindows {
    fn get(&self, index: usize) -> Option<Vec<u32>> {
        let start = index.checked_mul(self.window)?;
        if start >= self.stream.len() {
            return None;
        }
        let end = (start + self.window).min(self.stream.len());
        let mut out = Vec::with_capacity(self.window);
        self.stream.read_into(start, end, &mut out);
        out.resize(self.window, self.pad);
        Some(out)
    }

    fn len(&self) -> usize {
        self.stream.len().div_ceil(self.window)
    }
}

/// A data source with a sampling weight: `PATH` or `PATH:WEIGHT` on the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSpec {
    pub path: PathBuf,
    pub weight: f64,
}

impl std::str::FromStr for DataSpec {
    type Err = TritterError;

    /// `PATH` (weight 1) or `PATH:WEIGHT`; a suffix that is not a number is part of the path.
    fn from_str(s: &str) -> Result<Self> {
        if let Some((path, weight)) = s.rsplit_once(':') {
            if let Ok(weight) = weight.parse::<f64>() {
                if !(weight.is_finite() && weight > 0.0) {
                    return Err(TritterError::InvalidInput(format!(
                        "weight of `{path}` must be a positive number, got {weight}"
                    )));
                }
                return Ok(Self { path: path.into(), weight });
            }
        }
        Ok(Self { path: s.into(), weight: 1.0 })
    }
}

/// Several window datasets mixed by weight: an epoch has as many windows as all parts together,
/// and part `i` contributes `total · wᵢ / Σw` of them (largest-remainder rounding), drawn without repetition from a
/// seeded permutation of its windows ([`permute`] keyed by `mix(mix(seed) ^ i)`) and cycled when it is upsampled.
/// Deterministic for a seed.
pub struct WeightedMixture<D> {
    parts: Vec<D>,
    /// `(part, window)` for every position of the epoch, in part order (shuffle with burn's
    /// `ShuffledDataset` or the data loader).
    order: Vec<(u32, u32)>,
}

impl<D: Dataset<Vec<u32>>> WeightedMixture<D> {
    pub fn new(parts: Vec<(D, f64)>, seed: u64) -> Result<Self> {
        let total: usize = parts.iter().map(|(d, _)| d.len()).sum();
        let weight_sum: f64 = parts.iter().map(|(_, w)| w).sum();
        if parts.is_empty() || total == 0 {
            return Err(TritterError::InvalidInput("a mixture needs at least one non-empty part".into()));
        }
        let counts = apportion(total, &parts.iter().map(|(_, w)| *w / weight_sum).collect::<Vec<_>>());
        let mut order = Vec::with_capacity(total);
        for (i, ((dataset, weight), count)) in parts.iter().zip(counts).enumerate() {
            if dataset.is_empty() {
                if count > 0 {
                    return Err(TritterError::InvalidInput(format!(
                        "mixture part {i} has weight {weight} but no windows"
                    )));
                }
                continue;
            }
            let (n, key) = (dataset.len(), mix(mix(seed) ^ i as u64));
            order.extend((0..count).map(|k| (i as u32, permute(k % n, n, key) as u32)));
        }
        Ok(Self { parts: parts.into_iter().map(|(d, _)| d).collect(), order })
    }
}

/// Splits `total` into integer counts proportional to `shares` (summing to 1) that add up to
/// exactly `total`: floors first, then one more for the largest remainders.
fn apportion(total: usize, shares: &[f64]) -> Vec<usize> {
    let exact: Vec<f64> = shares.iter().map(|s| total as f64 * s).collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut by_remainder: Vec<usize> = (0..shares.len()).collect();
    by_remainder.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    let missing = total.saturating_sub(counts.iter().sum());
    for &i in by_remainder.iter().take(missing) {
        counts[i] += 1;
    }
    counts
}

impl<D: Dataset<Vec<u32>>> Dataset<Vec<u32>> for WeightedMixture<D> {
    fn get(&self, index: usize) -> Option<Vec<u32>> {
        let (part, window) = *self.order.get(index)?;
        self.parts[part as usize].get(window as usize)
    }

    fn len(&self) -> usize {
        self.order.len()
    }
}

/// A batch of token windows `[batch, seq_len + 1]` and, when the loss covers only some tokens,
/// the targets `[batch, seq_len]`: `input_ids[:, 1:]` with the skipped ones set to the pad id.
#[derive(Debug, Clone)]
pub struct TokenBatch<B: Backend> {
    pub input_ids: Tensor<B, 2, Int>,
    pub targets: Option<Tensor<B, 2, Int>>,
}

impl<B: Backend> TokenBatch<B> {
    /// Every next token is a target.
    pub fn new(input_ids: Tensor<B, 2, Int>) -> Self {
        Self { input_ids, targets: None }
    }

    /// Rows `start..start + len` of the batch.
    pub fn rows(&self, start: usize, len: usize) -> Self {
        Self {
            input_ids: self.input_ids.clone().narrow(0, start, len),
            targets: self.targets.as_ref().map(|t| t.clone().narrow(0, start, len)),
        }
    }

    pub fn to_device(self, device: &B::Device) -> Self {
        Self { input_ids: self.input_ids.to_device(device), targets: self.targets.map(|t| t.to_device(device)) }
    }
}

/// Stacks equal-length windows into a [`TokenBatch`], with answer-only targets when asked.
#[derive(Debug, Clone, Default)]
pub struct TokenBatcher {
    pub answers: Option<AnswerTargets>,
}

impl TokenBatcher {
    /// The first `count` windows of `dataset` (fewer if it is smaller) as one batch, e.g. a
    /// fixed validation batch.
    pub fn batch_of<B: Backend>(
        &self,
        dataset: &impl Dataset<Vec<u32>>,
        count: usize,
        device: &B::Device,
    ) -> TokenBatch<B> {
        let items: Vec<Vec<u32>> = (0..count.min(dataset.len())).filter_map(|i| dataset.get(i)).collect();
        self.batch(items, device)
    }
}

fn id_tensor<B: Backend>(rows: &[Vec<u32>], device: &B::Device) -> Tensor<B, 2, Int> {
    let width = rows.first().map_or(0, Vec::len);
    let ids: Vec<i64> = rows.iter().flatten().map(|&id| id as i64).collect();
    Tensor::from_data(TensorData::new(ids, [rows.len(), width]), device)
}

impl<B: Backend> Batcher<B, Vec<u32>, TokenBatch<B>> for TokenBatcher {
    fn batch(&self, items: Vec<Vec<u32>>, device: &B::Device) -> TokenBatch<B> {
        let window = items.first().map_or(0, Vec::len);
        assert!(items.iter().all(|w| w.len() == window), "windows of a batch must have equal length");
        let targets = self.answers.map(|answers| {
            let rows: Vec<Vec<u32>> = items.iter().map(|w| answers.targets(w)).collect();
            id_tensor(&rows, device)
        });
        TokenBatch { input_ids: id_tensor(&items, device), targets }
    }
}
