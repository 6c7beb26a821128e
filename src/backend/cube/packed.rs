//! The packed matmul as CubeCL kernels, for the CubeCL backends (wgpu, CUDA): outputs are
//! computed from the 2-bit codes, decoded on the fly; no f32 weight matrix is ever built.
//! Activations are int8 fake-quantized first ([`super::quant`]). Three kernels
//! ([`CubeKernel`]): one unit per output; for few tokens (generation) a row-cooperative one
//! whose units read a row's code words side by side, as a GPU's memory wants them read; for many
//! tokens (prefill, scoring) a tiled one that stages activations and decoded codes in shared
//! memory, so each is read from device memory once per tile rather than once per output.
//!
//! It serves `CubeBackend` directly and, as a registered custom operation, Burn's fusion backend
//! over it (`super::fusion`).

use burn::tensor::{DType, Shape, Tensor};
use burn_cubecl::cubecl::{
    calculate_cube_count_elemwise,
    features::Plane,
    prelude::{ComputeClient, ScalarArg},
    CubeCount, CubeDim,
};
use burn_cubecl::{
    kernel::into_contiguous, ops::numeric::empty_device, tensor::CubeTensor, BoolElement, CubeBackend, CubeRuntime,
};

use super::quant::quantize_activation_primitive;
use crate::backend::float;
use crate::backend::PackedWeight;
use crate::config::WeightScale;
use crate::quant::{PackedTernary, CODES_PER_WORD};

mod kernel {
    // `#[cube]` expands to `cubecl::...` paths.
    use burn_cubecl::cubecl;
    use burn_cubecl::cubecl::{cube, prelude::*};

    /// The ternary value of code `j` of `word`: `code − 1` (the spec's code = value + 1).
    #[cube]
    fn code_value(word: u32, j: u32) -> f32 {
        f32::cast_from((word >> (j * 2)) & 3u32) - f32::new(1.0)
    }

    /// `Σ_j x[x_base + 16w + j] · γ · (code j of word w − 1)` over the word's columns that exist
    /// (the last word's padding codes have none); γ(k) = `scales[s_base + k / group]`. With
    /// `scale_per_word` (every 16-column word lies in one scale group) a full word's sum is
    /// scaled once, without a division per column.
    #[cube]
    fn word_dot(
        x: &Tensor<f32>,
        x_base: usize,
        word: u32,
        w: usize,
        scales: &Tensor<f32>,
        s_base: usize,
        group: usize,
        scale_per_word: u32,
    ) -> f32 {
        let k_dim = x.shape(1);
        let k0 = w * 16;
        let mut out = f32::new(0.0);
        if scale_per_word == 1u32 && k0 + 16 <= k_dim {
            let mut sum = f32::new(0.0);
            #[unroll]
            for j in 0..16u32 {
                sum += x[x_base + k0 + j as usize] * code_value(word, j);
            }
            out = sum * scales[s_base + k0 / group];
        } else {
            for j in 0..16u32 {
                let k = k0 + j as usize;
                if k < k_dim {
                    out += x[x_base + k] * scales[s_base + k / group] * code_value(word, j);
                }
            }
        }
        out
    }

    /// `output[m, n] = Σ_k x[m, k] · γ(n, k) · (code(n, k) − 1)`, one output per unit; γ is
    /// `scales[n · scale_row_stride + k / group_size]`. Codes arrive as the backend's 32-bit
    /// ints and are read as the same words.
    #[cube(launch)]
    pub fn packed_ternary_matmul_kernel(
        x: &Tensor<f32>,
        codes: &Tensor<u32>,
        scales: &Tensor<f32>,
        output: &mut Tensor<f32>,
        scale_row_stride: u32,
        group_size: u32,
        scale_per_word: u32,
    ) {
        let n_dim = output.shape(1);
        if ABSOLUTE_POS >= output.shape(0) * n_dim {
            terminate!();
        }
        let m = ABSOLUTE_POS / n_dim;
        let n = ABSOLUTE_POS % n_dim;
        let x_base = m * x.stride(0);
        let c_base = n * codes.stride(0);
        let s_base = n * (scale_row_stride as usize);
        let mut acc = f32::new(0.0);
        for w in 0..codes.shape(1) {
            acc += word_dot(x, x_base, codes[c_base + w], w, scales, s_base, group_size as usize, scale_per_word);
        }
        output[m * output.stride(0) + n] = acc;
    }

