"""Batch-1 decoding and prefill: Tritter's packed model against llama.cpp on the same weights,
same machine, same thread count, in one run.

    pip install -r bench/llamacpp/requirements.txt   # CMAKE_ARGS=-DGGML_NATIVE=ON; builds llama.cpp
    cargo build --release --bin tritter
    python bench/llamacpp/decode.py [--shape small_100m|bitnet_2b4t] [--threads 2]

Makes a model of the shape in the form llama.cpp's `bitnet` graph computes (RMSNorm, SubLN,
SiLU gate, tied f32 embedding, no QK-Norm; `tritter train --steps 1` at a learning rate of 1e-9,
so the weights are the random initialisation), exports it once as a Tritter packed checkpoint
and once as GGUF with TQ2_0 projections and an f32 embedding (`tritter export`), and times:

- decode: tokens/s of greedy generation after a 16-token prompt, from two runs of different
  lengths (the difference cancels the prompt and start-up; each the fastest of `--repeats` runs,
  the two sides interleaved), for Tritter through `tritter
  generate` (the CLI a user runs) and for llama.cpp through llama-cpp-python's `eval`;
- prefill: tokens/s of a 512-token prompt (Tritter: `generate --max-new-tokens 1`);
- the bytes a decoded token reads (projection codes and scales, and the f32 embedding as the
  tied LM head) over the time per token, against a copy bandwidth measured in the same run.

Writes the table with machine, threads and commands to the `vs_llamacpp` (`vs_llamacpp_bitnet_2b4t`) section of
BENCHMARKS.md. The bitnet_2b4t shape's weights come from `bench/hf/random_2b4t.py` instead (see
`make_2b4t`).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pytorch"))
from compare import ROOT, machine, record  # noqa: E402  (BENCHMARKS.md sections, the machine line)

TRITTER = ROOT / "target/release/tritter"

SHAPES = {
    "small_100m": dict(vocab_size=32000, hidden_size=768, num_layers=12, num_heads=12, num_kv_heads=4,
                       intermediate_size=2048),
    "bitnet_2b4t": dict(vocab_size=128256, hidden_size=2560, num_layers=30, num_heads=20, num_kv_heads=5,
                        intermediate_size=6912),
}
LLAMA_FORM = dict(max_seq_len=1024, tie_embeddings=True, norm="rms_norm", qk_norm=False, sub_norm=True,
                  activation="silu", rope_theta=500000.0)


def run(cmd, env=None):
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, env=env, cwd=ROOT)


def make_model(shape, work):
    if shape == "bitnet_2b4t":
        return make_2b4t(work)
    config = work / "config.json"
    config.write_text(json.dumps({**SHAPES[shape], **LLAMA_FORM}))
    run([TRITTER, "train", "--model-config", config, "--steps", 1, "--batch", 1, "--seq", 16, "--lr", 1e-9,
         "--warmup", 0, "--eval-every", 0, "--task-examples", 0, "--dashboard", "quiet", "--out", work / "run"])
    model = work / "run" / "model"
    run([TRITTER, "export", "--model", model, "--out", work / "packed"])
    run([TRITTER, "export", "--model", model, "--format", "gguf", "--dtype", "f32", "--out", work / "model.gguf"])
    return work / "packed", work / "model.gguf"


def make_2b4t(work):
    """The 2B4T shape without training a step (which needs ~40 GB): random weights in the published
    checkpoint's packed form (`bench/hf/random_2b4t.py`), imported with an f32 embedding. Its
    activation is set to SiLU, the one llama.cpp's `bitnet` graph computes, so both sides run the
    same graph (ReLU² and SiLU cost the same; the tokens are not compared)."""
    hf = work / "hf"
    subprocess.run([sys.executable, ROOT / "bench/hf/random_2b4t.py", hf], check=True, capture_output=True)
    packed = work / "packed"
    run([TRITTER, "import", "--from", hf, "--out", packed])
    config = json.loads((packed / "config.json").read_text())
    (packed / "config.json").write_text(json.dumps({**config, "activation": "silu"}))
    run([TRITTER, "export", "--model", packed, "--format", "gguf", "--dtype", "f32", "--out", work / "model.gguf"])
    return packed, work / "model.gguf"


def tritter_seconds(packed, prompt_chars, new_tokens, env):
    """Seconds `tritter generate` reports for the prompt plus `new_tokens` greedy tokens."""
    out = run([TRITTER, "generate", "--model", packed, "--prompt", "a" * prompt_chars, "--max-new-tokens",
               new_tokens, "--ignore-eos"], env).stderr
    tokens, seconds = re.search(r"\[(\d+) tokens in ([\d.]+) s", out).groups()
    assert int(tokens) == new_tokens, out
    return float(seconds)


def llama_seconds(llm, prompt, new_tokens):
    """Seconds llama.cpp takes for the prompt plus `new_tokens` greedy tokens."""
    llm.reset()
    start = time.perf_counter()
    llm.eval(prompt)
    for _ in range(new_tokens - 1):
        llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
    return time.perf_counter() - start


def decode_rate(seconds, short, long):
    """Tokens/s of decoding alone, from runs of `short` and `long` new tokens."""
    return (long - short) / max(seconds(long) - seconds(short), 1e-9)


def best_of(repeats, runs):
    """Each of `runs` (name -> no-argument function returning seconds) run `repeats` times, the
    runs interleaved so both sides see the same moments of a shared machine; the fastest time of
    each (this machine's timings move by up to 2x from minute to minute)."""
    best = {}
    for _ in range(repeats):
        for name, run in runs.items():
            best[name] = min(best.get(name, float("inf")), run())
    return best


def copy_bandwidth():
    """GB/s of a 256 MiB copy (best of 5), bytes read + written."""
    a = np.ones(64 << 20, dtype=np.float32)
    b = np.empty_like(a)
    best = min(_timed(lambda: np.copyto(b, a)) for _ in range(5))
    return 2 * a.nbytes / best / 1e9


def _timed(f):
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def bytes_per_token(shape):
    s = SHAPES[shape]
    h, i, v = s["hidden_size"], s["intermediate_size"], s["vocab_size"]
    kv = h // s["num_heads"] * s["num_kv_heads"]
    ternary = s["num_layers"] * (h * (2 * h + 2 * kv) + 3 * h * i)
    return ternary * 66 / 256 + v * h * 4  # TQ2_0 blocks, the f32 tied head


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shape", choices=SHAPES, default="small_100m")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--short", type=int, default=16, help="new tokens of the shorter decode run")
    p.add_argument("--long", type=int, default=80, help="new tokens of the longer decode run")
    p.add_argument("--prefill", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5, help="runs of each measurement, interleaved; the fastest counts")
    a = p.parse_args()
    from llama_cpp import Llama, __version__ as llama_version

    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    with tempfile.TemporaryDirectory() as tmp:
        packed, gguf = make_model(a.shape, Path(tmp))
        llm = Llama(model_path=str(gguf), n_ctx=a.prefill + a.long + 8, n_batch=a.prefill, n_threads=a.threads,
                    n_threads_batch=a.threads, verbose=False)
        # Tritter's prompt of n characters is n + 1 ids with the byte tokenizer (its start token).
        prompt = [llm.token_bos()] + [97] * 16
        long_prompt = [llm.token_bos()] + [97] * a.prefill
        t = best_of(a.repeats, {
            ("ours", a.short): lambda: tritter_seconds(packed, 16, a.short, env),
            ("ours", a.long): lambda: tritter_seconds(packed, 16, a.long, env),
            ("theirs", a.short): lambda: llama_seconds(llm, prompt, a.short),
            ("theirs", a.long): lambda: llama_seconds(llm, prompt, a.long),
            ("ours", "prefill"): lambda: tritter_seconds(packed, a.prefill, 1, env),
            ("theirs", "prefill"): lambda: llama_seconds(llm, long_prompt, 1),
        })
        ours = decode_rate(lambda n: t["ours", n], a.short, a.long)
        theirs = decode_rate(lambda n: t["theirs", n], a.short, a.long)
        ours_prefill = (a.prefill + 1) / t["ours", "prefill"]
        theirs_prefill = (a.prefill + 1) / t["theirs", "prefill"]
        bandwidth = copy_bandwidth()
    per_token = bytes_per_token(a.shape)
    gbs = lambda rate: per_token * rate / 1e9
    rows = [
        ("decode, batch 1 (tokens/s)", ours, theirs),
        (f"prefill, {a.prefill}-token prompt (tokens/s)", ours_prefill, theirs_prefill),
    ]
    table = "\n".join(f"| {name} | {o:.1f} | {t:.1f} | **{o / t:.2f}×** |" for name, o, t in rows)
    body = f"""## Tritter vs llama.cpp (CPU, batch-1 decode and prefill)

Machine: {machine()}; {a.threads} threads on both sides; llama-cpp-python {llama_version} (llama.cpp built
from source). Command: `python bench/llamacpp/decode.py --shape {a.shape} --threads {a.threads} --repeats {a.repeats}`. One model
of the `{a.shape}` shape ({SHAPES[a.shape]}, RMSNorm, SubLN, SiLU, tied f32 embedding), exported as a
Tritter packed checkpoint (`tritter generate`) and as GGUF with TQ2_0 projections (llama.cpp's
`bitnet` graph). Decode rate from runs of {a.short} and {a.long} new tokens after a 16-token prompt; every
time is the fastest of {a.repeats} runs, the two sides' runs interleaved.

| | Tritter | llama.cpp | Tritter / llama.cpp |
|---|---|---|---|
{table}

Bytes read per decoded token: {per_token / 1e6:.1f} MB (projections at 2.06 bits per weight, the f32
head); at the decode rates that is {gbs(ours):.1f} GB/s for Tritter and {gbs(theirs):.1f} GB/s for llama.cpp,
against a copy bandwidth of {bandwidth:.1f} GB/s (numpy, 256 MiB, read + write) measured in the same run.
"""
    print(body)
    record("vs_llamacpp" if a.shape == "small_100m" else f"vs_llamacpp_{a.shape}", body)


if __name__ == "__main__":
    sys.exit(main())
