"""scripts/dump_kv.py with the gguf backend, on a tiny GGUF file written here by gguf.GGUFWriter.

Checks the dump's structure and attributes (sha256 of the file, weight precision from the tensor
types, layer attributes), that the captures equal the independent loop-based float64 reference
(gguf_naive.py) on the hand-decoded weights, that k = RoPE(k_pre) and q = RoPE(q_pre) with
interleaved pairs (rotation written out here), that grad2_k / grad2_v are the squares of the
central finite differences of the mean NLL, and the per-dataset storage dtypes (fp16 tensors with
fp32 gradients).
"""
import hashlib
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="the gguf backend needs the gguf package")
h5py = pytest.importorskip("h5py")

from gguf_naive import naive_forward, naive_nll, tiny_config, tiny_weights  # noqa: E402
from test_gguf_reader import write_tiny  # noqa: E402

from dumpkv_gguf import load  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "dump_kv.py"
TEXT = "the hen held her head here, then she hid the red hat"
# write_tiny's storage types per layer: Q4_1 for attn_q/attn_output/ffn_up/ffn_down, Q8_0 for
# attn_k/ffn_gate, F16 for attn_v; token_embd Q8_0 (tied classifier: no output tensor)
WANT_PRECISION = "Q4_1 (other layer matrices: 4 x Q8_0, 2 x F16; embedding Q8_0)"


