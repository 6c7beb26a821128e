//! `TernaryBackend`: the ternary ops a backend may implement natively. Every default body is the
//! plain tensor-op reference, so any backend works. The CPU (ndarray) backend brings its own
//! quantizers ([`crate::ternary::cpu_quant`]), GEMM ([`crate::ternary::cpu_gemm`]) and packed
//! kernel ([`crate::ternary::cpu_kernel`]); the CubeCL backends (wgpu, CUDA) their packed kernel
//! (`crate::ternary::cube_kernel`), also under Burn's fusion (`crate::ternary::fusion_ops`);
//! `Autodiff<B>` the fused training projection whose backward is the straight-through estimator
//! ([`crate::ternary::fused_linear`]).
//!
//! Rust has no specialisation, so the model, generic over `B: Backend`, reaches a backend's
//! implementation through [`ternary_linear`], [`packed_matmul`] and [`packed_linear`]: they
//! compare `B` with the backends listed in `for_listed_backends!` (a safe `Any` downcast once the
//! `TypeId`s match) and use the tensor-op reference for any other backend.

use std::sync::Arc;

#[allow(unused_imports)] // unused in a build without backend features
use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::tensor::{backend::Backend, Tensor};

#[allow(unused_imports)] // unused in a build without backend features
use crate::backend::{is, same, same_ref};
#[cfg(feature = "ndarray")]
use crate::backend::Cpu;
use crate::config::WeightScale;
#[cfg(feature = "ndarray")]
use crate::ternary::{cpu_gemm, cpu_kernel::{packed_matmul_f32, packed_matmul_int8, CpuKernel}, cpu_quant};
use crate::ternary::linear::{reference_ternary_linear, TernaryQuant};
use crate::ternary::pack::PackedTernary;
use crate::ternary::packed_linear::{reference_packed_matmul, PackedLinear};
use crate::ternary::quant::{fake_quantize_activation, fake_quantize_weight};

/// Ternary ops with reference defaults; implement it to give a backend its own kernels.
pub trait TernaryBackend: Backend {
    /// Whether the training projection's backward quantizes its inputs again (keeping only the
    /// unquantized ones, which cost no extra memory) instead of keeping quantized copies from the
    /// forward: worth it where the quantizers are one cheap pass.
    const REQUANTIZE_IN_BACKWARD: bool = false;

    /// Builds a packed layer in the form [`Self::packed_matmul`] reads (default: codes and
    /// scales as device tensors).
    fn packed_linear(packed: Arc<PackedTernary>, activation_bits: Option<u32>, device: &Self::Device) -> PackedLinear<Self> {
        PackedLinear::with_device_tensors(packed, activation_bits, device)
    }

    /// `x: [tokens, in] -> [tokens, out]` with the packed weight (default: the tensor-op
    /// reference, which materialises `γ · Wq`).
    fn packed_matmul(x: Tensor<Self, 2>, w: &PackedLinear<Self>) -> Tensor<Self, 2> {
        reference_packed_matmul(x, w)
    }

    /// The training projection `y = x̃ · W̃ᵀ` for `x: [tokens, in]`, `w: [out, in]`. Default:
    /// the quantizers then [`Self::matmul_nt`], which is the whole op on a backend without
    /// autodiff; `Autodiff<B>` records it as one node with the straight-through backward.
    fn ternary_linear(x: Tensor<Self, 2>, w: Tensor<Self, 2>, quant: &TernaryQuant) -> Tensor<Self, 2> {
        Self::matmul_nt(Self::quantize_activation(x, quant), Self::quantize_weight(w, quant))
    }

    /// `x̃`: `x: [tokens, in]` quantized per token as `quant` says ([`Self::int8_activation`]),
    /// or as is. Backends implement the quantizer, not this.
    fn quantize_activation(x: Tensor<Self, 2>, quant: &TernaryQuant) -> Tensor<Self, 2> {
        if quant.activation_bits.is_some() { Self::int8_activation(x) } else { x }
    }

    /// `W̃`: `w: [out, in]` quantized as `quant` says ([`Self::ternary_weight`]), or as is.
    /// Backends implement the quantizer, not this.
    fn quantize_weight(w: Tensor<Self, 2>, quant: &TernaryQuant) -> Tensor<Self, 2> {
        match quant.weight_scale {
            Some(scale) => Self::ternary_weight(w, scale),
            None => w,
        }
    }

    /// The per-token int8 fake quantization of `x: [tokens, in]` (default: the tensor-op
    /// quantizer).
    fn int8_activation(x: Tensor<Self, 2>) -> Tensor<Self, 2> {
        fake_quantize_activation(x)
    }

