//! The packed model and a prefilled KV cache as the plain data of a backend's one-token decoder
//! ([`crate::backend::TritterBackend::token_decoder`]).

use burn::tensor::{backend::Backend, Tensor};

use crate::backend::decode::{DecodeCache, DecodeHead, DecodeLayer, DecodeModel, DecodeNorm, DecodeProjection};
use crate::backend::{TokenDecoder, TritterBackend};
use crate::model::{KvCache, Norm, TritterModel};
use crate::ternary::{Projection, TernaryQuant};

impl<B: TritterBackend> TritterModel<B> {
    /// The backend's one-token decoder continuing from `cache` (after a prefill through
    /// [`Self::forward_cached_last`]), where the backend has one and the model is packed with a
    /// head it can run (a full-precision or packed head); `None` otherwise.
    pub fn token_decoder(&self, cache: &KvCache<B>) -> Option<Box<dyn TokenDecoder>> {
        let model = self.decode_model()?;
        let cache = decode_cache(cache)?;
        B::token_decoder(model, cache)
    }

    fn decode_model(&self) -> Option<DecodeModel<B>> {
        let config = self.config();
        let layers = self.model.layers.iter().map(|layer| {
            let (a, m) = (&layer.self_attn, &layer.mlp);
            Some(DecodeLayer {
                input_norm: decode_norm(&layer.input_layernorm),
                q: packed(&a.q_proj)?,
                k: packed(&a.k_proj)?,
                v: packed(&a.v_proj)?,
                o: packed(&a.o_proj)?,
                q_norm: a.q_norm.as_ref().map(decode_norm),
                k_norm: a.k_norm.as_ref().map(decode_norm),
                attn_sub_norm: a.attn_sub_norm.as_ref().map(decode_norm),
                mlp_norm: decode_norm(&layer.post_attention_layernorm),
                gate: packed(&m.gate_proj)?,
                up: packed(&m.up_proj)?,
                down: packed(&m.down_proj)?,
                ffn_sub_norm: m.ffn_sub_norm.as_ref().map(decode_norm),
            })
        });
        let embedding = self.model.embed_tokens.weight.val();
        let head = match &self.lm_head {
            Some(head @ Projection::Packed(_)) => DecodeHead::Packed(packed(head)?),
            Some(Projection::Latent(linear)) if *linear.quant == TernaryQuant::FULL_PRECISION => {
                DecodeHead::Dense(linear.weight.val())
            }
            None if *self.head_quant == TernaryQuant::FULL_PRECISION => DecodeHead::Dense(embedding.clone()),
            _ => return None,
        };
        Some(DecodeModel {
            embedding,
            layers: layers.collect::<Option<_>>()?,
            norm: decode_norm(&self.model.norm),
            head,
            num_heads: config.num_heads,
            num_kv_heads: config.num_kv_heads,
            head_dim: config.head_dim(),
            rope_theta: config.rope_theta,
            activation: config.activation,
            mlp_norm: config.mlp_norm,
            pad_token_id: config.pad_token_id.map(|p| p as u32),
            max_seq_len: config.max_seq_len,
        })
    }
}

fn packed<B: Backend>(p: &Projection<B>) -> Option<DecodeProjection> {
    match p {
        Projection::Packed(linear) => Some(DecodeProjection {
            packed: linear.packed.0.clone(),
            int8_activations: linear.activation_bits.is_some(),
        }),
        Projection::Latent(_) => None,
    }
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32 data")
}

fn decode_norm<B: Backend>(norm: &Norm<B>) -> DecodeNorm {
    DecodeNorm { weight: host(norm.weight.val()), bias: norm.bias.as_ref().map(|b| host(b.val())), eps: norm.eps }
}

/// The cache's keys, values and pad flags on the host (`None` before a prefill).
fn decode_cache<B: Backend>(cache: &KvCache<B>) -> Option<DecodeCache> {
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    for layer in &cache.layers {
        let layer = layer.as_ref()?;
        keys.push(host(layer.k.clone()));
        values.push(host(layer.v.clone()));
    }
    let key_pad = cache.key_pad.clone()?.into_data().to_vec::<bool>().ok()?;
    Some(DecodeCache { keys, values, key_pad, len: cache.len() })
}
