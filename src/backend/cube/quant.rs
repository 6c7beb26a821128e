//! The two BitNet quantizers as CubeCL kernels, for the CubeCL backends (wgpu, CUDA): the
//! training projection's `x̃` and `W̃` and the packed layer's int8 input, each in the fewest
//! passes over device memory.
//!
//! - `x̃ = clamp(round(x · s), −128, 127) / s`, `s = 127 / max(max|x|, ε)` per token: one cube
//!   per token reads its row for the absmax (shared-memory reduction) and again, mostly from
//!   cache, to quantize it. One launch, where the tensor ops launch nine kernels, six of them over
//!   the whole tensor (eleven reads or writes of it).
//! - `W̃ = clamp(round(W / (γ + ε)), −1, 1) · γ`, `γ = mean|W|` per scale group: one launch sums
//!   `|W|` per group (per tensor: per 4096-element chunk, then the chunks' sums), one quantizes:
//!   the weight is read twice and written once, where the tensor ops read or write it eleven
//!   times.
//!
//! The same f32 operations as the tensor-op quantizers ([`crate::quant`]) in the same
//! order, so `x̃` is theirs bit for bit; γ's sum runs in another order than Burn's reduction, so it
//! may differ in the last bits, and a weight within that distance of a rounding boundary may get
//! the other code.
//!
//! They serve `CubeBackend` directly and, as registered custom operations, Burn's fusion backend
//! over it (`super::fusion`).

use burn::tensor::{DType, Shape, Tensor};
use burn_cubecl::cubecl::{
    calculate_cube_count_elemwise,
    prelude::{ComputeClient, ScalarArg},
    server::CubeCountSelection,
    CubeCount, CubeDim,
};
use burn_cubecl::{
    kernel::into_contiguous, ops::numeric::empty_device, tensor::CubeTensor, BoolElement, CubeBackend, CubeRuntime,
};

use crate::backend::float;
use crate::config::{WeightQuantEps, WeightScale};
use crate::quant::group_shape;

mod kernel {
    // `#[cube]` expands to `cubecl::...` paths.
    use burn_cubecl::cubecl;
    use burn_cubecl::cubecl::{cube, prelude::*};

    use crate::quant::{ACTIVATION_EPS, WEIGHT_EPS};

    /// Units per cube of the row kernels (a power of two: the reduction halves it).
    pub const ROW_UNITS: u32 = 256;

    /// The sum (or, with `max`, the maximum) of every unit's `value`, for every unit of the cube.
    #[cube]
    fn cube_reduce(value: f32, #[comptime] max: bool) -> f32 {
        let unit = UNIT_POS as usize;
        let mut shared = SharedMemory::<f32>::new(ROW_UNITS as usize);
        shared[unit] = value;
        sync_cube();
        let mut active = CUBE_DIM as usize / 2;
        while active > 0 {
            if unit < active {
                if max {
                    shared[unit] = cubecl::prelude::max(shared[unit], shared[unit + active]);
                } else {
                    shared[unit] = shared[unit] + shared[unit + active];
                }
            }
            sync_cube();
            active /= 2;
        }
        shared[0]
    }

    /// One cube per row of `x` (`[tokens, cols]`, contiguous): `out = x̃` (see the module doc).
    #[cube(launch)]
    pub fn quantize_activation_kernel(x: &Tensor<f32>, out: &mut Tensor<f32>) {
        let row = CUBE_POS;
        if row >= x.shape(0) {
            terminate!();
        }
        let cols = x.shape(1);
        let base = row * cols;
        let step = CUBE_DIM as usize;
        let mut absmax = f32::new(0.0);
        let mut i = UNIT_POS as usize;
        while i < cols {
            absmax = cubecl::prelude::max(absmax, f32::abs(x[base + i]));
            i += step;
        }
        let absmax = cubecl::prelude::max(cube_reduce(absmax, true), f32::new(ACTIVATION_EPS));
        let s = f32::new(127.0) / absmax;
        let mut i = UNIT_POS as usize;
        while i < cols {
            out[base + i] = clamp(f32::round(x[base + i] * s), f32::new(-128.0), f32::new(127.0)) / s;
            i += step;
        }
    }

