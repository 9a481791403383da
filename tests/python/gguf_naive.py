"""Test helpers for the GGUF backend: a tiny random llama config and a naive reference forward.

The reference is written independently of scripts/dumpkv_gguf/model.py: explicit loops over
positions, heads and RoPE pairs, float64 throughout, no shared code.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts")
if SCRIPTS not in sys.path:
    sys.path.insert(0, SCRIPTS)


def tiny_config(**over) -> dict:
    cfg = {"arch": "llama", "n_layer": 2, "d_model": 64, "d_ff": 96, "n_head": 4, "n_kv_head": 2,
           "head_dim": 16, "rope_dim": 16, "rope_theta": 10000.0, "rms_eps": 1e-5,
           "context_length": 128, "vocab_size": 40, "tied_embeddings": False,
           "rope_pairing": "interleaved"}
    cfg.update(over)
    cfg["head_dim"] = cfg["rope_dim"] = cfg["d_model"] // cfg["n_head"]
    return cfg


def tiny_weights(cfg: dict, seed: int, tied: bool = False) -> dict[str, np.ndarray]:
    """Random weights with the GGUF names, [out, in] matrices, scaled to keep activations O(1)."""
    rng = np.random.default_rng(seed)
    d, dff, hd = cfg["d_model"], cfg["d_ff"], cfg["head_dim"]
    qd, kvd, vocab = cfg["n_head"] * hd, cfg["n_kv_head"] * hd, cfg["vocab_size"]

    def mat(o, i, gain=1.0):
        return (rng.standard_normal((o, i)) * gain / math.sqrt(i)).astype(np.float32)

    w = {"token_embd.weight": rng.standard_normal((vocab, d)).astype(np.float32),
         "output_norm.weight": (1.0 + 0.1 * rng.standard_normal(d)).astype(np.float32)}
    w["output.weight"] = w["token_embd.weight"] if tied else mat(vocab, d, 2.0)
    for layer in range(cfg["n_layer"]):
        b = f"blk.{layer}."
        w[b + "attn_norm.weight"] = (1.0 + 0.1 * rng.standard_normal(d)).astype(np.float32)
        w[b + "ffn_norm.weight"] = (1.0 + 0.1 * rng.standard_normal(d)).astype(np.float32)
        # larger q/k gain -> peaky attention, so the softmax matters in the tests
        w[b + "attn_q.weight"] = mat(qd, d, 3.0)
        w[b + "attn_k.weight"] = mat(kvd, d, 3.0)
        w[b + "attn_v.weight"] = mat(kvd, d)
        w[b + "attn_output.weight"] = mat(d, qd)
        w[b + "ffn_gate.weight"] = mat(dff, d)
        w[b + "ffn_up.weight"] = mat(dff, d)
        w[b + "ffn_down.weight"] = mat(d, dff)
    return w


def naive_forward(cfg: dict, w: dict[str, np.ndarray], tokens) -> dict:
    """Reference llama forward in float64; returns logits and per-layer q/k/v (post-RoPE) and
    q_pre/k_pre as [heads, T, head_dim]."""
    f = {k: np.asarray(v, dtype=np.float64) for k, v in w.items()}
    H, KVH, hd, eps = cfg["n_head"], cfg["n_kv_head"], cfg["head_dim"], cfg["rms_eps"]
    T = len(tokens)

    def norm(vec, g):
        return vec / math.sqrt(float(np.mean(vec * vec)) + eps) * g

    def rope(vec, pos):
        out = vec.copy()
        for i in range(hd // 2):
            ang = pos * cfg["rope_theta"] ** (-2.0 * i / hd)
            if cfg["rope_pairing"] == "interleaved":
                a, b = 2 * i, 2 * i + 1
            else:
                a, b = i, i + hd // 2
            out[a] = vec[a] * math.cos(ang) - vec[b] * math.sin(ang)
            out[b] = vec[a] * math.sin(ang) + vec[b] * math.cos(ang)
        return out

    xs = [f["token_embd.weight"][t].copy() for t in tokens]
    caps = {n: [] for n in ("q", "k", "v", "q_pre", "k_pre")}
    for layer in range(cfg["n_layer"]):
        b = f"blk.{layer}."
        qp = np.zeros((H, T, hd)); kp = np.zeros((KVH, T, hd)); v = np.zeros((KVH, T, hd))
        q = np.zeros_like(qp); k = np.zeros_like(kp)
        for t in range(T):
            h = norm(xs[t], f[b + "attn_norm.weight"])
            qt, kt, vt = f[b + "attn_q.weight"] @ h, f[b + "attn_k.weight"] @ h, f[b + "attn_v.weight"] @ h
            for hh in range(H):
                qp[hh, t] = qt[hh * hd:(hh + 1) * hd]
                q[hh, t] = rope(qp[hh, t], t)
            for g in range(KVH):
                kp[g, t] = kt[g * hd:(g + 1) * hd]
                k[g, t] = rope(kp[g, t], t)
                v[g, t] = vt[g * hd:(g + 1) * hd]
        for name, arr in (("q", q), ("k", k), ("v", v), ("q_pre", qp), ("k_pre", kp)):
            caps[name].append(arr)
        new_xs = []
        for t in range(T):
            o = np.zeros(H * hd)
            for hh in range(H):
                g = hh // (H // KVH)
                s = np.array([q[hh, t] @ k[g, u] / math.sqrt(hd) for u in range(t + 1)])
                p = np.exp(s - s.max()); p /= p.sum()
                o[hh * hd:(hh + 1) * hd] = sum(p[u] * v[g, u] for u in range(t + 1))
            x1 = xs[t] + f[b + "attn_output.weight"] @ o
            h2 = norm(x1, f[b + "ffn_norm.weight"])
            gt, up = f[b + "ffn_gate.weight"] @ h2, f[b + "ffn_up.weight"] @ h2
            act = gt / (1.0 + np.exp(-gt)) * up
            new_xs.append(x1 + f[b + "ffn_down.weight"] @ act)
        xs = new_xs
    logits = np.stack([f["output.weight"] @ norm(x, f["output_norm.weight"]) for x in xs])
    return {"logits": logits, **caps}


def naive_nll(logits: np.ndarray, tokens) -> float:
    tot = 0.0
    for t in range(len(tokens) - 1):
        z = logits[t]
        m = z.max()
        tot += m + math.log(np.exp(z - m).sum()) - z[tokens[t + 1]]
    return tot / (len(tokens) - 1)
