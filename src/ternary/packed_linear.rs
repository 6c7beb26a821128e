//! `PackedLinear`: the inference form of a ternary projection (spec section 3), 2-bit codes and
//! scales, multiplied by the backend's packed kernel ([`TritterBackend::packed_matmul`]).

use std::sync::Arc;

use burn::module::{Ignored, Module};
use burn::tensor::{backend::Backend, Int, Tensor};

use crate::backend::{PackedWeight, TritterBackend};
use crate::quant::PackedTernary;

/// A bias-free `y = x̃ · (γ · Wq)ᵀ` whose weight exists only as packed codes.
#[derive(Module, Debug)]
pub struct PackedLinear<B: Backend> {
    /// The codes as the backend's int tensor `[out, words]` (u32 bit patterns), for backends
    /// that multiply on the device; `None` where the kernel reads [`Self::packed`] on the host.
    pub codes: Option<Tensor<B, 2, Int>>,
    /// γ on the device, shaped as [`crate::quant::absmean_scales`] says; `None` as `codes`.
    pub scales: Option<Tensor<B, 2>>,
    /// The codes and scales on the host: what checkpoints and exports read.
    pub packed: Ignored<Arc<PackedTernary>>,
    /// Per-token int8 activations (8) or full-precision activations (`None`).
    pub activation_bits: Ignored<Option<u32>>,
}

impl<B: TritterBackend> PackedLinear<B> {
    /// The layer in the form the backend's kernel reads: host codes only where the kernel reads
    /// them there ([`TritterBackend::PACKED_ON_HOST`]), device tensors too otherwise.
    pub fn new(packed: PackedTernary, activation_bits: Option<u32>, device: &B::Device) -> Self {
        let packed = Arc::new(packed);
        if B::PACKED_ON_HOST {
            Self::host_only(packed, activation_bits)
        } else {
            Self::with_device_tensors(packed, activation_bits, device)
        }
    }

    /// `[.., in] -> [.., out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let mut dims = x.dims();
        let tokens = dims[..D - 1].iter().product();
        let y = B::packed_matmul(x.reshape([tokens, self.packed.cols]), self.weight());
        dims[D - 1] = self.packed.rows;
        y.reshape(dims)
    }
}

impl<B: Backend> PackedLinear<B> {
    /// The form every backend can multiply with plain tensor ops: codes and scales on `device`.
    pub fn with_device_tensors(packed: Arc<PackedTernary>, activation_bits: Option<u32>, device: &B::Device) -> Self {
        let (codes, scales) = crate::backend::upload_packed(&packed, device);
        Self {
            codes: Some(codes),
            scales: Some(scales),
            packed: Ignored(packed),
            activation_bits: Ignored(activation_bits),
        }
    }

    /// The form that keeps only the host copy (for host kernels).
    pub fn host_only(packed: Arc<PackedTernary>, activation_bits: Option<u32>) -> Self {
        Self { codes: None, scales: None, packed: Ignored(packed), activation_bits: Ignored(activation_bits) }
    }

    /// The weight as a backend op reads it.
    pub fn weight(&self) -> PackedWeight<'_, B> {
        PackedWeight {
            packed: &self.packed,
            codes: self.codes.as_ref(),
            scales: self.scales.as_ref(),
            int8_activations: self.activation_bits.is_some(),
        }
    }
}