    /// One cube per segment `s` of the flat tensor `w`: `sums[s] = Σ |w[i]|` over
    /// `i ∈ [s · segment, (s + 1) · segment)` (the last one clipped to the tensor).
    #[cube(launch)]
    pub fn abs_sums_kernel(w: &Tensor<f32>, sums: &mut Tensor<f32>, segment: u32) {
        let seg = CUBE_POS;
        if seg >= sums.len() {
            terminate!();
        }
        let start = seg * segment as usize;
        let end = cubecl::prelude::min(start + segment as usize, w.len());
        let mut acc = f32::new(0.0);
        let mut i = start + UNIT_POS as usize;
        while i < end {
            acc += f32::abs(w[i]);
            i += CUBE_DIM as usize;
        }
        let total = cube_reduce(acc, false);
        if UNIT_POS == 0 {
            sums[seg] = total;
        }
    }

    /// `out[i] = clamp(round(w[i] / (γ + ε)), −1, 1) · γ` with `γ = sums[i / group] / group`;
    /// with `clamp_eps = 1`, `clamp(round(w[i] / max(γ, ε)), −1, 1) · max(γ, ε)`.
    #[cube(launch)]
    pub fn quantize_weight_kernel(
        w: &Tensor<f32>,
        sums: &Tensor<f32>,
        out: &mut Tensor<f32>,
        group: u32,
        clamp_eps: u32,
    ) {
        if ABSOLUTE_POS >= w.len() {
            terminate!();
        }
        let gamma = sums[ABSOLUTE_POS / group as usize] / f32::cast_from(group);
        let mut scale = gamma;
        let mut divisor = gamma + f32::new(WEIGHT_EPS);
        if clamp_eps == 1 {
            scale = cubecl::prelude::max(gamma, f32::new(WEIGHT_EPS));
            divisor = scale;
        }
        out[ABSOLUTE_POS] = clamp(f32::round(w[ABSOLUTE_POS] / divisor), f32::new(-1.0), f32::new(1.0)) * scale;
    }
}

/// Elements per cube of the per-tensor weight scale's first sum.
const CHUNK: usize = 4096;

/// `cubes` cubes of [`kernel::ROW_UNITS`] units (spread over two grid dimensions where one does
/// not hold them), or fewer units for short rows.
fn row_launch<R: CubeRuntime>(client: &ComputeClient<R>, cubes: usize, row_len: usize) -> (CubeCount, CubeDim) {
    let units = row_len.next_power_of_two().clamp(32, kernel::ROW_UNITS as usize) as u32;
    (CubeCountSelection::new(client, cubes as u32).cube_count(), CubeDim::new_1d(units))
}

fn output_for<R: CubeRuntime>(input: &CubeTensor<R>, output: Option<CubeTensor<R>>) -> CubeTensor<R> {
    let output = output
        .unwrap_or_else(|| empty_device::<R, f32>(input.client.clone(), input.device.clone(), input.shape.clone()));
    assert_eq!(output.shape, input.shape, "the output must be shaped like the input");
    into_contiguous(output)
}

/// `x̃` of `x: [tokens, cols]` (f32) into `output` (or a fresh buffer).
pub(crate) fn quantize_activation_primitive<R: CubeRuntime>(
    x: CubeTensor<R>,
    output: Option<CubeTensor<R>>,
) -> CubeTensor<R> {
    assert_eq!(x.dtype, DType::F32, "x must be f32");
    let x = into_contiguous(x);
    let output = output_for(&x, output);
    let [tokens, cols] = x.shape.dims::<2>();
    if tokens * cols == 0 {
        return output;
    }
    let (count, dim) = row_launch(&x.client, tokens, cols);
    kernel::quantize_activation_kernel::launch::<R>(&x.client, count, dim, x.as_tensor_arg(1), output.as_tensor_arg(1))
        .expect("activation quantizer launch");
    output
}

/// `Σ |w|` over each `segment` elements of `w` (flat), as a `[⌈len / segment⌉]` tensor.
fn abs_sums<R: CubeRuntime>(w: &CubeTensor<R>, segment: usize) -> CubeTensor<R> {
    let segments = w.shape.num_elements().div_ceil(segment);
    let sums = empty_device::<R, f32>(w.client.clone(), w.device.clone(), Shape::new([segments]));
    let (count, dim) = row_launch(&w.client, segments, segment);
    kernel::abs_sums_kernel::launch::<R>(
        &w.client,
        count,
        dim,
        w.as_tensor_arg(1),
        sums.as_tensor_arg(1),
        ScalarArg::new(segment as u32),
    )
    .expect("absmean sum launch");
    sums
}

