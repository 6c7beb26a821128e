"""Time to loss: Tritter (`tritter train`, the CLI a user runs) against the same model trained by
PyTorch (bench/pytorch/tritter_ref.py) on the same token cache, for the same wall time.

    pip install -r bench/pytorch/requirements.txt
    cargo build --release --bin tritter
    target/release/tritter data rust-sources            # data/rust.jsonl
    target/release/tritter tokenizer train --data data/rust.jsonl --vocab-size 4096 --out data/rust-tokenizer.json
    python bench/pytorch/time_to_loss.py --steps 600

Both sides start from the same initial weights (written here, loaded by `tritter train --init`),
read the same windows in the same order (the cache `tritter data prepare` wrote; the order is
Tritter's Feistel permutation, recomputed here), use AdamW with the same β, ε, weight decay,
global-norm clipping, warmup + cosine schedule, batch and threads, and evaluate the same
validation windows every `--eval-every` steps. Tritter runs `--steps` steps; PyTorch runs for
the same wall time. Reports the validation loss each reached and the time each took to reach
the other's final loss, and writes them to the `time_to_loss` section of BENCHMARKS.md.
"""

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import ROOT, machine, record  # noqa: E402
from tritter_ref import TritterRef  # noqa: E402

M64 = (1 << 64) - 1


def mix(z):
    """splitmix64's finaliser (src/train/order.rs)."""
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def permute(index, n, key):
    """The keyed bijection of 0..n of src/train/order.rs."""
    if n <= 1:
        return index
    bits = max((n - 1).bit_length(), 2)
    bits += bits % 2
    half = bits // 2
    mask = (1 << half) - 1
    x = index
    while True:
        left, right = x >> half, x & mask
        for r in range(4):
            f = mix(right ^ mix((key + r) & M64)) & mask
            left, right = right, left ^ f
        x = (left << half) | right
        if x < n:
            return x


