//! Text generation with the KV cache: the prompt in one forward pass (prefill), then one token
//! per step; batched prompts of different lengths, sampling, stop tokens, streaming.

use burn::module::Module;
use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::backend::TritterBackend;
use crate::config::TritterConfig;
use crate::error::{Result, TritterError};
use crate::infer::sampling::{Sampler, SamplingConfig};
use crate::model::{KvCache, TritterModel};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub sampling: SamplingConfig,
    /// Generation of a row ends at any of these (not included in the output).
    pub stop_tokens: Vec<u32>,
    /// When prompt + new tokens exceed `max_seq_len`: keep the last half of the context and go
    /// on (true) or fail with `SequenceTooLong` before starting (false).
    pub slide_window: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self { max_new_tokens: 64, sampling: SamplingConfig::default(), stop_tokens: Vec::new(), slide_window: false }
    }
}

impl GenerateOptions {
    /// Checks these options and `prompts` against `config` before anything is generated (so a
    /// caller can refuse bad input before it prints anything); returns the token used to pad
    /// prompts of different lengths.
    pub fn check(&self, config: &TritterConfig, prompts: &[Vec<u32>]) -> Result<u32> {
        self.sampling.validate()?;
        if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
            return Err(TritterError::InvalidInput("every prompt needs at least one token".into()));
        }
        for (batch, prompt) in prompts.iter().enumerate() {
            if let Some((position, &id)) = prompt.iter().enumerate().find(|(_, &id)| id as usize >= config.vocab_size) {
                let vocab_size = config.vocab_size;
                return Err(TritterError::TokenOutOfRange { id: id as i64, batch, position, vocab_size });
            }
        }
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let total = longest.saturating_add(self.max_new_tokens);
        if !self.slide_window && total > config.max_seq_len {
            return Err(TritterError::SequenceTooLong { len: total, max_seq_len: config.max_seq_len });
        }
        match config.pad_token_id {
            Some(pad) => Ok(pad as u32),
            None if prompts.iter().any(|p| p.len() != prompts[0].len()) => {
                Err(TritterError::InvalidInput("prompts of different lengths need a model with pad_token_id".into()))
            }
            None => Ok(0),
        }
    }
}

/// Left-pads `rows` to equal length with `pad` into a `[B, T]` tensor.
fn left_padded<B: Backend>(rows: &[&[u32]], pad: u32, device: &B::Device) -> Tensor<B, 2, Int> {
    let len = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * len);
    for row in rows {
        ids.extend(std::iter::repeat_n(pad as i64, len - row.len()));
        ids.extend(row.iter().map(|&t| t as i64));
    }
    Tensor::from_data(TensorData::new(ids, [rows.len(), len]), device)
}

/// Each row's logits `[B, V]` on the host.
fn host_rows<B: Backend>(logits: Tensor<B, 2>) -> Vec<Vec<f32>> {
    let vocab = logits.dims()[1];
    let values: Vec<f32> = logits.into_data().convert::<f32>().to_vec().expect("f32 logits");
    values.chunks(vocab).map(<[f32]>::to_vec).collect()
}

/// Continues each prompt; `on_token(row, token)` is called as each token is produced. Prompts of
/// different lengths are left-padded and run as one batch: pad keys are masked and RoPE only
/// sees relative positions, so each row attends to its own tokens exactly as it would alone.
/// Returns the new tokens of every row (without the stop token).
pub fn generate<B: TritterBackend>(
    model: &TritterModel<B>,
    prompts: &[Vec<u32>],
    options: &GenerateOptions,
    on_token: &mut dyn FnMut(usize, u32),
) -> Result<Vec<Vec<u32>>> {
    let config = model.config();
    let device = model.devices().into_iter().next().unwrap_or_default();
    let pad = options.check(config, prompts)?;
    let mut sampler = Sampler::new(options.sampling)?;
    let max_len = config.max_seq_len;

    let mut sequences: Vec<Vec<u32>> = prompts.to_vec();
    let mut new: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
    let mut done = vec![false; prompts.len()];
    let window = |seqs: &[Vec<u32>], keep: usize| -> Vec<Vec<u32>> {
        seqs.iter().map(|s| s[s.len().saturating_sub(keep)..].to_vec()).collect()
    };
    let start = window(&sequences, max_len);
    let mut cache = KvCache::new(model);
    let rows: Vec<&[u32]> = start.iter().map(Vec::as_slice).collect();
    let mut logits = host_rows(model.forward_cached_last(left_padded(&rows, pad, &device), &mut cache)?);
    // One token per step: the backend's decoder where it has one, else the cached forward pass.
    let mut decoder = model.token_decoder(&cache);

    for _ in 0..options.max_new_tokens {
        let mut next = Vec::with_capacity(prompts.len());
        for (row, row_logits) in logits.iter().enumerate() {
            if done[row] {
                next.push(pad);
                continue;
            }
            let token = sampler.sample(row_logits);
            if options.stop_tokens.contains(&token) {
                done[row] = true;
                next.push(pad);
                continue;
            }
            sequences[row].push(token);
            new[row].push(token);
            on_token(row, token);
            next.push(token);
        }
        if done.iter().all(|&d| d) {
            break;
        }
        if decoder.as_ref().map_or(cache.len(), |d| d.len()) + 1 > max_len {
            // Slide: keep the last half of each row's context and prefill it again.
            let kept = window(&sequences, (max_len / 2).max(1));
            cache = KvCache::new(model);
            let rows: Vec<&[u32]> = kept.iter().map(Vec::as_slice).collect();
            logits = host_rows(model.forward_cached_last(left_padded(&rows, pad, &device), &mut cache)?);
            decoder = model.token_decoder(&cache);
            continue;
        }
        logits = match &mut decoder {
            Some(decoder) => decoder.step(&next)?,
            None => {
                let ids: Vec<i64> = next.iter().map(|&t| t as i64).collect();
                let input = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [prompts.len(), 1]), &device);
                host_rows(model.forward_cached_last(input, &mut cache)?)
            }
        };
    }
    Ok(new)
}
