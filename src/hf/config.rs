//! A Hugging Face `config.json` (`model_type` `bitnet` or `llama`, with or without a `bitnet`
//! `quantization_config`) as a [`TritterConfig`] and the form its projection weights take.
//! Whatever Tritter cannot represent is refused with the field's name, never approximated.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::config::{Activation, MlpNorm, NormKind, TritterConfig, WeightQuantEps, WeightScale};
use crate::error::{Result, TritterError};
use crate::io::read_json;

/// How a projection's weight is stored in the Hugging Face checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightForm {
    /// Full-precision weights of a model without quantization (`bitnet` off).
    Plain,
    /// Latent weights quantized on the fly (`autobitlinear`, `online`): trainable.
    Online,
    /// Ternary values, packed four rows per `uint8` row (or as floats), with a per-tensor
    /// `weight_scale`. `AutoBitLinear` (`autobitlinear`, `offline`) multiplies the output by it;
    /// `BitLinear` (`bitlinear`) divides by it.
    Offline { divide_by_scale: bool },
}

/// What `config.json` (and `generation_config.json`) describe.
#[derive(Debug, Clone, PartialEq)]
pub struct HfModel {
    pub config: TritterConfig,
    pub weights: WeightForm,
    /// `BitNetForCausalLM` or `LlamaForCausalLM`'s `model_type`.
    pub model_type: String,
    pub bos_token_id: Option<u32>,
    /// The ids that end generation (`eos_token_id`, one or a list).
    pub eos_token_ids: Vec<u32>,
}

/// Reads `dir/config.json` (and `dir/generation_config.json` when present).
pub fn read_hf_config(dir: &Path) -> Result<HfModel> {
    let path = dir.join("config.json");
    let json: Value = read_json(&path, "cannot read Hugging Face config")?;
    let Value::Object(fields) = json else {
        return Err(refuse(&path, "config.json", "is not a JSON object".into()));
    };
    let reader = Fields { path: path.clone(), fields };
    let mut model = reader.model()?;
    let generation = dir.join("generation_config.json");
    if generation.is_file() {
        let json: Value = read_json(&generation, "cannot read generation config")?;
        if let Some(ids) = token_ids_field(&json, "eos_token_id", &generation)? {
            model.eos_token_ids = ids;
        }
    }
    Ok(model)
}

fn refuse(path: &Path, what: &str, reason: String) -> TritterError {
    TritterError::Unsupported { path: path.to_path_buf(), what: what.to_string(), reason }
}

/// The token ids of `field` in the JSON object `json` read from `path` (one id or a list;
/// `None` when the field is absent), with an error naming the file and field.
pub fn token_ids_field(json: &Value, field: &str, path: &Path) -> Result<Option<Vec<u32>>> {
    json.get(field).map(token_ids).transpose().map_err(|reason| refuse(path, field, reason))
}

fn token_ids(value: &Value) -> std::result::Result<Vec<u32>, String> {
    let one = |v: &Value| v.as_u64().and_then(|id| u32::try_from(id).ok()).ok_or(format!("{v} is not a token id"));
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(ids) => ids.iter().map(one).collect(),
        id => one(id).map(|id| vec![id]),
    }
}

/// The config's fields, read with errors that name the field.
struct Fields {
    path: PathBuf,
    fields: Map<String, Value>,
}

impl Fields {
    fn refuse(&self, what: &str, reason: impl Into<String>) -> TritterError {
        refuse(&self.path, what, reason.into())
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.fields.get(name).filter(|v| !v.is_null())
    }

    fn usize(&self, name: &str) -> Result<usize> {
        let value = self.get(name).ok_or_else(|| self.refuse(name, "is missing"))?;
        value.as_u64().map(|v| v as usize).ok_or_else(|| self.refuse(name, format!("{value} is not a whole number")))
    }

