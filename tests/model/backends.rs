//! Other backends compute the same logits as ndarray for the same weights: wgpu (run with
//! `--features wgpu`; on machines without a GPU, Mesa's lavapipe provides the Vulkan device)
//! and CUDA (`--features cuda`, on a machine with an NVIDIA GPU).

use burn::tensor::ElementConversion;
use rand::Rng;
use tritter::{TritterConfig, TritterModel};

use crate::model::common::{fresh_rng, ids_tensor, max_rel_diff, random_ids, temp_dir, to_vec, B};
use crate::model::reference::Reference;
use crate::model::reference_f64::random_tiny_config;

/// Same weights on both backends (moved through a checkpoint); relative logit error ≤ 1e-4.
/// With bitnet on, two f32 backends may round a value on a rounding tie differently, so as in
/// the f64 test, draws where the reference passes within 3e-5 of a boundary are skipped.
fn agrees_with_ndarray<G: tritter::TritterBackend>(name: &str, device: &G::Device, tolerance: f64) {
    let mut rng = fresh_rng(name);
    for bitnet in [false, true] {
        let mut clean = 0;
        for _ in 0..120 {
            // The test preset for full precision; with bitnet, a tiny random config keeps the
            // number of roundings (and so the chance of a tie) small.
            let mut config = if bitnet { random_tiny_config(&mut rng, true) } else { TritterConfig::test() };
            config.bitnet = bitnet;
            config.pad_token_id = Some(0);
            let model = TritterModel::<B>::new(&config, &Default::default()).unwrap();
            let dir = temp_dir();
            model.save_checkpoint(dir.path()).unwrap();
            let other = TritterModel::<G>::load_checkpoint(dir.path(), device).unwrap();
            let seq = rng.random_range(2..=if bitnet { 8 } else { 40 });
            let mut ids = random_ids(&mut rng, 2, seq, config.vocab_size);
            ids[0][0] = 0;
            let cpu = to_vec(model.forward(ids_tensor::<B>(&ids, &Default::default())));
            let got = to_vec(other.forward(ids_tensor::<G>(&ids, device)));
            if bitnet {
                let mut reference = Reference::load(dir.path());
                ids.iter().for_each(|row| drop(reference.forward(row)));
                if reference.min_boundary_distance < 3e-5 {
                    continue;
                }
            }
            let reference: Vec<f64> = cpu.iter().map(|v| *v as f64).collect();
            let err = max_rel_diff(&got, &reference);
            assert!(err < tolerance, "{name}, bitnet={bitnet}: relative error {err:e}");
            let loss_cpu: f32 = model.loss(ids_tensor::<B>(&ids, &Default::default())).into_scalar();
            let loss_other: f32 = other.loss(ids_tensor::<G>(&ids, device)).into_scalar().elem();
            assert!(
                ((loss_cpu - loss_other).abs() as f64) < tolerance * loss_cpu.abs() as f64,
                "{name}: loss {loss_cpu} vs {loss_other}"
            );
            clean += 1;
            if clean == 3 {
                break;
            }
        }
        assert!(clean >= 3, "{name}, bitnet={bitnet}: only {clean} draws clear of rounding ties");
    }
}

#[cfg(feature = "wgpu")]
#[test]
fn ndarray_and_wgpu_agree() {
    agrees_with_ndarray::<tritter::backend::Wgpu>("wgpu", &Default::default(), 1e-4);
}

#[cfg(feature = "cuda")]
#[test]
fn ndarray_and_cuda_agree() {
    // Measured on an H100: 3.3e-4 relative with full-precision weights. Burn's CUDA matmul
    // appears to run f32 on TF32 tensor cores (10-bit mantissa, unit roundoff 4.9e-4); see
    // `cuda_matmul_precision`, which measures the plain matmul.
    agrees_with_ndarray::<tritter::backend::Cuda>("cuda", &Default::default(), 3e-3);
}