/// `W̃` of `w: [out, in]` (f32) with absmean scales per `scale` group, into `output` (or a fresh
/// buffer).
pub(crate) fn quantize_weight_primitive<R: CubeRuntime>(
    w: CubeTensor<R>,
    scale: WeightScale,
    eps: WeightQuantEps,
    output: Option<CubeTensor<R>>,
) -> CubeTensor<R> {
    assert_eq!(w.dtype, DType::F32, "w must be f32");
    let w = into_contiguous(w);
    let output = output_for(&w, output);
    let n = w.shape.num_elements();
    if n == 0 {
        return output;
    }
    let group = group_shape(w.shape.dims::<2>(), scale)[2];
    // One group per cube; a single large group (per tensor) is summed in chunks, then the chunks.
    let sums = if group > CHUNK && group == n {
        let partial = abs_sums(&w, CHUNK);
        let segments = partial.shape.num_elements();
        abs_sums(&partial, segments)
    } else {
        abs_sums(&w, group)
    };
    let dim = CubeDim::new(&w.client, n);
    let count = calculate_cube_count_elemwise(&w.client, n, dim);
    kernel::quantize_weight_kernel::launch::<R>(
        &w.client,
        count,
        dim,
        w.as_tensor_arg(1),
        sums.as_tensor_arg(1),
        output.as_tensor_arg(1),
        ScalarArg::new(group as u32),
        ScalarArg::new(u32::from(eps == WeightQuantEps::Clamp)),
    )
    .expect("weight quantizer launch");
    output
}

type Cube<R, BT> = CubeBackend<R, f32, i32, BT>;

/// `x̃` of `x: [tokens, cols]` on a CubeCL backend, written into `output` when given (tests
/// poison it first).
pub fn quantize_activation_into<R: CubeRuntime, BT: BoolElement>(
    x: Tensor<Cube<R, BT>, 2>,
    output: Option<Tensor<Cube<R, BT>, 2>>,
) -> Tensor<Cube<R, BT>, 2> {
    float(quantize_activation_primitive(x.into_primitive().tensor(), output.map(|o| o.into_primitive().tensor())))
}

/// `W̃` of `w: [out, in]` on a CubeCL backend, written into `output` when given.
pub fn quantize_weight_into<R: CubeRuntime, BT: BoolElement>(
    w: Tensor<Cube<R, BT>, 2>,
    scale: WeightScale,
    eps: WeightQuantEps,
    output: Option<Tensor<Cube<R, BT>, 2>>,
) -> Tensor<Cube<R, BT>, 2> {
    let output = output.map(|o| o.into_primitive().tensor());
    float(quantize_weight_primitive(w.into_primitive().tensor(), scale, eps, output))
}

/// The quantizer kernels through CUDA's compiler and NVRTC (see `super::cuda_source`).
#[cfg(all(test, feature = "wgpu", feature = "cuda"))]
mod cuda_source {
    use super::kernel::*;
    use crate::backend::cube::cuda_source::{assert_compiles_for_cuda, client, scalar, settings, tensor};
    use burn_cubecl::cubecl::CubeDim;

    #[test]
    fn quantizer_kernels_compile_for_cuda() {
        // Arguments: the inputs (tensors, then scalars), then the output.
        let (client, dim, t, s) = (client(), CubeDim::new_1d(ROW_UNITS), tensor, scalar);
        assert_compiles_for_cuda(
            "activation quantizer",
            quantize_activation_kernel::QuantizeActivationKernel::new(settings(dim), client.clone(), t(), t()),
        );
        assert_compiles_for_cuda(
            "absmean sums",
            abs_sums_kernel::AbsSumsKernel::new(settings(dim), client.clone(), t(), s(), t()),
        );
        assert_compiles_for_cuda(
            "weight quantizer",
            quantize_weight_kernel::QuantizeWeightKernel::new(settings(dim), client, t(), t(), s(), t()),
        );
    }
}
