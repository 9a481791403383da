"""Tests of closed-loop replay (scripts/dumpkv/replay.py, scripts/dump_kv.py --replay).

Everything runs on a small random-weight llama2.c checkpoint written by the test (head_dim 32, so
the llama.cpp block formats apply), in well under a second per forward pass. Expected values come
from outside the replay code: the identity codec must reproduce the uncompressed run, a
token-by-token decoder with an explicit growing cache written here (independent of the parallel
forward) must give the same logits as the replay of a KIVI cache, and the pooled statistics are
recomputed from the logits with plain numpy.
"""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "dump_kv.py"
sys.path.insert(0, str(REPO / "scripts"))

_pkg = os.path.join(os.environ.get("TQ_BUILD_DIR", ""), "python", "tq")
if not os.environ.get("TQ_BUILD_DIR") or not os.path.isdir(_pkg):
    pytest.skip("tq python module not built ($TQ_BUILD_DIR/python/tq missing)", allow_module_level=True)
sys.path.insert(0, os.path.dirname(_pkg))
import tq  # noqa: E402

from dumpkv import replay as rp  # noqa: E402
from dumpkv.llama2c_backend import Llama2cBackend  # noqa: E402
from dumpkv.llama2c_format import write_checkpoint  # noqa: E402
from dumpkv.llama2c_tokenizer import Llama2cTokenizer  # noqa: E402
from dumpkv.llama_numpy import LlamaConfig, LlamaWeights, rmsnorm  # noqa: E402
from dumpkv.rope import apply_rope, rope_cos_sin  # noqa: E402

SEED = 4242
CFG = LlamaConfig(dim=128, hidden_dim=192, n_layers=3, n_heads=4, n_kv_heads=2, vocab_size=32,
                  seq_len=128)
PIECES = (["<unk>", "\n<s>\n", "\n</s>\n", " ", "a", "b", "c", "d", "e", "h", "l", "n", "o", "r",
           "s", "t", ".", ","] +
          [" t", "th", "he", "an", "nd", " a", " the", "the", "and", " and", "st", "ed", "er", "on"])
TEXT = ("the hat and the sand. the rat sees the ant, then the ant sees the rat. "
        "the cat and the hen nod at the cod on the shore, then the rat rests.")
T_IDS = 72  # random token stream length for the API tests


def weights(cfg, seed):
    rng = np.random.default_rng(seed)
    L, d, kv, h, V = cfg.n_layers, cfg.dim, cfg.kv_dim, cfg.hidden_dim, cfg.vocab_size
    mat = lambda *s: rng.standard_normal(s) / np.sqrt(s[-1])  # noqa: E731
    # K channels with unequal scales (outlier-like), as in real models
    kscale = np.exp(0.7 * rng.standard_normal((L, kv, 1)))
    return LlamaWeights(tok_emb=rng.standard_normal((V, d)),
                        rms_att=1.0 + 0.2 * rng.standard_normal((L, d)),
                        wq=2.0 * mat(L, d, d), wk=2.0 * kscale * mat(L, kv, d), wv=mat(L, kv, d),
                        wo=mat(L, d, d), rms_ffn=1.0 + 0.2 * rng.standard_normal((L, d)),
                        w1=mat(L, h, d), w2=mat(L, d, h), w3=mat(L, h, d),
                        rms_final=1.0 + 0.2 * rng.standard_normal(d),
                        wcls=3.0 * mat(V, d))  # logits of O(3): a peaked but sane next-token law


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("replay")
    write_checkpoint(d / "m.bin", CFG, weights(CFG, SEED), shared=False)
    scores = [0.0] * 18 + [-float(i) for i in range(len(PIECES) - 18)]
    Llama2cTokenizer([p.encode() for p in PIECES], scores, max(len(p) for p in PIECES)).save(d / "tok32.bin")
    (d / "text.txt").write_text(TEXT + "\n")
    return d


@pytest.fixture(scope="module")
def backend(model_dir):
    return Llama2cBackend().load(model_dir / "m.bin", model_dir / "tok32.bin")