/// The relative error of one f32 matmul against f64, so a CUDA tolerance above is explained by
/// the matmul itself rather than by the model code.
#[cfg(feature = "cuda")]
#[test]
fn cuda_matmul_precision() {
    use burn::tensor::{Tensor, TensorData};
    let mut rng = fresh_rng("cuda_matmul_precision");
    let device = Default::default();
    let (m, k, n) = (64, 256, 64);
    let a: Vec<f32> = (0..m * k).map(|_| crate::model::common::normal(&mut rng)).collect();
    let b: Vec<f32> = (0..k * n).map(|_| crate::model::common::normal(&mut rng)).collect();
    let ta = Tensor::<tritter::backend::Cuda, 2>::from_data(TensorData::new(a.clone(), [m, k]), &device);
    let tb = Tensor::<tritter::backend::Cuda, 2>::from_data(TensorData::new(b.clone(), [k, n]), &device);
    let got = to_vec(ta.matmul(tb));
    let want: Vec<f64> =
        (0..m * n).map(|i| (0..k).map(|j| a[(i / n) * k + j] as f64 * b[j * n + i % n] as f64).sum()).collect();
    let err = max_rel_diff(&got, &want);
    eprintln!("cuda f32 matmul {m}x{k}x{n}: max relative error {err:e} (f32 accumulation gives ~1e-7, TF32 ~1e-3)");
    assert!(err < 3e-3, "cuda matmul error {err:e}");
}

/// The packed matmul on `G` (its own kernel, or the tensor-op reference) against the f64
/// recomputation, on the awkward shapes and scale granularities of the CPU kernel tests; then a
/// packed checkpoint loaded on `G` gives the logits the CPU kernel gives.
fn packed_agrees<G: tritter::TritterBackend>(name: &str, device: &G::Device, tolerance: f64) {
    use crate::model::packed_kernel::{cases, random_packed, reference_f64};
    use tritter::ternary::PackedLinear;
    let mut rng = fresh_rng(name);
    for (rows, cols, tokens, scale) in cases(&mut rng) {
        for bits in [Some(8), None] {
            let p = random_packed(&mut rng, rows, cols, scale);
            let x: Vec<f32> = (0..tokens * cols).map(|_| crate::model::common::normal(&mut rng)).collect();
            let expected = reference_f64(&p, &x, bits.is_some());
            let x = burn::tensor::Tensor::<G, 2>::from_data(burn::tensor::TensorData::new(x, [tokens, cols]), device);
            let layer = PackedLinear::<G>::new(p, bits, device);
            let got = to_vec(layer.forward(x.clone()));
            let err = max_rel_diff(&got, &expected);
            assert!(
                err < tolerance,
                "{name} {rows}×{cols}, {tokens} tokens, {scale:?}, {bits:?}: relative error {err}"
            );
            for (kernel, poisoned) in poisoned_runs(&layer, x) {
                let err = max_rel_diff(&poisoned, &expected);
                assert!(err < tolerance, "{name} {kernel} into a NaN-filled output, {rows}×{cols}, {tokens} tokens, {scale:?}, {bits:?}: relative error {err}");
            }
        }
    }
    // Full-precision activations, so no int8 rounding tie can make the backends differ.
    let config = TritterConfig { activation_bits: None, init_std: 0.3, ..TritterConfig::test() };
    let packed = TritterModel::<B>::new(&config, &Default::default()).unwrap().into_packed().unwrap();
    let dir = temp_dir();
    packed.save_packed_checkpoint(dir.path(), tritter::export::FloatFormat::F32).unwrap();
    let other = TritterModel::<G>::load_checkpoint(dir.path(), device).unwrap();
    assert!(other.is_packed());
    let ids = random_ids(&mut rng, 2, 9, config.vocab_size);
    let cpu: Vec<f64> =
        to_vec(packed.forward(ids_tensor::<B>(&ids, &Default::default()))).iter().map(|&v| v as f64).collect();
    let err = max_rel_diff(&to_vec(other.forward(ids_tensor::<G>(&ids, device))), &cpu);
    assert!(err < tolerance, "{name}: packed model logits differ from the CPU kernel's by {err}");
}

