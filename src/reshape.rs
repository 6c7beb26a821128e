//! `reshape` without a copy on the CPU backend.
//!
//! Burn 0.20's ndarray backend copies on every reshape, contiguous or not (`to_shape` of a shared
//! array yields a view, which `into_shared` then copies), and its autodiff backward reshapes the
//! gradient back with another copy. The model reshapes every projection's input and output and
//! the attention heads, so on the CPU those copies were ~8% of a `test`-preset training step.
//! [`reshape`] gives a contiguous CPU tensor its new shape in place (a non-contiguous one is
//! copied once, as Burn does) and records one autodiff node whose backward does the same.

use burn::tensor::{backend::Backend, Tensor};

#[allow(unused_imports)] // unused in a build without the ndarray feature
use crate::backend::same;

/// `t` with the same elements in row-major order under the shape `dims`.
pub fn reshape<B: Backend, const D1: usize, const D2: usize>(t: Tensor<B, D1>, dims: [usize; D2]) -> Tensor<B, D2> {
    crate::backend::for_cpu_backends!(B,
        plain: same(cpu::reshape::<D1, D2>(same(t), dims)),
        autodiff: |C| same(cpu::fused_reshape::<C, D1, D2>(same(t), dims)));
    t.reshape(dims)
}

#[cfg(feature = "ndarray")]
pub(crate) mod cpu {
    use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::ndarray::NdArrayTensor;
    use burn::backend::Autodiff;
    use burn::tensor::ops::FloatTensor;
    use burn::tensor::Tensor;

    use crate::backend::{float, Cpu};

    /// The primitive under a new shape: no copy when it is contiguous.
    pub(crate) fn reshape_primitive(t: FloatTensor<Cpu>, dims: &[usize]) -> FloatTensor<Cpu> {
        let NdArrayTensor::F32(storage) = t else { panic!("the CPU backend's float tensors are f32") };
        let array = storage.into_shared();
        let array = if array.is_standard_layout() { array } else { array.as_standard_layout().into_owned().into_shared() };
        let array = array.into_shape_with_order(ndarray::IxDyn(dims)).expect("reshape keeps the number of elements");
        NdArrayTensor::from(array)
    }

    pub(crate) fn reshape<const D1: usize, const D2: usize>(t: Tensor<Cpu, D1>, dims: [usize; D2]) -> Tensor<Cpu, D2> {
        float(reshape_primitive(t.into_primitive().tensor(), &dims))
    }

    #[derive(Debug)]
    struct Reshape;

    impl Backward<Cpu, 1> for Reshape {
        /// The input's shape.
        type State = Vec<usize>;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let grad = grads.consume::<Cpu>(&ops.node);
            if let [Some(node)] = ops.parents {
                grads.register::<Cpu>(node.id, reshape_primitive(grad, &ops.state));
            }
        }
    }

    pub(crate) fn fused_reshape<C: CheckpointStrategy, const D1: usize, const D2: usize>(
        t: Tensor<Autodiff<Cpu, C>, D1>,
        dims: [usize; D2],
    ) -> Tensor<Autodiff<Cpu, C>, D2> {
        let before = t.dims().to_vec();
        let t = t.into_primitive().tensor();
        let y = reshape_primitive(t.primitive.clone(), &dims);
        let out = match Reshape.prepare::<C>([t.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(before, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        float(out)
    }
}
