//! Test support: the crate's CubeCL kernels compiled to CUDA C++ (cubecl-cuda's compiler) and
//! through NVRTC to PTX, on a machine without a GPU, so that a kernel CUDA would reject is found
//! before a GPU is lent. Kernels are defined against a wgpu client (lavapipe here), whose device
//! properties stand in for the GPU's; the CUDA options are those cubecl-cuda sets for the
//! architecture. NVRTC and the CUDA headers come from a toolkit (`CUDA_PATH`, else
//! `/usr/local/cuda`) or from NVIDIA's wheels: `scripts/cuda_compile_check.sh` sets that up and
//! runs these tests (`cargo test --lib --features wgpu,cuda cuda_source`).

use std::path::PathBuf;

use burn::backend::wgpu::{WgpuDevice, WgpuRuntime};
use burn_cubecl::cubecl::cuda::CudaCompiler;
use burn_cubecl::cubecl::prelude::{
    ComputeClient, CubeDim, CubeKernel, KernelSettings, ScalarCompilationArg, TensorCompilationArg,
};
use burn_cubecl::cubecl::{Compiler, ExecutionMode, Runtime};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};

/// The client whose device the kernels are defined for.
pub(crate) fn client() -> ComputeClient<WgpuRuntime> {
    WgpuRuntime::client(&WgpuDevice::default())
}

/// Launch settings with `cube_dim` (what `launch` would pass).
pub(crate) fn settings(cube_dim: CubeDim) -> KernelSettings {
    KernelSettings::default().cube_dim(cube_dim)
}

/// A tensor argument as the kernels are launched with it (`as_tensor_arg(1)`: lines of 1, not
/// in place).
pub(crate) fn tensor() -> TensorCompilationArg {
    TensorCompilationArg { inplace: None, line_size: 1 }
}

/// A `u32` scalar argument.
pub(crate) fn scalar() -> ScalarCompilationArg<u32> {
    ScalarCompilationArg::new()
}

/// The CUDA include directory: `$CUDA_PATH/include` or `/usr/local/cuda/include`.
fn cuda_include() -> PathBuf {
    let root = std::env::var_os("CUDA_PATH").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/local/cuda"));
    let include = root.join("include");
    assert!(
        include.join("cuda_runtime.h").exists(),
        "no CUDA headers at {} (set CUDA_PATH, or run scripts/cuda_compile_check.sh, which fetches NVIDIA's wheels)",
        include.display()
    );
    include
}

/// Compiles `kernel` to CUDA C++ and with NVRTC to PTX for an A100 (sm_80) and an H100/H200
/// (sm_90a, as cubecl-cuda names it), with the options cubecl-cuda uses there; panics with
/// NVRTC's log and the source otherwise.
pub(crate) fn assert_compiles_for_cuda<K: CubeKernel>(name: &str, kernel: K) {
    let include = cuda_include().display().to_string();
    for (arch, version) in [("sm_80", 80), ("sm_90a", 90)] {
        // As cubecl-cuda's runtime sets them for `version` (its runtime.rs, `DeviceState::init`).
        let mut options = <CudaCompiler as Compiler>::CompilationOptions::default();
        options.supports_features.fast_math = true;
        options.supports_features.grid_constants = true;
        options.supports_features.fast_tanh = true;
        options.supports_features.clusters = version >= 90;
        options.supports_features.elect_sync = version >= 90;
        let definition = kernel.define();
        let entry = definition.options.kernel_name.clone();
        let source = CudaCompiler::default()
            .compile(definition, &options, ExecutionMode::Checked, kernel.address_type())
            .unwrap_or_else(|e| panic!("{name}: CubeCL -> CUDA C++ failed: {e:?}"))
            .to_string();
        assert!(
            source.contains("__global__") && source.contains(&format!("{entry} (")),
            "{name}: no `__global__` entry point `{entry}` in\n{source}"
        );
        let nvrtc = CompileOptions {
            arch: Some(arch),
            include_paths: vec![include.clone()],
            options: vec!["-lineinfo".into()],
            ..Default::default()
        };
        if let Err(e) = compile_ptx_with_opts(&source, nvrtc) {
            panic!("{name}: NVRTC rejected the CUDA source for {arch}: {e}\n{source}");
        }
    }
}
