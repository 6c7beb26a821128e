//! BitNet b1.58 ternary layers (spec section 3): quantizers, the trainable `TernaryLinear`, its
//! packed inference form `PackedLinear`, and the backend ops behind the packed form.

pub mod backend;
#[cfg(feature = "ndarray")]
pub mod cpu_gemm;
pub mod cpu_kernel;
pub mod cpu_quant;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub mod cube_kernel;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub mod cube_quant;
pub mod fused_linear;
#[cfg(all(test, feature = "wgpu", feature = "cuda"))]
mod cuda_source;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod fusion_ops;
pub mod linear;
pub mod pack;
pub mod packed_linear;
pub mod projection;
pub mod quant;

pub use backend::{has_native_ops, TernaryBackend};
pub use cpu_kernel::CpuKernel;
pub use linear::{reference_ternary_linear, ternary_linear, TernaryLinear, TernaryLinearConfig, TernaryQuant};
pub use pack::{PackedTernary, CODES_PER_WORD};
pub use packed_linear::{reference_packed_matmul, unpack_codes, PackedLinear};
pub use projection::Projection;
pub use quant::{
    absmean_scales, fake_quantize_activation, fake_quantize_weight, quantize_activation_int8,
    quantize_weight_absmean, scale_codes, ACTIVATION_EPS, WEIGHT_EPS,
};
