//! `TritterConfig`: the model's shape and numerics (spec section 1), its presets and checks.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TritterError};
use crate::io::{read_json, write_json};

/// Which normalisation every norm of the model uses (block, final and QK norms alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// `(x - mean) / sqrt(var + eps) * w + b`, biased variance.
    LayerNorm,
    /// `x / sqrt(mean(x²) + eps) * w`.
    RmsNorm,
}

/// Where the MLP-side norm sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MlpNorm {
    /// `x + MLP(N(x))`.
    Pre,
    /// `N(x + MLP(x))`.
    Post,
}

/// Granularity of the absmean scale γ of ternary weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightScale {
    /// One γ for the whole matrix.
    PerTensor,
    /// One γ per output row.
    PerRow,
    /// One γ per group of `N` consecutive inputs of a row.
    PerGroup(usize),
}

/// The MLP's gate activation `act` in `down(act(gate(x)) ⊙ up(x))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `relu(z)²` (BitNet b1.58).
    #[default]
    ReluSquared,
    /// `z · sigmoid(z)` (SwiGLU, Llama-architecture ternary models).
    Silu,
}

/// How ε enters the ternary weight quantizer (spec section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightQuantEps {
    /// `Wq = round(W / (γ + ε))`, `W̃ = γ · Wq`.
    #[default]
    Add,
    /// `Wq = round(W / max(γ, ε))`, `W̃ = max(γ, ε) · Wq` (transformers' `AutoBitLinear`).
    Clamp,
}

fn default_rope_theta() -> f64 {
    500_000.0
}
fn default_norm() -> NormKind {
    NormKind::LayerNorm
}
fn default_norm_eps() -> f64 {
    1e-5
}
fn default_mlp_norm() -> MlpNorm {
    MlpNorm::Pre
}
fn default_true() -> bool {
    true
}
fn default_weight_scale() -> WeightScale {
    WeightScale::PerTensor
}
fn default_activation_bits() -> Option<u32> {
    Some(8)
}
fn default_init_std() -> f64 {
    0.02
}

/// The model's configuration, serialised as `config.json` beside the weights (spec section 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TritterConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub intermediate_size: usize,
    pub max_seq_len: usize,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_norm")]
    pub norm: NormKind,
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    #[serde(default = "default_mlp_norm")]
    pub mlp_norm: MlpNorm,
    #[serde(default = "default_true")]
    pub qk_norm: bool,
    pub tie_embeddings: bool,
    #[serde(default = "default_true")]
    pub bitnet: bool,
    #[serde(default = "default_weight_scale")]
    pub weight_scale: WeightScale,
    #[serde(default = "default_activation_bits")]
    pub activation_bits: Option<u32>,
    #[serde(default)]
    pub ternary_lm_head: bool,
    #[serde(default)]
    pub pad_token_id: Option<usize>,
    #[serde(default = "default_init_std")]
    pub init_std: f64,
    #[serde(default)]
    pub sub_norm: bool,
    #[serde(default)]
    pub activation: Activation,
    #[serde(default)]
    pub weight_quant_eps: WeightQuantEps,
}

impl TritterConfig {
    /// A config with the spec's defaults for everything the preset does not fix.
    #[allow(clippy::too_many_arguments)]
    fn preset(
        vocab_size: usize,
        hidden_size: usize,
        num_layers: usize,
        num_heads: usize,
        num_kv_heads: usize,
        intermediate_size: usize,
        max_seq_len: usize,
        tie_embeddings: bool,
    ) -> Self {
        Self {
            vocab_size,
            hidden_size,
            num_layers,
            num_heads,
            num_kv_heads,
            intermediate_size,
            max_seq_len,
            rope_theta: default_rope_theta(),
            norm: default_norm(),
            norm_eps: default_norm_eps(),
            mlp_norm: default_mlp_norm(),
            qk_norm: true,
            tie_embeddings,
            bitnet: true,
            weight_scale: default_weight_scale(),
            activation_bits: default_activation_bits(),
            ternary_lm_head: false,
            pad_token_id: None,
            init_std: default_init_std(),
            sub_norm: false,
            activation: Activation::ReluSquared,
            weight_quant_eps: WeightQuantEps::Add,
        }
    }

