//! `PackedLinear`: the inference form of a ternary projection (spec section 3), 2-bit codes and
//! scales, multiplied by the backend's packed kernel ([`crate::ternary::TernaryBackend`]).

use std::sync::Arc;

use burn::module::{Ignored, Module};
use burn::tensor::{backend::Backend, ElementConversion, Int, Tensor, TensorData};

use crate::ternary::backend;
use crate::ternary::pack::PackedTernary;
use crate::ternary::quant::{fake_quantize_activation, scale_codes};

/// A bias-free `y = x̃ · (γ · Wq)ᵀ` whose weight exists only as packed codes.
#[derive(Module, Debug)]
pub struct PackedLinear<B: Backend> {
    /// The codes as the backend's int tensor `[out, words]` (u32 bit patterns), for backends
    /// that multiply on the device; `None` where the kernel reads [`Self::packed`] on the host.
    pub codes: Option<Tensor<B, 2, Int>>,
    /// γ on the device, shaped as [`crate::ternary::absmean_scales`] says; `None` as `codes`.
    pub scales: Option<Tensor<B, 2>>,
    /// The codes and scales on the host: what checkpoints and exports read.
    pub packed: Ignored<Arc<PackedTernary>>,
    /// Per-token int8 activations (8) or full-precision activations (`None`).
    pub activation_bits: Ignored<Option<u32>>,
}

impl<B: Backend> PackedLinear<B> {
    /// The layer in the form the backend's kernel reads.
    pub fn new(packed: PackedTernary, activation_bits: Option<u32>, device: &B::Device) -> Self {
        backend::packed_linear(Arc::new(packed), activation_bits, device)
    }

    /// The form every backend can multiply with plain tensor ops: codes and scales on `device`.
    pub fn with_device_tensors(packed: Arc<PackedTernary>, activation_bits: Option<u32>, device: &B::Device) -> Self {
        let words: Vec<i64> = packed.codes.iter().map(|&w| w as i32 as i64).collect(); // bit pattern in i32
        let shape = [packed.rows, PackedTernary::words_per_row(packed.cols)];
        let codes = Tensor::from_data(TensorData::new(words, shape), device);
        let scales = Tensor::from_data(TensorData::new(packed.scales.clone(), packed.scale_shape()), device);
        Self { codes: Some(codes), scales: Some(scales), packed: Ignored(packed), activation_bits: Ignored(activation_bits) }
    }

    /// The form that keeps only the host copy (for host kernels).
    pub fn host_only(packed: Arc<PackedTernary>, activation_bits: Option<u32>) -> Self {
        Self { codes: None, scales: None, packed: Ignored(packed), activation_bits: Ignored(activation_bits) }
    }

    /// The codes and scales on `device`: the layer's own, or uploaded from the host copy for a
    /// layer built in host-only form.
    pub fn device_tensors(&self, device: &B::Device) -> (Tensor<B, 2, Int>, Tensor<B, 2>) {
        match (&self.codes, &self.scales) {
            (Some(codes), Some(scales)) => (codes.clone(), scales.clone()),
            _ => {
                let uploaded = Self::with_device_tensors(self.packed.0.clone(), *self.activation_bits, device);
                (uploaded.codes.expect("uploaded"), uploaded.scales.expect("uploaded"))
            }
        }
    }

    /// `[.., in] -> [.., out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let mut dims = x.dims();
        let tokens = dims[..D - 1].iter().product();
        let y = backend::packed_matmul(x.reshape([tokens, self.packed.cols]), self);
        dims[D - 1] = self.packed.rows;
        y.reshape(dims)
    }
}

/// `[rows, words]` codes (u32 bit patterns in the backend's ints) → values in {-1, 0, 1}
/// `[rows, cols]`, with int tensor ops: `((word >> 2j) & 3) - 1` for code `j` of each word.
pub fn unpack_codes<B: Backend>(codes: Tensor<B, 2, Int>, cols: usize) -> Tensor<B, 2> {
    let [rows, words] = codes.dims();
    let planes = (0..crate::ternary::CODES_PER_WORD as i64)
        .map(|j| codes.clone().bitwise_right_shift_scalar((2 * j).elem()).bitwise_and_scalar(3i64.elem()).unsqueeze_dim(2))
        .collect();
    let values: Tensor<B, 3, Int> = Tensor::cat(planes, 2);
    values.reshape([rows, words * crate::ternary::CODES_PER_WORD]).narrow(1, 0, cols).float() - 1.0
}

/// The tensor-op reference of the packed matmul, `[tokens, in] -> [tokens, out]`: unpack the
/// codes, scale them (`W̃ = γ · Wq`, as the training forward builds it), quantize the activations.
/// It materialises `W̃`; backends with a kernel avoid that.
pub fn reference_packed_matmul<B: Backend>(x: Tensor<B, 2>, w: &PackedLinear<B>) -> Tensor<B, 2> {
    let (codes, scales) = w.device_tensors(&x.device());
    let weight = scale_codes(unpack_codes(codes, w.packed.cols), scales, w.packed.weight_scale);
    let x = if w.activation_bits.is_some() { fake_quantize_activation(x) } else { x };
    x.matmul(weight.transpose())
}
