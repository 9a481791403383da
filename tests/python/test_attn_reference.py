"""Tests of tests/python/attn_kl_reference.py against brute-force loops (pure Python math), so
the reference the CLI tests rely on is itself checked."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import attn_kl_reference as ref  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def brute_kl(q, k, khat, scale, min_pos, window=None, softcap=None):
    """Mean KL by explicit loops: p_s = exp(l_s) / sum exp(l), KL = sum p log(p / p̂)."""
    T, d = q.shape
    total, n = 0.0, 0
    for t in range(min_pos, T):
        keys = [s for s in range(t + 1) if not window or s > t - window]

        def probs(kk):
            logits = []
            for s in keys:
                x = sum(float(q[t, i]) * float(kk[s, i]) for i in range(d)) * scale
                if softcap:
                    x = softcap * math.tanh(x / softcap)
                logits.append(x)
            m = max(logits)
            w = [math.exp(x - m) for x in logits]
            z = sum(w)
            return [x / z for x in w]

        p, ph = probs(k), probs(khat)
        total += sum(a * math.log(a / b) for a, b in zip(p, ph) if a > 0)
        n += 1
    return total / n


def rand(seed, *shape, sd=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * sd).astype(np.float32)


@pytest.mark.parametrize("window,softcap,scale,min_pos", [
    (None, None, 0.35, 16), (None, None, 0.8, 0), (5, None, 0.5, 3), (None, 2.0, 1.5, 4), (7, 3.0, 1.0, 1)])
def test_attn_kl_matches_brute_force(window, softcap, scale, min_pos):
    T, d = 30, 6
    q, k = rand(1, T, d), rand(2, T, d)
    khat = k + rand(3, T, d, sd=0.3)
    got = ref.attn_kl(q, k, khat, scale, min_pos, window, softcap)
    want = brute_kl(q, k, khat, scale, min_pos, window, softcap)
    assert want > 1e-4
    assert got == pytest.approx(want, rel=1e-10)


def test_identity_reconstruction_gives_zero():
    q, k = rand(4, 40, 8), rand(5, 40, 8)
    assert ref.attn_kl(q, k, k, 0.3) == 0.0
    heads = ref.layer_metrics(q[None], k[None], k[None], 0.3, v=k[None], vhat=k[None])
    assert heads[0]["attn_out_err"] == 0.0


def test_out_err_matches_loops():
    T, d = 20, 4
    q, k, v = rand(6, T, d), rand(7, T, d), rand(8, T, d)
    khat, vhat = k + rand(9, T, d, sd=0.2), v + rand(10, T, d, sd=0.2)
    e2, o2 = ref.attn_out_sums(q, k, v, khat, vhat, 0.5, min_pos=2)
    we2 = wo2 = 0.0
    for t in range(2, T):
        def out(kk, vv):
            l = [0.5 * sum(float(q[t, i]) * float(kk[s, i]) for i in range(d)) for s in range(t + 1)]
            m = max(l)
            w = [math.exp(x - m) for x in l]
            z = sum(w)
            return [sum(w[s] / z * float(vv[s, i]) for s in range(t + 1)) for i in range(d)]
        o, oh = out(k, v), out(khat, vhat)
        we2 += sum((a - b) ** 2 for a, b in zip(o, oh))
        wo2 += sum(a * a for a in o)
    assert e2 == pytest.approx(we2, rel=1e-10)
    assert o2 == pytest.approx(wo2, rel=1e-10)


def test_gqa_mapping_and_pooling():
    H, G, T, d = 4, 2, 24, 4
    q, k = rand(11, H, T, d), rand(12, G, T, d)
    khat = k.copy()
    khat[1] += rand(13, T, d, sd=0.3)
    heads = ref.layer_metrics(q, k, khat, 0.5, min_pos=4)
    assert [r["kv_head"] for r in heads] == [0, 0, 1, 1]
    assert heads[0]["attn_kl"] == 0.0 and heads[1]["attn_kl"] == 0.0
    assert heads[2]["attn_kl"] > 0 and heads[3]["attn_kl"] > 0
    assert heads[3]["attn_kl"] == pytest.approx(brute_kl(q[3], k[1], khat[1], 0.5, 4), rel=1e-10)
    assert ref.pool(heads)["attn_kl"] == pytest.approx(sum(r["attn_kl"] for r in heads) / 4)


def test_cli_npy_and_hdf5(tmp_path):
    h5py = pytest.importorskip("h5py")
    H, G, T, d = 4, 2, 32, 8
    q, k, v = rand(21, H, T, d), rand(22, G, T, d), rand(23, G, T, d)
    khat, vhat = k + rand(24, G, T, d, sd=0.2), v + rand(25, G, T, d, sd=0.2)
    script = os.path.join(HERE, "attn_kl_reference.py")

    for name, arr in dict(q=q, k=k, khat=khat, v=v, vhat=vhat).items():
        np.save(tmp_path / f"{name}.npy", arr)
    args = [sys.executable, script, "--scale", "0.35", "--min-pos", "16"]
    for name in ("q", "k", "khat", "v", "vhat"):
        args += [f"--{name}", str(tmp_path / f"{name}.npy")]
    npy = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
    assert len(npy["heads"]) == H
    assert npy["heads"][2]["attn_kl"] == pytest.approx(brute_kl(q[2], k[1], khat[1], 0.35, 16), rel=1e-10)

    # A pair of dumps with the same layout as tq's format: /layers/<i>/{q,k,v}, layer attrs.
    for path, kk, vv in ((tmp_path / "orig.h5", k, v), (tmp_path / "recon.h5", khat, vhat)):
        with h5py.File(path, "w") as f:
            for i in (0, 2):
                g = f.create_group(f"layers/{i}")
                g.attrs["n_heads"], g.attrs["n_kv_heads"], g.attrs["attn_scale"] = H, G, 0.35
                g["q"], g["k"], g["v"] = q, kk, vv.astype(np.float16)
    out = json.loads(subprocess.run([sys.executable, script, str(tmp_path / "orig.h5"),
                                     str(tmp_path / "recon.h5"), "--layers", "2"],
                                    check=True, capture_output=True, text=True).stdout)
    assert [layer["layer"] for layer in out["layers"]] == [2]
    assert out["attn_kl"] == pytest.approx(npy["attn_kl"], rel=1e-12)
    assert out["n_pos"] == H * (T - 16)
    assert 0 < out["attn_out_err"] < 1