    /// A tiny model for tests and CPU demos (~132K parameters).
    pub fn test() -> Self {
        Self::preset(512, 64, 2, 2, 1, 192, 256, true)
    }
    /// ~100M parameters.
    pub fn small_100m() -> Self {
        Self::preset(32_000, 768, 12, 12, 4, 2048, 1024, true)
    }
    /// ~500M parameters.
    pub fn medium_500m() -> Self {
        Self::preset(32_000, 1024, 24, 16, 4, 5376, 2048, true)
    }
    /// ~1B parameters.
    pub fn large_1b() -> Self {
        Self::preset(32_000, 2048, 24, 16, 4, 5120, 2048, true)
    }
    /// ~3B parameters.
    pub fn xlarge_3b() -> Self {
        Self::preset(32_000, 2560, 26, 20, 4, 12_032, 4096, false)
    }
    /// ~7B parameters (Llama-2-7B shapes).
    pub fn huge_7b() -> Self {
        Self::preset(32_000, 4096, 32, 32, 32, 11_008, 4096, false)
    }

    /// The shape of Microsoft's BitNet b1.58 2B4T (`microsoft/bitnet-b1.58-2B-4T`): RMSNorm,
    /// SubLN, no QK-Norm, relu², tied 128256-token embeddings.
    pub fn bitnet_2b4t() -> Self {
        Self {
            norm: NormKind::RmsNorm,
            qk_norm: false,
            sub_norm: true,
            ..Self::preset(128_256, 2560, 30, 20, 5, 6912, 4096, true)
        }
    }

    /// Every preset with its name and the parameter count its name promises.
    pub fn presets() -> Vec<(&'static str, Self, u64)> {
        vec![
            ("test", Self::test(), 115_000),
            ("small_100m", Self::small_100m(), 100_000_000),
            ("medium_500m", Self::medium_500m(), 500_000_000),
            ("large_1b", Self::large_1b(), 1_000_000_000),
            ("xlarge_3b", Self::xlarge_3b(), 3_000_000_000),
            ("huge_7b", Self::huge_7b(), 7_000_000_000),
            ("bitnet_2b4t", Self::bitnet_2b4t(), 2_400_000_000),
        ]
    }

    /// A preset by name (`test`, `small_100m`, ...).
    pub fn from_preset(name: &str) -> Result<Self> {
        Self::presets().into_iter().find(|(n, _, _)| *n == name).map(|(_, c, _)| c).ok_or_else(|| {
            TritterError::InvalidConfig {
                field: "preset",
                reason: format!(
                    "unknown preset `{name}`; known: {}",
                    Self::presets().iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
                ),
            }
        })
    }

