//! `TernaryLinear`: a projection with a trainable f32 latent weight that multiplies with its
//! ternary quantization, trained with the straight-through estimator (spec section 3).

use burn::config::Config;
use burn::module::{Ignored, Initializer, Module, Param};
use burn::tensor::{backend::Backend, Tensor};

use crate::backend::TritterBackend;
use crate::config::{WeightQuantEps, WeightScale};
use crate::quant::TernaryQuant;

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
    /// How ε enters the weight quantizer.
    #[config(default = "WeightQuantEps::Add")]
    pub weight_quant_eps: WeightQuantEps,
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
            quant: Ignored(TernaryQuant {
                weight_scale: self.weight_scale,
                weight_eps: self.weight_quant_eps,
                activation_bits: self.activation_bits,
            }),
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

impl<B: TritterBackend> TernaryLinear<B> {
    /// `[.., in] -> [.., out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        ternary_linear(x, self.weight.val(), &self.quant)
    }
}

/// The ternary projection as a function of an explicit weight `[out, in]` (so a tied LM head
/// can apply it to the embedding matrix), `[.., in] -> [.., out]`, with the backend's
/// [`TritterBackend::ternary_linear`] (fused quantizers and GEMM on the CPU, one autodiff node
/// with the straight-through backward when training).
pub fn ternary_linear<B: TritterBackend, const D: usize>(
    x: Tensor<B, D>,
    w: Tensor<B, 2>,
    quant: &TernaryQuant,
) -> Tensor<B, D> {
    let mut dims = x.dims();
    let d_in = dims[D - 1];
    let tokens = dims.iter().product::<usize>() / d_in.max(1);
    dims[D - 1] = w.dims()[0];
    B::reshape(B::ternary_linear(B::reshape(x, [tokens, d_in]), w, quant), dims)
}
