"""One measurement of the PyTorch reference, the counterpart of `benches/vs_pytorch.rs`.

    python torch_bench.py --preset test --what train --batch 8 --seq 128 --iters 10 --threads 2

prints {"tokens_per_s": .., "peak_rss_mib": ..}. Presets are read from `tritter info`-independent
copies of the Rust presets (PRESETS below, checked by compare.py against the Rust side).
"""

import argparse
import json
import resource
import time

import torch

from tritter_ref import TritterRef

BASE = dict(rope_theta=500000.0, norm="layer_norm", norm_eps=1e-5, mlp_norm="pre", qk_norm=True, bitnet=True,
            weight_scale="per_tensor", activation_bits=8, ternary_lm_head=False, pad_token_id=None, init_std=0.02)
PRESETS = {
    "test": dict(BASE, vocab_size=512, hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1,
                 intermediate_size=192, max_seq_len=256, tie_embeddings=True),
    "small_100m": dict(BASE, vocab_size=32000, hidden_size=768, num_layers=12, num_heads=12, num_kv_heads=4,
                       intermediate_size=2048, max_seq_len=1024, tie_embeddings=True),
}


def rate(tokens, iters, f):
    f()
    start = time.perf_counter()
    for _ in range(iters):
        f()
    return tokens * iters / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="test")
    p.add_argument("--what", default="forward", choices=["forward", "train", "generate"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    config = PRESETS[a.preset]
    model = TritterRef(config)
    ids = torch.randint(0, config["vocab_size"], (a.batch, a.seq))
    if a.what == "forward":
        model.eval()
        with torch.no_grad():
            tps = rate(a.batch * a.seq, a.iters, lambda: model(ids))
    elif a.what == "train":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)

        def step():
            opt.zero_grad(set_to_none=True)
            model.loss(ids).backward()
            opt.step()

        tps = rate(a.batch * a.seq, a.iters, step)
    else:
        model.eval()
        prompt = ids[0, : a.seq].tolist()
        tps = rate(a.iters, 1, lambda: model.generate(prompt, a.iters))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"preset": a.preset, "what": a.what, "tokens_per_s": round(tps, 2), "peak_rss_mib": round(peak, 1)}))


if __name__ == "__main__":
    main()
