//! Backend type aliases for the cargo features (`ndarray` default, `wgpu`, `cuda`), and the
//! reference backend.

/// Burn's autodiff decorator, for training.
pub use burn::backend::Autodiff;

/// The CPU backend (ndarray, f32), with Tritter's CPU kernels ([`crate::backend::cpu`]).
#[cfg(feature = "ndarray")]
pub type Cpu = burn::backend::NdArray<f32>;

/// The CPU backend with `i32` ints, which runs every op as its tensor-op reference (the trait's
/// defaults): a reference to check the kernels against, and what a backend without kernels of
/// its own computes.
#[cfg(feature = "ndarray")]
pub type Reference = burn::backend::NdArray<f32, i32>;

#[cfg(feature = "ndarray")]
impl super::TritterBackend for Reference {}

/// The wgpu backend (Vulkan, Metal, DX12), f32, with Burn's fusion.
#[cfg(feature = "wgpu")]
pub type Wgpu = burn::backend::Wgpu<f32, i32>;

/// The CUDA backend, f32, with Burn's fusion.
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda<f32, i32>;

/// A backend's float primitive as a tensor.
pub(crate) fn float<B: burn::tensor::backend::Backend, const D: usize>(
    primitive: burn::tensor::ops::FloatTensor<B>,
) -> burn::tensor::Tensor<B, D> {
    burn::tensor::Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(primitive))
}
