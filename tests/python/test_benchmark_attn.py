"""`tq benchmark --format json` attention figures on one layer of data/stories260K.h5 against the
independent numpy reference tests/python/attn_kl_reference.py.

Case 1 needs only the binary: codec fp16 on K and V, whose reconstruction numpy computes by
itself (round to nearest even, astype(float16)). Case 2 (tq-mse:2, when the pybind11 module is
built) re-creates the reconstructions with the module's codec and the documented per-head seed
seed_for(run_seed, layer, head, tensor), then checks the CLI's attention rows against the numpy
reference.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import attn_kl_reference as ref  # noqa: E402

DUMP = os.path.join(ROOT, "data", "stories260K.h5")
LAYER = 2


def tq_bin():
    path = os.environ.get("TQ_BIN")
    if not path or not os.path.exists(path):
        pytest.skip("TQ_BIN not set (the tq binary to test)")
    return path


def benchmark(*args):
    cmd = [tq_bin(), "benchmark", "--input", DUMP, "--layers", str(LAYER), "--format", "json",
           "--tables", "attention,attn_summary", "--bootstrap", "0", *args]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def load_layer():
    with h5py.File(DUMP, "r") as f:
        g = f["layers"][str(LAYER)]
        q, k, v = (g[n][()].astype(np.float32) for n in ("q", "k", "v"))
        scale = float(g.attrs["attn_scale"])
        n_kv = int(g.attrs["n_kv_heads"])
        positions = f["tokens"]["positions"][()].astype(np.int32)
    return q, k, v, scale, n_kv, positions


def compare(out, q, k, v, khat, vhat, scale, n_kv):
    heads = ref.layer_metrics(q, k, khat, scale, n_kv, v, vhat, min_pos=16)
    pooled = ref.pool(heads)
    rows = [r for r in out["attention"] if r["layer"] == LAYER]
    assert [r["head"] for r in rows] == list(range(q.shape[0]))
    for r, h in zip(rows, heads):
        assert r["kv_head"] == h["kv_head"]
        assert r["n_pos"] == h["n_pos"]
        assert h["attn_kl"] > 0
        assert r["attn_kl"] == pytest.approx(h["attn_kl"], rel=1e-6)
        assert r["attn_out_err"] == pytest.approx(h["attn_out_err"], rel=1e-6)
    (summ,) = out["attn_summary"]
    assert summ["attn_kl"] == pytest.approx(pooled["attn_kl"], rel=1e-6)
    assert summ["attn_out_err"] == pytest.approx(pooled["attn_out_err"], rel=1e-6)
    assert summ["n_pos"] == pooled["n_pos"]
    return pooled


def test_fp16_attention_matches_numpy_reference():
    q, k, v, scale, n_kv, _ = load_layer()
    out = benchmark("--codec", "fp16")
    f16 = lambda a: a.astype(np.float16).astype(np.float32)  # noqa: E731
    pooled = compare(out, q, k, v, f16(k), f16(v), scale, n_kv)
    assert 0 < pooled["attn_kl"] < 1e-4  # fp16 rounding of K barely moves attention


def test_tq_mse_attention_matches_numpy_reference():
    build = os.environ.get("TQ_BUILD_DIR", "")
    if not build or not os.path.isdir(os.path.join(build, "python", "tq")):
        pytest.skip("tq python module not built ($TQ_BUILD_DIR/python/tq missing)")
    sys.path.insert(0, os.path.join(build, "python"))
    import tq  # noqa: E402

    q, k, v, scale, n_kv, positions = load_layer()
    seed = 7
    out = benchmark("--codec", "tq-mse:2", "--seed", str(seed))
    d = k.shape[2]

    def recon(x, tensor):
        xh = np.empty_like(x)
        for g in range(x.shape[0]):
            codec = tq.Codec("tq-mse:2", d, tq.seed_for(seed, LAYER, g, tensor), tensor, "")
            xh[g] = codec.decode(codec.encode(x[g], positions))
        return xh

    pooled = compare(out, q, k, v, recon(k, "k"), recon(v, "v"), scale, n_kv)
    assert pooled["attn_kl"] > 1e-3  # 2-bit keys visibly change attention


def test_non_finite_value_is_one_line_naming_file_layer_dataset(tmp_path):
    import shutil

    bad = tmp_path / "nan.h5"
    shutil.copy(DUMP, bad)
    with h5py.File(bad, "r+") as f:
        f["layers"]["3"]["v"][1, 17, 5] = np.nan
    out = tmp_path / "out.json"
    proc = subprocess.run([tq_bin(), "benchmark", "--input", str(bad), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "nan.h5" in lines[0] and "layers/3/v" in lines[0] and "head 1" in lines[0], lines[0]
    assert not out.exists()
