//! `TernaryLinear`: a projection with a trainable f32 latent weight that multiplies with its
//! ternary quantization, trained with the straight-through estimator (spec section 3).

use burn::config::Config;
use burn::module::{Ignored, Initializer, Module, Param};
use burn::tensor::{backend::Backend, Tensor};

use crate::config::WeightScale;
use crate::reshape::reshape;
use crate::ternary::quant::{fake_quantize_activation, fake_quantize_weight};

/// What a projection quantizes. `weight_scale: None` makes it a plain full-precision linear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TernaryQuant {
    /// Ternary weights with this scale granularity, or full precision.
    pub weight_scale: Option<WeightScale>,
    /// Per-token absmax activation quantization (only 8 bits exists), or none.
    pub activation_bits: Option<u32>,
}

impl TernaryQuant {
    /// A full-precision linear layer (`bitnet = false`).
    pub const FULL_PRECISION: Self = Self { weight_scale: None, activation_bits: None };

    /// BitNet b1.58: ternary weights and (optionally) int8 activations.
    pub fn bitnet(weight_scale: WeightScale, activation_bits: Option<u32>) -> Self {
        Self { weight_scale: Some(weight_scale), activation_bits }
    }
}

/// Configuration of a [`TernaryLinear`].
#[derive(Config, Debug)]
pub struct TernaryLinearConfig {
    /// Input features.
    pub d_input: usize,
    /// Output features.
    pub d_output: usize,
    /// Std of the normal initialisation of the latent weight (never zero).
    #[config(default = 0.02)]
    pub init_std: f64,
    /// Scale granularity of the ternary weight; `None` = full precision.
    #[config(default = "Some(WeightScale::PerTensor)")]
    pub weight_scale: Option<WeightScale>,
    /// Activation bits (8) or `None` for full-precision activations.
    #[config(default = "Some(8)")]
    pub activation_bits: Option<u32>,
}

impl TernaryLinearConfig {
    /// Builds the layer with a `N(0, init_std)` latent weight of shape `[d_output, d_input]`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> TernaryLinear<B> {
        let init = Initializer::Normal { mean: 0.0, std: self.init_std };
        TernaryLinear {
            weight: init.init_with([self.d_output, self.d_input], Some(self.d_input), Some(self.d_output), device),
            quant: Ignored(TernaryQuant { weight_scale: self.weight_scale, activation_bits: self.activation_bits }),
        }
    }
}

/// A bias-free linear layer `y = x̃ · W̃ᵀ` whose latent weight `W` is stored `[out, in]`.
#[derive(Module, Debug)]
pub struct TernaryLinear<B: Backend> {
    /// Latent full-precision weight `[out, in]`; the optimizer updates this.
    pub weight: Param<Tensor<B, 2>>,
    /// What the forward pass quantizes.
    pub quant: Ignored<TernaryQuant>,
}

impl<B: Backend> TernaryLinear<B> {
    /// `[.., in] -> [.., out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        ternary_linear(x, self.weight.val(), &self.quant)
    }
}

/// The value of `b` with the gradient of `a` (straight-through), i.e. `a + stopgrad(b − a)`.
/// Written as `b + (a − stopgrad(a))` so the forward value is exactly `b`, not `b` ± 1 ulp.
fn straight_through<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    b.detach() + (a.clone() - a.detach())
}

/// The ternary projection as a function of an explicit weight `[out, in]` (so a tied LM head
/// can apply it to the embedding matrix), `[.., in] -> [.., out]`. Runs the backend's own
/// implementation where it has one ([`crate::ternary::TernaryBackend::ternary_linear`]: fused
/// quantizers and GEMM on the CPU, one autodiff node with the straight-through backward when
/// training) and [`reference_ternary_linear`] otherwise; both compute the same thing.
pub fn ternary_linear<B: Backend, const D: usize>(x: Tensor<B, D>, w: Tensor<B, 2>, quant: &TernaryQuant) -> Tensor<B, D> {
    let mut dims = x.dims();
    let d_in = dims[D - 1];
    let tokens = dims.iter().product::<usize>() / d_in.max(1);
    dims[D - 1] = w.dims()[0];
    reshape(crate::ternary::backend::ternary_linear(reshape(x, [tokens, d_in]), w, quant), dims)
}

/// The reference in plain tensor ops: `x: [tokens, in]`, `w: [out, in]`. The quantizers see
/// detached inputs, so autodiff records only the straight-through identity:
/// `∂L/∂x = ∂L/∂y · W̃` and `∂L/∂W = (∂L/∂y)ᵀ · x̃`.
pub fn reference_ternary_linear<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>, quant: &TernaryQuant) -> Tensor<B, 2> {
    let w = match quant.weight_scale {
        Some(scale) => straight_through(w.clone(), fake_quantize_weight(w.detach(), scale)),
        None => w,
    };
    let x = match quant.activation_bits {
        Some(_) => straight_through(x.clone(), fake_quantize_activation(x.detach())),
        None => x,
    };
    x.matmul(w.transpose())
}