    /// Per-head dimension `d = H / n_h`.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// Rejects inconsistent or out-of-range values, naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: String| Err(TritterError::InvalidConfig { field, reason });
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_seq_len", self.max_seq_len),
        ] {
            if value == 0 {
                return bad(field, "must be greater than 0".into());
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_heads) {
            return bad(
                "num_heads",
                format!("hidden_size {} is not divisible by num_heads {}", self.hidden_size, self.num_heads),
            );
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return bad(
                "num_kv_heads",
                format!("num_heads {} is not divisible by num_kv_heads {}", self.num_heads, self.num_kv_heads),
            );
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad(
                "num_heads",
                format!("head dim hidden_size / num_heads = {} must be even for RoPE", self.head_dim()),
            );
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return bad("rope_theta", format!("must be a finite number > 1, got {}", self.rope_theta));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return bad("norm_eps", format!("must be a finite number > 0, got {}", self.norm_eps));
        }
        if !(self.init_std.is_finite() && self.init_std > 0.0) {
            return bad("init_std", format!("must be a finite number > 0 (never zero init), got {}", self.init_std));
        }
        if let Some(bits) = self.activation_bits {
            if bits != 8 {
                return bad("activation_bits", format!("only 8 (or null for off) is supported, got {bits}"));
            }
        }
        if self.ternary_lm_head && !self.bitnet {
            return bad("ternary_lm_head", "requires bitnet = true".into());
        }
        if let WeightScale::PerGroup(n) = self.weight_scale {
            if n == 0 {
                return bad("weight_scale", "per_group size must be greater than 0".into());
            }
            // Every ternary projection's input dim must be a multiple of the group size.
            let mut inputs = vec![
                ("hidden_size", self.hidden_size),
                ("intermediate_size", self.intermediate_size),
                ("num_heads * head_dim", self.num_heads * self.head_dim()),
            ];
            if self.ternary_lm_head {
                inputs.push(("hidden_size", self.hidden_size));
            }
            for (name, dim) in inputs {
                if dim % n != 0 {
                    return bad("weight_scale", format!("per_group size {n} does not divide {name} = {dim}"));
                }
            }
        }
        if let Some(pad) = self.pad_token_id {
            if pad >= self.vocab_size {
                return bad("pad_token_id", format!("{pad} is not below vocab_size {}", self.vocab_size));
            }
        }
        Ok(())
    }

    /// `[out, in]` of every ternary projection (q, k, v, o, gate, up, down per layer; the LM
    /// head with `ternary_lm_head`); empty when `bitnet` is off.
    pub fn ternary_matrices(&self) -> Vec<[usize; 2]> {
        if !self.bitnet {
            return Vec::new();
        }
        let layer = LAYER_PROJECTIONS.map(|p| (p.shape)(self));
        let mut all: Vec<[usize; 2]> = (0..self.num_layers).flat_map(|_| layer).collect();
        if self.ternary_lm_head {
            all.push([self.vocab_size, self.hidden_size]);
        }
        all
    }

    /// `[out, in]` of the projection with tensor-name prefix `name` (`...q_proj`, `lm_head`, ...).
    pub fn projection_shape(&self, name: &str) -> [usize; 2] {
        let last = name.rsplit('.').next().unwrap_or(name);
        match LAYER_PROJECTIONS.iter().find(|p| p.name == last) {
            Some(p) => (p.shape)(self),
            None => [self.vocab_size, self.hidden_size],
        }
    }

    /// Bytes of the packed inference form (spec section 3): each ternary row as 2-bit codes,
    /// 16 per `u32`, plus its f32 scales; every other parameter at `rest_bytes` per value
    /// (4 for f32, 2 for f16).
    pub fn packed_size_bytes(&self, rest_bytes: u64) -> u64 {
        let mut ternary_params = 0u64;
        let mut packed = 0u64;
        for [rows, cols] in self.ternary_matrices() {
            ternary_params += (rows * cols) as u64;
            let scales = match self.weight_scale {
                WeightScale::PerTensor => 1,
                WeightScale::PerRow => rows,
                WeightScale::PerGroup(n) => rows * cols.div_ceil(n),
            };
            packed += (rows * cols.div_ceil(16) * 4 + scales * 4) as u64;
        }
        packed + (self.parameter_count() - ternary_params) * rest_bytes
    }

    /// Exact number of parameters of the instantiated `TritterModel`: the sizes of its tensors.
    pub fn parameter_count(&self) -> u64 {
        self.tensor_specs().iter().map(|t| t.shape.iter().product::<usize>() as u64).sum()
    }

    /// Every tensor of the model under its spec name (section 4), in the spec's order, with its
    /// shape and whether it is a ternary projection (stored packed in a packed checkpoint).
    pub fn tensor_specs(&self) -> Vec<TensorSpec> {
        let mut specs = Vec::new();
        let norm = |specs: &mut Vec<TensorSpec>, prefix: &str, dim: usize| {
            specs.push(TensorSpec::new(format!("{prefix}.weight"), vec![dim], false));
            if self.norm == NormKind::LayerNorm {
                specs.push(TensorSpec::new(format!("{prefix}.bias"), vec![dim], false));
            }
        };
        specs.push(TensorSpec::new("model.embed_tokens.weight".into(), vec![self.vocab_size, self.hidden_size], false));
        let d = self.head_dim();
        for i in 0..self.num_layers {
            let layer = format!("model.layers.{i}");
            norm(&mut specs, &format!("{layer}.input_layernorm"), self.hidden_size);
            for p in &LAYER_PROJECTIONS {
                let name = format!("{layer}.{}.{}.weight", p.block, p.name);
                specs.push(TensorSpec::new(name, (p.shape)(self).to_vec(), self.bitnet));
            }
            if self.qk_norm {
                norm(&mut specs, &format!("{layer}.self_attn.q_norm"), d);
                norm(&mut specs, &format!("{layer}.self_attn.k_norm"), d);
            }
            norm(&mut specs, &format!("{layer}.post_attention_layernorm"), self.hidden_size);
            if self.sub_norm {
                norm(&mut specs, &format!("{layer}.self_attn.attn_sub_norm"), self.num_heads * d);
                norm(&mut specs, &format!("{layer}.mlp.ffn_sub_norm"), self.intermediate_size);
            }
        }
        norm(&mut specs, "model.norm", self.hidden_size);
        if !self.tie_embeddings {
            specs.push(TensorSpec::new(
                "lm_head.weight".into(),
                vec![self.vocab_size, self.hidden_size],
                self.ternary_lm_head,
            ));
        }
        specs
    }

    /// Each spec tensor's shape by name.
    pub fn expected_shapes(&self) -> std::collections::HashMap<String, Vec<usize>> {
        self.tensor_specs().into_iter().map(|spec| (spec.name, spec.shape)).collect()
    }

    /// Reads and validates a JSON config.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let config: Self = read_json(path.as_ref(), "cannot read config")?;
        config.validate()?;
        Ok(config)
    }

    /// Writes pretty JSON, atomically.
    pub fn to_json_file(&self, path: impl AsRef<Path>) -> Result<()> {
        write_json(path.as_ref(), self)
    }
}

