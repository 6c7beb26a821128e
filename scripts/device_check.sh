#!/usr/bin/env bash
# Runs on a lent GPU machine (no cargo, no internet there) in one call: the CUDA correctness
# tests (ndarray vs CUDA logits, the packed ternary kernel against the f64 reference with
# poisoned outputs, packed checkpoints on CUDA), the CUDA benchmarks (packed generation, hot
# paths) and the training example. Build here first with `bash scripts/device_check.sh --build`,
# which compiles with `--features cuda` and copies the binaries into device-bin/ (git-ignored);
# then run it there with device-bin/ carried. Output goes to $OUT (or ./device-out).
set -uo pipefail
if [ "${1:-}" = "--build" ]; then
    set -e
    mkdir -p device-bin
    bin() { cargo "$@" --message-format=json 2>/dev/null | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | grep -v '^$'; }
    cp "$(bin test --no-run --features cuda --test model | tail -1)" device-bin/model-test
    cp "$(bin bench --no-run --features cuda --bench generation | tail -1)" device-bin/generation
    cp "$(bin bench --no-run --features cuda --bench hot_paths | tail -1)" device-bin/hot_paths
    cp "$(bin bench --no-run --features cuda --bench gpu_gemv | tail -1)" device-bin/gpu_gemv
    cargo build --release --features cuda --example train && cp target/release/examples/train device-bin/
    strip device-bin/* || true
    ls -la device-bin
    exit 0
fi
out="${OUT:-device-out}"
mkdir -p "$out"
log="$out/device_check.txt"
{
    echo "== machine"; date -u; nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv; nproc
    echo "== CUDA tests: ndarray vs CUDA, packed kernel vs f64 (poisoned output), the full suite"
    ./device-bin/model-test --test-threads=4 --nocapture 2>&1 | grep -E "^test |test result|panicked|error|cuda f32 matmul|relative error"
    echo "== packed GEMV at batch 1 on CUDA: both CubeCL kernels vs Burn's f32 matmul, GB/s vs a device copy and the card's nominal bandwidth"
    name="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
    # Nominal memory bandwidth (GB/s) of the cards this may run on.
    case "$name" in
        *H200*) peak=4800 ;; *H100*NVL*) peak=3900 ;; *H100*PCIe*) peak=2000 ;; *H100*) peak=3350 ;;
        *A100*80GB*) peak=2039 ;; *A100*) peak=1555 ;; *) peak="" ;;
    esac
    TRITTER_GPU_NAME="$name" TRITTER_GPU_PEAK_GBS="$peak" ./device-bin/gpu_gemv --bench 2>&1 | grep -E "^CUDA|^\| CUDA|Device copy|panicked"
    echo "== generation at batch 1: packed vs fake-quantized f32 (CPU and CUDA rows)"
    ./device-bin/generation 2>&1 | grep -E "tok/s|panicked"
    echo "== hot paths"
    ./device-bin/hot_paths --bench 2>&1 | grep -E "time:|^[a-z_]+/" | head -40
    echo "== example train on CUDA: generated tasks, batch 128 x 64, 600 steps"
    ./device-bin/train --batch 128 --steps 600 --out "$out/run-tasks" 2>&1 | tail -14
} 2>&1 | tee "$log"
