"""Closed-loop replay: the model runs over real text with its KV cache compressed by tq codecs.

In every compressed layer, the post-RoPE K and V of each token are encoded and decoded by a tq
codec (through the Python module `tq`, one codec instance per (layer, kv head, tensor), seeded with
tq.seed_for(seed, layer, head, "k"/"v") exactly as the CLI seeds it) before attention reads them.
The attention output, and hence the residual stream, every later layer and every later token,
therefore sees the damage, as in a real compressed cache. The reference is the same forward pass
without compression; both are compared per predicted token (docs/replay.md):

  nll       -log p(next token)            (float64 log-softmax of the model's logits)
  kl        KL(p_ref || p_codec) of the next-token distributions, nats, float64
  top1      argmax p_codec == argmax p_ref
  dp        p_codec(next token) - p_ref(next token)

and pooled: mean NLL / PPL of both runs, ΔPPL and PPL ratio with the paired per-token standard
error (delta method, as llama.cpp's perplexity --kl-divergence computes it), mean / median / p99 /
max KL, top-1 agreement, RMS Δp -- the columns of llama.cpp's KL-divergence mode.

How the cache is replayed (the `mode` column):

  rowwise  per-vector codecs (tq-mse, eden, q8_0, q4_0, fp16, outlier, sinks=N, ...): token t's
           row decodes to the same vector whatever follows it, so encoding each head's [T, d]
           matrix once and running the usual causal (teacher-forced) forward pass is exactly a
           cache that encodes each token's K/V as it is produced. Cost: one encode+decode per
           (layer, head, tensor).
  prefix   codecs whose cache content depends on how many tokens it holds (KIVI's token groups
           and not-yet-full K residual, window=R recent tokens, center): for every query
           position t the cache state is decode(encode(K[0..t])) (and the same for V), i.e.
           the whole prefix is re-encoded at every step, and query t attends to that state.
           For KIVI this is exactly a streaming cache (complete groups are anchored at the first
           quantized token and never change once formed; the residual/window rows stay full
           precision); for `center` it is a cache that may re-encode with the running mean.
           Cost: T encode+decode calls of growing length per (layer, head, tensor), O(T^2 d).

The mode is chosen per codec by a probe (`auto`): a random [97, d] matrix is encoded whole and as
prefixes of several lengths; if every prefix decodes to exactly the first rows of the whole
decoding the codec is rowwise, else prefix. `--replay-mode prefix` forces the exact (slow) path.

Backends: llama2c and gguf (numpy forward passes with a kv_hook; prefix mode attends per query to
StepwiseKV states) and hf (transformers): rowwise through HfBackend.capture's kv_hook in one
cache-less pass, prefix through HfBackend.stepwise_logits, an incremental decode whose cache
hands attention decode(encode(prefix)) at every step (hf_prefix_logits).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from .errors import DumpError

DEFAULT_SEED = 0  # apps/tq/app.h kDefaultSeed: the CLI's seed when --seed is not given
MODES = ("auto", "rowwise", "prefix")
FORMATS = ("table", "md", "csv", "json")


# ---- the tq module --------------------------------------------------------------------------

def import_tq():
    """Imports the pybind11 module `tq` from $TQ_BUILD_DIR/python, build/python or
    build-test/python of this repository (or from sys.path). DumpError when it is not built."""
    try:
        import tq  # noqa: F401
        return tq
    except ImportError:
        pass
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cands = []
    if os.environ.get("TQ_BUILD_DIR"):
        cands.append(os.path.join(os.environ["TQ_BUILD_DIR"], "python"))
    cands += [os.path.join(root, b, "python") for b in ("build", "build-test")]
    for c in cands:
        if os.path.isdir(os.path.join(c, "tq")):
            sys.path.insert(0, c)
            try:
                import tq
                return tq
            except ImportError as e:
                sys.path.remove(c)
                raise DumpError(f"--replay: cannot import the tq module from {c}: {e} (is it built "
                                "for this Python? docs/python.md)")
    raise DumpError("--replay needs the tq Python module: build it (cmake -DTQ_BUILD_PYTHON=ON, "
                    "e.g. scripts/tq info) or set TQ_BUILD_DIR to a build directory")


# ---- codecs ---------------------------------------------------------------------------------

class CodecBank:
    """One codec per (layer, kv head, tensor) for one spec, built lazily with the CLI's seeds."""

    def __init__(self, tq, spec, dim, seed):
        self.tq, self.spec_arg, self.dim, self.seed = tq, spec, dim, seed
        try:
            probe = tq.Codec(spec, dim, tq.seed_for(seed, 0, 0, "k"), "k")
            tq.Codec(spec, dim, tq.seed_for(seed, 0, 0, "v"), "v")
        except ValueError as e:
            raise DumpError(f"--replay '{spec}': {e}")
        if probe.needs_training:
            raise DumpError(f"--replay '{spec}': data-trained codecs are not supported by replay")
        self.spec = probe.spec
        self._codecs = {}

    def get(self, layer, head, tensor):
        key = (layer, head, tensor)
        c = self._codecs.get(key)
        if c is None:
            c = self.tq.Codec(self.spec_arg, self.dim, self.tq.seed_for(self.seed, layer, head, tensor),
                              tensor)
            self._codecs[key] = c
        return c

    def roundtrip(self, layer, head, tensor, x, positions):
        """(decoded float32 [T, d], encoded bytes)."""
        c = self.get(layer, head, tensor)
        enc = c.encode(np.ascontiguousarray(x, dtype=np.float32), positions)
        return c.decode(enc), len(enc)

    def probe_mode(self):
        """'rowwise' when every prefix of a random input decodes to the first rows of the whole
        decoding (for K and V), else 'prefix'."""
        rng = np.random.default_rng(12345)
        n = 97
        x = (rng.standard_normal((n, self.dim)) * np.exp(rng.standard_normal(self.dim))).astype(np.float32)
        pos = np.arange(n, dtype=np.int32)
        for tensor in ("k", "v"):
            full, _ = self.roundtrip(0, 0, tensor, x, pos)
            for m in (1, 2, 3, 5, 8, 17, 31, 32, 33, 64, 65, 96):
                part, _ = self.roundtrip(0, 0, tensor, x[:m], pos[:m])
                if not np.array_equal(part, full[:m]):
                    return "prefix"
        return "rowwise"


