"""Side-by-side: Tritter (Rust, CPU/ndarray) against the PyTorch reference on the same machine,
same presets, batch, sequence length and thread count, in one run.

    pip install -r bench/pytorch/requirements.txt
    python bench/pytorch/compare.py [--threads 2] [--quick] [--repeats 3]

Each row runs in a fresh process (`cargo bench --bench vs_pytorch -- ...` and
`python bench/pytorch/torch_bench.py ...`), so its peak memory (VmHWM / ru_maxrss) is its own.
Every row runs `--repeats` times, the two sides alternating, and keeps each side's fastest run:
on shared machines one side's rate moves by ±20% from minute to minute. Prints the table with the ratio Tritter / PyTorch and writes it, with the machine and the
commands, to the `vs_pytorch` section of BENCHMARKS.md.
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# (preset, what, batch, seq, iters): generation rows use batch 1, `seq` prompt tokens and
# `iters` new tokens.
ROWS = [
    ("test", "forward", 8, 128, 100),
    ("test", "train", 8, 128, 100),
    ("test", "generate", 1, 16, 64),
    ("small_100m", "forward", 4, 128, 3),
    ("small_100m", "train", 4, 128, 3),
    ("small_100m", "generate", 1, 16, 16),
]


def run_json(cmd, env):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=ROOT).stdout
    return json.loads([l for l in out.splitlines() if l.startswith("{")][-1])


def bench(what, args):
    return ["cargo", "bench", "-q", "--bench", "vs_pytorch", "--", "--what", what] + args


def machine():
    cpu = "unknown CPU"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}"


def record(section, body):
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start, end = f"<!-- {section} -->", f"<!-- /{section} -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n" + block + "\n"
    path.write_text(text)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="only the test preset")
    p.add_argument("--repeats", type=int, default=3, help="runs per row and side (the fastest is kept)")
    a = p.parse_args()
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    import torch

    subprocess.run(["cargo", "bench", "--bench", "vs_pytorch", "--no-run"], check=True, cwd=ROOT, env=env)
    lines = []
    for preset, what, batch, seq, iters in ROWS:
        if a.quick and preset != "test":
            continue
        args = ["--preset", preset, "--batch", str(batch), "--seq", str(seq), "--iters", str(iters)]
        ours_what = "generate-packed" if what == "generate" else what
        torch_cmd = [sys.executable, str(HERE / "torch_bench.py"), "--what", what, "--threads", str(a.threads)] + args
        runs = [(run_json(torch_cmd, env), run_json(bench(ours_what, args), env)) for _ in range(a.repeats)]
        theirs, ours = (max((r[i] for r in runs), key=lambda row: row["tokens_per_s"]) for i in (0, 1))
        extra = ""
        if what == "generate":
            f32 = max((run_json(bench("generate", args), env) for _ in range(a.repeats)), key=lambda row: row["tokens_per_s"])
            extra = f" (f32: {f32['tokens_per_s']:.1f}, {f32['tokens_per_s'] / theirs['tokens_per_s']:.2f}×)"
        ratio = ours["tokens_per_s"] / theirs["tokens_per_s"]
        label = {"forward": "forward", "train": "train step (fwd + bwd + AdamW)", "generate": "generation, packed vs f32"}[what]
        shape = f"1 × ({seq} + {iters})" if what == "generate" else f"{batch} × {seq}"
        line = (f"| {preset} | {label} | {shape} | {ours['tokens_per_s']:.1f}{extra} | {theirs['tokens_per_s']:.1f} | "
                f"**{ratio:.2f}×** | {ours['peak_rss_mib']:.0f} | {theirs['peak_rss_mib']:.0f} |")
        print(line, flush=True)
        lines.append(line)
    body = (
        "## Tritter vs PyTorch (CPU)\n\n"
        f"Machine: {machine()}; PyTorch {torch.__version__}; {a.threads} threads on both sides "
        f"(RAYON_NUM_THREADS, torch.set_num_threads); each side's fastest of {a.repeats} alternating runs. "
        f"Command: `python bench/pytorch/compare.py --threads {a.threads} --repeats {a.repeats}`"
        " (rows: `cargo bench --bench vs_pytorch -- --preset P --what W --batch B --seq T --iters N` and "
        "`python bench/pytorch/torch_bench.py` with the same arguments, one process each). Tokens per second; "
        "peak resident memory of the row's process in MiB. Both sides run the fake-quantized training forward "
        "(bitnet on, int8 activations); for generation Tritter runs its packed model (and, in parentheses, the "
        "fake-quantized f32 model) against PyTorch's f32 model with a KV cache, greedy, batch 1. Goals: train step "
        "ratio ≥ 1.3 on both presets; packed generation ≥ 2×.\n\n"
        "| preset | what | batch × seq | Tritter tokens/s | PyTorch tokens/s | Tritter / PyTorch | Tritter MiB | PyTorch MiB |\n"
        "|---|---|---|---|---|---|---|---|\n" + "\n".join(lines)
    )
    record("vs_pytorch", body)


if __name__ == "__main__":
    main()