class Windows:
    """A token stream cut into `seq + 1` windows, the last padded (TokenWindows)."""

    def __init__(self, tokens, seq, pad):
        self.tokens, self.window, self.pad = tokens, seq + 1, pad
        self.n = -(-len(tokens) // self.window)

    def get(self, i):
        w = self.tokens[i * self.window:(i + 1) * self.window].astype(np.int64)
        return np.pad(w, (0, self.window - len(w)), constant_values=self.pad)


def mixture_index(k, n, seed):
    """Window of a one-source WeightedMixture at position k."""
    return permute(k % n, n, mix(mix(seed) ^ 0))


def run_sample(j, n, seed):
    """Window of the run's sample j (EpochOrder over the mixture)."""
    return mixture_index(permute(j % n, n, mix(seed ^ mix(j // n))), n, seed)


def lr_at(t, a):
    if t <= a.warmup and a.warmup > 0:
        return a.lr * t / a.warmup
    progress = min((t - a.warmup) / max(a.steps - a.warmup, 1), 1.0)
    floor = a.lr * 0.1
    return floor + (a.lr - floor) * 0.5 * (1 + np.cos(np.pi * progress))


def prepare(a):
    out = subprocess.run(
        [a.tritter, "data", "prepare", "--data", a.data, "--tokenizer", a.tokenizer,
         "--val-fraction", str(a.val_fraction), "--cache-dir", a.cache_dir],
        check=True, capture_output=True, text=True, cwd=ROOT).stdout
    cache = Path(re.search(r"(?:cached in|reused cache) (\S+)", out).group(1))
    cache = cache if cache.is_absolute() else ROOT / cache
    index = json.loads((cache / "index.json").read_text())
    dtype = {"u16": np.uint16, "u32": np.uint32}[index["width"]]
    read = lambda name: np.fromfile(cache / name, dtype=dtype)  # noqa: E731
    return read("train.bin"), read("val.bin"), index["pad"]


def run_tritter(a, init, out):
    cmd = [a.tritter, "train", "--data", a.data, "--tokenizer", a.tokenizer, "--model-config", a.model_config,
           "--init", str(init),
           "--out", str(out), "--overwrite", "--steps", str(a.steps), "--batch", str(a.batch),
           "--seq", str(a.seq), "--lr", str(a.lr), "--warmup", str(a.warmup),
           "--eval-every", str(a.eval_every), "--checkpoint-every", "0", "--seed", str(a.seed),
           "--val-fraction", str(a.val_fraction), "--cache-dir", a.cache_dir, "--dashboard", "quiet"]
    env = {"RAYON_NUM_THREADS": str(a.threads), "PATH": "/usr/bin:/bin"}
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    summary = json.loads((out / "summary.json").read_text())
    return [(v["step"], v["seconds"], v["loss"]) for v in summary["validation"]], summary, " ".join(cmd)


def run_torch(a, model, train, valid, seconds):
    torch.set_num_threads(a.threads)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    valid_batch = torch.tensor(np.stack([valid.get(mixture_index(k, valid.n, a.seed))
                                         for k in range(min(a.eval_batches * a.batch, valid.n))]))
    curve, started, step = [], time.perf_counter(), 0

    def evaluate():
        model.eval()
        with torch.no_grad():
            losses = [float(model.loss(b)) for b in valid_batch.split(a.batch)]
        model.train()
        curve.append((step, time.perf_counter() - started, sum(losses) / len(losses)))

    while step < a.steps and time.perf_counter() - started < seconds:
        step += 1
        rows = [train.get(run_sample((step - 1) * a.batch + r, train.n, a.seed)) for r in range(a.batch)]
        for group in opt.param_groups:
            group["lr"] = lr_at(step, a)
        loss = model.loss(torch.tensor(np.stack(rows)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % a.eval_every == 0:
            evaluate()
    if not curve or curve[-1][0] != step:
        evaluate()
    return curve


def time_to(curve, target):
    return next((s for _, s, loss in curve if loss <= target), None)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tritter", default=str(ROOT / "target/release/tritter"))
    p.add_argument("--data", default="data/rust.jsonl")
    p.add_argument("--tokenizer", default="data/rust-tokenizer.json")
    p.add_argument("--model-config", default="data/rust-model.json")
    p.add_argument("--cache-dir", default="runs/cache")
    p.add_argument("--out", default="runs/time-to-loss")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--eval-batches", type=int, default=8)
    p.add_argument("--val-fraction", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()

    out = ROOT / a.out
    init = out / "init"
    init.mkdir(parents=True, exist_ok=True)
    config = json.loads((ROOT / a.model_config).read_text())
    torch.manual_seed(a.seed)
    model = TritterRef(config)
    (init / "config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(init / "model.safetensors"))

    train_tokens, val_tokens, pad = prepare(a)
    train, valid = Windows(train_tokens, a.seq, pad), Windows(val_tokens, a.seq, pad)
    tritter, summary, command = run_tritter(a, init, out / "tritter")
    seconds = summary["wall_seconds"]
    torch_curve = run_torch(a, model, train, valid, seconds)

    t_final, p_final = tritter[-1][2], torch_curve[-1][2]
    fmt = lambda s: "not reached" if s is None else f"{s:.0f} s"  # noqa: E731
    rows = [
        "| | steps | final validation loss | time to PyTorch's final loss | time to Tritter's final loss |",
        "|---|---|---|---|---|",
        f"| Tritter | {tritter[-1][0]} | {t_final:.4f} | {fmt(time_to(tritter, p_final))} | {tritter[-1][1]:.0f} s |",
        f"| PyTorch {torch.__version__} | {torch_curve[-1][0]} | {p_final:.4f} | {torch_curve[-1][1]:.0f} s | "
        f"{fmt(time_to(torch_curve, t_final))} |",
    ]
    curves = "\n".join(
        f"- {name}: " + ", ".join(f"{s:.0f} s {loss:.3f}" for _, s, loss in curve)
        for name, curve in [("Tritter", tritter), ("PyTorch", torch_curve)])
    body = (f"Time to loss, {seconds:.0f} s each on {a.data} ({machine()}, {a.threads} threads; model "
            f"{a.model_config}, batch {a.batch} × {a.seq}, lr {a.lr}, warmup {a.warmup}, {a.steps} steps scheduled), "
            f"`python bench/pytorch/time_to_loss.py --steps {a.steps}`:\n\n" + "\n".join(rows)
            + f"\n\nValidation curves (seconds, loss):\n{curves}\n\nTritter command: `{command}`\n")
    print(body)
    record("time_to_loss", body)


if __name__ == "__main__":
    main()