/// One tensor of the model: its spec name, shape, and whether it is a ternary projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub ternary: bool,
}

impl TensorSpec {
    fn new(name: String, shape: Vec<usize>, ternary: bool) -> Self {
        Self { name, shape, ternary }
    }
}

/// One ternary projection of a decoder layer: its tensor name, the block that holds it
/// (`model.layers.{i}.{block}.{name}`), its `[out, in]` shape for a config, and the parameter
/// group the hybrid predictive trainer predicts it in.
#[derive(Clone, Copy)]
pub struct LayerProjection {
    pub name: &'static str,
    pub block: &'static str,
    pub shape: fn(&TritterConfig) -> [usize; 2],
    pub hybrid_group: &'static str,
}

/// Every projection of a decoder layer, in spec order (section 4).
pub const LAYER_PROJECTIONS: [LayerProjection; 7] = [
    LayerProjection {
        name: "q_proj",
        block: "self_attn",
        shape: |c| [c.num_heads * c.head_dim(), c.hidden_size],
        hybrid_group: "attention.q",
    },
    LayerProjection {
        name: "k_proj",
        block: "self_attn",
        shape: |c| [c.num_kv_heads * c.head_dim(), c.hidden_size],
        hybrid_group: "attention.k",
    },
    LayerProjection {
        name: "v_proj",
        block: "self_attn",
        shape: |c| [c.num_kv_heads * c.head_dim(), c.hidden_size],
        hybrid_group: "attention.v",
    },
    LayerProjection {
        name: "o_proj",
        block: "self_attn",
        shape: |c| [c.hidden_size, c.num_heads * c.head_dim()],
        hybrid_group: "attention.out",
    },
    LayerProjection {
        name: "gate_proj",
        block: "mlp",
        shape: |c| [c.intermediate_size, c.hidden_size],
        hybrid_group: "mlp.up",
    },
    LayerProjection {
        name: "up_proj",
        block: "mlp",
        shape: |c| [c.intermediate_size, c.hidden_size],
        hybrid_group: "mlp.up",
    },
    LayerProjection {
        name: "down_proj",
        block: "mlp",
        shape: |c| [c.hidden_size, c.intermediate_size],
        hybrid_group: "mlp.down",
    },
];
