//! The CubeCL backends' kernels (wgpu, CUDA): the quantizers and the packed product, on a bare
//! `CubeBackend` and under Burn's fusion ([`fusion`]). The other ops run as Burn's tensor ops,
//! which these backends already fuse and tune.

#[cfg(all(test, feature = "wgpu", feature = "cuda"))]
mod cuda_source;
mod fusion;
pub mod packed;
pub mod quant;

use burn::tensor::Tensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime};

use crate::backend::{PackedWeight, TritterBackend};
use crate::config::{WeightQuantEps, WeightScale};

impl<R: CubeRuntime, BT: BoolElement> TritterBackend for CubeBackend<R, f32, i32, BT> {
    const NATIVE_OPS: bool = true;

    fn packed_matmul(x: Tensor<Self, 2>, w: PackedWeight<'_, Self>) -> Tensor<Self, 2> {
        packed::packed_matmul(x, w)
    }

    fn int8_activation(x: Tensor<Self, 2>) -> Tensor<Self, 2> {
        quant::quantize_activation_into(x, None)
    }

    fn ternary_weight(w: Tensor<Self, 2>, scale: WeightScale, eps: WeightQuantEps) -> Tensor<Self, 2> {
        quant::quantize_weight_into(w, scale, eps, None)
    }
}
