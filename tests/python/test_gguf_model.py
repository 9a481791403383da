"""numpy llama forward/backward of scripts/dumpkv_gguf/model.py on tiny random models.

Forward is compared with the loop-based float64 reference in gguf_naive.py; the K/V gradients
with central finite differences of the loss (perturbing K/V through the kv_hook)."""

from __future__ import annotations

import numpy as np
import pytest

from gguf_naive import naive_forward, naive_nll, tiny_config, tiny_weights

from dumpkv_gguf.model import LlamaModel, apply_rope, next_token_nll, rope_tables

TOKENS = [3, 17, 5, 5, 39, 0, 22, 8, 11]


@pytest.mark.parametrize("pairing", ["interleaved", "half"])
@pytest.mark.parametrize("tied", [False, True])
def test_forward_matches_naive_reference(pairing, tied):
    cfg = tiny_config(rope_pairing=pairing)
    w = tiny_weights(cfg, seed=11, tied=tied)
    ref = naive_forward(cfg, w, TOKENS)
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 2e-4)):
        fwd = LlamaModel(cfg, w, dtype=dtype).forward(TOKENS)
        scale = np.abs(ref["logits"]).max()
        assert np.abs(fwd.logits - ref["logits"]).max() <= tol * scale
        for name in ("q", "k", "v", "q_pre", "k_pre"):
            assert len(fwd.captures[name]) == cfg["n_layer"]
            for layer in range(cfg["n_layer"]):
                got, want = fwd.captures[name][layer], ref[name][layer]
                assert got.dtype == np.float32 and got.shape == want.shape
                # captures are stored as float32 whatever the compute dtype
                cap_tol = max(tol, 1e-6)
                assert np.abs(got - want).max() <= cap_tol * max(1.0, np.abs(want).max())
    assert abs(LlamaModel(cfg, w, dtype=np.float64).forward(TOKENS).nll() - naive_nll(ref["logits"], TOKENS)) < 1e-10


def test_rope_pairing_matters_and_inverse_is_transpose():
    cos, sin = rope_tables(5, 8, 10000.0)
    x = np.random.default_rng(1).standard_normal((2, 5, 8))
    a, b = apply_rope(x, cos, sin, "interleaved"), apply_rope(x, cos, sin, "half")
    assert np.abs(a - b).max() > 1e-3  # the two layouts are genuinely different
    for pairing in ("interleaved", "half"):
        y = apply_rope(x, cos, sin, pairing)
        np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-12)
        np.testing.assert_allclose(apply_rope(y, cos, sin, pairing, inverse=True), x, atol=1e-12)
    # position 0 is not rotated
    np.testing.assert_allclose(a[:, 0], x[:, 0], atol=0)


def test_causality_and_gqa_shapes():
    cfg = tiny_config()
    model = LlamaModel(cfg, tiny_weights(cfg, seed=3), dtype=np.float64)
    full = model.forward(TOKENS)
    changed = model.forward(TOKENS[:5] + [1, 2, 3, 4])
    np.testing.assert_allclose(full.logits[:5], changed.logits[:5], atol=1e-12)
    assert np.abs(full.logits[5:] - changed.logits[5:]).max() > 1e-6
    assert full.captures["q"][0].shape == (cfg["n_head"], len(TOKENS), cfg["head_dim"])
    assert full.captures["k"][0].shape == (cfg["n_kv_head"], len(TOKENS), cfg["head_dim"])


