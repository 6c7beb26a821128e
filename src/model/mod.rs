//! `TritterModel`: the decoder-only transformer of spec section 2.

pub mod attention;
pub mod cache;
mod decode;
pub mod layer;
pub mod mlp;
pub mod norm;
pub mod packed;
pub mod rope;
#[cfg(all(test, feature = "ndarray"))]
mod unknown_backend;

use burn::module::{Ignored, Initializer, Module};
use burn::nn::{Embedding, EmbeddingConfig};
use burn::tensor::{backend::Backend, Int, Tensor};

use crate::backend::{with_owned_params, TritterBackend};
use crate::config::TritterConfig;
use crate::error::{Result, TritterError};
use crate::ternary::{ternary_linear, Projection, TernaryLinear, TernaryQuant};

pub use attention::{attention_mask, Attention, LayerCache};
pub use cache::KvCache;
pub use layer::DecoderLayer;
pub use mlp::Mlp;
pub use norm::Norm;
pub use rope::RotaryEmbedding;

/// Embeddings, layers and final norm; named `model` so tensor paths read `model.layers.{i}...`.
#[derive(Module, Debug)]
pub struct TritterBackbone<B: Backend> {
    pub embed_tokens: Embedding<B>,
    pub layers: Vec<DecoderLayer<B>>,
    pub norm: Norm<B>,
}

/// The Tritter language model. Parameter paths are the safetensors names of spec section 4.
#[derive(Module, Debug)]
pub struct TritterModel<B: Backend> {
    pub model: TritterBackbone<B>,
    /// Separate LM head; `None` when the head is tied to `model.embed_tokens`.
    pub lm_head: Option<Projection<B>>,
    /// How the LM head quantizes (full precision unless `ternary_lm_head`).
    pub head_quant: Ignored<TernaryQuant>,
    pub config: Ignored<TritterConfig>,
}

impl<B: Backend> TritterModel<B> {
    /// Builds a freshly initialised model (`N(0, init_std)` embeddings and projections, norms at
    /// 1/0) after validating `config`.
    pub fn new(config: &TritterConfig, device: &B::Device) -> Result<Self> {
        config.validate()?;
        let quant = if config.bitnet {
            TernaryQuant::bitnet(config.weight_scale, config.weight_quant_eps, config.activation_bits)
        } else {
            TernaryQuant::FULL_PRECISION
        };
        let head_quant = if config.ternary_lm_head { quant } else { TernaryQuant::FULL_PRECISION };
        let init = Initializer::Normal { mean: 0.0, std: config.init_std };
        let embed_tokens =
            EmbeddingConfig::new(config.vocab_size, config.hidden_size).with_initializer(init.clone()).init(device);
        let layers = (0..config.num_layers).map(|_| DecoderLayer::new(config, quant, device)).collect();
        let lm_head = (!config.tie_embeddings).then(|| {
            TernaryLinear {
                weight: init.init_with(
                    [config.vocab_size, config.hidden_size],
                    Some(config.hidden_size),
                    Some(config.vocab_size),
                    device,
                ),
                quant: Ignored(head_quant),
            }
            .into()
        });
        Ok(with_owned_params(Self {
            model: TritterBackbone {
                embed_tokens,
                layers,
                norm: Norm::new(config.norm, config.hidden_size, config.norm_eps, device),
            },
            lm_head,
            head_quant: Ignored(head_quant),
            config: Ignored(config.clone()),
        }))
    }

    /// The configuration this model was built from.
    pub fn config(&self) -> &TritterConfig {
        &self.config
    }

    /// Number of scalar parameters (equals `config().parameter_count()`).
    pub fn num_params(&self) -> usize {
        Module::num_params(self)
    }