    /// Units per cube of [`packed_ternary_gemv_kernel`]: `lanes × rows`.
    pub const COOPERATIVE_CUBE_UNITS: u32 = 256;

    /// The same product with `CUBE_DIM_X` units ("lanes", a power of two) per output and
    /// `CUBE_DIM_Y` outputs per cube (cube position = (token, row block), so the cubes that read
    /// one weight row run together): lane `l` takes words `l, l + lanes, ...` of the row, so a
    /// row's codes are read in consecutive words by consecutive units (coalesced on a GPU), and
    /// the lanes' partial sums are added up in shared memory.
    #[cube(launch)]
    pub fn packed_ternary_gemv_kernel(
        x: &Tensor<f32>,
        codes: &Tensor<u32>,
        scales: &Tensor<f32>,
        output: &mut Tensor<f32>,
        scale_row_stride: u32,
        group_size: u32,
        scale_per_word: u32,
    ) {
        let lanes = CUBE_DIM_X as usize;
        let lane = UNIT_POS_X as usize;
        let slot = UNIT_POS_Y as usize * lanes + lane;
        let n = CUBE_POS_Y as usize * (CUBE_DIM_Y as usize) + UNIT_POS_Y as usize;
        let m = CUBE_POS_X as usize;
        let n_dim = output.shape(1);
        let mut partial = f32::new(0.0);
        if n < n_dim {
            let x_base = m * x.stride(0);
            let c_base = n * codes.stride(0);
            let s_base = n * (scale_row_stride as usize);
            let mut w = lane;
            while w < codes.shape(1) {
                partial +=
                    word_dot(x, x_base, codes[c_base + w], w, scales, s_base, group_size as usize, scale_per_word);
                w += lanes;
            }
        }
        let mut sums = SharedMemory::<f32>::new(COOPERATIVE_CUBE_UNITS as usize);
        sums[slot] = partial;
        sync_cube();
        let mut active = lanes / 2;
        while active > 0 {
            if lane < active {
                sums[slot] = sums[slot] + sums[slot + active];
            }
            sync_cube();
            active /= 2;
        }
        if lane == 0 && n < n_dim {
            output[m * output.stride(0) + n] = sums[slot];
        }
    }

    /// Tokens per cube of [`packed_ternary_tiled_kernel`] (`TILE_UNITS` unit rows × 2).
    pub const TILE_M: u32 = 32;
    /// Outputs per cube (`TILE_UNITS` unit columns × 4).
    pub const TILE_N: u32 = 64;
    /// The cube is `TILE_UNITS × TILE_UNITS` units.
    pub const TILE_UNITS: u32 = 16;
    /// Columns per step: two code words of each weight row.
    const TILE_K: usize = 32;
    /// Shared-memory row lengths: the tiles are stored column by column (`[k][m]`, `[k][n]`), so
    /// that a unit's neighbours read neighbouring outputs' values; one float of padding each, so
    /// that the staging writes (down a column) hit different banks.
    const XS_STRIDE: usize = TILE_M as usize + 1;
    const WS_STRIDE: usize = TILE_N as usize + 1;
    /// Codes each unit decodes per step (`TILE_N · TILE_K` over the cube's units, within one
    /// code word).
    const CODES_PER_UNIT: usize = 8;
    /// Activations each unit stages per step (`TILE_M · TILE_K` over the cube's units).
    const X_PER_UNIT: u32 = TILE_M * TILE_K as u32 / (TILE_UNITS * TILE_UNITS);
    /// The tiled kernel's shared memory (12.5 KB) fits the 16 KB every Vulkan device has
    /// (Metal has 32, CUDA 48); the staging work divides evenly among the units.
    const _: () = {
        let units = (TILE_UNITS * TILE_UNITS) as usize;
        assert!((XS_STRIDE + WS_STRIDE) * TILE_K * 4 <= 16 * 1024);
        assert!(CODES_PER_UNIT * units == TILE_N as usize * TILE_K && 16 % CODES_PER_UNIT == 0);
        assert!(X_PER_UNIT as usize * units == TILE_M as usize * TILE_K);
        assert!(TILE_M == 2 * TILE_UNITS && TILE_N == 4 * TILE_UNITS);
    };

