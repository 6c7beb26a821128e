"""Parity: the PyTorch reference and Tritter on the same weights and token ids.

    python bench/pytorch/parity.py [--tritter target/release/tritter] [--preset-config test]

Builds a random model in PyTorch for bitnet off and on, saves it as a Tritter checkpoint
(config.json + model.safetensors, the spec's tensor names), asks `tritter logits` for the
logits of random ids and prints the maximum relative difference (max |a − b| / max |b|) of the
f32 logits, plus PyTorch in float64 as a yardstick. With bitnet on, a value within float error of
a rounding boundary may round differently in the two f32 implementations; the script reports
how many draws of several it took to see that.
"""

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from tritter_ref import TritterRef
from torch_bench import PRESETS


def rust_logits(binary, directory, ids):
    out = subprocess.run([binary, "logits", "--model", str(directory), "--ids", ",".join(map(str, ids))],
                         check=True, capture_output=True, text=True).stdout
    data = json.loads(out)
    return torch.tensor(data["logits"], dtype=torch.float32).reshape(data["shape"])


def rel(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tritter", default="target/release/tritter")
    p.add_argument("--preset", default="test")
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--seq", type=int, default=24)
    a = p.parse_args()
    torch.manual_seed(0)
    lines = []
    for bitnet in [False, True]:
        errors = []
        for _ in range(a.draws):
            config = dict(PRESETS[a.preset], bitnet=bitnet, init_std=0.1)
            model = TritterRef(config)
            with tempfile.TemporaryDirectory() as d:
                d = Path(d)
                (d / "config.json").write_text(json.dumps(config))
                save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / "model.safetensors"))
                ids = torch.randint(0, config["vocab_size"], (1, a.seq))
                ours = rust_logits(a.tritter, d, ids[0].tolist())
            with torch.no_grad():
                theirs = model(ids)
                f64 = TritterRef(config).double()
                f64.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
                exact = f64(ids)
            errors.append((rel(ours, theirs), rel(theirs, exact), rel(ours, exact)))
        for i, (ours_vs_torch, torch_vs_f64, ours_vs_f64) in enumerate(errors):
            print(f"bitnet={str(bitnet).lower():5} draw {i}: tritter vs pytorch f32 {ours_vs_torch:.2e}   "
                  f"pytorch f32 vs f64 {torch_vs_f64:.2e}   tritter vs f64 {ours_vs_f64:.2e}")
        print(f"bitnet={str(bitnet).lower()}: max relative difference tritter vs pytorch (f32) = "
              f"{min(e[0] for e in errors):.2e} best draw, {max(e[0] for e in errors):.2e} worst draw")
        lines.append(f"| {str(bitnet).lower()} | {a.draws} | {max(e[0] for e in errors):.2e} | {max(e[1] for e in errors):.2e} | "
                     f"{max(e[2] for e in errors):.2e} |")
    from compare import machine, record
    record("vs_pytorch_parity", (
        "## Parity with the PyTorch reference\n\n"
        f"Machine: {machine()}; PyTorch {torch.__version__}. Command: `python bench/pytorch/parity.py --tritter {a.tritter} "
        f"--preset {a.preset} --seq {a.seq}`. Random weights (init_std 0.1) saved by PyTorch as a Tritter checkpoint, "
        "logits of random ids from `tritter logits` and from `bench/pytorch/tritter_ref.py`; maximum relative "
        "difference max|a − b| / max|b| over the draws (worst draw).\n\n"
        "| bitnet | draws | Tritter vs PyTorch f32 | PyTorch f32 vs f64 | Tritter vs f64 |\n|---|---|---|---|---|\n" + "\n".join(lines)))


if __name__ == "__main__":
    main()
