"""transformers loads a model exported by `tritter export --format hf` and reproduces Tritter's logits.

    python bench/hf/check_export.py TRITTER_BIN MODEL_DIR [--packed] [--seed N]

Exports MODEL_DIR (a Tritter checkpoint) with `--dtype f32` into a temporary directory, loads it
with `AutoModelForCausalLM.from_pretrained`, and compares the logits of random ids with
`tritter logits` on the same ids. Prints the max relative difference (max |a - b| / max |b|).
"""

import argparse
import json
import subprocess
import tempfile

import torch
from transformers import AutoModelForCausalLM


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("tritter")
    parser.add_argument("model")
    parser.add_argument("--packed", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        export = [args.tritter, "export", "--model", args.model, "--format", "hf", "--dtype", "f32", "--out", out]
        subprocess.run(export + (["--packed"] if args.packed else []), check=True)
        config = json.load(open(f"{out}/config.json"))
        model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
        ids = torch.randint(0, config["vocab_size"], (1, args.tokens), generator=torch.Generator().manual_seed(args.seed))
        with torch.no_grad():
            theirs = model(ids).logits[0]
        run = subprocess.run([args.tritter, "logits", "--model", args.model, "--ids", ",".join(map(str, ids[0].tolist()))]
                             + (["--packed"] if args.packed else []), check=True, capture_output=True, text=True)
        ours = torch.tensor(json.loads(run.stdout)["logits"]).reshape(theirs.shape)
        layer = model.model.layers[0].self_attn.q_proj
        diff = ((ours - theirs).abs().max() / theirs.abs().max()).item()
        print(f"{type(model).__name__} ({type(layer).__name__}), {args.tokens} tokens: "
              f"max relative logit difference {diff:.3e}")


if __name__ == "__main__":
    main()