    /// The absmean ternary fake quantization of `w: [out, in]` with `scale`'s groups (default:
    /// the tensor-op quantizer).
    fn ternary_weight(w: Tensor<Self, 2>, scale: WeightScale) -> Tensor<Self, 2> {
        fake_quantize_weight(w, scale)
    }

    /// `a · bᵀ` (the forward product; default: Burn's matmul).
    fn matmul_nt(a: Tensor<Self, 2>, b: Tensor<Self, 2>) -> Tensor<Self, 2> {
        a.matmul(b.transpose())
    }

    /// `a · b` (the input gradient `∂L/∂y · W̃`; default: Burn's matmul).
    fn matmul_nn(a: Tensor<Self, 2>, b: Tensor<Self, 2>) -> Tensor<Self, 2> {
        a.matmul(b)
    }

    /// `aᵀ · b` (the weight gradient `(∂L/∂y)ᵀ · x̃`; default: Burn's matmul).
    fn matmul_tn(a: Tensor<Self, 2>, b: Tensor<Self, 2>) -> Tensor<Self, 2> {
        a.transpose().matmul(b)
    }
}

#[cfg(feature = "ndarray")]
impl TernaryBackend for Cpu {
    const REQUANTIZE_IN_BACKWARD: bool = true;

    fn packed_linear(packed: Arc<PackedTernary>, activation_bits: Option<u32>, _device: &Self::Device) -> PackedLinear<Self> {
        PackedLinear::host_only(packed, activation_bits)
    }

    fn packed_matmul(x: Tensor<Self, 2>, w: &PackedLinear<Self>) -> Tensor<Self, 2> {
        let tokens = x.dims()[0];
        let mut y = vec![0f32; tokens * w.packed.rows];
        cpu_gemm::with_rows(x, |x| match *w.activation_bits {
            Some(_) => packed_matmul_int8(CpuKernel::detect(), &w.packed, x, &mut y),
            None => packed_matmul_f32(&w.packed, x, &mut y),
        });
        cpu_gemm::cpu_tensor(y, tokens, w.packed.rows)
    }

    fn int8_activation(x: Tensor<Self, 2>) -> Tensor<Self, 2> {
        let [tokens, cols] = x.dims();
        cpu_gemm::cpu_tensor(cpu_gemm::with_rows(x, |x| cpu_quant::fake_quantize_activation(x, cols)), tokens, cols)
    }

    fn ternary_weight(w: Tensor<Self, 2>, scale: WeightScale) -> Tensor<Self, 2> {
        let [rows, cols] = w.dims();
        cpu_gemm::cpu_tensor(cpu_gemm::with_rows(w, |w| cpu_quant::fake_quantize_weight(w, rows, cols, scale)), rows, cols)
    }

    fn matmul_nt(a: Tensor<Self, 2>, b: Tensor<Self, 2>) -> Tensor<Self, 2> {
        cpu_gemm::matmul_nt(a, b)
    }

    fn matmul_nn(a: Tensor<Self, 2>, b: Tensor<Self, 2>) -> Tensor<Self, 2> {
        cpu_gemm::matmul_nn(a, b)
    }

    fn matmul_tn(a: Tensor<Self, 2>, b: Tensor<Self, 2>) -> Tensor<Self, 2> {
        cpu_gemm::matmul_tn(a, b)
    }
}

/// The CubeCL backends (wgpu, CUDA) quantize with [`crate::ternary::cube_quant`] and multiply
/// packed weights with [`crate::ternary::cube_kernel`].
#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl<R: burn_cubecl::CubeRuntime, BT: burn_cubecl::BoolElement> TernaryBackend for burn_cubecl::CubeBackend<R, f32, i32, BT> {
    fn packed_matmul(x: Tensor<Self, 2>, w: &PackedLinear<Self>) -> Tensor<Self, 2> {
        crate::ternary::cube_kernel::packed_matmul(x, w)
    }

    fn int8_activation(x: Tensor<Self, 2>) -> Tensor<Self, 2> {
        crate::ternary::cube_quant::quantize_activation_into(x, None)
    }

    fn ternary_weight(w: Tensor<Self, 2>, scale: WeightScale) -> Tensor<Self, 2> {
        crate::ternary::cube_quant::quantize_weight_into(w, scale, None)
    }
}

/// The wgpu backend without Burn's fusion.
#[cfg(feature = "wgpu")]
type WgpuCube = burn_cubecl::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>;
/// The CUDA backend without Burn's fusion.
#[cfg(feature = "cuda")]
type CudaCube = burn_cubecl::CubeBackend<burn_cubecl::cubecl::cuda::CudaRuntime, f32, i32, u8>;
/// `burn::backend::Wgpu` (Burn's fusion is on in this crate's wgpu build).
#[cfg(feature = "wgpu")]
type WgpuFusion = burn_fusion::Fusion<WgpuCube>;
/// `burn::backend::Cuda` (likewise).
#[cfg(feature = "cuda")]
type CudaFusion = burn_fusion::Fusion<CudaCube>;