@pytest.fixture(scope="module")
def ids():
    rng = np.random.default_rng(7)
    return np.concatenate([[1], rng.integers(3, CFG.vocab_size, T_IDS - 1)]).astype(np.int64)


def run_cli(*args):
    env = dict(os.environ)
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          env=env)


def row_of(res, spec, layers="all"):
    return next((r, t) for r, t in res["per_token"] if r["spec"] == spec and r["layers"] == layers)


# ---- identity --------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["auto", "prefix"])
def test_identity_codec_gives_zero_damage(backend, ids, mode):
    res = rp.replay(backend, ids, ["fp32"], mode=mode)
    r, tok = row_of(res, "fp32")
    assert r["mode"] == ("rowwise" if mode == "auto" else "prefix")
    assert r["bits"] == pytest.approx(32.0)
    # rowwise: fp32 decodes bit-exactly, the forward is the same computation -> exactly 0.
    # prefix: the per-query attention path sums in another order (float32 model) -> ~1e-12.
    tol = 0.0 if mode == "auto" else 1e-9
    assert abs(r["dnll"]) <= tol and abs(r["dppl"]) <= tol * r["ppl_ref"]
    assert r["kl"] <= tol and r["kl_max"] <= 10 * tol
    assert r["top1"] == 1.0 and r["dp_rms"] <= 1e-6
    assert np.allclose(tok["nll"], tok["nll_ref"], rtol=0, atol=0.0 if mode == "auto" else 1e-4)


# ---- more bits, less damage -------------------------------------------------------------------

@pytest.mark.parametrize("lo,hi", [("tq-mse:2", "tq-mse:3"), ("tq-mse:3", "tq-mse:4"),
                                   ("tq-mse:4", "tq-mse:8"), ("q4_0", "q8_0"), ("kivi:2", "kivi:4")])
def test_more_bits_never_larger_kl_beyond_se(backend, ids, lo, hi):
    res = rp.replay(backend, ids, [lo, hi])
    (rl, tl), (rh, th) = row_of(res, lo), row_of(res, hi)
    assert rh["bits"] > rl["bits"]
    diff = th["kl"] - tl["kl"]  # paired per-token difference
    se = np.std(diff, ddof=1) / np.sqrt(diff.size)
    assert diff.mean() <= se, (lo, rl["kl"], hi, rh["kl"], se)
    assert rl["kl"] > 0  # the fixture is sensitive enough that 2-4 bit codecs do damage


# ---- one layer at a time ----------------------------------------------------------------------

def test_one_layer_replay_touches_only_that_layer(backend, ids):
    bank = rp.make_banks(["tq-mse:3"], CFG.head_dim, 0)[0]
    _, k_ref, v_ref, _ = rp.forward(backend, ids, want_kv=True)
    seen = {}

    def recording(hook):
        def h(l, k, v):
            seen[l] = (k.copy(), v.copy())  # what the layer produced, before compression
            return hook(l, k, v)
        return h

    stats = rp.HookStats()
    _, k_c, v_c, _ = rp.forward(backend, ids, kv_hook=recording(rp.make_hook(bank, "rowwise", {1}, stats)),
                                want_kv=True)
    assert stats.layers_seen == [1]
    # layer 0: untouched; layer 1: its own K/V are produced exactly as in the reference (nothing
    # upstream changed) and attention reads their reconstruction; layer 2: damaged by layer 1.
    assert np.array_equal(k_c[0], k_ref[0]) and np.array_equal(v_c[0], v_ref[0])
    assert np.array_equal(seen[1][0], k_ref[1]) and np.array_equal(seen[1][1], v_ref[1])
    pos = np.arange(len(ids), dtype=np.int32)
    for h in range(CFG.n_kv_heads):
        khat, _ = bank.roundtrip(1, h, "k", k_ref[1][h], pos)
        assert np.array_equal(k_c[1][h], khat)
    assert not np.array_equal(k_c[1], k_ref[1])
    assert not np.allclose(k_c[2], k_ref[2], rtol=0, atol=1e-6)


