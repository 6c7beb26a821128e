"""Writes the Hugging Face fixtures of Tritter's import tests (tests/fixtures/hf/) with transformers.

Each fixture is a tiny random model saved as transformers saves it (config.json, safetensors,
sharded for one), loaded back with `from_pretrained` so transformers' own BitNet layers
(`AutoBitLinear` online/offline, `BitLinear`) compute the expected logits, and written with
`expected.json` (ids, logits). With bitnet on, inputs are redrawn until no activation or weight
lies within 5e-6 (relative) of a rounding boundary, so the import test can compare at 1e-5 (the differences are about 1e-7).

    pip install -r bench/hf/requirements.txt
    TORCHDYNAMO_DISABLE=1 python bench/hf/make_fixtures.py [OUT_DIR [SEED]]

With a SEED the shapes (hidden, heads, layers, intermediate, vocab) and weights are drawn from it
instead: parity on fresh random configs, checked by the same Rust tests with
`TRITTER_HF_FIXTURES=OUT_DIR cargo test --test suite interop::hf_`.
"""

import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from transformers import BitNetConfig, BitNetForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from transformers.integrations.bitnet import AutoBitLinear, BitLinear, pack_weights

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "hf")
BOUNDARY = 5e-6
SEED = int(sys.argv[2]) if len(sys.argv) > 2 else None
SHAPE = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=32)
if SEED is not None:
    _g = torch.Generator().manual_seed(SEED)
    _pick = lambda options: options[torch.randint(0, len(options), (1,), generator=_g).item()]
    SHAPE = dict(vocab_size=_pick([64, 100, 300]), hidden_size=_pick([32, 48, 64]), intermediate_size=_pick([48, 64, 96]),
                 num_hidden_layers=_pick([2, 3]), num_attention_heads=_pick([2, 4]), max_position_embeddings=32)
    print(f"seed {SEED}: {SHAPE}")
ONLINE = {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online"}
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def relative_distance(v):
    """Distance of each value to the nearest k + 0.5 boundary, relative to max(|v|, 1)."""
    return ((v - torch.floor(v) - 0.5).abs() / v.abs().clamp(min=1.0)).min().item()


def boundary_hooks(model, seen):
    """Records the closest approach of any quantized activation or weight to a rounding boundary."""
    def hook(module, args):
        x = args[0].float()
        s = 127 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
        seen.append(relative_distance(x * s))
        if isinstance(module, AutoBitLinear) and module.online_quant:
            w = module.weight.float()
            seen.append(relative_distance(w.abs() / w.abs().mean().clamp(min=1e-5)))

    return [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, (AutoBitLinear, BitLinear))]


def expected_logits(model, bitnet, generator):
    for _ in range(500):
        ids = torch.randint(0, SHAPE["vocab_size"], (2, 6), generator=generator)
        seen = []
        hooks = boundary_hooks(model, seen)
        with torch.no_grad():
            logits = model(ids).logits
        for h in hooks:
            h.remove()
        if not bitnet or min(seen, default=1.0) >= BOUNDARY:
            return ids, logits
    raise SystemExit("no draw clear of rounding boundaries")


def write_expected(path, model_cls, bitnet, seed):
    model = model_cls.from_pretrained(path, dtype=torch.float32).eval()
    layer = model.model.layers[0].self_attn.q_proj
    kind = type(layer).__name__ + (f"(online={layer.online_quant})" if isinstance(layer, AutoBitLinear) else "")
    ids, logits = expected_logits(model, bitnet, torch.Generator().manual_seed(seed))
    expected = {"transformers_class": model_cls.__name__, "projection_class": kind, "ids": ids.tolist(),
                "shape": list(logits.shape), "logits": logits.flatten().tolist()}
    with open(os.path.join(path, "expected.json"), "w") as f:
        json.dump(expected, f)
    print(f"{os.path.basename(path)}: {model_cls.__name__}, projections {kind}, logits {list(logits.shape)}")


def random_model(cls, config_cls, seed, **config):
    torch.manual_seed(seed + (0 if SEED is None else 1000 * SEED))
    config = config_cls(**SHAPE, **config)
    model = cls(config).float()
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):  # norms away from 1 so a missing norm shows
            p.data = 1.0 + 0.2 * torch.randn_like(p)
    return model


def save(model, name, quantization=None, dtype=torch.float32, shard=None):
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    model = model.to(dtype)
    if quantization:
        model.config.quantization_config = quantization
    model.save_pretrained(path, max_shard_size=shard) if shard else model.save_pretrained(path)
    return path


