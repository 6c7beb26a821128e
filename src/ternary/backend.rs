//! `TernaryBackend`: the ternary ops a backend may implement natively. Every default body is the
//! plain tensor-op reference, so any backend works; the CPU (ndarray) backend overrides the packed
//! matmul with [`crate::ternary::cpu_kernel`].
//!
//! Rust has no specialisation, so the model, generic over `B: Backend`, reaches a backend's
//! implementation through [`packed_matmul`] / [`packed_linear`]: they compare `B` with the
//! backends this crate implements the trait for (a safe `Any` downcast) and use the reference
//! for any other backend.

use std::any::Any;
use std::sync::Arc;

use burn::tensor::{backend::Backend, Tensor, TensorData};

use crate::ternary::cpu_kernel::{packed_matmul_f32, packed_matmul_int8, CpuKernel};
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
}

#[cfg(feature = "ndarray")]
impl TernaryBackend for crate::backend::Cpu {
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
        Tensor::from_data(TensorData::new(y, [tokens, w.packed.rows]), &device)
    }
}

#[cfg(feature = "wgpu")]
impl TernaryBackend for crate::backend::Wgpu {}

#[cfg(feature = "cuda")]
impl TernaryBackend for crate::backend::Cuda {}

/// `x · W̃ᵀ` on `B`'s own implementation of [`TernaryBackend::packed_matmul`], or the reference.
pub fn packed_matmul<B: Backend>(x: Tensor<B, 2>, w: &PackedLinear<B>) -> Tensor<B, 2> {
    #[cfg(feature = "ndarray")]
    let x = match on_backend::<B, crate::backend::Cpu>(x, w) {
        Ok(y) => return y,
        Err(x) => x,
    };
    #[cfg(feature = "wgpu")]
    let x = match on_backend::<B, crate::backend::Wgpu>(x, w) {
        Ok(y) => return y,
        Err(x) => x,
    };
    #[cfg(feature = "cuda")]
    let x = match on_backend::<B, crate::backend::Cuda>(x, w) {
        Ok(y) => return y,
        Err(x) => x,
    };
    reference_packed_matmul(x, w)
}

/// A packed layer in `B`'s form ([`TernaryBackend::packed_linear`]), or device tensors.
pub fn packed_linear<B: Backend>(packed: Arc<PackedTernary>, activation_bits: Option<u32>, device: &B::Device) -> PackedLinear<B> {
    #[cfg(feature = "ndarray")]
    if let Some(device) = cast_ref::<_, <crate::backend::Cpu as Backend>::Device>(device) {
        if let Ok(layer) = cast(crate::backend::Cpu::packed_linear(packed.clone(), activation_bits, device)) {
            return layer;
        }
    }
    PackedLinear::with_device_tensors(packed, activation_bits, device)
}

/// Runs `T::packed_matmul` when `B` is `T`; gives `x` back otherwise.
fn on_backend<B: Backend, T: TernaryBackend>(x: Tensor<B, 2>, w: &PackedLinear<B>) -> Result<Tensor<B, 2>, Tensor<B, 2>> {
    let Some(w) = cast_ref::<_, PackedLinear<T>>(w) else { return Err(x) };
    let x: Tensor<T, 2> = cast(x).unwrap_or_else(|_| unreachable!("B is T"));
    Ok(cast(T::packed_matmul(x, w)).unwrap_or_else(|_| unreachable!("B is T")))
}

fn cast<A: 'static, C: 'static>(value: A) -> Result<C, A> {
    let boxed: Box<dyn Any> = Box::new(value);
    boxed.downcast::<C>().map(|c| *c).map_err(|b| *b.downcast::<A>().unwrap_or_else(|_| unreachable!()))
}

fn cast_ref<A: 'static, C: 'static>(value: &A) -> Option<&C> {
    (value as &dyn Any).downcast_ref::<C>()
}
