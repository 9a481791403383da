#!/usr/bin/env python3
"""Independent numpy reference for tq's attention metrics (lib/tq/metrics/attention.h).

For one query head with queries q [T, d] and the keys k, k̂ [T, d] of the KV head it reads:
  logits  l[t, s] = scale * <q_t, k_s>  for s <= t (and s > t - W with a sliding window W),
          then l = c * tanh(l / c) with a logit softcap c;
  p_t     = softmax(l[t]) in float64 (log-sum-exp), p̂_t the same with k̂;
  attn_kl = mean over t >= min_pos of KL(p_t || p̂_t) = sum_s p_s (log p_s - log p̂_s), nats.
Pooled over heads/layers it is the mean over all (head, position) rows. Query head h reads KV
head floor(h * n_kv_heads / n_heads). With v, v̂ also attn_out_err = sqrt(sum_t ||o_t - ô_t||^2 /
sum_t ||o_t||^2), o_t = sum_s p_s v_s, ô_t = sum_s p̂_s v̂_s (pooled ratio of summed squares).

This file materialises the T x T matrix (fine for the test sizes it serves) and shares no code
with tq. Usage:
  attn_kl_reference.py ORIG.h5 RECON.h5 [--layers 0,3] [--min-pos 16]
  attn_kl_reference.py --q q.npy --k k.npy --khat khat.npy --scale S [--v v.npy --vhat vhat.npy]
The .npy arrays are [heads, T, d] (or [T, d] for one head); --n-kv-heads defaults to k's heads.
Prints JSON: per-query-head and pooled attn_kl (and attn_out_err when values are given).
"""
import argparse
import json
import sys

import numpy as np