    /// The same product for many tokens (prefill, scoring): each cube computes a
    /// `TILE_M × TILE_N` output tile, stepping through K `TILE_K` columns at a time; per step the
    /// cube stages the tokens' columns and the rows' codes, decoded to `γ · (code − 1)`, in
    /// shared memory, and each unit adds up 2 tokens × 4 outputs from there. Every activation is
    /// read from device memory once per `TILE_N` outputs and every code word once per `TILE_M`
    /// tokens, where the per-output kernel reads a whole activation row and weight row per
    /// output. The decoded weights live only in shared memory, `TILE_N × TILE_K` at a time.
    #[cube(launch)]
    pub fn packed_ternary_tiled_kernel(
        x: &Tensor<f32>,
        codes: &Tensor<u32>,
        scales: &Tensor<f32>,
        output: &mut Tensor<f32>,
        scale_row_stride: u32,
        group_size: u32,
        scale_per_word: u32,
    ) {
        let (m_dim, n_dim, k_dim) = (output.shape(0), output.shape(1), x.shape(1));
        let (tx, ty) = (UNIT_POS_X as usize, UNIT_POS_Y as usize);
        let units = (TILE_UNITS * TILE_UNITS) as usize;
        let unit = ty * TILE_UNITS as usize + tx;
        let m0 = CUBE_POS_Y as usize * TILE_M as usize;
        let n0 = CUBE_POS_X as usize * TILE_N as usize;
        let group = group_size as usize;
        let mut xs = SharedMemory::<f32>::new(TILE_K * XS_STRIDE);
        let mut ws = SharedMemory::<f32>::new(TILE_K * WS_STRIDE);
        let mut acc = Array::<f32>::new(8usize);
        #[unroll]
        for i in 0..8u32 {
            acc[i as usize] = f32::new(0.0);
        }
        // The codes this unit decodes each step: row `w_row` of the tile, columns
        // `c0 .. c0 + CODES_PER_UNIT` of the step (within one code word).
        let w_row = unit / (TILE_K / CODES_PER_UNIT);
        let c0 = (unit % (TILE_K / CODES_PER_UNIT)) * CODES_PER_UNIT;
        let n = n0 + w_row;
        let s_base = n * scale_row_stride as usize;
        let mut k0 = 0usize;
        while k0 < k_dim {
            // Tokens' columns k0.. into xs (zero past the edges).
            #[unroll]
            for i in 0..X_PER_UNIT {
                let e = unit + i as usize * units;
                let (r, c) = (e / TILE_K, e % TILE_K);
                let (m, k) = (m0 + r, k0 + c);
                let mut value = f32::new(0.0);
                if m < m_dim && k < k_dim {
                    value = x[m * x.stride(0) + k];
                }
                xs[c * XS_STRIDE + r] = value;
            }
            // This unit's codes, decoded to γ · (code − 1) into ws (zero past the edges).
            let kc = k0 + c0;
            let mut word = 0u32;
            let mut gamma = f32::new(0.0);
            if n < n_dim && kc < k_dim {
                word = codes[n * codes.stride(0) + kc / 16] >> (((kc % 16) * 2) as u32);
                if scale_per_word == 1u32 {
                    gamma = scales[s_base + kc / group];
                }
            }
            #[unroll]
            for j in 0..CODES_PER_UNIT as u32 {
                let k = kc + j as usize;
                let mut value = f32::new(0.0);
                if n < n_dim && k < k_dim {
                    let mut g = gamma;
                    if scale_per_word == 0u32 {
                        g = scales[s_base + k / group];
                    }
                    value = g * code_value(word, j);
                }
                ws[(c0 + j as usize) * WS_STRIDE + w_row] = value;
            }
            sync_cube();
            for kk in 0usize..TILE_K {
                let a0 = xs[kk * XS_STRIDE + ty * 2];
                let a1 = xs[kk * XS_STRIDE + ty * 2 + 1];
                #[unroll]
                for j in 0..4u32 {
                    let b = ws[kk * WS_STRIDE + tx + j as usize * TILE_UNITS as usize];
                    acc[j as usize] += a0 * b;
                    acc[j as usize + 4] += a1 * b;
                }
            }
            sync_cube();
            k0 += TILE_K;
        }
        #[unroll]
        for i in 0..2u32 {
            let m = m0 + ty * 2 + i as usize;
            #[unroll]
            for j in 0..4u32 {
                let n = n0 + tx + j as usize * TILE_UNITS as usize;
                if m < m_dim && n < n_dim {
                    output[m * output.stride(0) + n] = acc[i as usize * 4 + j as usize];
                }
            }
        }
    }
}