def make_banks(specs, dim, seed):
    tq = import_tq()
    return [CodecBank(tq, s, dim, seed) for s in specs]


class StepwiseKV:
    """Per-query cache states for prefix mode: query t attends to decode(encode(K[0..t]))."""

    def __init__(self, k_states, v_states, k_final, v_final):
        self.k_states, self.v_states = k_states, v_states  # [t] -> [KVH, t+1, hd] float64
        self.k, self.v = k_final, v_final

    def attend(self, q, scale):
        H, T, hd = q.shape
        KVH = self.k.shape[0]
        G = H // KVH
        qg = np.asarray(q, dtype=np.float64).reshape(KVH, G, T, hd)
        out = np.empty((KVH, G, T, hd))
        for t in range(T):
            kt, vt = self.k_states[t], self.v_states[t]
            s = np.einsum("kgd,ksd->kgs", qg[:, :, t], kt) * scale
            s -= s.max(axis=-1, keepdims=True)
            p = np.exp(s)
            p /= p.sum(axis=-1, keepdims=True)
            out[:, :, t] = np.einsum("kgs,ksd->kgd", p, vt)
        return out.reshape(H, T, hd)


@dataclass
class HookStats:
    bytes: int = 0        # encoded bytes of the final cache (all compressed layers, heads, K and V)
    elements: int = 0     # K and V elements those bytes stand for
    layers_seen: list = field(default_factory=list)


def make_hook(bank, mode, layers, stats):
    """kv_hook(layer, k, v) that compresses the layers in `layers` (a set) and passes the others
    through untouched."""

    def hook(layer, k, v):
        if layer not in layers:
            return k, v
        KVH, T, d = k.shape
        pos = np.arange(T, dtype=np.int32)
        stats.layers_seen.append(layer)
        outs = {}
        for name, x in (("k", k), ("v", v)):
            y = np.empty((KVH, T, d), dtype=np.float32)
            for h in range(KVH):
                y[h], nbytes = bank.roundtrip(layer, h, name, x[h], pos)
                stats.bytes += nbytes
                stats.elements += T * d
            outs[name] = y
        if mode == "rowwise":
            return outs["k"].astype(k.dtype), outs["v"].astype(v.dtype)
        states = {}
        for name, x in (("k", k), ("v", v)):
            st = []
            for t in range(T - 1):
                s = np.empty((KVH, t + 1, d))
                for h in range(KVH):
                    s[h], _ = bank.roundtrip(layer, h, name, x[h, :t + 1], pos[:t + 1])
                st.append(s)
            st.append(outs[name].astype(np.float64))
            states[name] = st
        return StepwiseKV(states["k"], states["v"], outs["k"].astype(k.dtype), outs["v"].astype(v.dtype))

    return hook


