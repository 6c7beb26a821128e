//! `PackedWeight`: a packed ternary weight as a backend's packed product reads it.

use std::sync::Arc;

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::quant::PackedTernary;

/// The host codes and scales, their device copies where the layer keeps them, and whether the
/// activations are int8 fake-quantized first.
#[derive(Debug, Clone, Copy)]
pub struct PackedWeight<'a, B: Backend> {
    pub packed: &'a Arc<PackedTernary>,
    /// `[out, words]` codes (u32 bit patterns in the backend's ints), if on the device.
    pub codes: Option<&'a Tensor<B, 2, Int>>,
    /// γ, shaped as [`PackedTernary::scale_shape`] says, if on the device.
    pub scales: Option<&'a Tensor<B, 2>>,
    pub int8_activations: bool,
}

impl<B: Backend> PackedWeight<'_, B> {
    /// The codes and scales on `device`: the layer's own, or uploaded from the host copy.
    pub fn device_tensors(&self, device: &B::Device) -> (Tensor<B, 2, Int>, Tensor<B, 2>) {
        match (self.codes, self.scales) {
            (Some(codes), Some(scales)) => (codes.clone(), scales.clone()),
            _ => upload(self.packed, device),
        }
    }
}

/// The codes (bit patterns in i32) and scales of `packed` as tensors on `device`.
pub fn upload<B: Backend>(packed: &PackedTernary, device: &B::Device) -> (Tensor<B, 2, Int>, Tensor<B, 2>) {
    let words: Vec<i64> = packed.codes.iter().map(|&w| w as i32 as i64).collect();
    let shape = [packed.rows, PackedTernary::words_per_row(packed.cols)];
    let codes = Tensor::from_data(TensorData::new(words, shape), device);
    let scales = Tensor::from_data(TensorData::new(packed.scales.clone(), packed.scale_shape()), device);
    (codes, scales)
}