/// Which CubeCL kernel multiplies: all three compute the same sums (in different orders).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CubeKernel {
    /// One unit per output, reading its row's codes word by word.
    PerOutput,
    /// Up to 32 units per output (fewer for rows under 32 words) reading consecutive words of
    /// the row, their partial sums added in shared memory.
    RowCooperative,
    /// Cubes of 256 units computing 32 tokens × 64 outputs each from activations and decoded
    /// codes staged in shared memory: for many tokens (prefill, scoring).
    Tiled,
}

impl CubeKernel {
    /// Token counts up to which [`CubeKernel::RowCooperative`] is used on a GPU.
    pub const COOPERATIVE_MAX_TOKENS: usize = 16;
    /// Token counts from which [`CubeKernel::Tiled`] is used on a device without plane
    /// operations (on a GPU it is used above [`Self::COOPERATIVE_MAX_TOKENS`]).
    pub const TILED_MIN_TOKENS_WITHOUT_PLANES: usize = 8;

    /// The kernel for an `[tokens, K]` input on `client`'s device. On a GPU: for few tokens the
    /// row-cooperative one (with one unit per output a 4096-row GEMV has 4096 units, a few per
    /// streaming multiprocessor, each reading a row of its own), for more the tiled one. A device
    /// without plane operations (wgpu withholds them from CPU adapters such as lavapipe) gets the
    /// per-output kernel for few tokens, where it measured faster (BENCHMARKS.md, `gpu_gemv`),
    /// and the tiled one for more.
    pub fn choose<R: CubeRuntime>(client: &ComputeClient<R>, tokens: usize) -> Self {
        let gpu = client.properties().features.plane.contains(Plane::Ops);
        match (gpu, tokens) {
            (true, t) if t <= Self::COOPERATIVE_MAX_TOKENS => Self::RowCooperative,
            (false, t) if t < Self::TILED_MIN_TOKENS_WITHOUT_PLANES => Self::PerOutput,
            _ => Self::Tiled,
        }
    }
}

