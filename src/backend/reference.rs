//! The tensor-op reference of every [`super::TritterBackend`] op: plain Burn tensor ops, so they
//! run on every backend (and record their own gradients under autodiff). They define what the
//! kernels compute; the tests hold each kernel against them.

use burn::tensor::activation::{log_softmax, relu, silu, softmax};
use burn::tensor::{backend::Backend, Bool, ElementConversion, Int, Tensor};

use crate::backend::PackedWeight;
use crate::config::Activation;
use crate::quant::CODES_PER_WORD;
use crate::quant::{fake_quantize_activation, fake_quantize_weight, scale_codes, TernaryQuant};

/// LayerNorm (with `bias`) or RMSNorm over the last dim of `x: [rows, dim]`.
pub fn norm<B: Backend>(x: Tensor<B, 2>, weight: Tensor<B, 1>, bias: Option<Tensor<B, 1>>, eps: f64) -> Tensor<B, 2> {
    let weight = weight.unsqueeze::<2>();
    match bias {
        Some(bias) => {
            let centered = x.clone() - x.mean_dim(1);
            let var = centered.clone().square().mean_dim(1);
            centered / (var + eps).sqrt() * weight + bias.unsqueeze::<2>()
        }
        None => {
            let mean_sq = x.clone().square().mean_dim(1);
            x / (mean_sq + eps).sqrt() * weight
        }
    }
}

/// `cos` and `sin` of the angles `p · θ^(-2i/d)` for positions `offset..offset + len` and
/// `i < d/2`, computed in f64 and rounded once to f32; each `[len * d/2]`, row-major.
pub fn rope_tables(theta: f64, head_dim: usize, offset: usize, len: usize) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let freqs: Vec<f64> = (0..half).map(|i| theta.powf(-2.0 * i as f64 / head_dim as f64)).collect();
    let mut cos = Vec::with_capacity(len * half);
    let mut sin = Vec::with_capacity(len * half);
    for p in offset..offset + len {
        for &freq in &freqs {
            let angle = p as f64 * freq;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    (cos, sin)
}

/// RoPE of `x: [B, T, heads, d]` given the `[T · d/2]` tables of [`rope_tables`]:
/// `x'[i] = x[i]·cos − x[i+d/2]·sin`, `x'[i+d/2] = x[i+d/2]·cos + x[i]·sin`.
pub fn rope<B: Backend>(x: Tensor<B, 4>, cos: Vec<f32>, sin: Vec<f32>) -> Tensor<B, 4> {
    let [_, t, _, d] = x.dims();
    let half = d / 2;
    let device = x.device();
    let cos = Tensor::<B, 4>::from_data(burn::tensor::TensorData::new(cos, [1, t, 1, half]), &device);
    let sin = Tensor::<B, 4>::from_data(burn::tensor::TensorData::new(sin, [1, t, 1, half]), &device);
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.narrow(3, half, half);
    let out1 = x1.clone() * cos.clone() - x2.clone() * sin.clone();
    let out2 = x2 * cos + x1 * sin;
    Tensor::cat(vec![out1, out2], 3)
}

/// The attention core: `q: [B, n_h, T, d]`, `k`, `v: [B, n_kv, S, d]`, `mask: [B, 1, T, S]`
/// (true = masked) → `softmax(q·kᵀ/√d + mask)·v`, `[B, n_h, T, d]`; query head `h` reads kv
/// head `h / (n_h / n_kv)`. A query whose keys are all masked gets NaN here and 0 from the CPU
/// kernel; the model's masks always leave a query its own position.
pub fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Tensor<B, 4, Bool>,
) -> Tensor<B, 4> {
    let [batch, heads, queries, d] = q.dims();
    let [_, kv_heads, keys, _] = k.dims();
    let (k, v) = (repeat_kv(k, heads / kv_heads), repeat_kv(v, heads / kv_heads));
    let scores = q.matmul(k.transpose()) / (d as f64).sqrt();
    let scores = scores.mask_fill(mask.expand([batch, heads, queries, keys]), f32::NEG_INFINITY);
    softmax(scores, 3).matmul(v)
}

/// `[B, n_kv, T, d] -> [B, n_kv · n_rep, T, d]`: each kv head serves `n_rep` consecutive query heads.
fn repeat_kv<B: Backend>(x: Tensor<B, 4>, n_rep: usize) -> Tensor<B, 4> {
    if n_rep == 1 {
        return x;
    }
    let [batch, nkv, seq, d] = x.dims();
    x.reshape([batch, nkv, 1, seq, d]).repeat_dim(2, n_rep).reshape([batch, nkv * n_rep, seq, d])
}

/// Mean over the rows whose target is not `ignore` of `−log softmax(logits)[target]`;
/// `logits: [n, V]`, `targets: [n]`, result `[1]` (0 when every row is ignored).
pub fn cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    ignore: Option<usize>,
) -> Tensor<B, 1> {
    let n = targets.dims()[0];
    let targets = targets.reshape([n, 1]);
    let target_logp = log_softmax(logits, 1).gather(1, targets.clone()).reshape([n]);
    match ignore {
        None => target_logp.mean().neg(),
        Some(pad) => {
            let keep = targets.not_equal_elem(pad as i64).float().reshape([n]);
            let count = keep.clone().sum().clamp_min(1.0);
            (target_logp * keep).sum().neg() / count
        }
    }
}