def test_kv_hook_identity_and_effect():
    cfg = tiny_config(n_layer=3)
    model = LlamaModel(cfg, tiny_weights(cfg, seed=5), dtype=np.float64)
    base = model.forward(TOKENS)
    seen = []

    def ident(layer, k, v):
        seen.append((layer, k.shape, v.shape))
        return k, v

    same = model.forward(TOKENS, kv_hook=ident)
    np.testing.assert_array_equal(same.logits, base.logits)
    assert [s[0] for s in seen] == [0, 1, 2]

    def squash_v1(layer, k, v):  # replace layer 1's V by a coarse version
        return (k, np.round(v * 2) / 2) if layer == 1 else (k, v)

    hooked = model.forward(TOKENS, kv_hook=squash_v1)
    # captures hold K/V as attention saw them: layer 0 unchanged, layer 1's V is the hook's
    # output (its K untouched), layer 2 sees the effect in both
    for name in ("k", "v", "k_pre"):
        np.testing.assert_array_equal(hooked.captures[name][0], base.captures[name][0])
    np.testing.assert_array_equal(hooked.captures["k"][1], base.captures["k"][1])
    np.testing.assert_array_equal(hooked.captures["v"][1], np.round(base.captures["v"][1] * 2) / 2)
    for name in ("k", "v", "k_pre", "q"):
        assert np.abs(hooked.captures[name][2] - base.captures[name][2]).max() > 1e-6
    assert np.abs(hooked.logits - base.logits).max() > 1e-6

    with pytest.raises(ValueError, match="kv_hook"):
        model.forward(TOKENS, kv_hook=lambda layer, k, v: (k[:, :-1], v))


def _loss_with_delta(model, tokens, layer, which, idx, delta):
    def hook(li, k, v):
        if li == layer:
            k, v = k.copy(), v.copy()
            (k if which == "k" else v)[idx] += delta
        return k, v
    return model.forward(tokens, capture=None, kv_hook=hook).nll()


@pytest.mark.parametrize("pairing", ["interleaved", "half"])
def test_kv_gradients_match_finite_differences(pairing):
    cfg = tiny_config(n_layer=3, rope_pairing=pairing)
    model = LlamaModel(cfg, tiny_weights(cfg, seed=7), dtype=np.float64)
    fwd = model.forward(TOKENS, keep_for_backward=True)
    grads = model.backward(fwd)
    rng = np.random.default_rng(123)
    eps = 1e-5
    checked = 0
    for layer in range(cfg["n_layer"]):
        for which in ("k", "v"):
            g = grads[which][layer]
            assert g.shape == (cfg["n_kv_head"], len(TOKENS), cfg["head_dim"])
            # the last position's K/V influence no prediction except through itself... it
            # does influence logits[T-1], which the loss ignores -> gradient exactly 0
            assert np.all(g[:, -1] == 0)
            for _ in range(6):
                idx = (int(rng.integers(cfg["n_kv_head"])), int(rng.integers(len(TOKENS) - 1)),
                       int(rng.integers(cfg["head_dim"])))
                fd = (_loss_with_delta(model, TOKENS, layer, which, idx, eps)
                      - _loss_with_delta(model, TOKENS, layer, which, idx, -eps)) / (2 * eps)
                assert abs(fd - g[idx]) <= 1e-6 + 1e-4 * abs(fd), (layer, which, idx, fd, g[idx])
                checked += 1
    assert checked == 36
    # gradients are not trivially zero
    assert max(np.abs(grads["k"][0]).max(), np.abs(grads["v"][0]).max()) > 1e-4


def test_kv_grad2_float32_matches_float64():
    cfg = tiny_config()
    w = tiny_weights(cfg, seed=9)
    _, g32 = LlamaModel(cfg, w, dtype=np.float32).kv_grad2(TOKENS)
    f64 = LlamaModel(cfg, w, dtype=np.float64)
    g64 = f64.backward(f64.forward(TOKENS, keep_for_backward=True))
    for layer in range(cfg["n_layer"]):
        for which in ("k", "v"):
            want = np.square(g64[which][layer])
            got = g32["grad2_" + which][layer]
            assert got.dtype == np.float32
            assert np.abs(got - want).max() <= 1e-3 * want.max()


def test_next_token_nll_and_errors():
    logits = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8], [1 / 3, 1 / 3, 1 / 3]]))
    nll, per = next_token_nll(logits, np.array([0, 1, 2]))
    np.testing.assert_allclose(per, [-np.log(0.25), -np.log(0.8)])
    assert nll == pytest.approx((-np.log(0.25) - np.log(0.8)) / 2)
    cfg = tiny_config()
    model = LlamaModel(cfg, tiny_weights(cfg, seed=1))
    with pytest.raises(ValueError, match="out of range"):
        model.forward([0, 40])
    with pytest.raises(ValueError, match="keep_for_backward"):
        model.backward(model.forward([1, 2]))
    with pytest.raises(ValueError, match="unknown capture"):
        model.forward([1, 2], capture=["kk"])