/// Writes `x [M, K] · W̃ᵀ` (codes `[N, ⌈K/16⌉]`, scales) into `output [M, N]`; γ(n, k) is
/// `scales[n · scale_row_stride + k / group_size]`.
fn launch<R: CubeRuntime>(
    kernel: CubeKernel,
    x: CubeTensor<R>,
    codes: CubeTensor<R>,
    scales: CubeTensor<R>,
    output: CubeTensor<R>,
    scale_row_stride: usize,
    group_size: usize,
) -> CubeTensor<R> {
    assert_eq!(x.dtype, DType::F32, "x must be f32");
    assert!(matches!(codes.dtype, DType::I32 | DType::U32), "codes must be 32-bit ints, got {:?}", codes.dtype);
    let [m, k] = x.shape.dims::<2>();
    let [n, words] = codes.shape.dims::<2>();
    assert_eq!(words, k.div_ceil(CODES_PER_WORD), "codes must be [N, ceil(K/16)]");
    assert_eq!(output.shape.dims::<2>(), [m, n], "output must be [M, N]");
    let (x, codes, scales, output) =
        (into_contiguous(x), into_contiguous(codes), into_contiguous(scales), into_contiguous(output));
    let client = x.client.clone();
    if m * n == 0 {
        return output;
    }
    let args = (x.as_tensor_arg(1), codes.as_tensor_arg(1), scales.as_tensor_arg(1), output.as_tensor_arg(1));
    let (row_stride, group) = (ScalarArg::new(scale_row_stride as u32), ScalarArg::new(group_size as u32));
    // Every word in one scale group: the group is a multiple of 16 columns or the whole row.
    let per_word = ScalarArg::new((group_size.is_multiple_of(CODES_PER_WORD) || group_size >= k) as u32);
    // A grid dimension holds at most 65 535 cubes: the cooperative grid has one cube row per
    // token (it is for few tokens), the tiled one a cube per 32 tokens and per 64 outputs.
    let fits = |cubes: usize| cubes <= u16::MAX as usize;
    let kernel = match kernel {
        CubeKernel::RowCooperative if !fits(m) => CubeKernel::PerOutput,
        CubeKernel::Tiled
            if !fits(m.div_ceil(kernel::TILE_M as usize)) || !fits(n.div_ceil(kernel::TILE_N as usize)) =>
        {
            CubeKernel::PerOutput
        }
        kernel => kernel,
    };
    match kernel {
        CubeKernel::PerOutput => {
            let cube_dim = CubeDim::new(&client, m * n);
            let cube_count = calculate_cube_count_elemwise(&client, m * n, cube_dim);
            kernel::packed_ternary_matmul_kernel::launch::<R>(
                &client, cube_count, cube_dim, args.0, args.1, args.2, args.3, row_stride, group, per_word,
            )
        }
        CubeKernel::Tiled => {
            let cube_dim = CubeDim::new_2d(kernel::TILE_UNITS, kernel::TILE_UNITS);
            let cube_count = CubeCount::Static(
                n.div_ceil(kernel::TILE_N as usize) as u32,
                m.div_ceil(kernel::TILE_M as usize) as u32,
                1,
            );
            kernel::packed_ternary_tiled_kernel::launch::<R>(
                &client, cube_count, cube_dim, args.0, args.1, args.2, args.3, row_stride, group, per_word,
            )
        }
        CubeKernel::RowCooperative => {
            // Lanes: the row's words rounded up to a power of two, at most 32.
            let lanes = words.next_power_of_two().min(32) as u32;
            let rows = kernel::COOPERATIVE_CUBE_UNITS / lanes;
            let cube_dim = CubeDim::new_2d(lanes, rows);
            let cube_count = CubeCount::Static(m as u32, n.div_ceil(rows as usize) as u32, 1);
            kernel::packed_ternary_gemv_kernel::launch::<R>(
                &client, cube_count, cube_dim, args.0, args.1, args.2, args.3, row_stride, group, per_word,
            )
        }
    }
    .expect("packed ternary matmul launch");
    output
}

/// The packed matmul on a CubeCL backend: activations quantized as the reference does (one
/// kernel), then the product kernel on the layer's device codes and scales.
pub fn packed_matmul<R: CubeRuntime, BT: BoolElement>(
    x: Tensor<CubeBackend<R, f32, i32, BT>, 2>,
    w: PackedWeight<'_, CubeBackend<R, f32, i32, BT>>,
) -> Tensor<CubeBackend<R, f32, i32, BT>, 2> {
    let kernel = CubeKernel::choose(&R::client(&x.device()), x.dims()[0]);
    packed_matmul_into(kernel, x, w, None)
}

