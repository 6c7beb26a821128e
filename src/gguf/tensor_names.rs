//! Tritter's tensor names (spec section 4) as llama.cpp names them (`LLM_TENSOR_NAMES` in its
//! `src/llama-arch.cpp`).

use crate::config::TritterConfig;
use crate::error::{Result, TritterError};

/// Whether a tensor's rows must be reordered for llama.cpp's RoPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rope {
    /// Written as stored.
    Keep,
    /// A q or k projection of the `llama` architecture, whose RoPE rotates adjacent pairs:
    /// the rows of each of this many heads are interleaved (see `interleave_heads`).
    Interleave(usize),
}

impl Rope {
    pub fn heads(self) -> Option<usize> {
        match self {
            Rope::Keep => None,
            Rope::Interleave(heads) => Some(heads),
        }
    }
}

/// Layer-local names: Tritter's (after `model.layers.N.`) and llama.cpp's (after `blk.N.`).
const LAYER_TENSORS: [(&str, &str); 11] = [
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("self_attn.attn_sub_norm.weight", "attn_sub_norm.weight"),
    ("post_attention_layernorm.weight", "ffn_norm.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
    ("mlp.ffn_sub_norm.weight", "ffn_sub_norm.weight"),
];

/// The llama.cpp name of Tritter tensor `name` in a model of architecture `arch`, and how its
/// rows are ordered.
pub fn gguf_name(name: &str, config: &TritterConfig, arch: &str) -> Result<(String, Rope)> {
    let fixed = match name {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(fixed) = fixed {
        return Ok((fixed.to_string(), Rope::Keep));
    }
    let unknown = || TritterError::InvalidInput(format!("tensor `{name}` has no llama.cpp {arch} counterpart"));
    let rest = name.strip_prefix("model.layers.").ok_or_else(unknown)?;
    let (layer, local) = rest.split_once('.').ok_or_else(unknown)?;
    let (_, theirs) = LAYER_TENSORS.iter().find(|(ours, _)| *ours == local).ok_or_else(unknown)?;
    let rope = match (arch, local) {
        ("llama", "self_attn.q_proj.weight") => Rope::Interleave(config.num_heads),
        ("llama", "self_attn.k_proj.weight") => Rope::Interleave(config.num_kv_heads),
        _ => Rope::Keep,
    };
    Ok((format!("blk.{layer}.{theirs}"), rope))
}

/// The order llama.cpp's converter writes tensors in: the embedding, the layers in turn (each
/// in [`LAYER_TENSORS`] order), then the final norm and the LM head.
pub fn order(gguf: &str) -> (usize, usize) {
    match gguf {
        "token_embd.weight" => (0, 0),
        "output_norm.weight" => (usize::MAX, 0),
        "output.weight" => (usize::MAX, 1),
        _ => {
            let (layer, local) = gguf.trim_start_matches("blk.").split_once('.').unwrap_or(("0", gguf));
            let slot = LAYER_TENSORS.iter().position(|(_, theirs)| *theirs == local).unwrap_or(usize::MAX);
            (layer.parse::<usize>().map_or(usize::MAX - 1, |l| l + 1), slot)
        }
    }
}
