//! The CubeCL ternary kernels on Burn's fusion backend, `Fusion<CubeBackend>` (what
//! `burn::backend::Wgpu` and `Cuda` are in this crate's `wgpu` and `cuda` builds). A fusion
//! backend records operations and runs them later, so each kernel enters its stream as a
//! registered custom operation, as burn-vision's ops do: the packed matmul
//! ([`super::packed`], inputs `[x, codes, scales]`, output `[y]`, the int8 input
//! quantizer included) and the two quantizers of the training projection
//! ([`super::quant`], input `[x]` or `[w]`, output the same shape).
//!
//! `Autodiff<Fusion<..>>`'s projection is the one-node straight-through op of
//! [`crate::backend::autodiff`] over these quantizers and the fusion backend's matmul.

use std::marker::PhantomData;
use std::sync::Arc;

use burn::tensor::{DType, Shape, Tensor};
use burn_cubecl::fusion::FusionCubeRuntime;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionHandle};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};

use super::packed::{packed_matmul_primitive, CubeKernel};
use super::quant::{quantize_activation_primitive, quantize_weight_primitive};
use crate::backend::{float, PackedWeight, TritterBackend};
use crate::config::{WeightQuantEps, WeightScale};
use crate::quant::PackedTernary;

type Cube<R, BT> = CubeBackend<R, f32, i32, BT>;

/// The kernel as an operation of the fusion stream; `packed` gives the weight's layout,
/// `int8_input` whether the input is int8 fake-quantized first.
struct PackedMatmulOp<R, BT> {
    desc: CustomOpIr,
    packed: Arc<PackedTernary>,
    int8_input: bool,
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
        let out = packed_matmul_primitive::<R>(kernel, x, codes, scales, &self.packed, self.int8_input, None);
        handles.register_float_tensor::<Cube<R, BT>>(&y.id, out);
    }
}

/// A quantizer as an operation of the fusion stream: the weight's (with its scale granularity and ε rule)
/// or, for `None`, the activation's.
struct QuantizeOp<R, BT> {
    desc: CustomOpIr,
    weight_scale: Option<(WeightScale, WeightQuantEps)>,
    _backend: PhantomData<fn() -> (R, BT)>,
}

impl<R, BT> std::fmt::Debug for QuantizeOp<R, BT> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuantizeOp").field("desc", &self.desc).field("weight_scale", &self.weight_scale).finish()
    }
}

impl<R: CubeRuntime, BT: BoolElement> Operation<FusionCubeRuntime<R, BT>> for QuantizeOp<R, BT> {
    fn execute(&self, handles: &mut HandleContainer<FusionHandle<FusionCubeRuntime<R, BT>>>) {
        let ([input], [output]) = self.desc.as_fixed();
        let input = handles.get_float_tensor::<Cube<R, BT>>(input);
        let out = match self.weight_scale {
            Some((scale, eps)) => quantize_weight_primitive(input, scale, eps, None),
            None => quantize_activation_primitive(input, None),
        };
        handles.register_float_tensor::<Cube<R, BT>>(&output.id, out);
    }
}

/// Registers the quantizer `weight_scale` names (see [`QuantizeOp`]) on `input`.
fn quantize<R: CubeRuntime, BT: BoolElement>(
    input: Tensor<Fusion<Cube<R, BT>>, 2>,
    weight_scale: Option<(WeightScale, WeightQuantEps)>,
) -> Tensor<Fusion<Cube<R, BT>>, 2> {
    let input = input.into_primitive().tensor();
    let client = input.client.clone();
    let streams = OperationStreams::with_inputs([&input]);
    let output = TensorIr::uninit(client.create_empty_handle(), input.shape.clone(), DType::F32);
    let name = if weight_scale.is_some() { "tritter_quantize_weight" } else { "tritter_quantize_activation" };
    let desc = CustomOpIr::new(name, &[input.into_ir()], &[output]);
    let op = QuantizeOp::<R, BT> { desc: desc.clone(), weight_scale, _backend: PhantomData };
    float(client.register(streams, OperationIr::Custom(desc), op).output())
}

impl<R: CubeRuntime, BT: BoolElement> TritterBackend for Fusion<Cube<R, BT>> {
    const NATIVE_OPS: bool = true;

    fn packed_matmul(x: Tensor<Self, 2>, w: PackedWeight<'_, Self>) -> Tensor<Self, 2> {
        let (codes, scales) = w.device_tensors(&x.device());
        let (x, codes, scales) =
            (x.into_primitive().tensor(), codes.into_primitive(), scales.into_primitive().tensor());
        let client = x.client.clone();
        let streams = OperationStreams::with_inputs([&x, &codes, &scales]);
        let y = TensorIr::uninit(
            client.create_empty_handle(),
            Shape::new([x.shape.dims::<2>()[0], w.packed.rows]),
            DType::F32,
        );
        let desc =
            CustomOpIr::new("tritter_packed_ternary_matmul", &[x.into_ir(), codes.into_ir(), scales.into_ir()], &[y]);
        let op = PackedMatmulOp::<R, BT> {
            desc: desc.clone(),
            packed: w.packed.clone(),
            int8_input: w.int8_activations,
            _backend: PhantomData,
        };
        let y = client.register(streams, OperationIr::Custom(desc), op).output();
        float(y)
    }

    fn int8_activation(x: Tensor<Self, 2>) -> Tensor<Self, 2> {
        quantize(x, None)
    }

    fn ternary_weight(w: Tensor<Self, 2>, scale: WeightScale, eps: WeightQuantEps) -> Tensor<Self, 2> {
        quantize(w, Some((scale, eps)))
    }
}
