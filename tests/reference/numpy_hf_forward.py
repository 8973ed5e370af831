#!/usr/bin/env python3
"""Independent NumPy forward pass for Hugging Face checkpoints of the Llama-like families:
llama (Llama 2/3.x, with Llama 3's RoPE scaling), qwen2 (QKV biases), qwen3 (RMSNorm on each
query and key head), phi3 (fused QKV and gate/up projections, "longrope" scaling).

Written from the transformers modelling code's equations, not from the C++ engine, and kept
readable rather than fast: one function, no cache, weights looked up by their Hugging Face names.
Conventions as in numpy_forward.py: hidden_states[0] is the embedding output, hidden_states[l]
the residual after block l-1, hidden_states[L] has no final norm; logits use the final norm.
"""
import math

import numpy as np


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def llama3_inv_freq(inv_freq, scaling):
    """transformers' _compute_llama3_parameters: long wavelengths are slowed by `factor`, short
    ones kept, those in between interpolated."""
    factor = scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_context = scaling["original_max_position_embeddings"]
    low_freq_wavelen, high_freq_wavelen = old_context / low, old_context / high
    out = []
    for f in inv_freq:
        wavelen = 2 * math.pi / f
        if wavelen < high_freq_wavelen:
            out.append(f)
        elif wavelen > low_freq_wavelen:
            out.append(f / factor)
        else:
            smooth = (old_context / wavelen - low) / (high - low)
            out.append((1 - smooth) * f / factor + smooth * f)
    return np.array(out)


def rope_tables(config, head_dim, n_pos):
    """cos/sin (n_pos, head_dim/2) as transformers builds them, including the longrope
    attention factor that multiplies both."""
    base = config.get("rope_theta", 10000.0)
    inv_freq = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    scale = 1.0
    scaling = config.get("rope_scaling") or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "llama3":
        inv_freq = llama3_inv_freq(inv_freq, scaling)
    elif kind == "longrope":
        original = config["original_max_position_embeddings"]
        # The short factors apply while the sequence fits the original context.
        factors = scaling["long_factor"] if n_pos > original else scaling["short_factor"]
        inv_freq = inv_freq / np.asarray(factors, dtype=np.float64)
        factor = config["max_position_embeddings"] / original
        scale = math.sqrt(1 + math.log(factor) / math.log(original)) if factor > 1 else 1.0
    elif kind != "default":
        raise ValueError(f"rope_scaling {kind} not implemented")
    angles = np.arange(n_pos, dtype=np.float64)[:, None] * inv_freq[None, :]
    return np.cos(angles) * scale, np.sin(angles) * scale


def rope_rotate_half(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos[:, None, :], sin[:, None, :]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


def causal_attention(q, k, v, scale, window=None):
    """window: key j is visible to query i iff i - j < window (transformers' sliding window)."""
    T, n_head, _ = q.shape
    group = n_head // k.shape[1]
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    mask = (j <= i) & ((i - j < window) if window else True)
    out = np.empty((T, n_head, v.shape[-1]))
    for h in range(n_head):
        s = np.where(mask, (q[:, h] @ k[:, h // group].T) * scale, -np.inf)
        p = np.exp(s - s.max(axis=-1, keepdims=True))
        out[:, h] = (p / p.sum(axis=-1, keepdims=True)) @ v[:, h // group]
    return out


def forward(weights, config, ids):
    """weights: Hugging Face name -> float64 array. Returns (hidden_states, logits (T, vocab))."""
    kind = config["model_type"]
    L, n_head, n_kv = config["num_hidden_layers"], config["num_attention_heads"], config["num_key_value_heads"]
    hidden = config["hidden_size"]
    hd = config.get("head_dim") or hidden // n_head
    eps = config["rms_norm_eps"]
    T = len(ids)
    cos, sin = rope_tables(config, hd, T)

    def w(name):
        return weights[name]

    x = w("model.embed_tokens.weight")[np.asarray(ids)].copy()
    hs = [x.copy()]
    for layer in range(L):
        p = f"model.layers.{layer}."
        h = rmsnorm(x, w(p + "input_layernorm.weight"), eps)
        if kind == "phi3":
            qkv = h @ w(p + "self_attn.qkv_proj.weight").T
            q, k, v = np.split(qkv, [n_head * hd, n_head * hd + n_kv * hd], axis=-1)
        else:
            q, k, v = (h @ w(p + f"self_attn.{n}_proj.weight").T for n in "qkv")
            if kind == "qwen2":
                q, k, v = (t + w(p + f"self_attn.{n}_proj.bias") for t, n in zip((q, k, v), "qkv"))
        q, k, v = q.reshape(T, n_head, hd), k.reshape(T, n_kv, hd), v.reshape(T, n_kv, hd)
        if kind == "qwen3":
            q = rmsnorm(q, w(p + "self_attn.q_norm.weight"), eps)
            k = rmsnorm(k, w(p + "self_attn.k_norm.weight"), eps)
        q, k = rope_rotate_half(q, cos, sin), rope_rotate_half(k, cos, sin)
        window = config.get("sliding_window") if kind in ("mistral", "phi3") else None
        a = causal_attention(q, k, v, 1.0 / math.sqrt(hd), window).reshape(T, n_head * hd)
        x = x + a @ w(p + "self_attn.o_proj.weight").T

        h = rmsnorm(x, w(p + "post_attention_layernorm.weight"), eps)
        if kind == "phi3":
            gate, up = np.split(h @ w(p + "mlp.gate_up_proj.weight").T, 2, axis=-1)
        else:
            gate, up = h @ w(p + "mlp.gate_proj.weight").T, h @ w(p + "mlp.up_proj.weight").T
        x = x + (silu(gate) * up) @ w(p + "mlp.down_proj.weight").T
        hs.append(x.copy())

    tied = config.get("tie_word_embeddings", False)
    out = w("model.embed_tokens.weight") if tied else w("lm_head.weight")
    return hs, rmsnorm(x, w("model.norm.weight"), eps) @ out.T


def greedy(weights, config, ids, n_new):
    ids, out = list(ids), []
    for _ in range(n_new):
        _, logits = forward(weights, config, ids)
        out.append(int(np.argmax(logits[-1])))
        ids.append(out[-1])
    return out