def _log_probs(q, k, scale, window=None, softcap=None):
    """log p[t, s] of causal (optionally windowed, softcapped) attention; -inf where masked."""
    q = np.asarray(q, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    T = q.shape[0]
    logits = (q @ k.T) * float(scale)
    if softcap:
        logits = softcap * np.tanh(logits / softcap)
    t_idx = np.arange(T)[:, None]
    s_idx = np.arange(T)[None, :]
    mask = s_idx <= t_idx
    if window:
        mask &= s_idx > t_idx - window
    logits = np.where(mask, logits, -np.inf)
    m = logits.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return logits - lse


def attn_kl_per_position(q, k, khat, scale, window=None, softcap=None):
    """KL(p_t || p̂_t) for every position t (array of length T)."""
    lp = _log_probs(q, k, scale, window, softcap)
    lq = _log_probs(q, khat, scale, window, softcap)
    p = np.exp(lp)
    with np.errstate(invalid="ignore"):
        terms = np.where(p > 0, p * (lp - lq), 0.0)
    return terms.sum(axis=1)


def attn_kl(q, k, khat, scale, min_pos=16, window=None, softcap=None):
    """Mean over t >= min_pos of KL(p_t || p̂_t) for one query head (q, k, khat: [T, d])."""
    kl = attn_kl_per_position(q, k, khat, scale, window, softcap)
    if min_pos >= len(kl):
        return 0.0
    return float(kl[min_pos:].mean())


def attn_out_sums(q, k, v, khat, vhat, scale, min_pos=16, window=None, softcap=None):
    """(sum_t ||o_t - ô_t||^2, sum_t ||o_t||^2) over t >= min_pos for one query head."""
    p = np.exp(_log_probs(q, k, scale, window, softcap))
    ph = np.exp(_log_probs(q, khat, scale, window, softcap))
    o = p @ np.asarray(v, dtype=np.float64)
    oh = ph @ np.asarray(vhat, dtype=np.float64)
    return float(((o - oh) ** 2)[min_pos:].sum()), float((o ** 2)[min_pos:].sum())


def kv_head_for(h, n_heads, n_kv_heads):
    return (h * n_kv_heads) // n_heads


def layer_metrics(q, k, khat, scale, n_kv_heads=None, v=None, vhat=None, min_pos=16,
                  window=None, softcap=None):
    """Per-query-head metrics of one layer. q [H, T, d]; k, khat (v, vhat) [G, T, d]."""
    q, k, khat = (np.asarray(a) for a in (q, k, khat))
    if q.ndim == 2:
        q, k, khat = q[None], k[None], khat[None]
        v = None if v is None else np.asarray(v)[None]
        vhat = None if vhat is None else np.asarray(vhat)[None]
    n_heads = q.shape[0]
    n_kv = k.shape[0] if n_kv_heads is None else n_kv_heads
    T = q.shape[1]
    n_pos = max(T - min_pos, 0)
    heads = []
    for h in range(n_heads):
        g = kv_head_for(h, n_heads, n_kv)
        row = {"head": h, "kv_head": g, "n_pos": n_pos,
               "attn_kl": attn_kl(q[h], k[g], khat[g], scale, min_pos, window, softcap)}
        if v is not None:
            e2, o2 = attn_out_sums(q[h], k[g], v[g], khat[g], vhat[g], scale, min_pos, window, softcap)
            row["out_err_sq"], row["out_sq"] = e2, o2
            row["attn_out_err"] = float(np.sqrt(e2 / o2)) if o2 > 0 else 0.0
        heads.append(row)
    return heads


def pool(heads):
    """Pooled values over per-head rows: KL mean over (head, position) rows, out_err of sums."""
    n = sum(r["n_pos"] for r in heads)
    out = {"n_pos": n,
           "attn_kl": (sum(r["attn_kl"] * r["n_pos"] for r in heads) / n) if n else 0.0}
    if heads and "out_sq" in heads[0]:
        e2 = sum(r["out_err_sq"] for r in heads)
        o2 = sum(r["out_sq"] for r in heads)
        out["attn_out_err"] = float(np.sqrt(e2 / o2)) if o2 > 0 else 0.0
    return out


def _read_h5_tensor(ds):
    """A dump dataset as float32 (fp32, fp16, or bf16 stored as uint16 with attr dtype)."""
    data = ds[()]
    dtype_attr = ds.attrs.get("dtype", b"")
    if isinstance(dtype_attr, bytes):
        dtype_attr = dtype_attr.decode()
    if dtype_attr == "bfloat16" or data.dtype == np.uint16:
        return (data.astype(np.uint32) << 16).view(np.float32)
    return data.astype(np.float32)


def _attr(attrs, name, default=None):
    if name not in attrs:
        return default
    value = attrs[name]
    return value.item() if hasattr(value, "item") else value


def h5_metrics(orig_path, recon_path, layers=None, min_pos=16):
    import h5py
    result = {"min_pos": min_pos, "layers": []}
    all_heads = []
    with h5py.File(orig_path, "r") as fo, h5py.File(recon_path, "r") as fr:
        names = sorted(fo["layers"].keys(), key=int)
        for name in names:
            i = int(name)
            if layers is not None and i not in layers:
                continue
            go, gr = fo["layers"][name], fr["layers"][name]
            if "q" not in go:
                raise SystemExit(f"attn_kl_reference: {orig_path}: /layers/{name} has no q")
            n_heads = int(_attr(go.attrs, "n_heads"))
            n_kv = int(_attr(go.attrs, "n_kv_heads"))
            head_dim = go["k"].shape[2]
            scale = float(_attr(go.attrs, "attn_scale", 1.0 / np.sqrt(head_dim)))
            window = _attr(go.attrs, "sliding_window")
            softcap = _attr(go.attrs, "logit_softcap")
            v = _read_h5_tensor(go["v"]) if "v" in go and "v" in gr else None
            vhat = _read_h5_tensor(gr["v"]) if v is not None else None
            heads = layer_metrics(_read_h5_tensor(go["q"]), _read_h5_tensor(go["k"]),
                                  _read_h5_tensor(gr["k"]), scale, n_kv, v, vhat, min_pos,
                                  int(window) if window else None,
                                  float(softcap) if softcap else None)
            layer = {"layer": i, "heads": heads}
            layer.update(pool(heads))
            result["layers"].append(layer)
            all_heads.extend(heads)
    result.update(pool(all_heads))
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dumps", nargs="*", help="ORIG.h5 RECON.h5")
    ap.add_argument("--layers", help="comma-separated layer indices (HDF5 mode)")
    ap.add_argument("--min-pos", type=int, default=16)
    ap.add_argument("--q")
    ap.add_argument("--k")
    ap.add_argument("--khat")
    ap.add_argument("--v")
    ap.add_argument("--vhat")
    ap.add_argument("--scale", type=float)
    ap.add_argument("--n-kv-heads", type=int)
    ap.add_argument("--window", type=int)
    ap.add_argument("--softcap", type=float)
    a = ap.parse_args(argv)
    if a.dumps:
        if len(a.dumps) != 2:
            ap.error("give exactly two dumps: ORIG.h5 RECON.h5")
        layers = None if a.layers is None else {int(x) for x in a.layers.split(",")}
        out = h5_metrics(a.dumps[0], a.dumps[1], layers, a.min_pos)
    else:
        if not (a.q and a.k and a.khat and a.scale):
            ap.error("npy mode needs --q, --k, --khat and --scale")
        v = np.load(a.v) if a.v else None
        vhat = np.load(a.vhat) if a.vhat else None
        heads = layer_metrics(np.load(a.q), np.load(a.k), np.load(a.khat), a.scale, a.n_kv_heads,
                              v, vhat, a.min_pos, a.window, a.softcap)
        out = {"min_pos": a.min_pos, "heads": heads}
        out.update(pool(heads))
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
