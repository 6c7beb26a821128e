//! Parameters as shared arrays, so that reading one does not copy it.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{backend::Backend, Tensor};

/// Gives every float parameter of `module` its own array, now or when it is lazily initialized.
///
/// Burn 0.20's ndarray backend keeps tensors made from `TensorData` (random initialisation,
/// loaded weights) as borrowed bytes, and cloning those copies them, so every `param.val()`
/// would copy the whole weight (measured: generation on `small_100m` 7.6× slower). One multiply by
/// 1 (exact) turns them into shared arrays that clone for free. Other backends pay one pass.
/// Parameters that require gradients are left alone: training replaces them with the
/// optimizer's (owned) results after the first step anyway.
pub fn with_owned_params<B: Backend, M: Module<B>>(module: M) -> M {
    module.map(&mut OwnedParams)
}

struct OwnedParams;

impl<B: Backend> ModuleMapper<B> for OwnedParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.init_mapper(|tensor| if tensor.is_require_grad() { tensor } else { tensor.mul_scalar(1.0) })
    }
}