def run_cli(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("gguf")
    cfg = tiny_config(vocab_size=131)  # byte tokens 0..127 (ASCII), 3 specials/merges
    w = tiny_weights(cfg, seed=7, tied=True)
    decoded = write_tiny(d / "tiny.gguf", cfg, w, tied=True)
    (d / "text.txt").write_text(TEXT + "\n")
    out = d / "tiny.h5"
    r = run_cli("--model", d / "tiny.gguf", "--text", d / "text.txt", "--grads", "--out", out)
    assert r.returncode == 0, r.stderr
    _, _, tok = load(d / "tiny.gguf")
    return dict(dir=d, cfg=cfg, decoded=decoded, out=out, ids=tok.encode(TEXT))


def rope_interleaved(x, theta):
    """[heads, T, hd]: rotate pairs (2i, 2i+1) at position t by t * theta^(-2i/hd)."""
    hd = x.shape[-1]
    out = np.empty_like(x, dtype=np.float64)
    for t in range(x.shape[1]):
        for i in range(hd // 2):
            a = t * theta ** (-2.0 * i / hd)
            c, s = math.cos(a), math.sin(a)
            x0, x1 = x[:, t, 2 * i].astype(np.float64), x[:, t, 2 * i + 1].astype(np.float64)
            out[:, t, 2 * i] = x0 * c - x1 * s
            out[:, t, 2 * i + 1] = x0 * s + x1 * c
    return out


def test_structure_and_attributes(tiny):
    cfg = tiny["cfg"]
    sha = hashlib.sha256((tiny["dir"] / "tiny.gguf").read_bytes()).hexdigest()
    with h5py.File(tiny["out"], "r") as f:
        a = f.attrs
        assert a["format"] == "tq-kv-dump" and a["backend"] == "gguf"
        assert a["model_name"] == "tiny"  # no general.name in the file: the file's stem
        assert sha in a["model_source"] and a["model_sha256"] == sha
        assert a["weight_precision"] == WANT_PRECISION
        assert a["n_layers"] == cfg["n_layer"] and a["n_tokens"] == len(tiny["ids"])
        np.testing.assert_array_equal(f["tokens/ids"][()], tiny["ids"])
        np.testing.assert_array_equal(f["tokens/positions"][()], np.arange(len(tiny["ids"])))
        assert sorted(f["layers"].keys()) == [str(i) for i in range(cfg["n_layer"])]
        T, hd = len(tiny["ids"]), cfg["head_dim"]
        for li in range(cfg["n_layer"]):
            g = f[f"layers/{li}"]
            want = dict(n_heads=cfg["n_head"], n_kv_heads=cfg["n_kv_head"], head_dim=hd,
                        rope_theta=cfg["rope_theta"], rope_pairing="interleaved", rotary_dim=hd,
                        rope_scaling="none")
            for k, v in want.items():
                assert g.attrs[k] == v, k
            assert g.attrs["attn_scale"] == pytest.approx(1 / math.sqrt(hd), rel=1e-12)
            assert set(g.keys()) == {"q", "k", "v", "q_pre", "k_pre", "grad2_k", "grad2_v"}
            for name in g:
                heads = cfg["n_head"] if name.startswith("q") else cfg["n_kv_head"]
                assert g[name].shape == (heads, T, hd) and g[name].dtype == np.float32, name


def test_captures_match_reference_and_rope(tiny):
    cfg, ids = tiny["cfg"], tiny["ids"]
    ref = naive_forward(cfg, tiny["decoded"], ids)
    with h5py.File(tiny["out"], "r") as f:
        assert float(f.attrs["mean_nll"]) == pytest.approx(naive_nll(ref["logits"], ids), abs=1e-4)
        for li in range(cfg["n_layer"]):
            g = f[f"layers/{li}"]
            for name in ("q", "k", "v", "q_pre", "k_pre"):
                want = ref[name][li]
                np.testing.assert_allclose(g[name][()], want, rtol=0,
                                           atol=2e-4 * np.abs(want).max(), err_msg=name)
            for post, pre in (("k", "k_pre"), ("q", "q_pre")):
                rotated = rope_interleaved(g[pre][()], cfg["rope_theta"])
                np.testing.assert_allclose(g[post][()], rotated, rtol=0,
                                           atol=1e-5 * np.abs(rotated).max(), err_msg=post)


def test_gradients_are_squared_finite_differences(tiny):
    """grad2 = (dL/dx)^2; dL/dx by central differences of the float64 model through kv_hook."""
    _, model, _ = load(tiny["dir"] / "tiny.gguf", dtype=np.float64)
    ids = tiny["ids"]
    eps = 1e-5
    with h5py.File(tiny["out"], "r") as f:
        for li in range(tiny["cfg"]["n_layer"]):
            for which in ("k", "v"):
                g2 = f[f"layers/{li}/grad2_{which}"][()]
                assert (g2 >= 0).all() and g2.max() > 0
                assert not g2[:, -1].any()  # the last position feeds no scored prediction
                idx = np.unravel_index(int(np.argmax(g2)), g2.shape)
                fd = []
                for sign in (1.0, -1.0):
                    def hook(layer, k, v, sign=sign):
                        if layer == li:
                            x = (k if which == "k" else v).copy()
                            x[idx] += sign * eps
                            return (x, v) if which == "k" else (k, x)
                        return k, v
                    fd.append(model.forward(ids, capture=None, kv_hook=hook).nll())
                grad = (fd[0] - fd[1]) / (2 * eps)
                assert g2[idx] == pytest.approx(grad * grad, rel=1e-3), (li, which)


def test_fp16_storage_keeps_fp32_gradients(tiny, tmp_path):
    base = ("--model", tiny["dir"] / "tiny.gguf", "--text", tiny["dir"] / "text.txt", "--grads")
    out = tmp_path / "h.h5"
    r = run_cli(*base, "--dtype", "fp16", "--no-q-pre", "--compress", "--out", out)
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f, h5py.File(tiny["out"], "r") as ref:
        g = f["layers/1"]
        assert "q_pre" not in g and "q" in g
        for name in ("q", "k", "v", "k_pre"):
            assert g[name].dtype == np.float16
            np.testing.assert_array_equal(g[name][()],
                                          ref[f"layers/1/{name}"][()].astype(np.float16))
        for name in ("grad2_k", "grad2_v"):
            assert g[name].dtype == np.float32 and g[name].compression == "gzip"
            np.testing.assert_array_equal(g[name][()], ref[f"layers/1/{name}"][()])
    out2 = tmp_path / "h2.h5"
    r = run_cli(*base, "--dtype", "fp16", "--grad-dtype", "fp16", "--out", out2)
    assert r.returncode == 0, r.stderr
    with h5py.File(out2, "r") as f:
        assert f["layers/0/grad2_k"].dtype == np.float16


def test_bad_inputs(tiny, tmp_path):
    out = tmp_path / "o.h5"
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file")
    for args in (("--model", bad), ("--model", tiny["dir"] / "tiny.gguf", "--tokenizer", bad),
                 ("--model", tmp_path / "missing.gguf")):
        r = run_cli(*args, "--prompt", "the hen", "--out", out)
        assert r.returncode == 1, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]
