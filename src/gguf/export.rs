//! `TritterModel::save_gguf`: a GGUF file llama.cpp runs, as architecture `bitnet` (sub-norm
//! models) or `llama`: ternary projections as TQ2_0 or TQ1_0 blocks (codes kept exactly, γ in
//! f16), embeddings in f32/f16/bf16, norms in f32, the tokenizer embedded. What llama.cpp's
//! graphs do not compute is refused with the config field named.
//!
//! llama.cpp does not quantize activations per token as BitNet does (spec section 3): it rounds
//! them to 8 bits per block of 256 for the ternary dot product, so its logits differ from
//! Tritter's by that rounding.

use std::path::Path;

use burn_store::ModuleSnapshot;
use safetensors::tensor::Dtype;

use super::file::{write_gguf, GgmlType, GgufTensor, GgufValue};
use super::tensor_names::{gguf_name, Rope};
use super::ternary::{encode_blocks, BLOCK};
use super::tokenizer::tokenizer_metadata;
use crate::backend::TritterBackend;
use crate::checkpoint::format::snapshot_f32;
use crate::checkpoint::write::encode;
use crate::config::{Activation, MlpNorm, NormKind, TritterConfig, WeightScale};
use crate::data::Tokenizer;
use crate::error::{Result, TritterError};
use crate::infer::PromptFormat;
use crate::model::TritterModel;
use crate::quant::PackedTernary;

/// What goes into the file beside the weights, and in which types.
#[derive(Debug, Clone)]
pub struct GgufOptions<'a> {
    /// `Tq2_0` (llama.cpp's faster kernel) or `Tq1_0` (smaller) for the ternary projections.
    pub ternary: GgmlType,
    /// `F32`, `F16` or `Bf16` for the embedding, an untied LM head and non-ternary projections.
    pub floats: GgmlType,
    pub tokenizer: &'a Tokenizer,
    /// The start token and stop tokens (see [`PromptFormat::for_model`]).
    pub prompt: &'a PromptFormat,
    /// A Jinja chat template (`tokenizer.chat_template`), e.g. from tokenizer_config.json.
    pub chat_template: Option<&'a str>,
    /// `general.name`.
    pub name: &'a str,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct GgufExportSummary {
    /// `bitnet` or `llama`.
    pub architecture: &'static str,
    pub tensors: usize,
    /// Bytes of the file.
    pub bytes: u64,
}

fn refuse(out: &Path, field: &str, reason: &str) -> TritterError {
    TritterError::Unsupported { path: out.to_path_buf(), what: field.into(), reason: reason.into() }
}

/// Refuses, naming the field, what llama.cpp's `bitnet` and `llama` graphs do not compute.
fn check_runnable(config: &TritterConfig, options: &GgufOptions, out: &Path) -> Result<()> {
    let field = |name: &str, reason: &str| Err(refuse(out, name, reason));
    if config.qk_norm {
        return field("qk_norm", "true; llama.cpp's bitnet and llama graphs have no QK-Norm");
    }
    if config.norm != NormKind::RmsNorm {
        return field("norm", "layer_norm; llama.cpp's bitnet and llama graphs use RMSNorm");
    }
    if config.mlp_norm != MlpNorm::Pre {
        return field("mlp_norm", "post; llama.cpp's bitnet and llama graphs norm before the MLP");
    }
    if config.activation != Activation::Silu {
        return field(
            "activation",
            "relu_squared; llama.cpp's bitnet and llama graphs compute SiLU (src/models/bitnet.cpp has no \
             relu² option), so the model would run with the wrong activation",
        );
    }
    if config.sub_norm && !config.tie_embeddings {
        return field("tie_embeddings", "false; llama.cpp's bitnet graph uses the token embedding as the LM head");
    }
    if config.ternary_lm_head {
        return field("ternary_lm_head", "true; llama.cpp computes the LM head in full precision");
    }
    if !matches!(options.ternary, GgmlType::Tq1_0 | GgmlType::Tq2_0) {
        return field("ternary type", &format!("{:?}; use TQ1_0 or TQ2_0", options.ternary));
    }
    if !matches!(options.floats, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
        return field("float type", &format!("{:?}; use F32, F16 or BF16", options.floats));
    }
    if config.bitnet {
        let blocks = |name: &str, n: usize| {
            let reason =
                format!("{n}; a ternary block holds {BLOCK} values of one row, so it must be a multiple of {BLOCK}");
            if n.is_multiple_of(BLOCK) {
                Ok(())
            } else {
                field(name, &reason)
            }
        };
        blocks("hidden_size", config.hidden_size)?;
        blocks("intermediate_size", config.intermediate_size)?;
        if let WeightScale::PerGroup(n) = config.weight_scale {
            blocks("weight_scale.per_group", n)?;
        }
    }
    Ok(())
}