    fn f64_or(&self, name: &str, default: f64) -> Result<f64> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.refuse(name, format!("{v} is not a number"))),
        }
    }

    fn bool_or(&self, name: &str, default: bool) -> Result<bool> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.refuse(name, format!("{v} is not true or false"))),
        }
    }

    fn str_or<'a>(&'a self, name: &str, default: &'a str) -> Result<&'a str> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.as_str().ok_or_else(|| self.refuse(name, format!("{v} is not a string"))),
        }
    }

    /// Refuses `name` unless it is absent, null, false or empty.
    fn refuse_if_set(&self, name: &str, reason: &str) -> Result<()> {
        match self.get(name) {
            None | Some(Value::Bool(false)) => Ok(()),
            Some(Value::Array(a)) if a.is_empty() => Ok(()),
            Some(Value::Object(o)) if o.is_empty() => Ok(()),
            Some(v) => Err(self.refuse(name, format!("{v}: {reason}"))),
        }
    }

    fn model(&self) -> Result<HfModel> {
        let model_type = self.str_or("model_type", "")?.to_string();
        let bitnet_arch = match model_type.as_str() {
            "bitnet" => true,
            "llama" => false,
            other => return Err(self.refuse("model_type", format!("`{other}`; Tritter imports `bitnet` and `llama`"))),
        };
        self.refuse_unsupported()?;
        let weights = self.weight_form()?;
        let config = self.tritter_config(bitnet_arch, weights != WeightForm::Plain)?;
        config.validate().map_err(|e| self.refuse("config.json", e.to_string()))?;
        let eos_token_ids =
            self.get("eos_token_id").map(token_ids).transpose().map_err(|r| self.refuse("eos_token_id", r))?;
        let bos = self.get("bos_token_id").map(token_ids).transpose().map_err(|r| self.refuse("bos_token_id", r))?;
        Ok(HfModel {
            config,
            weights,
            model_type,
            bos_token_id: bos.and_then(|ids| ids.first().copied()),
            eos_token_ids: eos_token_ids.unwrap_or_default(),
        })
    }

    /// The fields whose values Tritter's architecture has no room for.
    fn refuse_unsupported(&self) -> Result<()> {
        self.refuse_if_set("attention_bias", "Tritter's projections have no bias")?;
        self.refuse_if_set("mlp_bias", "Tritter's projections have no bias")?;
        self.refuse_if_set("rope_scaling", "Tritter implements plain RoPE only")?;
        if let Some(head_dim) = self.get("head_dim") {
            let (hidden, heads) = (self.usize("hidden_size")?, self.usize("num_attention_heads")?);
            if heads == 0 || head_dim.as_u64() != Some((hidden / heads) as u64) {
                let reason =
                    format!("{head_dim} differs from hidden_size / num_attention_heads (Tritter requires them equal)");
                return Err(self.refuse("head_dim", reason));
            }
        }
        Ok(())
    }

    fn activation(&self, bitnet_arch: bool) -> Result<Activation> {
        match self.str_or("hidden_act", if bitnet_arch { "relu2" } else { "silu" })? {
            "relu2" => Ok(Activation::ReluSquared),
            "silu" => Ok(Activation::Silu),
            other => Err(self.refuse("hidden_act", format!("`{other}`; Tritter has `relu2` and `silu`"))),
        }
    }

    /// The Tritter config of a BitNet (`bitnet_arch`) or Llama model, ternary when `bitnet`.
    fn tritter_config(&self, bitnet_arch: bool, bitnet: bool) -> Result<TritterConfig> {
        let num_heads = self.usize("num_attention_heads")?;
        let kv_heads =
            if self.get("num_key_value_heads").is_some() { self.usize("num_key_value_heads")? } else { num_heads };
        Ok(TritterConfig {
            vocab_size: self.usize("vocab_size")?,
            hidden_size: self.usize("hidden_size")?,
            num_layers: self.usize("num_hidden_layers")?,
            num_heads,
            num_kv_heads: kv_heads,
            intermediate_size: self.usize("intermediate_size")?,
            max_seq_len: self.usize("max_position_embeddings")?,
            rope_theta: self.rope_theta(if bitnet_arch { 500_000.0 } else { 10_000.0 })?,
            norm: NormKind::RmsNorm,
            norm_eps: self.f64_or("rms_norm_eps", if bitnet_arch { 1e-5 } else { 1e-6 })?,
            mlp_norm: MlpNorm::Pre,
            qk_norm: false,
            tie_embeddings: self.bool_or("tie_word_embeddings", false)?,
            bitnet,
            weight_scale: WeightScale::PerTensor,
            activation_bits: bitnet.then_some(8),
            ternary_lm_head: false,
            // Hugging Face masks no key by token id; Tritter would mask every pad key.
            pad_token_id: None,
            init_std: self.f64_or("initializer_range", 0.02)?,
            sub_norm: bitnet_arch,
            activation: self.activation(bitnet_arch)?,
            // transformers' `AutoBitLinear` (and onebitllms) floor γ at ε.
            weight_quant_eps: WeightQuantEps::Clamp,
        })
    }

    /// `rope_theta`, or transformers 5's `rope_parameters` with `rope_type` `default`.
    fn rope_theta(&self, default: f64) -> Result<f64> {
        if let Some(params) = self.get("rope_parameters") {
            let rope_type = params.get("rope_type").and_then(Value::as_str).unwrap_or("default");
            if rope_type != "default" {
                return Err(self.refuse(
                    "rope_parameters.rope_type",
                    format!("`{rope_type}`; Tritter implements plain RoPE only"),
                ));
            }
            if let Some(theta) = params.get("rope_theta") {
                return theta
                    .as_f64()
                    .ok_or_else(|| self.refuse("rope_parameters.rope_theta", format!("{theta} is not a number")));
            }
        }
        self.f64_or("rope_theta", default)
    }

    /// The projections' form, from `quantization_config` (absent: full precision).
    fn weight_form(&self) -> Result<WeightForm> {
        let Some(quant) = self.get("quantization_config") else { return Ok(WeightForm::Plain) };
        let field = |name: &str| quant.get(name).filter(|v| !v.is_null());
        let text = |name: &str, default: &'static str| -> Result<String> {
            match field(name) {
                None => Ok(default.to_string()),
                Some(v) => v
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| self.refuse(&format!("quantization_config.{name}"), format!("{v} is not a string"))),
            }
        };
        let method = text("quant_method", "")?;
        if method != "bitnet" {
            return Err(
                self.refuse("quantization_config.quant_method", format!("`{method}`; Tritter imports `bitnet` only"))
            );
        }
        if field("use_rms_norm").and_then(Value::as_bool) == Some(true) {
            return Err(self.refuse(
                "quantization_config.use_rms_norm",
                "true: an RMSNorm inside every projection has no Tritter equivalent",
            ));
        }
        if let Some(modules) = field("modules_to_not_convert") {
            let only_head = modules.as_array().is_some_and(|m| m.iter().all(|n| n.as_str() == Some("lm_head")));
            if !only_head {
                return Err(self.refuse(
                    "quantization_config.modules_to_not_convert",
                    format!("{modules}: Tritter quantizes every projection but the LM head"),
                ));
            }
        }
        let mode = text("quantization_mode", "offline")?;
        match (text("linear_class", "bitlinear")?.as_str(), mode.as_str()) {
            ("autobitlinear", "online") => Ok(WeightForm::Online),
            ("autobitlinear", "offline") => Ok(WeightForm::Offline { divide_by_scale: false }),
            ("bitlinear", "offline" | "online") => Ok(WeightForm::Offline { divide_by_scale: true }),
            (class, "offline" | "online") => Err(self.refuse(
                "quantization_config.linear_class",
                format!("`{class}`; transformers has `bitlinear` and `autobitlinear`"),
            )),
            (_, mode) => {
                Err(self.refuse("quantization_config.quantization_mode", format!("`{mode}`; `online` or `offline`")))
            }
        }
    }
}