# ---- model adapters -------------------------------------------------------------------------

def model_geometry(backend):
    """(n_layers, n_kv_heads, head_dim) of a loaded llama2c, gguf or hf backend."""
    if backend.name == "llama2c":
        c = backend.config
        return c.n_layers, c.n_kv_heads, c.head_dim
    if backend.name == "gguf":
        c = backend.config
        return int(c["n_layer"]), int(c["n_kv_head"]), int(c["head_dim"])
    if backend.name == "hf":
        c = backend.text_config
        heads = int(c.num_attention_heads)
        hd = getattr(c, "head_dim", None) or c.hidden_size // heads
        kvh = getattr(c, "num_key_value_heads", None) or heads
        return int(c.num_hidden_layers), int(kvh), int(hd)
    raise DumpError(f"--replay is implemented for the llama2c, gguf and hf backends, not "
                    f"'{backend.name}'")


def forward(backend, ids, kv_hook=None, want_kv=False, want_q=False):
    """(logits float64 [T, V], per-layer k list, v list, q list) with the hook applied."""
    ids = np.asarray(ids, dtype=np.int64)
    if backend.name == "llama2c":
        res = backend.model.forward(ids, kv_hook=kv_hook)
        ks = [lc.k for lc in res.layers] if want_kv else None
        vs = [lc.v for lc in res.layers] if want_kv else None
        qs = [lc.q for lc in res.layers] if want_q else None
        return np.asarray(res.logits, dtype=np.float64), ks, vs, qs
    if backend.name == "hf":
        # one teacher-forced pass without a cache; the hook replaces the K/V attention reads
        cap = backend.capture(ids, want_q=want_q, kv_hook=kv_hook)
        ks = [ld.tensors["k"] for ld in cap.layers] if want_kv else None
        vs = [ld.tensors["v"] for ld in cap.layers] if want_kv else None
        qs = [ld.tensors["q"] for ld in cap.layers] if want_q else None
        return backend.last_logits, ks, vs, qs
    cap = (("k", "v") if want_kv else ()) + (("q",) if want_q else ())
    res = backend.model.forward(ids, capture=cap, kv_hook=kv_hook)
    c = res.captures
    return (np.asarray(res.logits, dtype=np.float64), c.get("k"), c.get("v"), c.get("q"))


def hf_prefix_logits(backend, ids, bank, layers, stats):
    """Prefix mode on the hf backend: an incremental decode through a transformers cache
    (HfBackend.stepwise_logits) whose every step hands attention decode(encode(K[0..t])) and
    decode(encode(V[0..t])) of the compressed layers -- the rowwise hook applied to the raw
    prefix, which is exactly the per-query cache state of the numpy backends' prefix mode.
    Bytes are counted once, on the final (full-length) cache."""
    T = len(ids)

    def kv_fn(layer, k, v):
        st = HookStats()
        k2, v2 = make_hook(bank, "rowwise", layers, st)(layer, k, v)
        if k.shape[1] == T:
            stats.bytes += st.bytes
            stats.elements += st.elements
            stats.layers_seen += st.layers_seen
        return k2, v2

    return backend.stepwise_logits(ids, kv_fn)


def attn_scale(backend):
    if backend.name == "hf":
        for m in backend.model.modules():  # the first attention layer's own scaling
            if getattr(m, "layer_idx", None) is not None and isinstance(getattr(m, "scaling", None), float):
                return float(m.scaling)
        return 1.0 / math.sqrt(model_geometry(backend)[2])
    return float(backend.config.attn_scale) if backend.name == "llama2c" else float(backend.model.attn_scale)


# ---- comparison -----------------------------------------------------------------------------

