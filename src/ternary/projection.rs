//! `Projection`: a ternary projection in its training form (latent f32 weight) or its inference
//! form (packed codes). The model's blocks hold this, so one forward serves both.

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use crate::error::Result;
use crate::quant::PackedTernary;
use crate::ternary::linear::TernaryLinear;
use crate::ternary::packed_linear::PackedLinear;

/// One projection (q, k, v, o, gate, up, down or the LM head). Checkpoint paths skip the variant
/// name, so `...q_proj.weight` is the latent weight whatever the enum.
#[derive(Module, Debug)]
pub enum Projection<B: Backend> {
    /// Trainable: the latent weight, fake-quantized in each forward.
    Latent(TernaryLinear<B>),
    /// Inference: 2-bit codes and scales.
    Packed(PackedLinear<B>),
}

impl<B: crate::backend::TritterBackend> Projection<B> {
    /// `[.., in] -> [.., out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Latent(linear) => linear.forward(x),
            Self::Packed(linear) => linear.forward(x),
        }
    }

    /// The trainable layer, if this is one.
    pub fn latent(&self) -> Option<&TernaryLinear<B>> {
        match self {
            Self::Latent(linear) => Some(linear),
            Self::Packed(_) => None,
        }
    }

    /// The trainable layer, mutably, if this is one.
    pub fn latent_mut(&mut self) -> Option<&mut TernaryLinear<B>> {
        match self {
            Self::Latent(linear) => Some(linear),
            Self::Packed(_) => None,
        }
    }

    /// The packed form: quantizes a ternary latent weight (absmean, as the training forward does)
    /// and packs it. Full-precision and already packed projections are returned as they are.
    pub fn into_packed(self) -> Result<Self> {
        match self {
            Self::Latent(linear) => match linear.quant.weight_scale {
                Some(scale) => {
                    let device = linear.weight.device();
                    let packed = PackedTernary::quantize(linear.weight.val(), scale, linear.quant.weight_eps)?;
                    Ok(Self::Packed(PackedLinear::new(packed, linear.quant.activation_bits, &device)))
                }
                None => Ok(Self::Latent(linear)),
            },
            packed => Ok(packed),
        }
    }
}

impl<B: Backend> From<TernaryLinear<B>> for Projection<B> {
    fn from(linear: TernaryLinear<B>) -> Self {
        Self::Latent(linear)
    }
}
