//! `TernaryBackend`: the ternary ops a backend may implement natively. Every default body is the
//! plain tensor-op reference, so any backend works; the CPU (ndarray) backend overrides the packed
//! matmul with [`crate::ternary::cpu_kernel`] and the CubeCL backends (wgpu, CUDA) with
//! `crate::ternary::cube_kernel`.
//!
//! Rust has no specialisation, so the model, generic over `B: Backend`, reaches a backend's
//! implementation through [`packed_matmul`], [`packed_linear`] and [`dense_linear`]: they
//! compare `B` with the backends whose implementation differs from the defaults (a safe `Any`
//! downcast once the `TypeId`s match) and use the defaults for any other backend. Autodiff
//! backends always take the defaults, so training runs Burn's own ops and gradients.

use std::any::{Any, TypeId};
use std::sync::Arc;

use burn::tensor::{backend::Backend, Tensor};

#[cfg(feature = "ndarray")]
use crate::backend::Cpu;
#[cfg(feature = "ndarray")]
use crate::ternary::cpu_kernel::{dense_matmul_f32, packed_matmul_f32, packed_matmul_int8, CpuKernel};
use crate::ternary::pack::PackedTernary;
use crate::ternary::packed_linear::{reference_packed_matmul, PackedLinear};

/// Ternary ops with reference defaults; implement it to give a backend its own kernels.
pub trait TernaryBackend: Backend {
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

    /// `x · wᵀ` for a dense `w: [out, in]` (default: Burn's matmul). The full-precision and
    /// fake-quantized projections and the LM head go through it.
    fn dense_linear<const D: usize>(x: Tensor<Self, D>, w: Tensor<Self, 2>) -> Tensor<Self, D> {
        matmul_transposed(x, w)
    }
}

/// `x · wᵀ` with Burn's matmul.
fn matmul_transposed<B: Backend, const D: usize>(x: Tensor<B, D>, w: Tensor<B, 2>) -> Tensor<B, D> {
    x.matmul(w.transpose().unsqueeze())
}

/// Up to this many tokens the CPU uses its own dense GEMV instead of Burn's matmul.
#[cfg(feature = "ndarray")]
const CPU_GEMV_MAX_TOKENS: usize = 8;

#[cfg(feature = "ndarray")]
impl TernaryBackend for Cpu {
    fn packed_linear(packed: Arc<PackedTernary>, activation_bits: Option<u32>, _device: &Self::Device) -> PackedLinear<Self> {
        PackedLinear::host_only(packed, activation_bits)
    }

    fn packed_matmul(x: Tensor<Self, 2>, w: &PackedLinear<Self>) -> Tensor<Self, 2> {
        let [tokens, _] = x.dims();
        let device = x.device();
        let data = x.into_data();
        let x = data.as_slice::<f32>().expect("ndarray f32 tensor");
        let mut y = vec![0f32; tokens * w.packed.rows];
        match *w.activation_bits {
            Some(_) => packed_matmul_int8(CpuKernel::detect(), &w.packed, x, &mut y),
            None => packed_matmul_f32(&w.packed, x, &mut y),
        }
        Tensor::from_data(burn::tensor::TensorData::new(y, [tokens, w.packed.rows]), &device)
    }

    /// Small batches (generation) read the weight in place with [`dense_matmul_f32`]; larger
    /// ones use Burn's matmul.
    fn dense_linear<const D: usize>(x: Tensor<Self, D>, w: Tensor<Self, 2>) -> Tensor<Self, D> {
        let mut dims = x.dims();
        let tokens: usize = dims[..D - 1].iter().product();
        if tokens > CPU_GEMV_MAX_TOKENS {
            return matmul_transposed(x, w);
        }
        let [rows, cols] = w.dims();
        let burn::backend::ndarray::NdArrayTensor::F32(storage) = w.clone().into_primitive().tensor() else {
            return matmul_transposed(x, w);
        };
        let view = storage.view();
        let Some(weight) = view.as_slice() else {
            return matmul_transposed(x, w);
        };
        let device = x.device();
        let data = x.into_data();
        let mut y = vec![0f32; tokens * rows];
        dense_matmul_f32(weight, rows, cols, data.as_slice::<f32>().expect("ndarray f32 tensor"), &mut y);
        dims[D - 1] = rows;
        Tensor::from_data(burn::tensor::TensorData::new(y, dims), &device)
    }
}