def log_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def per_token(logits_ref, logits_c, ids):
    """Per predicted position t (0..T-2, predicting ids[t+1]): dict of float64 arrays."""
    ids = np.asarray(ids)
    lr, lc = log_softmax(logits_ref[:-1]), log_softmax(logits_c[:-1])
    n = lr.shape[0]
    tgt = ids[1:]
    rows = np.arange(n)
    pr = np.exp(lr)
    kl = np.sum(pr * (lr - lc), axis=-1)
    kl = np.maximum(kl, 0.0)  # exact KL is >= 0; float64 round-off can give -1e-17
    return dict(position=rows, target=tgt, nll_ref=-lr[rows, tgt], nll=-lc[rows, tgt], kl=kl,
                top1_ref=lr.argmax(-1), top1=lc.argmax(-1),
                p_ref=np.exp(lr[rows, tgt]), p=np.exp(lc[rows, tgt]))


def _se(x):
    x = np.asarray(x, dtype=np.float64)
    return float(np.std(x, ddof=1) / math.sqrt(x.size)) if x.size > 1 else float("nan")


def pooled(tok):
    """llama.cpp-style summary with paired standard errors."""
    a, b = tok["nll"], tok["nll_ref"]
    n = a.size
    d = a - b
    ma, mb = float(a.mean()), float(b.mean())
    ppl, ppl_ref = math.exp(ma), math.exp(mb)
    if n > 1:
        cov = np.cov(np.stack([a, b]), ddof=1) / n  # covariance of the two means
        var = ppl * ppl * cov[0, 0] + ppl_ref * ppl_ref * cov[1, 1] - 2 * ppl * ppl_ref * cov[0, 1]
        dppl_se = math.sqrt(max(var, 0.0))
    else:
        dppl_se = float("nan")
    dnll_se = _se(d)
    agree = (tok["top1"] == tok["top1_ref"]).astype(np.float64)
    dp = tok["p"] - tok["p_ref"]
    dp2 = dp * dp
    rms = math.sqrt(float(dp2.mean()))
    rms_se = (_se(dp2) / (2 * rms)) if rms > 0 else 0.0
    kl = tok["kl"]
    return dict(n_tokens=int(n), nll_ref=mb, nll=ma, ppl_ref=ppl_ref, ppl=ppl,
                dppl=ppl - ppl_ref, dppl_se=dppl_se,
                dnll=float(d.mean()), dnll_se=dnll_se,
                ppl_ratio=math.exp(float(d.mean())), ppl_ratio_se=math.exp(float(d.mean())) * dnll_se,
                kl=float(kl.mean()), kl_se=_se(kl), kl_median=float(np.median(kl)),
                kl_p99=float(np.quantile(kl, 0.99)), kl_max=float(kl.max()),
                top1=float(agree.mean()),
                top1_se=math.sqrt(max(agree.mean() * (1 - agree.mean()), 0.0) / n) if n else float("nan"),
                dp_mean=float(dp.mean()), dp_rms=rms, dp_rms_se=rms_se,
                dp_max=float(np.abs(dp).max()))


# ---- proxies (open-loop, on the uncompressed run) --------------------------------------------

def proxies(tq, bank, ks, vs, qs, scale):
    """Open-loop metrics of the codec on the reference run's K/V/Q (what `tq benchmark` measures
    on a dump of this text): mean over (layer, kv head) of NMSE of K and V, mean over (layer,
    query head) of ip_rms and attn_kl (K and V both reconstructed)."""
    nk, nv, ip, akl = [], [], [], []
    for l in range(len(ks)):
        k, v, q = ks[l], vs[l], qs[l]
        KVH, T, d = k.shape
        G = q.shape[0] // KVH
        pos = np.arange(T, dtype=np.int32)
        for h in range(KVH):
            kh = np.ascontiguousarray(k[h], dtype=np.float32)
            vh = np.ascontiguousarray(v[h], dtype=np.float32)
            khat, _ = bank.roundtrip(l, h, "k", kh, pos)
            vhat, _ = bank.roundtrip(l, h, "v", vh, pos)
            nk.append(tq.recon_metrics(kh, khat)["nmse"])
            nv.append(tq.recon_metrics(vh, vhat)["nmse"])
            for g in range(G):
                qh = np.ascontiguousarray(q[h * G + g], dtype=np.float32)
                ip.append(tq.ip_metrics(qh, kh, khat)["ip_rms"])
                akl.append(tq.attention_metrics(qh, kh, vh, khat, vhat, scale)["attn_kl"])
    return dict(nmse_k=float(np.mean(nk)), nmse_v=float(np.mean(nv)),
                nmse=float(np.mean(nk + nv)), ip_rms=float(np.mean(ip)),
                attn_kl=float(np.mean(akl)))


