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

// Rust has no specialisation: code generic over `B: Backend` reaches a concrete backend's own
// implementation by comparing `TypeId`s and moving values across with a checked `Any` downcast.

/// Whether `B` is `T`.
#[allow(dead_code)] // unused in a build without backend features
pub(crate) fn is<B: 'static, T: 'static>() -> bool {
    std::any::TypeId::of::<B>() == std::any::TypeId::of::<T>()
}

/// `value` as type `C`, which the caller has checked is its own type.
#[allow(dead_code)]
pub(crate) fn same<A: 'static, C: 'static>(value: A) -> C {
    let boxed: Box<dyn std::any::Any> = Box::new(value);
    *boxed.downcast::<C>().unwrap_or_else(|_| unreachable!("checked TypeId"))
}

/// `value` as a reference to type `C`, which the caller has checked is its own type.
#[allow(dead_code)]
pub(crate) fn same_ref<A: 'static, C: 'static>(value: &A) -> &C {
    (value as &dyn std::any::Any).downcast_ref::<C>().unwrap_or_else(|| unreachable!("checked TypeId"))
}

/// A backend's float primitive as a tensor.
pub(crate) fn float<B: burn::tensor::backend::Backend, const D: usize>(primitive: burn::tensor::ops::FloatTensor<B>) -> burn::tensor::Tensor<B, D> {
    burn::tensor::Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(primitive))
}

/// Returns `$plain` when `$b` is the CPU backend and `$autodiff` (written for the checkpoint
/// strategy type `$c`) when it is the CPU backend under `Autodiff`, with or without gradient
/// checkpointing: the dispatch of the CPU's fused model ops.
macro_rules! for_cpu_backends {
    ($b:ty, plain: $plain:expr, autodiff: |$c:ident| $autodiff:expr) => {
        #[cfg(feature = "ndarray")]
        {
            use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, NoCheckpointing};
            if $crate::backend::is::<$b, $crate::backend::Cpu>() {
                return $plain;
            }
            {
                type $c = NoCheckpointing;
                if $crate::backend::is::<$b, burn::backend::Autodiff<$crate::backend::Cpu, $c>>() {
                    return $autodiff;
                }
            }
            {
                type $c = BalancedCheckpointing;
                if $crate::backend::is::<$b, burn::backend::Autodiff<$crate::backend::Cpu, $c>>() {
                    return $autodiff;
                }
            }
        }
    };
}
pub(crate) use for_cpu_backends;
