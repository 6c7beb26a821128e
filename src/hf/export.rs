//! `TritterModel::save_hf`: a Hugging Face transformers model directory that
//! `BitNetForCausalLM` (sub-norm models) or `LlamaForCausalLM` (the others) loads and that
//! computes the same logits: latent weights with transformers' online `AutoBitLinear`, or a
//! packed model in its offline form (`uint8 [out/4, in]` codes + per-tensor `weight_scale`).
//! What no transformers class computes is refused with the config field named.

use std::path::Path;

use safetensors::tensor::Dtype;
use serde_json::{json, Value};

use burn_store::ModuleSnapshot;

use crate::backend::TritterBackend;
use crate::checkpoint::format::snapshot_f32;
use crate::checkpoint::write::{encode, write_tensors, Planned};
use crate::checkpoint::{CONFIG_FILE, WEIGHTS_FILE};
use crate::config::{Activation, MlpNorm, NormKind, TritterConfig, WeightQuantEps, WeightScale};
use crate::error::{Result, TritterError};
use crate::model::TritterModel;
use crate::quant::PackedTernary;

/// The dtype of the exported float tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HfDtype {
    /// What transformers models are usually published in; scales and weights are rounded to it.
    #[default]
    Bf16,
    F16,
    /// Exact: the export computes Tritter's logits up to float rounding.
    F32,
}

impl HfDtype {
    fn dtype(self) -> Dtype {
        match self {
            HfDtype::Bf16 => Dtype::BF16,
            HfDtype::F16 => Dtype::F16,
            HfDtype::F32 => Dtype::F32,
        }
    }

