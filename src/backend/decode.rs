//! A packed model's one-token-per-row step as plain data, for backends that run it without
//! tensor ops ([`super::TritterBackend::token_decoder`]).
//!
//! Why: generating one token runs ~25 small ops per layer; through Burn's tensors each costs an
//! allocation and a parallel region, which on the CPU took more time than the products
//! themselves (`small_100m`: ~12 ms per token, of which the weights' products ~6.5 ms).

use std::sync::Arc;

use burn::tensor::{backend::Backend, Tensor};

use crate::config::{Activation, MlpNorm};
use crate::error::Result;
use crate::quant::PackedTernary;

/// A norm's weights on the host (LayerNorm with `bias`, else RMSNorm).
#[derive(Debug, Clone)]
pub struct DecodeNorm {
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
    pub eps: f64,
}

/// A packed projection and whether its activations are int8 fake-quantized first.
#[derive(Debug, Clone)]
pub struct DecodeProjection {
    pub packed: Arc<PackedTernary>,
    pub int8_activations: bool,
}

/// One decoder layer (see [`crate::model::DecoderLayer`]).
#[derive(Debug, Clone)]
pub struct DecodeLayer {
    pub input_norm: DecodeNorm,
    pub q: DecodeProjection,
    pub k: DecodeProjection,
    pub v: DecodeProjection,
    pub o: DecodeProjection,
    pub q_norm: Option<DecodeNorm>,
    pub k_norm: Option<DecodeNorm>,
    pub attn_sub_norm: Option<DecodeNorm>,
    /// The MLP-side norm, before (pre) or after (post) the MLP residual.
    pub mlp_norm: DecodeNorm,
    pub gate: DecodeProjection,
    pub up: DecodeProjection,
    pub down: DecodeProjection,
    pub ffn_sub_norm: Option<DecodeNorm>,
}

/// The LM head: a full-precision `[V, H]` weight (the tied embedding or an f32 head), or packed.
#[derive(Debug, Clone)]
pub enum DecodeHead<B: Backend> {
    Dense(Tensor<B, 2>),
    Packed(DecodeProjection),
}

/// What a one-token step reads: the weights, the shape, and the KV cache a prefill left.
#[derive(Debug, Clone)]
pub struct DecodeModel<B: Backend> {
    /// `[V, H]`.
    pub embedding: Tensor<B, 2>,
    pub layers: Vec<DecodeLayer>,
    pub norm: DecodeNorm,
    pub head: DecodeHead<B>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f64,
    pub activation: Activation,
    pub mlp_norm: MlpNorm,
    pub pad_token_id: Option<u32>,
    pub max_seq_len: usize,
}

/// The keys and values of the positions fed so far, per layer `[B, n_kv, len, d]` row-major, and
/// per row which positions are padding (`[B, len]`, so `B = key_pad.len() / len`).
#[derive(Debug, Clone, Default)]
pub struct DecodeCache {
    pub keys: Vec<Vec<f32>>,
    pub values: Vec<Vec<f32>>,
    pub key_pad: Vec<bool>,
    pub len: usize,
}

/// Runs a model one token per row at a time, each step extending its own KV cache.
pub trait TokenDecoder: Send {
    /// Logits `[V]` of each row after feeding `ids` (one id per row, at position [`Self::len`]).
    /// Errors (and feeds nothing) for a wrong number of ids, an id outside the vocabulary or a
    /// position past `max_seq_len`.
    fn step(&mut self, ids: &[u32]) -> Result<Vec<Vec<f32>>>;

    /// Positions fed so far (prefill included).
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