/// Returns `$body` (written for the backend type `$t`) when `$b` is one of the backends with
/// their own [`TernaryBackend`] implementation: the CPU, wgpu and CUDA backends (the last two with
/// and without Burn's fusion) and their `Autodiff` (training) forms, with and without gradient
/// checkpointing.
macro_rules! for_listed_backends {
    ($b:ty, |$t:ident| $body:expr) => {
        for_listed_backends!(@each $b, $t, $body,
            [feature = "ndarray"] Cpu,
            [feature = "ndarray"] burn::backend::Autodiff<Cpu>,
            [feature = "ndarray"] burn::backend::Autodiff<Cpu, BalancedCheckpointing>,
            [feature = "wgpu"] WgpuCube,
            [feature = "wgpu"] burn::backend::Autodiff<WgpuCube>,
            [feature = "wgpu"] burn::backend::Autodiff<WgpuCube, BalancedCheckpointing>,
            [feature = "cuda"] CudaCube,
            [feature = "cuda"] burn::backend::Autodiff<CudaCube>,
            [feature = "cuda"] burn::backend::Autodiff<CudaCube, BalancedCheckpointing>,
            [feature = "wgpu"] WgpuFusion,
            [feature = "wgpu"] burn::backend::Autodiff<WgpuFusion>,
            [feature = "wgpu"] burn::backend::Autodiff<WgpuFusion, BalancedCheckpointing>,
            [feature = "cuda"] CudaFusion,
            [feature = "cuda"] burn::backend::Autodiff<CudaFusion>,
            [feature = "cuda"] burn::backend::Autodiff<CudaFusion, BalancedCheckpointing>
        )
    };
    (@each $b:ty, $t:ident, $body:expr, $([$($cfg:tt)*] $listed:ty),*) => {
        $(
            #[cfg($($cfg)*)]
            {
                type $t = $listed;
                if is::<$b, $t>() {
                    return $body;
                }
            }
        )*
    };
}

/// Whether `B` runs its own [`TernaryBackend`] ops (the CPU, wgpu and CUDA backends of this
/// build and their `Autodiff` forms) rather than the tensor-op references.
pub fn has_native_ops<B: Backend>() -> bool {
    for_listed_backends!(B, |T| true);
    false
}

/// `y = x̃ · W̃ᵀ` on `[tokens, in]` with `B`'s [`TernaryBackend::ternary_linear`], or the
/// tensor-op reference.
pub fn ternary_linear<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>, quant: &TernaryQuant) -> Tensor<B, 2> {
    for_listed_backends!(B, |T| same(T::ternary_linear(same(x), same(w), quant)));
    reference_ternary_linear(x, w, quant)
}

/// `x · W̃ᵀ` with `B`'s [`TernaryBackend::packed_matmul`], or the reference.
pub fn packed_matmul<B: Backend>(x: Tensor<B, 2>, w: &PackedLinear<B>) -> Tensor<B, 2> {
    for_listed_backends!(B, |T| same(T::packed_matmul(same(x), same_ref(w))));
    reference_packed_matmul(x, w)
}

/// A packed layer in `B`'s form ([`TernaryBackend::packed_linear`]), or device tensors.
pub fn packed_linear<B: Backend>(packed: Arc<PackedTernary>, activation_bits: Option<u32>, device: &B::Device) -> PackedLinear<B> {
    for_listed_backends!(B, |T| same(T::packed_linear(packed, activation_bits, same_ref(device))));
    PackedLinear::with_device_tensors(packed, activation_bits, device)
}

/// Gives every float parameter of `module` its own array, now or when it is lazily initialized.
///
/// Burn 0.20's ndarray backend keeps tensors made from `TensorData` (random initialisation,
/// loaded weights) as borrowed bytes, and cloning those copies them, so every `param.val()`
/// would copy the whole weight (measured: generation on `small_100m` 7.6× slower). One multiply by
/// 1 (exact) turns them into shared arrays that clone for free. Other backends pay one pass.
/// Parameters that require gradients are left alone: training replaces them with the
/// optimizer's (owned) results after the first step anyway.
pub fn with_owned_params<B: Backend, M: burn::module::Module<B>>(module: M) -> M {
    module.map(&mut OwnedParams)
}

struct OwnedParams;

impl<B: Backend> burn::module::ModuleMapper<B> for OwnedParams {
    fn map_float<const D: usize>(&mut self, param: burn::module::Param<Tensor<B, D>>) -> burn::module::Param<Tensor<B, D>> {
        param.init_mapper(|tensor| if tensor.is_require_grad() { tensor } else { tensor.mul_scalar(1.0) })
    }
}