def save_offline(model, name, linear_class):
    """transformers' packed form: uint8 [out/4, in] codes (pack_weights) and a per-tensor scale."""
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    tensors = {}
    for key, value in model.state_dict().items():
        if key == "lm_head.weight" and model.config.tie_word_embeddings:
            continue  # tied: transformers saves the embedding only
        if key.rsplit(".", 2)[-2] in PROJECTIONS:
            gamma = value.abs().mean().clamp(min=1e-5)
            codes = (value / gamma).round().clamp(-1, 1)
            tensors[key] = pack_weights(codes.clone())
            scale = 1.0 / gamma if linear_class == "bitlinear" else gamma
            tensors[key.replace(".weight", ".weight_scale")] = scale.reshape(1).float()
        else:
            tensors[key] = value.contiguous()
    save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config["quantization_config"] = {"quant_method": "bitnet", "linear_class": linear_class, "quantization_mode": "offline"}
    config["architectures"] = [type(model).__name__]
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return path


def main():
    os.makedirs(OUT, exist_ok=True)
    bitnet = lambda seed, **c: random_model(BitNetForCausalLM, BitNetConfig, seed, **c)
    llama = lambda seed, **c: random_model(LlamaForCausalLM, LlamaConfig, seed, hidden_act="silu", **c)
    cases = [
        ("bitnet_gqa_online", BitNetForCausalLM, True, lambda: save(bitnet(1, num_key_value_heads=2), "bitnet_gqa_online", ONLINE)),
        ("bitnet_mqa_tied_online_sharded", BitNetForCausalLM, True, lambda: save(
            bitnet(2, num_key_value_heads=1, tie_word_embeddings=True), "bitnet_mqa_tied_online_sharded", ONLINE, shard="20KB")),
        ("bitnet_plain", BitNetForCausalLM, False, lambda: save(bitnet(3, num_key_value_heads=2), "bitnet_plain")),
        ("llama_silu_online_bf16", LlamaForCausalLM, True, lambda: save(
            llama(4, num_key_value_heads=2, tie_word_embeddings=True), "llama_silu_online_bf16", ONLINE, dtype=torch.bfloat16)),
        ("bitnet_offline_bitlinear", BitNetForCausalLM, True, lambda: save_offline(
            bitnet(5, num_key_value_heads=2), "bitnet_offline_bitlinear", "bitlinear")),
        ("bitnet_offline_autobitlinear", BitNetForCausalLM, True, lambda: save_offline(
            bitnet(6, num_key_value_heads=1, tie_word_embeddings=True), "bitnet_offline_autobitlinear", "autobitlinear")),
    ]
    offset = 0 if SEED is None else 1000 * SEED
    for seed, (name, cls, quantized, make) in enumerate(cases):
        write_expected(make(), cls, quantized, 100 + seed + offset)
    if SEED is None:
        write_chat_fixture()


CHAT_TEMPLATE = (
    "{%- set loop_messages = messages -%}"
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}{%- set loop_messages = messages[1:] -%}"
    "{{ 'System: ' + messages[0]['content'] | trim + '\\n\\n' }}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant') }}{%- endif -%}"
    "{{ message['role'] | capitalize + ': ' + message['content'] | trim }}"
    "{%- if message['role'] == 'assistant' -%}{{ eos_token }}{%- endif -%}{{ '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'Assistant: ' }}{%- endif -%}"
)


def write_chat_fixture():
    """A byte-level BPE tokenizer with a chat template, and transformers' renderings of it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    path = os.path.join(OUT, "chat")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|begin_of_text|>", "<|eot_id|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["User: hello there\nAssistant: hi, how can I help?\n"] * 20, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)
    conversations = [
        [{"role": "user", "content": "What is 2+2? "}],
        [{"role": "system", "content": " Be brief."}, {"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}],
    ]
    rendered = [{"messages": c, "add_generation_prompt": g, "text": fast.apply_chat_template(c, tokenize=False, add_generation_prompt=g),
                 "ids": fast.apply_chat_template(c, tokenize=True, add_generation_prompt=g, return_dict=False)}
                for c in conversations for g in (True, False)]
    with open(os.path.join(path, "expected_chat.json"), "w") as f:
        json.dump(rendered, f, indent=1)
    print(f"chat: {os.listdir(path)}")


if __name__ == "__main__":
    main()
