#!/usr/bin/env bash
# Runs on a lent GPU machine (no cargo, no internet there) in one call: the CUDA correctness
# tests (ndarray vs CUDA logits; the packed ternary kernels and the quantizer kernels against
# f64 with poisoned outputs; packed checkpoints on CUDA), the CUDA benchmarks (packed GEMV at 1
# to 512 tokens, hot paths, packed generation), a task-corpus run and the real-text run. Build here first with
# `bash scripts/device_check.sh --build`, which compiles with `--features cuda` and packs the
# binaries and the real-text corpus into device-bin/bins.tar.xz (git-ignored; about 32 MB, where the binaries take
# 160 MB and a call carries at most 64 MiB; 23-40 minutes on 2 cores); then run it there with
# device-bin/ carried (about 13 minutes). Output goes to $OUT (or ./device-out). Before spending
# device time, `scripts/cuda_compile_check.sh` checks here that the CubeCL kernels compile for CUDA.
set -uo pipefail
if [ "${1:-}" = "--build" ]; then
    set -e
    rm -rf device-bin && mkdir -p device-bin
    # The executable of target `$1` that `cargo $2..` builds (cargo also reports the `tritter`
    # binary it builds alongside, so pick by name).
    exe() { local name="$1"; shift; cargo "$@" --message-format=json 2>/dev/null | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | grep "/deps/$name-[0-9a-f]*$" | tail -1; }
    # The integration test binary (tests/suite.rs); only its model suite runs there.
    cp "$(exe suite test --no-run --features cuda --test suite)" device-bin/model-test
    cp "$(exe generation bench --no-run --features cuda --bench generation)" device-bin/generation
    cp "$(exe hot_paths bench --no-run --features cuda --bench hot_paths)" device-bin/hot_paths
    cp "$(exe gpu_gemv bench --no-run --features cuda --bench gpu_gemv)" device-bin/gpu_gemv
    cargo build --release --features cuda --bin tritter && cp target/release/tritter device-bin/
    # The real-text corpus and its tokenizer (the machine there has no cargo registry).
    device-bin/tritter data rust-sources --out device-bin/rust.jsonl
    device-bin/tritter data rust-sources --crates data/rust-crates-valid.txt --out device-bin/rust-valid.jsonl
    device-bin/tritter tokenizer train --data device-bin/rust.jsonl --vocab-size 4096 --out device-bin/rust-tokenizer.json
    strip device-bin/tritter device-bin/model-test device-bin/generation device-bin/hot_paths device-bin/gpu_gemv || true
    names="model-test generation hot_paths gpu_gemv tritter rust.jsonl rust-valid.jsonl rust-tokenizer.json"
    tar -C device-bin -cJf device-bin/bins.tar.xz $names
    (cd device-bin && rm $names)
    ls -la device-bin
    exit 0