def test_layers_each_and_list(backend, ids):
    res = rp.replay(backend, ids, ["tq-mse:2"], layers_arg="each")
    assert [r["layers"] for r in res["rows"]] == ["0", "1", "2"]
    res2 = rp.replay(backend, ids, ["tq-mse:2"], layers_arg="2")
    assert res2["rows"][0]["kl"] == pytest.approx(res["rows"][2]["kl"], rel=1e-12)
    assert res["rows"][0]["bits"] == pytest.approx(res2["rows"][0]["bits"])


# ---- a KIVI cache behaves like a real streaming cache --------------------------------------------

def incremental_logits(backend, ids, bank, layers):
    """Token-by-token decoder with an explicit cache (independent of the parallel forward): each
    layer stores the raw K/V rows as they are produced; at step t attention reads
    decode(encode(raw[0..t])) of the compressed layers."""
    m, c = backend.model, backend.config
    w = m.w
    H, KVH, hd = c.n_heads, c.n_kv_heads, c.head_dim
    G = H // KVH
    raw_k = [[] for _ in range(c.n_layers)]
    raw_v = [[] for _ in range(c.n_layers)]
    out = []
    for t, tok in enumerate(ids):
        cos, sin = rope_cos_sin(np.array([t]), hd, c.rope_theta)
        x = w.tok_emb[[tok]].copy()
        for l in range(c.n_layers):
            xb = rmsnorm(x, w.rms_att[l], c.norm_eps)
            q = apply_rope((xb @ w.wq[l].T).reshape(1, H, hd).transpose(1, 0, 2), cos, sin, c.rope_pairing)
            k = apply_rope((xb @ w.wk[l].T).reshape(1, KVH, hd).transpose(1, 0, 2), cos, sin, c.rope_pairing)
            v = (xb @ w.wv[l].T).reshape(1, KVH, hd).transpose(1, 0, 2)
            raw_k[l].append(k[:, 0])
            raw_v[l].append(v[:, 0])
            K = np.stack(raw_k[l], axis=1)  # [KVH, t+1, hd]
            V = np.stack(raw_v[l], axis=1)
            if l in layers:
                pos = np.arange(t + 1, dtype=np.int32)
                K = np.stack([bank.roundtrip(l, h, "k", np.ascontiguousarray(K[h]), pos)[0] for h in range(KVH)])
                V = np.stack([bank.roundtrip(l, h, "v", np.ascontiguousarray(V[h]), pos)[0] for h in range(KVH)])
            o = np.empty((H, hd))
            for hh in range(H):
                s = (K[hh // G].astype(np.float64) @ q[hh, 0].astype(np.float64)) * c.attn_scale
                p = np.exp(s - s.max())
                p /= p.sum()
                o[hh] = p @ V[hh // G].astype(np.float64)
            x = x + o.reshape(1, H * hd).astype(x.dtype) @ w.wo[l].T
            xb2 = rmsnorm(x, w.rms_ffn[l], c.norm_eps)
            h1, h3 = xb2 @ w.w1[l].T, xb2 @ w.w3[l].T
            x = x + ((h1 / (1 + np.exp(-h1))) * h3) @ w.w2[l].T
        out.append((rmsnorm(x, w.rms_final, c.norm_eps) @ w.wcls.T)[0])
    return np.array(out, dtype=np.float64)


@pytest.mark.parametrize("spec", ["kivi:2,group=8,window=5", "kivi:2,group=16"])
def test_prefix_replay_equals_token_by_token_cache(model_dir, ids, spec):
    # float64 model: both computations then agree to ~1e-12, so no K/V value lands on the other
    # side of a quantization boundary (in float32 a few do, changing logits by ~1e-3)
    backend = Llama2cBackend(dtype=np.float64).load(model_dir / "m.bin", model_dir / "tok32.bin")
    ids = ids[:40]
    bank = rp.make_banks([spec], CFG.head_dim, 0)[0]
    assert bank.probe_mode() == "prefix"
    stats = rp.HookStats()
    logits, *_ = rp.forward(backend, ids, kv_hook=rp.make_hook(bank, "prefix", {0, 1, 2}, stats))
    ref = incremental_logits(backend, ids, bank, {0, 1, 2})
    assert np.allclose(logits, ref, rtol=0, atol=1e-8), np.abs(logits - ref).max()
    # and it is not the rowwise (whole-sequence) encoding: a window/group cache differs
    rows, *_ = rp.forward(backend, ids, kv_hook=rp.make_hook(bank, "rowwise", {0, 1, 2}, rp.HookStats()))
    assert np.abs(rows - ref).max() > 1e-2


def test_probe_classifies_codecs():
    for spec, mode in [("tq-mse:3", "rowwise"), ("q4_0", "rowwise"), ("hr,q4_0", "rowwise"),
                       ("tq-mse:3,sinks=4", "rowwise"), ("kivi:2", "prefix"),
                       ("tq-mse:4,window=8", "prefix"), ("center,tq-mse:3", "prefix"),
                       ("outlier,n=8", "prefix")]:
        assert rp.make_banks([spec], 32, 0)[0].probe_mode() == mode, spec


# ---- statistics ---------------------------------------------------------------------------------

def test_pooled_statistics_match_numpy(backend, ids):
    res = rp.replay(backend, ids, ["q4_0"])
    r, tok = row_of(res, "q4_0")
    # recompute from the two runs' logits with plain numpy
    lr, *_ = rp.forward(backend, ids)
    bank = rp.make_banks(["q4_0"], CFG.head_dim, 0)[0]
    lc, *_ = rp.forward(backend, ids, kv_hook=rp.make_hook(bank, "rowwise", set(range(3)), rp.HookStats()))

    def logp(z):
        z = z[:-1] - z[:-1].max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    a, b = logp(lc), logp(lr)
    tgt = ids[1:]
    n = len(tgt)
    nll_c, nll_r = -a[np.arange(n), tgt], -b[np.arange(n), tgt]
    kl = (np.exp(b) * (b - a)).sum(1)
    assert r["kl"] == pytest.approx(kl.mean(), rel=1e-9)
    assert r["kl_se"] == pytest.approx(kl.std(ddof=1) / np.sqrt(n), rel=1e-9)
    assert r["dppl"] == pytest.approx(np.exp(nll_c.mean()) - np.exp(nll_r.mean()), rel=1e-9, abs=1e-12)
    assert r["top1"] == pytest.approx(np.mean(a.argmax(1) == b.argmax(1)))
    dp = np.exp(-nll_c) - np.exp(-nll_r)
    assert r["dp_rms"] == pytest.approx(np.sqrt(np.mean(dp ** 2)), rel=1e-9)
    # bits from real bytes: 2 tensors x 3 layers x 2 heads x bytes of one head
    one = len(tq.Codec("q4_0", 32, 0, "k").encode(np.zeros((len(ids), 32), np.float32)))
    assert r["bytes"] == 2 * 3 * 2 * one
    assert r["bits"] == pytest.approx(4.5)  # q4_0: 18 bytes per 32 elements


def test_spearman():
    assert rp.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert rp.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert rp.spearman([1, 2, 3, 4, 5], [1, 3, 2, 5, 4]) == pytest.approx(0.8)  # 1 - 6*4/120


# ---- the CLI ------------------------------------------------------------------------------------

def test_cli_replay_outputs(model_dir, tmp_path):
    out, pt = tmp_path / "r.json", tmp_path / "t.csv"
    r = run_cli("--model", model_dir / "m.bin", "--text", model_dir / "text.txt", "--replay", "fp32",
                "--replay", "tq-mse:3", "--replay-proxies", "--replay-format", "json", "--replay-out", out,
                "--replay-per-token", pt)
    assert r.returncode == 0, r.stderr
    import json
    doc = json.loads(out.read_text())
    assert doc["loop"] == "closed" and [x["spec"] for x in doc["rows"]] == ["fp32", "tq-mse:3"]
    assert doc["rows"][0]["kl"] == 0.0 and doc["rows"][1]["kl"] > 0
    assert doc["rows"][0]["nmse"] == 0.0 and doc["rows"][1]["nmse"] > 0
    lines = pt.read_text().splitlines()
    assert lines[0].startswith("spec,layers,position") and len(lines) == 1 + 2 * doc["n_predicted"]
    # refuses to overwrite without --force
    r2 = run_cli("--model", model_dir / "m.bin", "--text", model_dir / "text.txt", "--replay", "fp32",
                 "--replay-out", out)
    assert r2.returncode == 1 and "exists" in r2.stderr and len(r2.stderr.strip().splitlines()) == 1
    r3 = run_cli("--model", model_dir / "m.bin", "--text", model_dir / "text.txt", "--replay", "fp32",
                 "--replay-layers", "each")
    assert r3.returncode == 0 and "fp32" in r3.stdout


def one_line_error(r, *needles):
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_cli_bad_spec_and_layers(model_dir):
    base = ("--model", model_dir / "m.bin", "--text", model_dir / "text.txt")
    one_line_error(run_cli(*base, "--replay", "tq-mse:99"), "--replay 'tq-mse:99'")
    one_line_error(run_cli(*base, "--replay", "nosuchcodec:3"), "nosuchcodec")
    one_line_error(run_cli(*base, "--replay", "tq-mse:3", "--replay-layers", "7"), "--replay-layers", "layer 7")


def test_cli_tokens_from_dump(model_dir, tmp_path):
    base = ("--model", model_dir / "m.bin")
    dump = tmp_path / "d.h5"
    r = run_cli(*base, "--text", model_dir / "text.txt", "--dtype", "fp16", "--out", dump)
    assert r.returncode == 0, r.stderr
    h = hashlib.sha256(dump.read_bytes()).hexdigest()
    a = run_cli(*base, "--tokens-from", dump, "--replay", "tq-mse:3", "--replay-format", "csv")
    b = run_cli(*base, "--text", model_dir / "text.txt", "--replay", "tq-mse:3", "--replay-format", "csv")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout
    assert hashlib.sha256(dump.read_bytes()).hexdigest() == h
    # a dump of another model: other geometry -> one line naming the dump
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["tokens/ids"] = np.arange(10, dtype=np.int32)
        for l in range(2):
            f[f"layers/{l}/k"] = np.zeros((4, 10, 8), np.float32)
    one_line_error(run_cli(*base, "--tokens-from", other, "--replay", "fp32"), str(other), "does not match")
    # same geometry, different weights -> caught by layer 0's K
    cfg_w = weights(CFG, SEED + 1)
    write_checkpoint(tmp_path / "m2.bin", CFG, cfg_w, shared=False)
    (tmp_path / "tok32.bin").write_bytes((model_dir / "tok32.bin").read_bytes())
    one_line_error(run_cli("--model", tmp_path / "m2.bin", "--tokens-from", dump, "--replay", "fp32"),
                   "layer 0 K differs")
    one_line_error(run_cli(*base, "--tokens-from", tmp_path / "missing.h5", "--replay", "fp32"), "missing.h5")


def test_block_formats_match_ggml_reference():
    """tq's q8_0 / q4_0 decode exactly like the gguf package's reference quantizers (the formats
    llama.cpp's cache uses), so tq's replay and llama.cpp's cache store the same numbers."""
    quants = pytest.importorskip("gguf.quants")
    from gguf import GGMLQuantizationType as Q
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((130, 64)) * np.exp(rng.standard_normal(64))).astype(np.float32)
    for t, spec in ((Q.Q8_0, "q8_0"), (Q.Q4_0, "q4_0")):
        want = quants.dequantize(quants.quantize(x, t), t).reshape(x.shape)
        c = tq.Codec(spec, 64, 0, "k")
        assert np.array_equal(c.decode(c.encode(x)), want), spec
