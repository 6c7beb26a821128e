"""PyTorch reference of the Tritter model (docs/TRITTER_SPEC.md), reading Tritter checkpoint
directories (config.json + model.safetensors, latent f32 weights under the spec's names).

    model = TritterRef.from_checkpoint("runs/train/model")
    logits = model(torch.tensor([[1, 2, 3]]))

Quantization follows spec section 3 exactly: absmean ternary weights (per tensor, row or group),
per-token absmax int8 activations with round-half-to-even (torch.round), straight-through
estimator for training.
"""

import json
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

WEIGHT_EPS = 1e-5
ACTIVATION_EPS = 1e-5


def group_view(w, weight_scale):
    out, inp = w.shape
    if weight_scale == "per_tensor":
        return w.reshape(1, 1, out * inp)
    if weight_scale == "per_row":
        return w.reshape(out, 1, inp)
    n = weight_scale["per_group"]
    return w.reshape(out, inp // n, n)


def fake_quantize_weight(w, weight_scale):
    g = group_view(w, weight_scale)
    gamma = g.abs().mean(dim=2, keepdim=True)
    codes = torch.clamp(torch.round(g / (gamma + WEIGHT_EPS)), -1, 1)
    return (codes * gamma).reshape(w.shape)


def fake_quantize_activation(x):
    absmax = x.abs().amax(dim=-1, keepdim=True).clamp_min(ACTIVATION_EPS)
    s = 127.0 / absmax
    return torch.clamp(torch.round(x * s), -128, 127) / s


def straight_through(latent, quantized):
    return quantized.detach() + (latent - latent.detach())


class TernaryLinear(nn.Module):
    def __init__(self, d_in, d_out, quant):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_out, d_in))
        self.quant = quant  # (weight_scale or None, activation_bits or None)

    def forward(self, x):
        return ternary_linear(x, self.weight, self.quant)


def ternary_linear(x, w, quant):
    weight_scale, activation_bits = quant
    if weight_scale is not None:
        w = straight_through(w, fake_quantize_weight(w.detach(), weight_scale))
    if activation_bits is not None:
        x = straight_through(x, fake_quantize_activation(x.detach()))
    return x @ w.t()


class Norm(nn.Module):
    def __init__(self, kind, dim, eps):
        super().__init__()
        self.kind, self.eps = kind, eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if kind == "layer_norm" else None

    def forward(self, x):
        if self.kind == "layer_norm":
            return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x, offset, theta):
    # x: [B, T, heads, d], rotate-half layout
    _, t, _, d = x.shape
    half = d // 2
    freqs = theta ** (-torch.arange(0, half, dtype=torch.float64) * 2.0 / d)
    angles = torch.arange(offset, offset + t, dtype=torch.float64)[:, None] * freqs[None, :]
    cos = angles.cos().to(x.dtype)[None, :, None, :]
    sin = angles.sin().to(x.dtype)[None, :, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, c, quant):
        super().__init__()
        h, nh, nkv = c["hidden_size"], c["num_heads"], c["num_kv_heads"]
        d = h // nh
        self.nh, self.nkv, self.d, self.theta = nh, nkv, d, c["rope_theta"]
        self.q_proj = TernaryLinear(h, nh * d, quant)
        self.k_proj = TernaryLinear(h, nkv * d, quant)
        self.v_proj = TernaryLinear(h, nkv * d, quant)
        self.o_proj = TernaryLinear(nh * d, h, quant)
        self.q_norm = Norm(c["norm"], d, c["norm_eps"]) if c["qk_norm"] else None
        self.k_norm = Norm(c["norm"], d, c["norm_eps"]) if c["qk_norm"] else None

    def forward(self, x, mask, offset=0, cache=None):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.nh, self.d)
        k = self.k_proj(x).view(b, t, self.nkv, self.d)
        v = self.v_proj(x).view(b, t, self.nkv, self.d)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = rope(q, offset, self.theta).transpose(1, 2), rope(k, offset, self.theta).transpose(1, 2)
        v = v.transpose(1, 2)
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
        rep = self.nh // self.nkv
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.d)
        scores = scores.masked_fill(mask, float("-inf"))
        out = torch.softmax(scores, dim=-1) @ v
        return self.o_proj(out.transpose(1, 2).reshape(b, t, self.nh * self.d))


