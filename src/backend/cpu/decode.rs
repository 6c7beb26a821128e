//! The CPU's one-token decoder: a packed model's layers for one new token per row as passes over
//! plain buffers, with the same kernels as the tensor path (norm, RoPE, packed product, gate,
//! GEMV head), a KV cache that grows in place, and attention at one query as dot products.

use rayon::prelude::*;

use super::gemv::dense_matmul_f32;
use super::packed::packed_matmul;
use super::rope::{rotate, Tables};
use super::tensor::with_rows;
use super::{attention::softmax_row, gated_activation, math, norm};
use crate::backend::decode::{DecodeCache, DecodeHead, DecodeLayer, DecodeModel, DecodeNorm, DecodeProjection};
use crate::backend::reference::rope_tables;
use crate::backend::{Cpu, TokenDecoder};
use crate::config::MlpNorm;
use crate::error::{Result, TritterError};

/// Attention work (keys × features over all heads) from which the heads run in parallel.
const PARALLEL_ATTENTION: usize = 1 << 16;

pub(crate) struct CpuDecoder {
    model: DecodeModel<Cpu>,
    /// Per layer, per `(row, kv head)`: the keys `[len, d]`, growing by `d` per step.
    keys: Vec<Vec<Vec<f32>>>,
    values: Vec<Vec<Vec<f32>>>,
    /// Per row, per position: whether the key is padding.
    key_pad: Vec<Vec<bool>>,
    len: usize,
}

impl CpuDecoder {
    pub fn new(model: DecodeModel<Cpu>, cache: DecodeCache) -> Self {
        let per_head = cache.len * model.head_dim;
        let split = |layers: Vec<Vec<f32>>| -> Vec<Vec<Vec<f32>>> {
            layers.into_iter().map(|l| l.chunks(per_head.max(1)).map(<[f32]>::to_vec).collect()).collect()
        };
        let key_pad = cache.key_pad.chunks(cache.len.max(1)).map(<[bool]>::to_vec).collect();
        Self { keys: split(cache.keys), values: split(cache.values), key_pad, len: cache.len, model }
    }

    /// `x + Attn(N(x))` for every row's new token at position `self.len`, extending layer `l`'s
    /// cache.
    /// `rope`: this position's tables for the query heads and for the kv heads.
    fn attention(&mut self, l: usize, layer: &DecodeLayer, x: &[f32], rope: &[Tables; 2]) -> Vec<f32> {
        let d = self.model.head_dim;
        let h = normed(x, &layer.input_norm);
        let (mut q, mut k, v) = (project(&layer.q, &h), project(&layer.k, &h), project(&layer.v, &h));
        if let (Some(q_norm), Some(k_norm)) = (&layer.q_norm, &layer.k_norm) {
            q = normed(&q, q_norm);
            k = normed(&k, k_norm);
        }
        let (q, k) = (rotate(&q, d, &rope[0], false), rotate(&k, d, &rope[1], false));
        for (slot, (k, v)) in k.chunks(d).zip(v.chunks(d)).enumerate() {
            self.keys[l][slot].extend_from_slice(k);
            self.values[l][slot].extend_from_slice(v);
        }
        let mut out = self.attend(l, &q);
        if let Some(norm) = &layer.attn_sub_norm {
            out = normed(&out, norm);
        }
        let mut y = project(&layer.o, &out);
        add(&mut y, x);
        y
    }

    /// `softmax(q·kᵀ/√d)·v` of each row's query heads `q: [B, n_h, d]` over layer `l`'s cached
    /// keys (pad keys other than the query's own masked).
    fn attend(&self, l: usize, q: &[f32]) -> Vec<f32> {
        let m = &self.model;
        let (nh, nkv, d) = (m.num_heads, m.num_kv_heads, m.head_dim);
        let keys = self.len + 1;
        let scale = 1.0 / (d as f32).sqrt();
        // Per row: the pad keys other than the query's own (every head of the row reads it).
        let masked: Vec<Vec<bool>> =
            self.key_pad.iter().map(|pad| (0..keys).map(|t| pad[t] && t + 1 != keys).collect()).collect();
        let head = |(i, out): (usize, &mut [f32])| {
            let (b, h) = (i / nh, i % nh);
            let slot = b * nkv + h / (nh / nkv);
            let (k, v, q) = (&self.keys[l][slot], &self.values[l][slot], &q[i * d..][..d]);
            let mut scores: Vec<f32> = k.chunks(d).map(|k| math::dot(q, k) * scale).collect();
            softmax_row(&mut scores, &masked[b]);
            for (p, v) in scores.iter().zip(v.chunks(d)) {
                out.iter_mut().zip(v).for_each(|(o, &v)| *o += p * v);
            }
        };
        let mut out = vec![0f32; q.len()];
        if keys * q.len() >= PARALLEL_ATTENTION {
            out.par_chunks_mut(d).enumerate().for_each(head);
        } else {
            out.chunks_mut(d).enumerate().for_each(head);
        }
        out
    }

