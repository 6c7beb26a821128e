//! Backend type aliases for the cargo features (`ndarray` default, `wgpu`, `cuda`).

/// Burn's autodiff decorator, for training.
pub use burn::backend::Autodiff;

/// The CPU backend (ndarray, f32).
#[cfg(feature = "ndarray")]
pub type Cpu = burn::backend::NdArray<f32>;

/// The wgpu backend (Vulkan, Metal, DX12), f32.
#[cfg(feature = "wgpu")]
pub type Wgpu = burn::backend::Wgpu<f32, i32>;

/// The CUDA backend, f32.
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda<f32, i32>;