fi
out="${OUT:-device-out}"
bins=device-bin
if [ -f device-bin/bins.tar.xz ]; then
    bins=/tmp/device-bin
    mkdir -p "$bins"
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' device-bin/bins.tar.xz "$bins"
fi
# cubecl-cuda loads the driver and NVRTC at run time: make the toolkit's NVRTC findable (the
# CUDA image also ships one inside the nvidia-cuda-nvrtc Python wheel).
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
    $(python3 -c 'import glob, nvidia; print(" ".join(g for p in nvidia.__path__ for g in glob.glob(p + "/*/lib")))' 2>/dev/null); do
    [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
mkdir -p "$out"
log="$out/device_check.txt"
# Each step's whole output goes to $OUT/<step>.txt (the benches print the BENCHMARKS.md section
# they write); the log keeps the lines that matter. Each step has its own time limit so that one
# slow step cannot starve the rest of the call (about 9 minutes in all).
step() {
    local name="$1" limit="$2" filter="$3"; shift 3
    echo "== $name (limit ${limit}s)"
    timeout --kill-after=5 "$limit" "$@" >"$out/$name.txt" 2>&1
    local rc=$?
    grep -E "$filter" "$out/$name.txt"
    [ $rc -eq 0 ] || echo "!! $name exited with $rc (124 = time limit)"
}
{
    echo "== machine"; date -u; nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv; nproc
    echo "NVRTC: $( (ldconfig -p | grep -o 'libnvrtc\.so[.0-9]*' | head -1; for d in ${LD_LIBRARY_PATH:+${LD_LIBRARY_PATH//:/ }}; do ls "$d" 2>/dev/null | grep -m1 '^libnvrtc\.so'; done) | head -3 | tr '\n' ' ')"
    name="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
    # The hybrid trainer's crate runs this exact command (leading space included) every step.
    t0=$(date +%s%N); for _ in 1 2 3 4 5; do nvidia-smi " --query-gpu=memory.used" --format=csv,noheader,nounits >/dev/null 2>&1; done
    echo "nvidia-smi as the hybrid crate calls it: $(( ($(date +%s%N) - t0) / 5000000 )) ms per call"
    # Nominal memory bandwidth (GB/s) of the cards this may run on.
    case "$name" in
        *H200*) peak=4800 ;; *H100*NVL*) peak=3900 ;; *H100*PCIe*) peak=2000 ;; *H100*) peak=3350 ;;
        *A100*80GB*) peak=2039 ;; *A100*) peak=1555 ;; *) peak="" ;;
    esac
    # Correctness first: ndarray vs CUDA logits, the packed kernels vs f64 (poisoned outputs).
    step model-test 150 "^test |test result|panicked|cuda f32 matmul|relative error" \
        $bins/model-test model:: --test-threads=4 --nocapture
    # Batch-1 packed GEMV and 4/16/32/128 tokens (where the cooperative kernel stops paying and
    # the tiled one takes over) and a 512-token prefill (the tiled kernel on the FP32 units
    # against Burn's f32 matmul, which may use TF32 tensor cores), GB/s vs a device copy and the
    # card's nominal bandwidth.
    step gpu_gemv 90 "^CUDA|^\| CUDA|Device copy|panicked" \
        env TRITTER_GPU_NAME="$name" TRITTER_GPU_PEAK_GBS="$peak" TRITTER_GEMV_TOKENS=1,4,16,32,128,512 $bins/gpu_gemv --bench --warm-up-time 1
    # Linear layer forward + backward (fused vs reference) and training steps, CPU and CUDA rows.
    step hot_paths 150 "^\| (CPU|CUDA)|panicked" $bins/hot_paths --bench --warm-up-time 1 --measurement-time 2
    step generation 90 "^\| |panicked" $bins/generation
    step train 75 "." $bins/tritter train --batch 128 --steps 600 --out /tmp/run-tasks --dashboard lines
    # The real-text run (docs/training.md#real-text-rust-sources) at GPU scale: held-out crates'
    # bits per byte, then greedy and sampled Rust continuations.
    step rust-text 200 "validation after|Trained|tokens/s|Loss" $bins/tritter train --data $bins/rust.jsonl \
        --tokenizer $bins/rust-tokenizer.json --model-config data/rust-model.json --steps 2000 --batch 64 --seq 256 \
        --lr 3e-3 --warmup 150 --eval-every 500 --out /tmp/run-rust --dashboard lines
    step rust-eval 60 "bits per byte" $bins/tritter eval --model /tmp/run-rust --tokenizer $bins/rust-tokenizer.json \
        --data $bins/rust-valid.jsonl --seq 256
    step rust-generate 60 "." $bins/tritter generate --model /tmp/run-rust --tokenizer $bins/rust-tokenizer.json \
        --prompt "impl<T: Clone> Vec<T> {" --max-new-tokens 96
    # Data-parallel scaling (docs/training.md#several-devices): the same global batch on 1 GPU and
    # on every GPU of the machine; tokens/s of each and the efficiency (N-GPU tokens/s / N / 1-GPU).
    gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)
    if [ "$gpus" -gt 1 ]; then
        for n in 1 "$gpus"; do
            step "scaling-$n" 120 "Trained|devices" $bins/tritter train --preset small_100m --data $bins/rust.jsonl \
                --tokenizer $bins/rust-tokenizer.json --steps 60 --batch $((8 * gpus)) --seq 256 --devices "$n" \
                --out /tmp/run-scaling-$n --dashboard quiet --overwrite
        done
    fi
} 2>&1 | tee "$log"
