#!/usr/bin/env python3
"""tq against its peers on the same data: encode / decode throughput and NMSE.

Data: N x d fp32 standard-normal vectors (default 1M x 128, seed 0), generated once.
Methods (each skipped with a one-line reason when it cannot run):
  tq       hr,tq-mse:B / haar tq-mse:B / q4_0 / q8_0 through the Python module (bindings; build
           with -DTQ_BUILD_PYTHON=ON, see docs/python.md); one call encodes all N vectors.
  faiss    faiss-cpu's TurboQuant scalar quantizer `HR,SQtqmseB` when the installed version has
           it. It stores no per-vector norm and assumes normalised inputs: issue 6 says unit
           vectors scaled by sqrt(d), but faiss-cpu 1.15.1 codes plain unit vectors well and
           sqrt(d)-scaled ones badly (NMSE 0.67), so both scales are probed on 4096 vectors and
           the better one is used (named in the table). Its output is scaled back with the EXACT
           float norms (a free advantage: tq pays for and stores fp16 norms). Also SQ4 / SQ8
           (trained on 65,536 of the vectors), which take x as is. sa_encode / sa_decode.
  tqai     tqai's PolarQuantizer (torch backend; Haar rotation; uint8 indices + fp16 norms).
  turboquant-torch  its MSE quantizer, when the package installs.
Slow peers are timed on the first --peer-n vectors (default 131072) and say so.
Throughput = vectors / second of wall time for one encode (decode) call over the batch, best of
--reps. NMSE = sum |x - xhat|^2 / sum |x|^2 over the timed vectors.

Usage (the venv is made by scripts/venv, the module built as in docs/python.md):
  TQ_VENV=$PWD/.venv scripts/venv faiss-cpu tqai turboquant-torch
  PYTHONPATH=build/python OMP_NUM_THREADS=1 .venv/bin/python bench/peers.py --threads 1
"""
from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import time

import numpy as np


class Skip(Exception):
    pass


def best_time(fn, reps):
    best, out = math.inf, None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def nmse(x, xhat):
    x64 = x.astype(np.float64)
    return float(((x64 - xhat.astype(np.float64)) ** 2).sum() / (x64 ** 2).sum())


# ---- methods: each returns (n_timed, t_encode, t_decode, xhat) --------------------------------

def aligned_empty(shape, align=64):
    """float32 array whose data starts on an `align`-byte boundary (as a real cache would be)."""
    n = int(np.prod(shape))
    raw = np.empty(n * 4 + align, dtype=np.uint8)
    off = (-raw.ctypes.data) % align
    return raw[off:off + n * 4].view(np.float32).reshape(shape)


def run_tq(spec, x, reps, prealloc=False):
    try:
        tq = importlib.import_module("tq")
    except ImportError as e:
        raise Skip(f"tq Python module not importable ({e}); build with -DTQ_BUILD_PYTHON=ON and set PYTHONPATH")
    codec = tq.Codec(spec, dim=x.shape[1], seed=tq.seed_for(0, 0, 0, "k"), tensor="k")
    te, enc = best_time(lambda: codec.encode(x), reps)
    note = f"{len(enc.bytes) / len(x):.0f} B/vec"
    if prealloc:  # decode into one preallocated, 64-byte aligned array (touched once beforehand)
        out = aligned_empty(x.shape)
        out.fill(0.0)
        td, xhat = best_time(lambda: codec.decode(enc, out=out), reps)
        note += "; decode into a preallocated array"
    else:  # decode allocates its output each call, like faiss's sa_decode
        td, xhat = best_time(lambda: codec.decode(enc), reps)
    return len(x), te, td, xhat, note


def faiss_module():
    try:
        return importlib.import_module("faiss")
    except ImportError as e:
        raise Skip(f"faiss-cpu not installed ({e})")


def run_faiss_tqmse(bits, x, reps):
    faiss = faiss_module()
    if not hasattr(faiss.ScalarQuantizer, f"QT_{bits}bit_tqmse"):
        raise Skip(f"faiss {faiss.__version__} has no SQtqmse{bits}")
    d = x.shape[1]
    norms = np.linalg.norm(x.astype(np.float64), axis=1).astype(np.float32)
    safe = np.where(norms > 0, norms, 1.0).astype(np.float32)
    # Which input scale does this faiss build assume: unit vectors scaled by sqrt(d) (as issue 6
    # says) or plain unit vectors? Probe both on 4096 vectors and keep the one it codes well.
    probe = {}
    for s in (math.sqrt(d), 1.0):
        xp = np.ascontiguousarray(x[:4096] / safe[:4096, None] * np.float32(s), dtype=np.float32)
        ix = faiss.index_factory(d, f"HR,SQtqmse{bits}")
        ix.train(xp)
        probe[s] = nmse(xp, ix.sa_decode(ix.sa_encode(xp)))
    s = min(probe, key=probe.get)
    xu = np.ascontiguousarray(x / safe[:, None] * np.float32(s), dtype=np.float32)
    index = faiss.index_factory(d, f"HR,SQtqmse{bits}")
    index.train(xu[: min(len(xu), 65536)])
    te, codes = best_time(lambda: index.sa_encode(xu), reps)
    td, yu = best_time(lambda: index.sa_decode(codes), reps)
    xhat = yu * (safe / np.float32(s))[:, None]
    scale_name = "unit" if s == 1.0 else "sqrt(d)"
    other = "sqrt(d)" if s == 1.0 else "unit"
    return len(x), te, td, xhat, (f"{codes.shape[1]} B/vec + exact norm (not stored); fed {scale_name}-norm vectors "
                                  f"(probe NMSE {probe[s]:.4f} vs {max(probe.values()):.3f} "
                                  f"with {other})")


