//! The key/value cache for generation: per layer the keys and values of the positions seen so
//! far (GQA-aware: `n_kv` heads), and which of those positions are padding.

use burn::tensor::{backend::Backend, Bool, Int, Tensor};

use crate::error::{Result, TritterError};
use crate::model::attention::LayerCache;
use crate::model::TritterModel;

/// Keys, values and pad flags of every position fed so far; RoPE positions of the next call
/// start at [`KvCache::len`].
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    pub(crate) layers: Vec<Option<LayerCache<B>>>,
    /// `[B, len]`: true where the key is a pad token (masked for every other query).
    pub(crate) key_pad: Option<Tensor<B, 2, Bool>>,
    len: usize,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for `model`.
    pub fn new(model: &TritterModel<B>) -> Self {
        Self { layers: vec![None; model.config().num_layers], key_pad: None, len: 0 }
    }

    /// Positions cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the cached keys and values take (f32).
    pub fn bytes(&self) -> usize {
        self.layers.iter().flatten().map(|l| 2 * l.k.dims().iter().product::<usize>() * 4).sum()
    }
}

/// `[B, 1, T, len + T]`, true = masked: keys after the query, and pad keys other than the
/// query itself (so a row is never fully masked).
fn cached_mask<B: Backend>(
    new_pad: Tensor<B, 2, Bool>,
    past_pad: Option<Tensor<B, 2, Bool>>,
    offset: usize,
) -> (Tensor<B, 4, Bool>, Tensor<B, 2, Bool>) {
    let [batch, seq] = new_pad.dims();
    let device = new_pad.device();
    let keys = offset + seq;
    let key_pad = match past_pad {
        Some(past) => Tensor::cat(vec![past, new_pad], 1),
        None => new_pad,
    };
    let key_pos = Tensor::<B, 1, Int>::arange(0..keys as i64, &device).reshape([1, keys]);
    let query_pos = Tensor::<B, 1, Int>::arange(offset as i64..keys as i64, &device).reshape([seq, 1]);
    let future = key_pos.clone().expand([seq, keys]).greater(query_pos.clone().expand([seq, keys]));
    let itself = key_pos.expand([seq, keys]).equal(query_pos.expand([seq, keys]));
    let pad = key_pad.clone().reshape([batch, 1, 1, keys]).expand([batch, 1, seq, keys]);
    let mask = future
        .reshape([1, 1, seq, keys])
        .expand([batch, 1, seq, keys])
        .bool_or(pad.bool_and(itself.bool_not().reshape([1, 1, seq, keys]).expand([batch, 1, seq, keys])));
    (mask, key_pad)
}

impl<B: crate::backend::TritterBackend> TritterModel<B> {
    /// Logits `[B, T, V]` of `input_ids: [B, T]` placed after the `cache.len()` cached
    /// positions, extending the cache: a whole prompt at once (prefill), then one token at a
    /// time. Equal to [`Self::forward`] on the concatenated ids, up to float rounding.
    pub fn forward_cached(&self, input_ids: Tensor<B, 2, Int>, cache: &mut KvCache<B>) -> Result<Tensor<B, 3>> {
        let x = self.cached_layers(input_ids, cache)?;
        Ok(self.head(self.model.norm.forward(x)))
    }

    /// The last position's logits `[B, V]` of [`Self::forward_cached`], which is all generation
    /// reads: the LM head, a small model's largest product, runs on that position only (a
    /// prompt's prefill otherwise multiplies every position by the `V × H` head).
    pub fn forward_cached_last(&self, input_ids: Tensor<B, 2, Int>, cache: &mut KvCache<B>) -> Result<Tensor<B, 2>> {
        let x = self.cached_layers(input_ids, cache)?;
        let [batch, seq, hidden] = x.dims();
        let logits = self.head(self.model.norm.forward(x.slice([0..batch, seq - 1..seq, 0..hidden])));
        Ok(logits.reshape([batch, self.config.vocab_size]))
    }

    /// The decoder layers' output `[B, T, H]` for `input_ids` after the cached positions (before
    /// the final norm), extending the cache.
    fn cached_layers(&self, input_ids: Tensor<B, 2, Int>, cache: &mut KvCache<B>) -> Result<Tensor<B, 3>> {
        let [batch, seq] = input_ids.dims();
        if seq == 0 {
            return Err(TritterError::InvalidInput(
                "no input ids: a cached forward pass needs at least one position".into(),
            ));
        }
        if let Some(first) = cache.layers.first().and_then(Option::as_ref) {
            if first.k.dims()[0] != batch {
                return Err(TritterError::InvalidInput(format!(
                    "batch of {batch} rows for a cache of {} rows",
                    first.k.dims()[0]
                )));
            }
        }
        let total = cache.len + seq;
        if total > self.config.max_seq_len {
            return Err(TritterError::SequenceTooLong { len: total, max_seq_len: self.config.max_seq_len });
        }
        // Without a pad id nothing is padding (ids are never negative).
        let new_pad = input_ids.clone().equal_elem(self.config.pad_token_id.map_or(-1, |p| p as i64));
        let (mask, key_pad) = cached_mask(new_pad, cache.key_pad.take(), cache.len);
        let mut x = B::token_embedding(self.model.embed_tokens.weight.val(), input_ids);
        for (layer, slot) in self.model.layers.iter().zip(cache.layers.iter_mut()) {
            x = layer.forward(x, cache.len, mask.clone(), Some(slot));
        }
        cache.key_pad = Some(key_pad);
        cache.len = total;
        Ok(x)
    }
}
