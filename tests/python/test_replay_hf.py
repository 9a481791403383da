"""Tests of closed-loop replay through the Hugging Face backend (scripts/dumpkv/replay.py with
scripts/dumpkv/hf_backend.py; docs/replay.md).

A tiny randomly initialised LlamaForCausalLM (head_dim 32, 3 layers, GQA 4:2) is made here. The
expected values come from outside the replay code: the identity codec must reproduce the clean
run; with one layer compressed, the K/V that attention reads there must equal tq's own
encode/decode of the clean run's K/V (that layer's input is uncompressed), the layers before it
must be untouched and the layers after it changed; the token-by-token cache route (prefix mode)
must agree with the one-pass route for a per-vector codec, and for KIVI with only the last layer
compressed it must equal, at every position t, the one-pass replay of the truncated text
ids[:t+1] at its last position (the cache state of query t is then the whole encoding).

Skipped (one line) without torch/transformers or without the tq Python module ($TQ_BUILD_DIR).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "dump_kv.py"
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

try:
    import torch  # noqa: F401
    import transformers  # noqa: F401
except ImportError:
    pytest.skip("torch/transformers not installed", allow_module_level=True)

_pkg = os.path.join(os.environ.get("TQ_BUILD_DIR", ""), "python", "tq")
if not os.environ.get("TQ_BUILD_DIR") or not os.path.isdir(_pkg):
    pytest.skip("tq python module not built ($TQ_BUILD_DIR/python/tq missing)", allow_module_level=True)
sys.path.insert(0, os.path.dirname(_pkg))
import tq  # noqa: E402

from dumpkv import replay as rp  # noqa: E402
from dumpkv.hf_backend import HfBackend  # noqa: E402
from test_dump_hf import WORDS, save_tokenizer  # noqa: E402

SEED = 777
N_LAYERS, KVH, HD = 3, 2, 32
T_IDS = 40


def make_model(d):
    cfg = transformers.LlamaConfig(vocab_size=len(WORDS) + 50, hidden_size=128, intermediate_size=192,
                                   num_hidden_layers=N_LAYERS, num_attention_heads=4,
                                   num_key_value_heads=KVH, max_position_embeddings=256,
                                   bos_token_id=1, eos_token_id=2, initializer_range=0.08,
                                   rope_theta=500.0)
    torch.manual_seed(SEED)
    transformers.AutoModelForCausalLM.from_config(cfg).to(torch.float32).save_pretrained(d)
    save_tokenizer(d)
    return d


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hfreplay") / "tiny-llama"
    return make_model(d)


@pytest.fixture(scope="module")
def backend(model_dir):
    return HfBackend(compute_dtype="fp32").load(model_dir)


@pytest.fixture(scope="module")
def ids():
    return np.random.default_rng(11).integers(3, len(WORDS) + 50, T_IDS)


def run_one(backend, ids, spec, layers="all", mode="auto"):
    res = rp.replay(backend, ids, [spec], layers_arg=layers, mode=mode)
    return res["per_token"][0]


def roundtrip(spec, layer, head, tensor, x):
    c = tq.Codec(spec, x.shape[-1], tq.seed_for(0, layer, head, tensor), tensor)
    return c.decode(c.encode(np.ascontiguousarray(x, np.float32), np.arange(x.shape[0], dtype=np.int32)))


def test_geometry(backend):
    assert rp.model_geometry(backend) == (N_LAYERS, KVH, HD)
    assert rp.attn_scale(backend) == pytest.approx(HD ** -0.5)


@pytest.mark.parametrize("mode", ["rowwise", "prefix"])
def test_identity_codec_gives_zero_damage(backend, ids, mode):
    row, tok = run_one(backend, ids, "fp32", mode=mode)
    assert row["mode"] == mode and row["bits"] == 32.0
    # rowwise: the very same computation; prefix: an incremental decode, equal up to fp32 round-off
    tol = 0.0 if mode == "rowwise" else 1e-5
    assert np.max(np.abs(tok["nll"] - tok["nll_ref"])) <= tol
    assert abs(row["dppl"]) <= 50 * tol * row["ppl_ref"]
    assert row["kl"] <= tol * tol + 1e-12 and row["kl_max"] <= 1e-9
    assert row["top1"] == 1.0


def test_lossy_codec_does_damage(backend, ids):
    row, tok = run_one(backend, ids, "tq-mse:2")
    assert row["mode"] == "rowwise" and row["bits"] < 4
    assert row["kl"] > 1e-4 and np.all(tok["kl"] >= 0)
    assert np.isfinite(row["dppl_se"]) and row["dppl_se"] > 0


@pytest.mark.parametrize("spec", ["tq-mse:3", "q4_0"])
def test_one_layer_replay_reads_tq_roundtrip_of_clean_kv(backend, ids, spec):
    _, ks, vs, qs = rp.forward(backend, ids, want_kv=True, want_q=True)
    bank = rp.make_banks([spec], HD, 0)[0]
    for L in (0, 1):
        stats = rp.HookStats()
        _, ks2, vs2, qs2 = rp.forward(backend, ids, kv_hook=rp.make_hook(bank, "rowwise", {L}, stats),
                                      want_kv=True, want_q=True)
        assert stats.layers_seen == [L] and stats.elements == 2 * KVH * T_IDS * HD
        for h in range(KVH):
            # layer L's input is uncompressed, so attention there reads tq's decode of the clean K/V
            np.testing.assert_array_equal(ks2[L][h], roundtrip(spec, L, h, "k", ks[L][h]))
            np.testing.assert_array_equal(vs2[L][h], roundtrip(spec, L, h, "v", vs[L][h]))
        for l in range(L):  # earlier layers untouched, bit for bit
            np.testing.assert_array_equal(ks2[l], ks[l])
            np.testing.assert_array_equal(qs2[l], qs[l])
        np.testing.assert_array_equal(qs2[L], qs[L])  # q of the compressed layer too
        for l in range(L + 1, N_LAYERS):  # the damage reaches every later layer
            assert not np.allclose(ks2[l], ks[l], atol=1e-6)


def test_cache_route_equals_one_pass_for_rowwise_codec(backend, ids):
    r1, t1 = run_one(backend, ids, "tq-mse:3", mode="rowwise")
    r2, t2 = run_one(backend, ids, "tq-mse:3", mode="prefix")
    assert r1["bytes"] == r2["bytes"] > 0
    np.testing.assert_allclose(t2["nll"], t1["nll"], atol=2e-4)
    np.testing.assert_allclose(t2["kl"], t1["kl"], atol=2e-4)


def test_kivi_cache_route_equals_truncated_one_pass(backend, ids):
    spec = "kivi:2,group=8,window=4"
    bank = rp.make_banks([spec], HD, 0)[0]
    assert bank.probe_mode() == "prefix"
    last = {N_LAYERS - 1}
    stats = rp.HookStats()
    stepped = rp.hf_prefix_logits(backend, ids, bank, last, stats)
    assert stats.layers_seen == [N_LAYERS - 1]
    one_pass_full, *_ = rp.forward(backend, ids, kv_hook=rp.make_hook(bank, "rowwise", last, rp.HookStats()))
    worst = 0.0
    for t in (3, 8, 12, 17, 25, T_IDS - 1):
        lg, *_ = rp.forward(backend, ids[:t + 1], kv_hook=rp.make_hook(bank, "rowwise", last, rp.HookStats()))
        worst = max(worst, float(np.max(np.abs(stepped[t] - lg[-1]))))
    assert worst < 1e-4
    # and the route matters: the one-pass whole-text encoding differs at some earlier position
    assert np.max(np.abs(stepped[:-1] - one_pass_full[:-1])) > 1e-3


def test_cli_hf_replay_json(model_dir, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat and the dog ran to the cat on the mat\n")
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, str(SCRIPT), "--model", str(model_dir), "--text", str(text),
                        "--replay", "fp32", "--replay", "tq-mse:3", "--replay-layers", "all",
                        "--replay-format", "json", "--replay-out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["backend"] == "hf" and [x["spec"] for x in doc["rows"]] == ["fp32", "tq-mse:3"]
    assert doc["rows"][0]["kl"] == 0.0 and doc["rows"][1]["kl"] > 0


@pytest.mark.parametrize("family", ["mistral", "gemma2"])
def test_cache_route_keeps_sliding_window_models_exact(tmp_path, family):
    """The token-by-token route with a pass-through kv_fn reproduces the plain forward of models
    with a sliding window shorter than the text (and Gemma 2's softcap): the replay cache keeps
    every token and the model's mask applies the window."""
    from test_dump_hf import make_hf_model
    b = HfBackend().load(make_hf_model(tmp_path / family, family=family))
    x = np.random.default_rng(3).integers(3, 60, 20)  # window 4 << 20 tokens
    seen = []

    def kv_fn(layer, k, v):
        seen.append((layer, k.shape[1]))
        return k, v

    np.testing.assert_allclose(b.stepwise_logits(x, kv_fn), b.logits(x), atol=2e-5)
    assert seen[-2:] == [(0, 20), (1, 20)]  # the whole prefix reaches kv_fn in every layer