    fn torch_name(self) -> &'static str {
        match self {
            HfDtype::Bf16 => "bfloat16",
            HfDtype::F16 => "float16",
            HfDtype::F32 => "float32",
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct HfExportSummary {
    /// `bitnet` or `llama`.
    pub model_type: &'static str,
    /// Whether the projections are in transformers' packed offline form.
    pub packed: bool,
    pub tensors: usize,
    /// Bytes of `model.safetensors`.
    pub bytes: u64,
}

fn refuse(out: &Path, field: &str, reason: &str) -> TritterError {
    TritterError::Unsupported { path: out.to_path_buf(), what: field.into(), reason: reason.into() }
}

/// The `config.json` transformers reads for `config`, or the first field it cannot represent.
pub fn hf_config(config: &TritterConfig, packed: bool, dtype: HfDtype, out: &Path) -> Result<Value> {
    check_representable(config, packed, out)?;
    let model_type = if config.sub_norm { "bitnet" } else { "llama" };
    let mut hf = json!({
        "architectures": [if config.sub_norm { "BitNetForCausalLM" } else { "LlamaForCausalLM" }],
        "model_type": model_type,
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim(),
        "hidden_act": match config.activation { Activation::ReluSquared => "relu2", Activation::Silu => "silu" },
        "max_position_embeddings": config.max_seq_len,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "tie_word_embeddings": config.tie_embeddings,
        "attention_bias": false,
        "mlp_bias": false,
        "initializer_range": config.init_std,
        "pad_token_id": config.pad_token_id,
        "torch_dtype": dtype.torch_name(),
    });
    if config.bitnet {
        hf["quantization_config"] = json!({
            "quant_method": "bitnet",
            "linear_class": "autobitlinear",
            "quantization_mode": if packed { "offline" } else { "online" },
        });
    }
    Ok(hf)
}

/// Refuses, naming the field, what no transformers BitNet or Llama layer computes (`packed`:
/// the export keeps codes and scales, so the ε rule does not matter).
fn check_representable(config: &TritterConfig, packed: bool, out: &Path) -> Result<()> {
    if config.qk_norm {
        return Err(refuse(out, "qk_norm", "true; no transformers BitNet or Llama class has QK-Norm"));
    }
    if config.norm != NormKind::RmsNorm {
        return Err(refuse(out, "norm", "layer_norm; transformers' BitNet and Llama use RMSNorm"));
    }
    if config.mlp_norm != MlpNorm::Pre {
        return Err(refuse(out, "mlp_norm", "post; transformers' BitNet and Llama norm before the MLP"));
    }
    if config.bitnet {
        if config.weight_scale != WeightScale::PerTensor {
            return Err(refuse(out, "weight_scale", "transformers' BitNet layers have one scale per tensor"));
        }
        if config.activation_bits.is_none() {
            return Err(refuse(
                out,
                "activation_bits",
                "null; transformers' BitNet layers always quantize activations",
            ));
        }
        if config.ternary_lm_head {
            return Err(refuse(out, "ternary_lm_head", "true; transformers keeps the LM head in full precision"));
        }
        if !packed && config.weight_quant_eps != WeightQuantEps::Clamp {
            return Err(refuse(
                out,
                "weight_quant_eps",
                "add; transformers' online quantizer floors γ at ε (clamp), so latent weights would quantize \
                 differently: export the packed model (its codes and scales are kept exactly)",
            ));
        }
    }
    Ok(())
}

/// transformers' `pack_weights` layout of ternary `values` `[rows, cols]`: byte `[r, c]` holds
/// rows `r + j·rows/4` (`j` = 0..4) in bits `2j..2j+2` as `value + 1`.
fn transformers_codes(packed: &PackedTernary) -> Vec<u8> {
    let (rows, cols) = (packed.rows, packed.cols);
    let group = rows / 4;
    let values = packed.values();
    let mut bytes = vec![0u8; group * cols];
    for (r, row) in values.chunks(cols).enumerate() {
        let (byte_row, j) = (r % group, r / group);
        for (c, &v) in row.iter().enumerate() {
            bytes[byte_row * cols + c] |= ((v + 1) as u8) << (2 * j);
        }
    }
    bytes
}

impl<B: TritterBackend> TritterModel<B> {
    /// Writes `out/config.json` and `out/model.safetensors` for transformers. A latent model exports
    /// its latent weights (online quantization, needs `weight_quant_eps = clamp`); a packed model
    /// (see [`TritterModel::into_packed`]) exports its codes and scales in transformers' offline form.
    pub fn save_hf(&self, out: &Path, dtype: HfDtype) -> Result<HfExportSummary> {
        let config = self.config();
        let packed = self.is_packed();
        let hf = hf_config(config, packed, dtype, out)?;
        let floats = self.collect(None, None, true);
        let mut plan: Vec<Planned> = floats
            .iter()
            .map(|snapshot| {
                let make = move || -> Result<Vec<u8>> { Ok(encode(&snapshot_f32(snapshot)?, dtype.dtype())) };
                Planned {
                    name: snapshot.full_path(),
                    dtype: dtype.dtype(),
                    shape: snapshot.shape.clone(),
                    make: Box::new(make),
                }
            })
            .collect();
        for (prefix, weight) in self.packed_weights() {
            if weight.scales.len() != 1 || weight.rows % 4 != 0 {
                let reason = format!(
                    "{} rows, {} scales: transformers packs 4 rows to a byte under one scale",
                    weight.rows,
                    weight.scales.len()
                );
                return Err(refuse(out, &format!("{prefix}.weight"), &reason));
            }
            let codes = move || -> Result<Vec<u8>> { Ok(transformers_codes(weight)) };
            let gamma = weight.scales[0];
            let scale = move || -> Result<Vec<u8>> { Ok(encode(&[gamma], dtype.dtype())) };
            plan.push(Planned {
                name: format!("{prefix}.weight"),
                dtype: Dtype::U8,
                shape: vec![weight.rows / 4, weight.cols],
                make: Box::new(codes),
            });
            plan.push(Planned {
                name: format!("{prefix}.weight_scale"),
                dtype: dtype.dtype(),
                shape: vec![1],
                make: Box::new(scale),
            });
        }
        std::fs::create_dir_all(out).map_err(|source| TritterError::Io {
            action: "cannot create",
            path: out.to_path_buf(),
            source,
        })?;
        let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
        let bytes = write_tensors(&out.join(WEIGHTS_FILE), &plan, Some(metadata), &mut |_, _| {})?;
        crate::io::write_json(&out.join(CONFIG_FILE), &hf)?;
        tracing::info!(out = %out.display(), packed, "saved Hugging Face model");
        Ok(HfExportSummary {
            model_type: if config.sub_norm { "bitnet" } else { "llama" },
            packed,
            tensors: plan.len(),
            bytes,
        })
    }
}