/// The wgpu backend without Burn's fusion (`tritter::backend::Wgpu` is the fusion backend over it).
#[cfg(feature = "wgpu")]
type WgpuCube = burn_cubecl::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>;
/// The CUDA backend without Burn's fusion.
#[cfg(feature = "cuda")]
type CudaCube = burn_cubecl::CubeBackend<burn_cubecl::cubecl::cuda::CudaRuntime, f32, i32, u8>;

/// Each CubeCL kernel run into an output filled with NaN (unwritten elements stay NaN), on the
/// `CubeBackend`s that have them; nothing elsewhere.
#[cfg_attr(not(any(feature = "wgpu", feature = "cuda")), allow(unused_variables))]
fn poisoned_runs<G: tritter::TritterBackend>(
    layer: &tritter::ternary::PackedLinear<G>,
    x: burn::tensor::Tensor<G, 2>,
) -> Vec<(String, Vec<f32>)> {
    #[cfg(feature = "wgpu")]
    if let Some(runs) = poisoned_runs_on::<G, burn::backend::wgpu::WgpuRuntime, u32>(layer, &x) {
        return runs;
    }
    #[cfg(feature = "cuda")]
    if let Some(runs) = poisoned_runs_on::<G, burn_cubecl::cubecl::cuda::CudaRuntime, u8>(layer, &x) {
        return runs;
    }
    Vec::new()
}

/// [`poisoned_runs`] when `G` is `CubeBackend<R, f32, i32, BT>`.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn poisoned_runs_on<G: tritter::TritterBackend, R: burn_cubecl::CubeRuntime, BT: burn_cubecl::BoolElement>(
    layer: &tritter::ternary::PackedLinear<G>,
    x: &burn::tensor::Tensor<G, 2>,
) -> Option<Vec<(String, Vec<f32>)>> {
    use std::any::Any;
    use tritter::backend::cube::packed::{packed_matmul_into, CubeKernel};
    type C<R, BT> = burn_cubecl::CubeBackend<R, f32, i32, BT>;
    let layer = (layer as &dyn Any).downcast_ref::<tritter::ternary::PackedLinear<C<R, BT>>>()?;
    let x = (x as &dyn Any).downcast_ref::<burn::tensor::Tensor<C<R, BT>, 2>>()?;
    let run = |kernel: CubeKernel| {
        let output = burn::tensor::Tensor::full([x.dims()[0], layer.packed.rows], f32::NAN, &x.device());
        (format!("{kernel:?}"), to_vec(packed_matmul_into(kernel, x.clone(), layer.weight(), Some(output))))
    };
    Some(vec![run(CubeKernel::PerOutput), run(CubeKernel::RowCooperative), run(CubeKernel::Tiled)])
}

#[cfg(feature = "wgpu")]
#[test]
fn packed_matmul_on_wgpu_matches_the_reference() {
    assert!(tritter::backend::has_native_ops::<WgpuCube>());
    packed_agrees::<WgpuCube>("packed_matmul_on_wgpu_matches_the_reference", &Default::default(), 1e-4);
}

/// Under Burn's fusion the kernel runs as a registered fusion operation (its output buffer comes
/// from the fusion stream, so it cannot be poisoned here; the CubeBackend test above does that).
#[cfg(feature = "wgpu")]
#[test]
fn packed_matmul_on_wgpu_fusion_matches_the_reference() {
    type W = tritter::backend::Wgpu;
    assert!(
        tritter::backend::has_native_ops::<W>() && tritter::backend::has_native_ops::<burn::backend::Autodiff<W>>()
    );
    packed_agrees::<W>("packed_matmul_on_wgpu_fusion_matches_the_reference", &Default::default(), 1e-4);
}

#[cfg(feature = "cuda")]
#[test]
fn packed_matmul_on_cuda_matches_the_reference() {
    type C = tritter::backend::Cuda; // the fusion backend over CudaCube
    assert!(tritter::backend::has_native_ops::<C>() && tritter::backend::has_native_ops::<CudaCube>());
    packed_agrees::<C>("packed_matmul_on_cuda_matches_the_reference", &Default::default(), 3e-3);
    packed_agrees::<CudaCube>("packed_matmul_on_cuda_matches_the_reference (CubeBackend)", &Default::default(), 3e-3);
}