def run_faiss_sq(name, x, reps):
    faiss = faiss_module()
    index = faiss.index_factory(x.shape[1], name)
    index.train(x[: min(len(x), 65536)])
    te, codes = best_time(lambda: index.sa_encode(x), reps)
    td, xhat = best_time(lambda: index.sa_decode(codes), reps)
    return len(x), te, td, xhat, f"{codes.shape[1]} B/vec"


def torch_module():
    try:
        return importlib.import_module("torch")
    except ImportError as e:
        raise Skip(f"torch not installed ({e})")


def run_tqai(bits, x, reps, peer_n):
    try:
        quantizer = importlib.import_module("tqai.quantizer")
    except ImportError as e:
        raise Skip(f"tqai not installed ({e})")
    torch = torch_module()
    xs = x[:peer_n]
    q = quantizer.PolarQuantizer(head_dim=x.shape[1], bits=bits, seed=42)
    xt = torch.from_numpy(xs)
    with torch.no_grad():
        te, enc = best_time(lambda: q.quantize(xt), reps)
        td, yt = best_time(lambda: q.dequantize(*enc[:2]), reps)
    return len(xs), te, td, yt.float().numpy(), "Haar rotation; uint8 index/coord + fp16 norm (unpacked)"


def run_turboquant_torch(bits, x, reps, peer_n):
    mod = None
    for name in ("turboquant_torch", "turboquant"):
        try:
            mod = importlib.import_module(name)
            break
        except ImportError:
            continue
    if mod is None:
        raise Skip("turboquant-torch not installed")
    torch = torch_module()
    cls = getattr(mod, "TurboQuantMSE", None)
    if cls is None:
        raise Skip(f"{mod.__name__} has no TurboQuantMSE (API: {', '.join(n for n in dir(mod) if not n.startswith('_'))[:120]})")
    xs = x[:peer_n]
    q = cls(x.shape[1], bit_width=bits, seed=0)  # randomized Hadamard + Lloyd-Max, fp32 norms
    xt = torch.from_numpy(xs)
    with torch.no_grad():
        te, enc = best_time(lambda: q.quantize(xt), reps)
        td, yt = best_time(lambda: q.dequantize(enc), reps)
    return len(xs), te, td, yt.float().numpy(), "int64 codes + fp32 norms in memory (unpacked)"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1 << 20)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--peer-n", type=int, default=131072, help="vectors for the slow Python peers")
    ap.add_argument("--out", help="also write the Markdown table here")
    a = ap.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    try:
        torch = importlib.import_module("torch")
        torch.set_num_threads(a.threads)
    except ImportError:
        pass
    try:
        importlib.import_module("faiss").omp_set_num_threads(a.threads)
    except ImportError:
        pass

    x = np.random.default_rng(0).standard_normal((a.n, a.d), dtype=np.float32)
    b = a.bits
    methods = [
        (f"tq hr,tq-mse:{b}", lambda: run_tq(f"hr,tq-mse:{b}", x, a.reps)),
        (f"tq hr,tq-mse:{b} (out=)", lambda: run_tq(f"hr,tq-mse:{b}", x, a.reps, prealloc=True)),
        (f"tq tq-mse:{b} (haar)", lambda: run_tq(f"tq-mse:{b}", x, a.reps)),
        ("tq q4_0", lambda: run_tq("q4_0", x, a.reps)),
        ("tq q8_0", lambda: run_tq("q8_0", x, a.reps)),
        (f"faiss HR,SQtqmse{b}", lambda: run_faiss_tqmse(b, x, a.reps)),
        ("faiss SQ4", lambda: run_faiss_sq("SQ4", x, a.reps)),
        ("faiss SQ8", lambda: run_faiss_sq("SQ8", x, a.reps)),
        (f"tqai PolarQuantizer:{b}", lambda: run_tqai(b, x, 1, a.peer_n)),
        (f"turboquant-torch MSE:{b}", lambda: run_turboquant_torch(b, x, 1, a.peer_n)),
    ]
    rows = []
    ref = None
    for name, fn in methods:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            n, te, td, xhat, note = fn()
        except Skip as s:
            rows.append((name, None, str(s)))
            continue
        except Exception as e:  # a peer that installs but fails is reported, not fatal
            rows.append((name, None, f"failed: {type(e).__name__}: {str(e)[:150]}"))
            continue
        r = dict(n=n, enc=n / te / 1e6, dec=n / td / 1e6, both=n / (te + td) / 1e6, nmse=nmse(x[:n], xhat), note=note)
        if ref is None and name.startswith("tq hr,tq-mse"):
            ref = r
        rows.append((name, r, ""))

    lines = [f"{a.n} x {a.d} fp32 N(0,1) vectors, {a.bits} bits, {a.threads} thread(s); throughput in M vectors/s; "
             f"ratios against tq hr,tq-mse:{b}",
             "",
             "| method | vectors timed | encode | decode | enc+dec | NMSE | enc+dec vs tq | NMSE vs tq | note |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, r, why in rows:
        if r is None:
            lines.append(f"| {name} | – | – | – | – | – | – | – | skipped: {why} |")
            continue
        sp = f"{r['both'] / ref['both']:.3f}x" if ref else "–"
        nr = f"{r['nmse'] / ref['nmse']:.3g}x" if ref else "–"
        lines.append(f"| {name} | {r['n']} | {r['enc']:.3f} | {r['dec']:.3f} | {r['both']:.3f} | {r['nmse']:.5f} | {sp} | {nr} | {r['note']} |")
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