    /// `x + MLP(N(x))` (pre) or `N(x + MLP(x))` (post).
    fn mlp(&self, layer: &DecodeLayer, x: &[f32]) -> Vec<f32> {
        let input = match self.model.mlp_norm {
            MlpNorm::Pre => normed(x, &layer.mlp_norm),
            MlpNorm::Post => x.to_vec(),
        };
        let mut gated = gated_activation::forward(
            &project(&layer.gate, &input),
            &project(&layer.up, &input),
            self.model.activation,
        );
        if let Some(norm) = &layer.ffn_sub_norm {
            gated = normed(&gated, norm);
        }
        let mut y = project(&layer.down, &gated);
        add(&mut y, x);
        match self.model.mlp_norm {
            MlpNorm::Pre => y,
            MlpNorm::Post => normed(&y, &layer.mlp_norm),
        }
    }

    /// The embedding rows of `ids`, `[B, H]`.
    fn embed(&self, ids: &[u32]) -> Vec<f32> {
        let hidden = self.model.embedding.dims()[1];
        with_rows(self.model.embedding.clone(), |e| {
            ids.iter().flat_map(|&id| &e[id as usize * hidden..][..hidden]).copied().collect()
        })
    }

    /// Logits `[B, V]` of the final hidden states `x: [B, H]`.
    fn head(&self, x: &[f32]) -> Vec<f32> {
        match &self.model.head {
            DecodeHead::Dense(w) => {
                let [vocab, hidden] = w.dims();
                let mut out = vec![0f32; x.len() / hidden * vocab];
                with_rows(w.clone(), |w| dense_matmul_f32(w, vocab, hidden, x, &mut out));
                out
            }
            DecodeHead::Packed(p) => project(p, x),
        }
    }
}

impl TokenDecoder for CpuDecoder {
    /// Runs the step on one of rayon's workers: its parallel loops then wake only the other
    /// workers, where from the caller's thread each of a step's parallel loops woke them and then
    /// put the caller to sleep until they were done.
    fn step(&mut self, ids: &[u32]) -> Result<Vec<Vec<f32>>> {
        self.check(ids)?;
        Ok(rayon::scope(|_| self.step_in_pool(ids)))
    }

    fn len(&self) -> usize {
        self.len
    }
}

impl CpuDecoder {
    /// The errors of [`TokenDecoder::step`].
    fn check(&self, ids: &[u32]) -> Result<()> {
        let (rows, vocab_size) = (self.key_pad.len(), self.model.embedding.dims()[0]);
        if ids.len() != rows {
            return Err(TritterError::InvalidInput(format!("{} ids for a cache of {rows} rows", ids.len())));
        }
        if let Some((batch, &id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= vocab_size) {
            return Err(TritterError::TokenOutOfRange { id: id as i64, batch, position: self.len, vocab_size });
        }
        if self.len + 1 > self.model.max_seq_len {
            return Err(TritterError::SequenceTooLong { len: self.len + 1, max_seq_len: self.model.max_seq_len });
        }
        Ok(())
    }

    fn step_in_pool(&mut self, ids: &[u32]) -> Vec<Vec<f32>> {
        let pad = self.model.pad_token_id;
        for (row, &id) in self.key_pad.iter_mut().zip(ids) {
            row.push(pad == Some(id));
        }
        let (cos, sin) = rope_tables(self.model.rope_theta, self.model.head_dim, self.len, 1);
        let rope = [self.model.num_heads, self.model.num_kv_heads].map(|heads| Tables {
            cos: cos.clone(),
            sin: sin.clone(),
            heads,
        });
        let mut x = self.embed(ids);
        let layers = std::mem::take(&mut self.model.layers);
        for (l, layer) in layers.iter().enumerate() {
            x = self.attention(l, layer, &x, &rope);
            x = self.mlp(layer, &x);
        }
        self.model.layers = layers;
        self.len += 1;
        let logits = self.head(&normed(&x, &self.model.norm));
        logits.chunks(logits.len() / ids.len()).map(<[f32]>::to_vec).collect()
    }
}

/// The norm of every row of `x` (rows of the norm's width).
fn normed(x: &[f32], n: &DecodeNorm) -> Vec<f32> {
    norm::forward(x, n.weight.len(), &n.weight, n.bias.as_deref(), n.eps as f32).0
}

fn project(p: &DecodeProjection, x: &[f32]) -> Vec<f32> {
    packed_matmul(&p.packed, p.int8_activations, x)
}

fn add(y: &mut [f32], x: &[f32]) {
    y.iter_mut().zip(x).for_each(|(y, &x)| *y += x);
}
