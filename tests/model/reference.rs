//! An independent float64 forward pass of the spec, written with plain loops. It reads the
//! weights from a checkpoint's `model.safetensors` with the `safetensors` crate (not burn-store)
//! and shares no code with the Burn model.
//!
//! With `bitnet = true`, f32 and f64 may legitimately round a value the other way when it lies
//! within float error of a rounding boundary (`k + 0.5` for activations, `±0.5` for ternary
//! weights). The reference records the closest approach (relative distance) to such a
//! boundary, so a test can tell a clean comparison from one where a flip is possible.

use std::collections::HashMap;
use std::path::Path;

use tritter::{Activation, MlpNorm, NormKind, TritterConfig, WeightQuantEps, WeightScale};

pub struct Reference {
    pub config: TritterConfig,
    weights: HashMap<String, (Vec<usize>, Vec<f64>)>,
    /// Smallest `|v − boundary| / max(|v|, 1)` seen by any rounding so far.
    pub min_boundary_distance: f64,
}

type Mat = Vec<Vec<f64>>; // rows = tokens

impl Reference {
    pub fn load(dir: &Path) -> Self {
        let config: TritterConfig =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut weights = HashMap::new();
        for (name, view) in file.tensors() {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let values =
                view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64).collect();
            weights.insert(name, (view.shape().to_vec(), values));
        }
        Self { config, weights, min_boundary_distance: f64::INFINITY }
    }

    fn tensor(&self, name: &str) -> &(Vec<usize>, Vec<f64>) {
        self.weights.get(name).unwrap_or_else(|| panic!("reference: no tensor {name}"))
    }

    fn note_boundary(&mut self, v: f64, boundary_distance: f64) {
        self.min_boundary_distance = self.min_boundary_distance.min(boundary_distance / v.abs().max(1.0));
    }

    /// `γ · clamp(round(W / (γ + 1e-5)), -1, 1)` per scale group, `[out][in]` (with
    /// `weight_quant_eps = clamp`, `γ' · clamp(round(W / γ'), -1, 1)`, `γ' = max(γ, 1e-5)`).
    fn ternary_weight(&mut self, name: &str) -> Mat {
        let (shape, w) = self.tensor(name).clone();
        let (out, inp) = (shape[0], shape[1]);
        let weight_scale = self.config.weight_scale;
        let group_of = |r: usize, c: usize| -> usize {
            match weight_scale {
                WeightScale::PerTensor => 0,
                WeightScale::PerRow => r,
                WeightScale::PerGroup(n) => r * (inp / n) + c / n,
            }
        };
        let mut sums: HashMap<usize, (f64, usize)> = HashMap::new();
        for r in 0..out {
            for c in 0..inp {
                let e = sums.entry(group_of(r, c)).or_insert((0.0, 0));
                e.0 += w[r * inp + c].abs();
                e.1 += 1;
            }
        }
        let mut result = vec![vec![0.0; inp]; out];
        for r in 0..out {
            for c in 0..inp {
                let (sum, count) = sums[&group_of(r, c)];
                let gamma = sum / count as f64;
                let (gamma, divisor) = match self.config.weight_quant_eps {
                    WeightQuantEps::Add => (gamma, gamma + 1e-5),
                    WeightQuantEps::Clamp => (gamma.max(1e-5), gamma.max(1e-5)),
                };
                let v = w[r * inp + c] / divisor;
                self.note_boundary(v, (v.abs() - 0.5).abs());
                result[r][c] = gamma * v.round_ties_even().clamp(-1.0, 1.0);
            }
        }
        result
    }

    fn plain_weight(&self, name: &str) -> Mat {
        let (shape, w) = self.tensor(name);
        w.chunks(shape[1]).map(|row| row.to_vec()).collect()
    }

    /// Per-token absmax int8 fake quantization.
    fn quantize_activations(&mut self, x: &Mat) -> Mat {
        x.iter()
            .map(|row| {
                let m = row.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-5);
                let s = 127.0 / m;
                row.iter()
                    .map(|v| {
                        let scaled = v * s;
                        let frac = scaled - scaled.floor();
                        self.note_boundary(scaled, (frac - 0.5).abs());
                        scaled.round_ties_even().clamp(-128.0, 127.0) / s
                    })
                    .collect()
            })
            .collect()
    }

    /// `y = x̃ · W̃ᵀ` with the spec's quantization when `ternary`.
    fn linear(&mut self, x: &Mat, name: &str, ternary: bool) -> Mat {
        let (w, x) = if ternary {
            let w = self.ternary_weight(name);
            let x = match self.config.activation_bits {
                Some(_) => self.quantize_activations(x),
                None => x.clone(),
            };
            (w, x)
        } else {
            (self.plain_weight(name), x.clone())
        };
        x.iter().map(|row| w.iter().map(|wr| wr.iter().zip(row).map(|(a, b)| a * b).sum()).collect()).collect()
    }

    fn norm(&self, x: &[f64], prefix: &str) -> Vec<f64> {
        let w = &self.tensor(&format!("{prefix}.weight")).1;
        let eps = self.config.norm_eps;
        let n = x.len() as f64;
        match self.config.norm {
            NormKind::LayerNorm => {
                let b = &self.tensor(&format!("{prefix}.bias")).1;
                let mean = x.iter().sum::<f64>() / n;
                let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                x.iter().enumerate().map(|(i, v)| (v - mean) / (var + eps).sqrt() * w[i] + b[i]).collect()
            }
            NormKind::RmsNorm => {
                let ms = x.iter().map(|v| v * v).sum::<f64>() / n;
                x.iter().enumerate().map(|(i, v)| v / (ms + eps).sqrt() * w[i]).collect()
            }
        }
    }

    fn rope(&self, x: &mut [f64], pos: usize) {
        let d = x.len();
        for i in 0..d / 2 {
            let angle = pos as f64 * self.config.rope_theta.powf(-2.0 * i as f64 / d as f64);
            let (a, b) = (x[i], x[i + d / 2]);
            x[i] = a * angle.cos() - b * angle.sin();
            x[i + d / 2] = b * angle.cos() + a * angle.sin();
        }
    }

    fn attention(&mut self, x: &Mat, layer: usize, ids: &[usize]) -> Mat {
        let c = self.config.clone();
        let (d, nh, nkv) = (c.head_dim(), c.num_heads, c.num_kv_heads);
        let p = format!("model.layers.{layer}.self_attn");
        let mut q = self.linear(x, &format!("{p}.q_proj.weight"), c.bitnet);
        let mut k = self.linear(x, &format!("{p}.k_proj.weight"), c.bitnet);
        let v = self.linear(x, &format!("{p}.v_proj.weight"), c.bitnet);
        let t = x.len();
        for pos in 0..t {
            for h in 0..nh {
                let head = &mut q[pos][h * d..(h + 1) * d];
                if c.qk_norm {
                    head.copy_from_slice(&self.norm(head, &format!("{p}.q_norm")));
                }
                self.rope(head, pos);
            }
            for h in 0..nkv {
                let head = &mut k[pos][h * d..(h + 1) * d];
                if c.qk_norm {
                    head.copy_from_slice(&self.norm(head, &format!("{p}.k_norm")));
                }
                self.rope(head, pos);
            }
        }
        let mut out = vec![vec![0.0; nh * d]; t];
        for h in 0..nh {
            let kv = h / (nh / nkv);
            for i in 0..t {
                let visible: Vec<usize> = (0..=i).filter(|&j| j == i || Some(ids[j]) != c.pad_token_id).collect();
                let scores: Vec<f64> = visible
                    .iter()
                    .map(|&j| (0..d).map(|e| q[i][h * d + e] * k[j][kv * d + e]).sum::<f64>() / (d as f64).sqrt())
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = exps.iter().sum();
                for (&j, e) in visible.iter().zip(&exps) {
                    for f in 0..d {
                        out[i][h * d + f] += e / total * v[j][kv * d + f];
                    }
                }
            }
        }
        if c.sub_norm {
            out = out.iter().map(|r| self.norm(r, &format!("{p}.attn_sub_norm"))).collect();
        }
        self.linear(&out, &format!("{p}.o_proj.weight"), c.bitnet)
    }

    fn mlp(&mut self, x: &Mat, layer: usize) -> Mat {
        let bitnet = self.config.bitnet;
        let p = format!("model.layers.{layer}.mlp");
        let gate = self.linear(x, &format!("{p}.gate_proj.weight"), bitnet);
        let up = self.linear(x, &format!("{p}.up_proj.weight"), bitnet);
        let act = |g: f64| match self.config.activation {
            Activation::ReluSquared => g.max(0.0).powi(2),
            Activation::Silu => g / (1.0 + (-g).exp()),
        };
        let mut hidden: Mat =
            gate.iter().zip(&up).map(|(g, u)| g.iter().zip(u).map(|(g, u)| act(*g) * u).collect()).collect();
        if self.config.sub_norm {
            hidden = hidden.iter().map(|r| self.norm(r, &format!("{p}.ffn_sub_norm"))).collect();
        }
        self.linear(&hidden, &format!("{p}.down_proj.weight"), bitnet)
    }

    /// Logits `[T][V]` for one sequence.
    pub fn forward(&mut self, ids: &[usize]) -> Mat {
        let c = self.config.clone();
        let embed = self.plain_weight("model.embed_tokens.weight");
        let mut x: Mat = ids.iter().map(|&i| embed[i].clone()).collect();
        let add = |a: &Mat, b: &Mat| -> Mat {
            a.iter().zip(b).map(|(r, s)| r.iter().zip(s).map(|(u, v)| u + v).collect()).collect()
        };
        for l in 0..c.num_layers {
            let normed: Mat = x.iter().map(|r| self.norm(r, &format!("model.layers.{l}.input_layernorm"))).collect();
            x = add(&x, &self.attention(&normed, l, ids));
            let post = format!("model.layers.{l}.post_attention_layernorm");
            x = match c.mlp_norm {
                MlpNorm::Pre => {
                    let normed: Mat = x.iter().map(|r| self.norm(r, &post)).collect();
                    add(&x, &self.mlp(&normed, l))
                }
                MlpNorm::Post => add(&x, &self.mlp(&x, l)).iter().map(|r| self.norm(r, &post)).collect(),
            };
        }
        let x: Mat = x.iter().map(|r| self.norm(r, "model.norm")).collect();
        let head = if c.tie_embeddings { "model.embed_tokens.weight" } else { "lm_head.weight" };
        self.linear(&x, head, c.ternary_lm_head)
    }
}