class Mlp(nn.Module):
    def __init__(self, c, quant):
        super().__init__()
        h, i = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = TernaryLinear(h, i, quant)
        self.up_proj = TernaryLinear(h, i, quant)
        self.down_proj = TernaryLinear(i, h, quant)

    def forward(self, x):
        return self.down_proj(F.relu(self.gate_proj(x)).square() * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c, quant):
        super().__init__()
        self.input_layernorm = Norm(c["norm"], c["hidden_size"], c["norm_eps"])
        self.self_attn = Attention(c, quant)
        self.post_attention_layernorm = Norm(c["norm"], c["hidden_size"], c["norm_eps"])
        self.mlp = Mlp(c, quant)
        self.post = c["mlp_norm"] == "post"

    def forward(self, x, mask, offset=0, cache=None):
        x = x + self.self_attn(self.input_layernorm(x), mask, offset, cache)
        if self.post:
            return self.post_attention_layernorm(x + self.mlp(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    def __init__(self, c, quant):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList([Layer(c, quant) for _ in range(c["num_layers"])])
        self.norm = Norm(c["norm"], c["hidden_size"], c["norm_eps"])


class TritterRef(nn.Module):
    def __init__(self, config):
        super().__init__()
        c = dict(config)
        c.setdefault("weight_scale", "per_tensor")
        c.setdefault("activation_bits", 8)
        self.config = c
        quant = (c["weight_scale"], c["activation_bits"]) if c["bitnet"] else (None, None)
        self.head_quant = quant if c.get("ternary_lm_head") else (None, None)
        self.model = Backbone(c, quant)
        self.lm_head = None if c["tie_embeddings"] else TernaryLinear(c["hidden_size"], c["vocab_size"], self.head_quant)
        for name, p in self.named_parameters():
            if "norm" not in name:
                nn.init.normal_(p, 0.0, c["init_std"])

    @classmethod
    def from_checkpoint(cls, directory):
        directory = Path(directory)
        model = cls(json.loads((directory / "config.json").read_text()))
        state = load_file(str(directory / "model.safetensors"))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{directory}: missing {missing}, unexpected {unexpected}")
        return model

    def mask(self, ids, keys, offset):
        # True = masked: keys after the query, and pad keys (a query always sees itself).
        t = ids.shape[1]
        q_pos = torch.arange(offset, offset + t)[:, None]
        k_pos = torch.arange(keys)[None, :]
        mask = (k_pos > q_pos)[None, None]
        pad = self.config.get("pad_token_id")
        if pad is not None and offset == 0:
            pad_keys = (ids == pad)[:, None, None, :]
            mask = mask | (pad_keys & (k_pos != q_pos)[None, None])
        return mask

    def forward(self, ids, offset=0, caches=None):
        x = self.model.embed_tokens(ids)
        keys = offset + ids.shape[1]
        mask = self.mask(ids, keys, offset)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, mask, offset, None if caches is None else caches[i])
        x = self.model.norm(x)
        if self.lm_head is not None:
            return self.lm_head(x)
        return ternary_linear(x, self.model.embed_tokens.weight, self.head_quant)

    def loss(self, ids):
        logits = self.forward(ids)[:, :-1]
        targets = ids[:, 1:]
        pad = self.config.get("pad_token_id")
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100 if pad is None else pad)

    @torch.no_grad()
    def generate(self, prompt, max_new_tokens):
        """Greedy generation at batch 1 with a KV cache (no pad handling)."""
        caches = [dict() for _ in self.model.layers]
        ids = torch.tensor([prompt])
        logits = self.forward(ids, 0, caches)
        out = []
        for step in range(max_new_tokens):
            token = int(logits[0, -1].argmax())
            out.append(token)
            logits = self.forward(torch.tensor([[token]]), len(prompt) + step, caches)
        return out
