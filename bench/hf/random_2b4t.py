"""A random-weight model of BitNet b1.58 2B4T's exact shape in transformers' packed form, as the
published checkpoint stores it (AutoBitLinear offline: uint8 [out/4, in] codes + a per-tensor
scale; bf16 embeddings and norms), in two shards, without a tokenizer. For measuring
`tritter import` and packed generation at full size:

    python bench/hf/random_2b4t.py /tmp/bitnet-2b4t-random
    /usr/bin/time -v tritter import --from /tmp/bitnet-2b4t-random --out /tmp/b2b --f16
    /usr/bin/time -v tritter generate --model /tmp/b2b --prompt "Hello" --max-new-tokens 16
"""

import json
import os
import sys

import torch
from safetensors.torch import save_file

OUT = sys.argv[1] if len(sys.argv) > 1 else "/tmp/bitnet-2b4t-random"
H, L, NH, NKV, I, V = 2560, 30, 20, 5, 6912, 128256
D = H // NH
SHAPES = {"q_proj": (NH * D, H), "k_proj": (NKV * D, H), "v_proj": (NKV * D, H), "o_proj": (H, NH * D),
          "gate_proj": (I, H), "up_proj": (I, H), "down_proj": (H, I)}


def packed(rows, cols, g):
    # Uniform codes 0..2 in each bit pair (values -1, 0, 1).
    codes = torch.randint(0, 3, (4, rows // 4, cols), generator=g, dtype=torch.uint8)
    return codes[0] | (codes[1] << 2) | (codes[2] << 4) | (codes[3] << 6)


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    index, shard = {}, {}
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    shard["model.embed_tokens.weight"] = (torch.randn(V, H, generator=g) * 0.02).to(torch.bfloat16)
    shard["model.norm.weight"] = torch.ones(H, dtype=torch.bfloat16)
    for layer in range(L):
        if layer == L // 2:
            save_file(shard, os.path.join(OUT, names[0]), metadata={"format": "pt"})
            index.update({k: names[0] for k in shard})
            shard = {}
        p = f"model.layers.{layer}"
        for norm, dim in [("input_layernorm", H), ("post_attention_layernorm", H), ("self_attn.attn_sub_norm", H), ("mlp.ffn_sub_norm", I)]:
            shard[f"{p}.{norm}.weight"] = torch.ones(dim, dtype=torch.bfloat16)
        for name, (rows, cols) in SHAPES.items():
            block = "mlp" if name in ("gate_proj", "up_proj", "down_proj") else "self_attn"
            shard[f"{p}.{block}.{name}.weight"] = packed(rows, cols, g)
            shard[f"{p}.{block}.{name}.weight_scale"] = torch.tensor([1.0 / (cols ** 0.5)], dtype=torch.bfloat16)
    save_file(shard, os.path.join(OUT, names[1]), metadata={"format": "pt"})
    index.update({k: names[1] for k in shard})
    with open(os.path.join(OUT, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": index}, f)
    config = {"architectures": ["BitNetForCausalLM"], "model_type": "bitnet", "hidden_act": "relu2", "hidden_size": H,
              "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NKV,
              "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": True,
              "vocab_size": V, "bos_token_id": 128000, "eos_token_id": 128001, "attention_bias": False,
              "torch_dtype": "bfloat16",
              "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "offline"}}
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