/// Training backends take the defaults: Burn's ops, with the straight-through estimator written
/// in tensor ops ([`crate::ternary::ternary_linear`]).
impl<B: TernaryBackend, C: burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy> TernaryBackend for burn::backend::Autodiff<B, C> {}

/// The CubeCL backends (wgpu, CUDA) multiply with [`crate::ternary::cube_kernel`].
#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl<R: burn_cubecl::CubeRuntime, BT: burn_cubecl::BoolElement> TernaryBackend for burn_cubecl::CubeBackend<R, f32, i32, BT> {
    fn packed_matmul(x: Tensor<Self, 2>, w: &PackedLinear<Self>) -> Tensor<Self, 2> {
        crate::ternary::cube_kernel::packed_matmul(x, w)
    }
}

/// `burn::backend::Wgpu` without Burn's `fusion` feature (this crate's build).
#[cfg(feature = "wgpu")]
type WgpuCube = burn_cubecl::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>;
/// `burn::backend::Cuda` without Burn's `fusion` feature.
#[cfg(feature = "cuda")]
type CudaCube = burn_cubecl::CubeBackend<burn_cubecl::cubecl::cuda::CudaRuntime, f32, i32, u8>;

/// Whether `B` is `T`.
#[allow(dead_code)] // unused in a build without backend features
fn is<B: 'static, T: 'static>() -> bool {
    TypeId::of::<B>() == TypeId::of::<T>()
}

/// `value` as type `C`, which the caller has checked is its own type.
#[allow(dead_code)] // unused in a build without backend features
fn same<A: 'static, C: 'static>(value: A) -> C {
    let boxed: Box<dyn Any> = Box::new(value);
    *boxed.downcast::<C>().unwrap_or_else(|_| unreachable!("checked TypeId"))
}

#[allow(dead_code)] // unused in a build without backend features
fn same_ref<A: 'static, C: 'static>(value: &A) -> &C {
    (value as &dyn Any).downcast_ref::<C>().unwrap_or_else(|| unreachable!("checked TypeId"))
}

// The dispatchers below list the backends whose implementation differs from the defaults
// (a backend given its own kernel gets a line in each).

/// `x · W̃ᵀ` with `B`'s [`TernaryBackend::packed_matmul`], or the reference.
pub fn packed_matmul<B: Backend>(x: Tensor<B, 2>, w: &PackedLinear<B>) -> Tensor<B, 2> {
    #[cfg(feature = "ndarray")]
    if is::<B, Cpu>() {
        return same(Cpu::packed_matmul(same(x), same_ref(w)));
    }
    #[cfg(feature = "wgpu")]
    if is::<B, WgpuCube>() {
        return same(WgpuCube::packed_matmul(same(x), same_ref(w)));
    }
    #[cfg(feature = "cuda")]
    if is::<B, CudaCube>() {
        return same(CudaCube::packed_matmul(same(x), same_ref(w)));
    }
    reference_packed_matmul(x, w)
}

/// A packed layer in `B`'s form ([`TernaryBackend::packed_linear`]), or device tensors.
pub fn packed_linear<B: Backend>(packed: Arc<PackedTernary>, activation_bits: Option<u32>, device: &B::Device) -> PackedLinear<B> {
    #[cfg(feature = "ndarray")]
    if is::<B, Cpu>() {
        return same(Cpu::packed_linear(packed, activation_bits, same_ref(device)));
    }
    PackedLinear::with_device_tensors(packed, activation_bits, device)
}

/// `x · wᵀ` with `B`'s [`TernaryBackend::dense_linear`], or Burn's matmul.
pub fn dense_linear<B: Backend, const D: usize>(x: Tensor<B, D>, w: Tensor<B, 2>) -> Tensor<B, D> {
    #[cfg(feature = "ndarray")]
    if is::<B, Cpu>() {
        return same(Cpu::dense_linear(same::<_, Tensor<Cpu, D>>(x), same(w)));
    }
    matmul_transposed(x, w)
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