/// `act(gate) ⊙ up` with `act` = `relu(z)²` or `silu(z) = z · sigmoid(z)`.
pub fn gated_activation<B: Backend, const D: usize>(
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
    activation: Activation,
) -> Tensor<B, D> {
    match activation {
        Activation::ReluSquared => relu(gate).square() * up,
        Activation::Silu => silu(gate) * up,
    }
}

/// The value of `b` with the gradient of `a` (straight-through), i.e. `a + stopgrad(b − a)`.
/// Written as `b + (a − stopgrad(a))` so the forward value is exactly `b`, not `b` ± 1 ulp.
fn straight_through<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    b.detach() + (a.clone() - a.detach())
}

/// The training projection `y = x̃ · W̃ᵀ`, `x: [tokens, in]`, `w: [out, in]`. The quantizers see
/// detached inputs, so autodiff records only the straight-through identity:
/// `∂L/∂x = ∂L/∂y · W̃` and `∂L/∂W = (∂L/∂y)ᵀ · x̃`.
pub fn ternary_linear<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>, quant: &TernaryQuant) -> Tensor<B, 2> {
    let w = match quant.weight_scale {
        Some(scale) => straight_through(w.clone(), fake_quantize_weight(w.detach(), scale, quant.weight_eps)),
        None => w,
    };
    let x = match quant.activation_bits {
        Some(_) => straight_through(x.clone(), fake_quantize_activation(x.detach())),
        None => x,
    };
    x.matmul(w.transpose())
}

/// `[rows, words]` codes (u32 bit patterns in the backend's ints) → values in {-1, 0, 1}
/// `[rows, cols]`: `((word >> 2j) & 3) - 1` for code `j` of each word.
pub fn unpack_codes<B: Backend>(codes: Tensor<B, 2, Int>, cols: usize) -> Tensor<B, 2> {
    let [rows, words] = codes.dims();
    let planes = (0..CODES_PER_WORD as i64)
        .map(|j| {
            codes.clone().bitwise_right_shift_scalar((2 * j).elem()).bitwise_and_scalar(3i64.elem()).unsqueeze_dim(2)
        })
        .collect();
    let values: Tensor<B, 3, Int> = Tensor::cat(planes, 2);
    values.reshape([rows, words * CODES_PER_WORD]).narrow(1, 0, cols).float() - 1.0
}

/// The packed product `[tokens, in] -> [tokens, out]`: unpack the codes, scale them
/// (`W̃ = γ · Wq`, as the training forward builds it), quantize the activations, multiply.
pub fn packed_matmul<B: Backend>(x: Tensor<B, 2>, w: PackedWeight<'_, B>) -> Tensor<B, 2> {
    let (codes, scales) = w.device_tensors(&x.device());
    let weight = scale_codes(unpack_codes(codes, w.packed.cols), scales, w.packed.weight_scale);
    let x = if w.int8_activations { fake_quantize_activation(x) } else { x };
    x.matmul(weight.transpose())
}

/// The per-step constants of AdamW (decoupled weight decay, bias-corrected moments), rounded to
/// f32 as Burn's `AdamW` rounds them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    /// `1 − β1^t`.
    pub correction_1: f32,
    /// `1 − β2^t`.
    pub correction_2: f32,
    /// The weight's multiplier `1 − lr · λ`, `None` without decay.
    pub keep: Option<f32>,
    pub lr: f32,
}

/// One AdamW step with Burn's tensor ops in Burn's order: `(parameter, moment_1, moment_2)`.
pub fn adamw_step<B: Backend, const D: usize>(
    s: &AdamWStep,
    tensor: Tensor<B, D>,
    grad: Tensor<B, D>,
    moments: Option<(Tensor<B, D>, Tensor<B, D>)>,
) -> (Tensor<B, D>, Tensor<B, D>, Tensor<B, D>) {
    let (m1, m2) = match moments {
        Some((m1, m2)) => (
            m1.mul_scalar(s.beta_1).add(grad.clone().mul_scalar(1.0 - s.beta_1)),
            m2.mul_scalar(s.beta_2).add(grad.square().mul_scalar(1.0 - s.beta_2)),
        ),
        None => (grad.clone().mul_scalar(1.0 - s.beta_1), grad.square().mul_scalar(1.0 - s.beta_2)),
    };
    let delta =
        m1.clone().div_scalar(s.correction_1).div(m2.clone().div_scalar(s.correction_2).sqrt().add_scalar(s.epsilon));
    let decayed = match s.keep {
        Some(keep) => tensor.mul_scalar(keep),
        None => tensor,
    };
    (decayed - delta.mul_scalar(s.lr), m1, m2)
}