    /// Checks that `input_ids` is non-empty, no longer than `max_seq_len`, and every id is in
    /// `0..vocab_size`. Reads the ids back to the host.
    pub fn check_input_ids(&self, input_ids: &Tensor<B, 2, Int>) -> Result<()> {
        let [batch, seq] = input_ids.dims();
        if batch == 0 || seq == 0 {
            return Err(TritterError::InvalidInput(format!("input_ids has shape [{batch}, {seq}]; both must be > 0")));
        }
        if seq > self.config.max_seq_len {
            return Err(TritterError::SequenceTooLong { len: seq, max_seq_len: self.config.max_seq_len });
        }
        let ids = input_ids.to_data().convert::<i64>();
        let ids = ids.as_slice::<i64>().map_err(|e| TritterError::InvalidInput(format!("{e:?}")))?;
        let vocab_size = self.config.vocab_size;
        if let Some((index, &id)) = ids.iter().enumerate().find(|(_, &id)| id < 0 || id as u64 >= vocab_size as u64) {
            return Err(TritterError::TokenOutOfRange { id, batch: index / seq, position: index % seq, vocab_size });
        }
        Ok(())
    }
}

impl<B: TritterBackend> TritterModel<B> {
    /// Logits `[B, T, V]` for `input_ids: [B, T]`. The hot path: ids are not checked (an id
    /// out of range is backend-defined behaviour); use [`Self::forward_checked`] for untrusted input.
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.head(self.hidden_states(input_ids))
    }

    /// The final norm's output `[B, T, H]`, the LM head's input.
    fn hidden_states(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let mask = attention_mask(&input_ids, self.config.pad_token_id);
        let mut x = B::token_embedding(self.model.embed_tokens.weight.val(), input_ids);
        for layer in &self.model.layers {
            x = layer.forward(x, 0, mask.clone(), None);
        }
        self.model.norm.forward(x)
    }

    /// The LM head: `x · W_headᵀ` with `W_head = E` when tied.
    fn head(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(head) => head.forward(x),
            None => ternary_linear(x, self.model.embed_tokens.weight.val(), &self.head_quant),
        }
    }

    /// Mean cross-entropy of `logits[:, :-1]` against `input_ids[:, 1:]`, skipping targets equal
    /// to `pad_token_id`; shape `[1]`. Sequences need at least 2 tokens (see [`Self::loss_checked`]).
    pub fn loss(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 1> {
        let seq = input_ids.dims()[1];
        // The last position predicts no target: it is not fed.
        self.loss_on(input_ids.clone().narrow(1, 0, seq - 1), input_ids.narrow(1, 1, seq - 1))
    }

    /// Mean cross-entropy of the logits of `input_ids` `[B, T]` against `targets` `[B, T]`,
    /// skipping targets equal to `pad_token_id` (e.g. to train on answers only).
    pub fn loss_on(&self, input_ids: Tensor<B, 2, Int>, targets: Tensor<B, 2, Int>) -> Tensor<B, 1> {
        let [batch, seq] = input_ids.dims();
        let n = batch * seq;
        let logits = B::reshape(self.head(self.hidden_states(input_ids)), [n, self.config.vocab_size]);
        B::cross_entropy(logits, targets.reshape([n]), self.config.pad_token_id)
    }

    /// [`Self::forward`] after [`Self::check_input_ids`].
    pub fn forward_checked(&self, input_ids: Tensor<B, 2, Int>) -> Result<Tensor<B, 3>> {
        self.check_input_ids(&input_ids)?;
        Ok(self.forward(input_ids))
    }

    /// [`Self::loss`] after [`Self::check_input_ids`]; also requires at least 2 tokens per row.
    pub fn loss_checked(&self, input_ids: Tensor<B, 2, Int>) -> Result<Tensor<B, 1>> {
        self.check_input_ids(&input_ids)?;
        let seq = input_ids.dims()[1];
        if seq < 2 {
            return Err(TritterError::InvalidInput(format!(
                "the loss needs at least 2 tokens per sequence, got {seq}"
            )));
        }
        Ok(self.loss(input_ids))
    }
}