def spearman(x, y):
    """Spearman rank correlation (average ranks for ties); nan for fewer than 3 points."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size < 3:
        return float("nan")

    def ranks(a):
        order = np.argsort(a, kind="mergesort")
        r = np.empty(a.size)
        r[order] = np.arange(a.size)
        for val in np.unique(a):  # average ties
            m = a == val
            if m.sum() > 1:
                r[m] = r[m].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


# ---- driver ---------------------------------------------------------------------------------

def parse_layers(arg, n_layers):
    """'all' -> [all layers as one set]; 'each' -> one set per layer; 'L1,L2' -> one set per
    listed layer (each compressed alone)."""
    if arg == "all":
        return [("all", set(range(n_layers)))]
    if arg == "each":
        return [(str(l), {l}) for l in range(n_layers)]
    out = []
    for part in arg.split(","):
        part = part.strip()
        try:
            l = int(part)
        except ValueError:
            raise DumpError(f"--replay-layers '{arg}': expected all, each or a comma list of layer "
                            "indices")
        if not 0 <= l < n_layers:
            raise DumpError(f"--replay-layers '{arg}': layer {l} outside 0..{n_layers - 1}")
        out.append((str(l), {l}))
    return out


def check_dump_matches(path, backend):
    """Tokens of a dump, after checking that it was made by this model: same layer count, kv
    heads, head_dim, and layer 0's K equal to the model's own (relative RMS difference < 2e-2,
    which fp16 storage passes)."""
    import h5py

    n_layers, kvh, d = model_geometry(backend)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DumpError(f"{path}: cannot open as HDF5 ({e})")
    with f:
        if "tokens/ids" not in f or "layers" not in f:
            raise DumpError(f"{path}: not a tq KV dump (no /tokens/ids or /layers)")
        dump_ids = np.asarray(f["tokens/ids"][()], dtype=np.int64)
        nl = len(f["layers"])
        k0 = np.asarray(f["layers/0/k"][()], dtype=np.float32) if "layers/0/k" in f else None
    if nl != n_layers or k0 is None or k0.shape[0] != kvh or k0.shape[2] != d:
        shape = "no layers/0/k" if k0 is None else f"{nl} layers x {k0.shape[0]} kv heads x {k0.shape[2]}"
        raise DumpError(f"{path}: dump does not match the model ({shape} in the dump, "
                        f"{n_layers} x {kvh} x {d} in the model)")
    return dump_ids, k0


def replay(backend, ids, specs, layers_arg="all", seed=DEFAULT_SEED, mode="auto",
           want_proxies=False, log=None):
    """Runs the reference and one replay per (spec, layer set). Returns a result dict with
    'rows' (pooled per run), 'per_token' (per run) and 'spearman' (when proxies)."""
    tq = import_tq()
    n_layers, kvh, d = model_geometry(backend)
    sets = parse_layers(layers_arg, n_layers)
    banks = make_banks(specs, d, seed)  # bad specs fail before any model run
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size < 2:
        raise DumpError("--replay needs at least 2 tokens (one predicted token)")
    logits_ref, ks, vs, qs = forward(backend, ids, want_kv=want_proxies, want_q=want_proxies)
    rows, toks = [], []
    for bank in banks:
        m = bank.probe_mode() if mode == "auto" else mode
        prox = proxies(tq, bank, ks, vs, qs, attn_scale(backend)) if want_proxies else None
        for label, layer_set in sets:
            stats = HookStats()
            if backend.name == "hf" and m == "prefix":
                logits = hf_prefix_logits(backend, ids, bank, layer_set, stats)
            else:
                logits, *_ = forward(backend, ids, kv_hook=make_hook(bank, m, layer_set, stats))
            tok = per_token(logits_ref, logits, ids)
            row = dict(spec=bank.spec_arg, canonical=bank.spec, layers=label, mode=m,
                       bits=stats.bytes * 8 / stats.elements if stats.elements else float("nan"),
                       bytes=stats.bytes)
            row.update(pooled(tok))
            if prox is not None:
                row.update(prox)
            rows.append(row)
            toks.append((row, tok))
            if log is not None:
                log(f"replay {bank.spec_arg} layers={label} ({m}): dPPL {row['dppl']:+.4f} "
                    f"+- {row['dppl_se']:.4f}, KL {row['kl']:.5f}, top-1 {row['top1']:.3f}")
    out = dict(n_tokens=int(ids.size), n_predicted=int(ids.size - 1), seed=seed,
               layers=layers_arg, rows=rows, per_token=toks)
    if want_proxies:
        full = [r for r in rows if r["layers"] == "all"]
        out["spearman"] = {p: spearman([r[p] for r in full], [r["kl"] for r in full])
                           for p in ("nmse", "ip_rms", "attn_kl")}
        out["spearman_n"] = len(full)
    return out


# ---- output ---------------------------------------------------------------------------------

COLUMNS = [("spec", "codec", "{}"), ("layers", "layers", "{}"), ("mode", "mode", "{}"),
           ("bits", "bits/el", "{:.3f}"), ("dppl", "ΔPPL", "{:+.4f}"), ("dppl_se", "±se", "{:.4f}"),
           ("ppl_ratio", "PPL ratio", "{:.4f}"), ("kl", "KL", "{:.5f}"), ("kl_se", "±se", "{:.5f}"),
           ("kl_p99", "KL p99", "{:.4f}"), ("top1", "top-1", "{:.3f}"), ("dp_rms", "RMS Δp", "{:.4f}")]
PROXY_COLUMNS = [("nmse", "NMSE", "{:.4g}"), ("ip_rms", "ip_rms", "{:.4g}"), ("attn_kl", "attn_kl", "{:.4g}")]


def render(result, fmt, meta):
    rows = result["rows"]
    cols = COLUMNS + (PROXY_COLUMNS if rows and "nmse" in rows[0] else [])
    if fmt == "json":
        doc = dict(tool="dump_kv.py --replay", loop="closed")
        doc.update(meta)
        doc.update(n_tokens=result["n_tokens"], n_predicted=result["n_predicted"], seed=result["seed"],
                   reference=dict(nll=rows[0]["nll_ref"], ppl=rows[0]["ppl_ref"]) if rows else None,
                   rows=rows)
        if "spearman" in result:
            doc["spearman_vs_kl"] = dict(result["spearman"], n_codecs=result["spearman_n"])
        return json.dumps(_nan_to_none(doc), indent=2, default=_jsonable, allow_nan=False) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        keys = list(rows[0].keys()) if rows else []
        w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.9g}" if isinstance(v, float) else v) for k, v in r.items()})
        return buf.getvalue()
    head = [c[1] for c in cols]
    body = [[c[2].format(r[c[0]]) for c in cols] for r in rows]
    ref = (f"reference: mean NLL {rows[0]['nll_ref']:.4f} nats, PPL {rows[0]['ppl_ref']:.4f} over "
           f"{result['n_predicted']} predicted tokens; closed loop, seed {result['seed']}") if rows else ""
    lines = []
    if fmt == "md":
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join("---" for _ in head) + "|")
        lines += ["| " + " | ".join(b) + " |" for b in body]
    else:
        wid = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
        lines.append("  ".join(h.rjust(w) for h, w in zip(head, wid)))
        lines += ["  ".join(x.rjust(w) for x, w in zip(b, wid)) for b in body]
    lines.append("")
    lines.append(ref)
    if "spearman" in result:
        s = result["spearman"]
        lines.append(f"Spearman rank correlation with KL over {result['spearman_n']} codecs: " +
                     ", ".join(f"{k} {v:+.3f}" for k, v in s.items()))
    return "\n".join(lines) + "\n"


def per_token_csv(result):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["spec", "layers", "position", "target", "nll_ref", "nll", "kl", "top1_ref", "top1",
                "p_ref", "p"])
    for row, tok in result["per_token"]:
        for i in range(tok["kl"].size):
            w.writerow([row["spec"], row["layers"], int(tok["position"][i]), int(tok["target"][i]),
                        f"{tok['nll_ref'][i]:.9g}", f"{tok['nll'][i]:.9g}", f"{tok['kl'][i]:.9g}",
                        int(tok["top1_ref"][i]), int(tok["top1"][i]), f"{tok['p_ref'][i]:.9g}",
                        f"{tok['p'][i]:.9g}"])
    return buf.getvalue()


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, set):
        return sorted(o)
    raise TypeError(type(o))


def _nan_to_none(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _nan_to_none(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_nan_to_none(v) for v in o]
    return o