/// [`packed_matmul`] with the given kernel, writing into `output` (`[M, N]`) when given
/// (tests poison it first), else into a fresh buffer.
pub fn packed_matmul_into<R: CubeRuntime, BT: BoolElement>(
    kernel: CubeKernel,
    x: Tensor<CubeBackend<R, f32, i32, BT>, 2>,
    w: PackedWeight<'_, CubeBackend<R, f32, i32, BT>>,
    output: Option<Tensor<CubeBackend<R, f32, i32, BT>, 2>>,
) -> Tensor<CubeBackend<R, f32, i32, BT>, 2> {
    let (codes, scales) = w.device_tensors(&x.device());
    let out = packed_matmul_primitive::<R>(
        kernel,
        x.into_primitive().tensor(),
        codes.into_primitive(),
        scales.into_primitive().tensor(),
        w.packed,
        w.int8_activations,
        output.map(|o| o.into_primitive().tensor()),
    );
    float(out)
}

/// The kernel on primitives: `x [M, K]` (int8 fake-quantized first with `int8_input`, by
/// [`super::quant`]) times the packed weight whose device codes and scales are
/// given and whose layout `packed` describes, into `output` or a fresh `[M, N]` buffer. Also what
/// the fusion backend's operation runs.
pub(crate) fn packed_matmul_primitive<R: CubeRuntime>(
    kernel: CubeKernel,
    x: CubeTensor<R>,
    codes: CubeTensor<R>,
    scales: CubeTensor<R>,
    packed: &PackedTernary,
    int8_input: bool,
    output: Option<CubeTensor<R>>,
) -> CubeTensor<R> {
    let x = if int8_input { quantize_activation_primitive(x, None) } else { x };
    let cols = packed.cols.max(1);
    let (row_stride, group) = match packed.weight_scale {
        WeightScale::PerTensor => (0, cols),
        WeightScale::PerRow => (1, cols),
        WeightScale::PerGroup(g) => (cols.div_ceil(g), g),
    };
    let output = output.unwrap_or_else(|| {
        empty_device::<R, f32>(x.client.clone(), x.device.clone(), Shape::new([x.shape.dims::<2>()[0], packed.rows]))
    });
    launch::<R>(kernel, x, codes, scales, output, row_stride, group)
}

/// The three product kernels through CUDA's compiler and NVRTC (see `super::cuda_source`).
#[cfg(all(test, feature = "wgpu", feature = "cuda"))]
mod cuda_source {
    use super::kernel::*;
    use crate::backend::cube::cuda_source::{assert_compiles_for_cuda, client, scalar, settings, tensor};
    use burn_cubecl::cubecl::CubeDim;

    #[test]
    fn packed_kernels_compile_for_cuda() {
        // Arguments: x, codes, scales, the three scalars, then the output.
        let client = client();
        let (t, s) = (tensor, scalar);
        let per_output = packed_ternary_matmul_kernel::PackedTernaryMatmulKernel::new(
            settings(CubeDim::new_1d(256)),
            client.clone(),
            t(),
            t(),
            t(),
            s(),
            s(),
            s(),
            t(),
        );
        assert_compiles_for_cuda("per-output kernel", per_output);
        let cooperative_dim = CubeDim::new_2d(32, COOPERATIVE_CUBE_UNITS / 32);
        let cooperative = packed_ternary_gemv_kernel::PackedTernaryGemvKernel::new(
            settings(cooperative_dim),
            client.clone(),
            t(),
            t(),
            t(),
            s(),
            s(),
            s(),
            t(),
        );
        assert_compiles_for_cuda("row-cooperative kernel", cooperative);
        let tiled_dim = CubeDim::new_2d(TILE_UNITS, TILE_UNITS);
        let tiled = packed_ternary_tiled_kernel::PackedTernaryTiledKernel::new(
            settings(tiled_dim),
            client,
            t(),
            t(),
            t(),
            s(),
            s(),
            s(),
            t(),
        );
        assert_compiles_for_cuda("tiled kernel", tiled);
    }
}
