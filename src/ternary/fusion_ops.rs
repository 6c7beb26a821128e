//! The packed matmul on Burn's fusion backend, `Fusion<CubeBackend>` (what `burn::backend::Wgpu`
//! and `Cuda` are in this crate's `wgpu` and `cuda` builds). A fusion backend records operations and
//! runs them later, so the CubeCL kernel ([`crate::ternary::cube_kernel`]) enters its stream as a
//! registered custom operation, as burn-vision's ops do: inputs `[x̃, codes, scales]`, output
//! `[y]`. The activation quantizer before it stays in tensor ops, which fusion fuses.
//!
//! Training needs nothing here: `Autodiff<Fusion<..>>`'s projection is the one-node
//! straight-through op of [`crate::ternary::fused_linear`] over the fusion backend's quantizers
//! and matmul.

use std::marker::PhantomData;
use std::sync::Arc;

use burn::tensor::{DType, Shape, Tensor};
use burn_cubecl::fusion::FusionCubeRuntime;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionHandle};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};

use crate::backend::float;
use crate::ternary::backend::TernaryBackend;
use crate::ternary::cube_kernel::{packed_matmul_primitive, CubeKernel};
use crate::ternary::pack::PackedTernary;
use crate::ternary::packed_linear::PackedLinear;

type Cube<R, BT> = CubeBackend<R, f32, i32, BT>;

/// The kernel as an operation of the fusion stream; `packed` gives the weight's layout.
struct PackedMatmulOp<R, BT> {
    desc: CustomOpIr,
    packed: Arc<PackedTernary>,
    _backend: PhantomData<fn() -> (R, BT)>,
}

impl<R, BT> std::fmt::Debug for PackedMatmulOp<R, BT> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedMatmulOp").field("desc", &self.desc).finish()
    }
}

impl<R: CubeRuntime, BT: BoolElement> Operation<FusionCubeRuntime<R, BT>> for PackedMatmulOp<R, BT> {
    fn execute(&self, handles: &mut HandleContainer<FusionHandle<FusionCubeRuntime<R, BT>>>) {
        let ([x, codes, scales], [y]) = self.desc.as_fixed();
        let x = handles.get_float_tensor::<Cube<R, BT>>(x);
        let codes = handles.get_int_tensor::<Cube<R, BT>>(codes);
        let scales = handles.get_float_tensor::<Cube<R, BT>>(scales);
        let kernel = CubeKernel::choose(&x.client, x.shape.dims::<2>()[0]);
        let out = packed_matmul_primitive::<R>(kernel, x, codes, scales, &self.packed, None);
        handles.register_float_tensor::<Cube<R, BT>>(&y.id, out);
    }
}

impl<R: CubeRuntime, BT: BoolElement> TernaryBackend for Fusion<Cube<R, BT>> {
    fn packed_matmul(x: Tensor<Self, 2>, w: &PackedLinear<Self>) -> Tensor<Self, 2> {
        let (codes, scales) = w.device_tensors(&x.device());
        let (x, codes, scales) = (w.quantize_input(x).into_primitive().tensor(), codes.into_primitive(), scales.into_primitive().tensor());
        let client = x.client.clone();
        let streams = OperationStreams::with_inputs([&x, &codes, &scales]);
        let y = TensorIr::uninit(client.create_empty_handle(), Shape::new([x.shape.dims::<2>()[0], w.packed.rows]), DType::F32);
        let desc = CustomOpIr::new("tritter_packed_ternary_matmul", &[x.into_ir(), codes.into_ir(), scales.into_ir()], &[y]);
        let op = PackedMatmulOp::<R, BT> { desc: desc.clone(), packed: w.packed.0.clone(), _backend: PhantomData };
        let y = client.register(streams, OperationIr::Custom(desc), op).output();
        float(y)
    }
}
