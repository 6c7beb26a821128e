#!/usr/bin/env bash
# Compiles the crate's CubeCL kernels (packed products, quantizers) to CUDA C++ and through NVRTC
# to PTX for sm_80 and sm_90a, on a machine without a GPU: a kernel that CUDA would reject shows
# up here rather than in a lent GPU's few minutes. Needs the wgpu tests' Vulkan driver (the
# kernels are defined against a wgpu device) and NVRTC with the CUDA headers: a toolkit
# (CUDA_PATH or /usr/local/cuda), or else NVIDIA's nvrtc and runtime wheels from PyPI, fetched
# once into target/cuda-wheels (about 90 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${CUDA_PATH:-}" ] && [ ! -f /usr/local/cuda/include/cuda_runtime.h ]; then
    dir=target/cuda-wheels
    if [ ! -f "$dir/nvidia/cuda_runtime/include/cuda_runtime.h" ] || [ ! -f "$dir/nvidia/cuda_nvrtc/lib/libnvrtc.so.12" ]; then
        mkdir -p "$dir"
        python3 -m pip download --quiet --no-deps --dest "$dir" nvidia-cuda-nvrtc-cu12 nvidia-cuda-runtime-cu12
        for wheel in "$dir"/*.whl; do python3 -m zipfile -e "$wheel" "$dir"; done
    fi
    export CUDA_PATH="$PWD/$dir/nvidia/cuda_runtime"
    export LD_LIBRARY_PATH="$PWD/$dir/nvidia/cuda_nvrtc/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
cargo test --lib --features wgpu,cuda cuda_source