/// The `general.*` and `{arch}.*` keys llama.cpp reads for the model's shape.
fn model_metadata(config: &TritterConfig, arch: &str, options: &GgufOptions) -> Vec<(String, GgufValue)> {
    let file_type = match (config.bitnet, options.ternary, options.floats) {
        (true, GgmlType::Tq1_0, _) => 36,
        (true, _, _) => 37,
        (false, _, GgmlType::F16) => 1,
        (false, _, GgmlType::BF16) => 32,
        _ => 0,
    };
    let u = |v: usize| GgufValue::U32(v as u32);
    let mut out = vec![
        ("general.architecture".to_string(), GgufValue::Str(arch.into())),
        ("general.name".into(), GgufValue::Str(options.name.into())),
        ("general.file_type".into(), GgufValue::U32(file_type)),
        ("general.quantization_version".into(), GgufValue::U32(2)),
    ];
    let keyed = [
        ("vocab_size", u(config.vocab_size)),
        ("context_length", u(config.max_seq_len)),
        ("embedding_length", u(config.hidden_size)),
        ("block_count", u(config.num_layers)),
        ("feed_forward_length", u(config.intermediate_size)),
        ("attention.head_count", u(config.num_heads)),
        ("attention.head_count_kv", u(config.num_kv_heads)),
        ("attention.key_length", u(config.head_dim())),
        ("attention.value_length", u(config.head_dim())),
        ("attention.layer_norm_rms_epsilon", GgufValue::F32(config.norm_eps as f32)),
        ("rope.dimension_count", u(config.head_dim())),
        ("rope.freq_base", GgufValue::F32(config.rope_theta as f32)),
    ];
    out.extend(keyed.into_iter().map(|(key, value)| (format!("{arch}.{key}"), value)));
    out
}

/// Reorders the rows of a q or k projection (`width` values each) from Tritter's rotate-half
/// RoPE layout to llama.cpp's `llama` layout, which rotates adjacent pairs (as its converter's
/// `permute` does): row `h·d + 2i + j` of the result is row `h·d + j·d/2 + i`.
fn interleave_heads<T: Copy>(data: &[T], width: usize, heads: usize) -> Vec<T> {
    let d = data.len() / width / heads;
    let mut out = Vec::with_capacity(data.len());
    for h in 0..heads {
        for i in 0..d / 2 {
            for j in 0..2 {
                let row = h * d + j * d / 2 + i;
                out.extend_from_slice(&data[row * width..(row + 1) * width]);
            }
        }
    }
    out
}

/// `values` in float type `ty`, by the safetensors writer's encoder (same little-endian bytes).
fn float_bytes(values: &[f32], ty: GgmlType) -> Vec<u8> {
    let dtype = match ty {
        GgmlType::F16 => Dtype::F16,
        GgmlType::BF16 => Dtype::BF16,
        _ => Dtype::F32,
    };
    encode(values, dtype)
}

/// A packed projection as ternary blocks, one γ per block, rows reordered by `rope`.
fn ternary_tensor(name: String, packed: &PackedTernary, ty: GgmlType, rope: Rope) -> GgufTensor<'_> {
    let make = move || {
        let per_row = packed.cols / BLOCK;
        let scales: Vec<f32> =
            (0..packed.rows).flat_map(|r| (0..per_row).map(move |b| packed.scale_at(r, b * BLOCK))).collect();
        let (values, scales) = match rope.heads() {
            Some(heads) => {
                (interleave_heads(&packed.values(), packed.cols, heads), interleave_heads(&scales, per_row, heads))
            }
            None => (packed.values(), scales),
        };
        Ok(encode_blocks(ty, &values, &scales))
    };
    GgufTensor { name, ty, dims: vec![packed.cols, packed.rows], make: Box::new(make) }
}

impl<B: TritterBackend> TritterModel<B> {
    /// Writes `out` as a GGUF file for llama.cpp. A latent ternary model is packed first (as
    /// [`TritterModel::into_packed`] does); a packed one keeps its codes and scales.
    pub fn save_gguf(
        &self,
        out: &Path,
        options: &GgufOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<GgufExportSummary> {
        let config = self.config();
        check_runnable(config, options, out)?;
        if config.bitnet && !self.is_packed() {
            return self.clone().into_packed()?.save_gguf(out, options, progress);
        }
        let arch = if config.sub_norm { "bitnet" } else { "llama" };
        let mut metadata = model_metadata(config, arch, options);
        metadata.extend(tokenizer_metadata(
            options.tokenizer,
            config.vocab_size,
            options.prompt,
            options.chat_template,
        )?);
        let snapshots = self.collect(None, None, true);
        let mut tensors = Vec::new();
        for snapshot in &snapshots {
            let (name, rope) = gguf_name(&snapshot.full_path(), config, arch)?;
            let ty = if snapshot.shape.len() == 1 { GgmlType::F32 } else { options.floats };
            let dims: Vec<usize> = snapshot.shape.iter().rev().copied().collect();
            let width = dims[0];
            let make = move || {
                let values = snapshot_f32(snapshot)?;
                let values = match rope.heads() {
                    Some(heads) => interleave_heads(&values, width, heads),
                    None => values,
                };
                Ok(float_bytes(&values, ty))
            };
            tensors.push(GgufTensor { name, ty, dims, make: Box::new(make) });
        }
        for (prefix, packed) in self.packed_weights() {
            let (name, rope) = gguf_name(&format!("{prefix}.weight"), config, arch)?;
            tensors.push(ternary_tensor(name, packed, options.ternary, rope));
        }
        tensors.sort_by_key(|t| super::tensor_names::order(&t.name));
        let bytes = write_gguf(out, &metadata, &tensors, progress)?;
        tracing::info!(out = %out.display(), arch, bytes, "saved GGUF model");
        Ok(GgufExportSummary { architecture: arch, tensors: tensors.len(), bytes })
    }
}
