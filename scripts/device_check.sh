#!/usr/bin/env bash
# Runs on a lent GPU machine (no cargo there): the CUDA test binary and the CUDA training example,
# built here beforehand with
#   cargo test --no-run --features cuda --test model   (copy target/debug/deps/model-<hash> to device-bin/model-test)
#   cargo build --release --features cuda --example train   (copy target/release/examples/train to device-bin/)
# Output goes to $OUT (or ./device-out).
set -uo pipefail
out="${OUT:-device-out}"
mkdir -p "$out"
log="$out/device_check.txt"
{
    echo "== machine"; date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc
    echo "== CUDA test (ndarray vs cuda) and the full suite"
    ./device-bin/model-test --test-threads=4 --nocapture 2>&1 | grep -E "^test |test result|panicked|error|cuda f32 matmul|relative error"
    echo "== example train on CUDA: generated tasks, batch 128 x 64, 600 steps"
    ./device-bin/train --batch 128 --steps 600 --out "$out/run-tasks" 2>&1 | tail -14
} 2>&1 | tee "$log"
