"""Tests of scripts/dump_kv.py's Hugging Face backend (scripts/dumpkv/hf_backend.py) and the
llama2.c -> transformers conversion (scripts/dumpkv/llama2c_to_hf.py).

Without torch: the RoPE channel permutation against two independent RoPE implementations, the
converted state dict, and the one-line error when torch is missing.
With torch + transformers (else skipped): a tiny random LlamaForCausalLM and tokenizer made here,
dumped through the CLI; the dump checked against numpy recomputations from the saved weights
(layer-0 projections, rotate_half RoPE, attention -> o_proj -> MLP -> layer-1 k_pre); K/V
gradients against central finite differences (float64 model); attention recomputed from the
dumped q/k/v with the dumped attn_scale / sliding_window / logit_softcap equals the attention
output of an untouched eager model (Llama, Mistral with a sliding window, Gemma 2 with softcap);
and the numpy llama2.c backend vs the converted HF model (tiny random checkpoint and, when
../shared/models has it, the real stories260K) up to the channel permutation.
"""
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

from dumpkv.llama2c_format import write_checkpoint  # noqa: E402
from dumpkv.llama2c_tokenizer import Llama2cTokenizer  # noqa: E402
from dumpkv.llama2c_to_hf import hf_state_dict, interleaved_to_half_perm  # noqa: E402
from dumpkv.llama_numpy import LlamaConfig, LlamaWeights  # noqa: E402

SEED = 20240612
CROSS_TOL = 1e-5       # numpy llama2.c backend vs converted HF model, absolute, fp32, short text
CROSS_REL_TOL = 5e-6   # the same relative to each tensor's peak |x|, long text (see the test)
TEXT = "the cat sat on the mat and the dog ran to the cat"
WORDS = ["<unk>", "<s>", "</s>"] + sorted(set(TEXT.split()) | {"hat", "sun", "a"})


def have_torch():
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


needs_torch = pytest.mark.skipif(not have_torch(), reason="torch/transformers not installed")


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})})


def assert_clean_failure(r, out):
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()


# ---- independent references (numpy, float64) -------------------------------------------------
def ref_rope_interleaved(x, pos, theta):
    d = x.shape[-1]
    z = (x[..., 0::2] + 1j * x[..., 1::2]) * np.exp(
        1j * np.asarray(pos)[:, None] * theta ** (-np.arange(0, d, 2) / d))
    out = np.empty(x.shape)
    out[..., 0::2], out[..., 1::2] = z.real, z.imag
    return out


def ref_rope_half(x, pos, theta, rotary_dim=None):
    """x * cos + rotate_half(x) * sin on the first rotary_dim coordinates (transformers)."""
    r = x.shape[-1] if rotary_dim is None else rotary_dim
    ang = np.asarray(pos)[:, None] * theta ** (-np.arange(0, r, 2) / r)
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))
    xr = x[..., :r].astype(np.float64)
    rot = np.concatenate([-xr[..., r // 2:], xr[..., :r // 2]], -1)
    return np.concatenate([xr * cos + rot * sin, x[..., r:]], -1)


def rope_half_fp32_angles(x, theta):
    """rotate_half RoPE with the angles computed as transformers does: float32 inverse
    frequencies times float32 positions, float32 cos/sin."""
    d = x.shape[-1]
    i2 = np.arange(0, d, 2).astype(np.float32)
    inv = (1.0 / theta ** (i2 / np.float32(d))).astype(np.float32)
    ang = np.arange(x.shape[-2], dtype=np.float32)[:, None] * inv[None, :]
    emb = np.concatenate([ang, ang], -1)
    cos = np.cos(emb).astype(np.float32).astype(np.float64)
    sin = np.sin(emb).astype(np.float32).astype(np.float64)
    return x * cos + np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1) * sin


def ref_attention(q, k, v, scale, softcap=None, window=None):
    """Causal GQA attention, loops over heads and queries; query t sees keys max(0, t-W+1)..t."""
    H, T, _ = q.shape
    G = H // k.shape[0]
    out = np.zeros(q.shape)
    for h in range(H):
        for t in range(T):
            lo = 0 if window is None else max(0, t - window + 1)
            s = k[h // G, lo:t + 1] @ q[h, t] * scale
            if softcap is not None:
                s = softcap * np.tanh(s / softcap)
            p = np.exp(s - s.max())
            out[h, t] = (p / p.sum()) @ v[h // G, lo:t + 1]
    return out


def ref_rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps) * w


def heads(x, n):
    """[T, n*d] -> [n, T, d]"""
    return x.reshape(x.shape[0], n, -1).transpose(1, 0, 2)


# ---- torch-free --------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [2, 8, 64])
def test_permutation_turns_interleaved_rope_into_half_rope(d):
    """half_RoPE(x[P]) == interleaved_RoPE(x)[P] for every position: the conversion's premise."""
    rng = np.random.default_rng(d)
    x = rng.standard_normal((3, 17, d))
    pos = np.arange(17) * 7
    P = interleaved_to_half_perm(d)
    assert sorted(P) == list(range(d))
    if d == 8:
        assert P.tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    np.testing.assert_allclose(ref_rope_half(x[..., P], pos, 500.0),
                               ref_rope_interleaved(x, pos, 500.0)[..., P], atol=1e-12)
    if d > 2:  # and without the permutation the two conventions really differ
        gap = ref_rope_half(x, pos, 500.0) - ref_rope_interleaved(x, pos, 500.0)
        assert np.abs(gap).max() > 0.1


def tiny_llama2c_weights(cfg, seed):
    rng = np.random.default_rng(seed)
    L, d, kv, h, V = cfg.n_layers, cfg.dim, cfg.kv_dim, cfg.hidden_dim, cfg.vocab_size
    mat = lambda *s: rng.standard_normal(s) / np.sqrt(s[-1])  # noqa: E731
    return LlamaWeights(tok_emb=rng.standard_normal((V, d)),
                        rms_att=1.0 + 0.2 * rng.standard_normal((L, d)),
                        wq=2.0 * mat(L, d, d), wk=2.0 * mat(L, kv, d), wv=mat(L, kv, d),
                        wo=mat(L, d, d), rms_ffn=1.0 + 0.2 * rng.standard_normal((L, d)),
                        w1=mat(L, h, d), w2=mat(L, d, h), w3=mat(L, h, d),
                        rms_final=1.0 + 0.2 * rng.standard_normal(d),
                        wcls=rng.standard_normal((V, d)))


L2C = LlamaConfig(dim=32, hidden_dim=48, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=64,
                  seq_len=64)


def test_state_dict_permutes_only_q_and_k_rows():
    w = tiny_llama2c_weights(L2C, SEED)
    sd = hf_state_dict(L2C, w)
    assert len(sd) == 3 + 9 * L2C.n_layers
    P = interleaved_to_half_perm(8)
    for l in range(2):
        q = sd[f"model.layers.{l}.self_attn.q_proj.weight"]
        k = sd[f"model.layers.{l}.self_attn.k_proj.weight"]
        for h in range(4):
            np.testing.assert_array_equal(q[8 * h:8 * h + 8], w.wq[l][8 * h + P].astype(np.float32))
        for h in range(2):
            np.testing.assert_array_equal(k[8 * h:8 * h + 8], w.wk[l][8 * h + P].astype(np.float32))
        np.testing.assert_array_equal(sd[f"model.layers.{l}.self_attn.v_proj.weight"],
                                      w.wv[l].astype(np.float32))
        np.testing.assert_array_equal(sd[f"model.layers.{l}.mlp.gate_proj.weight"],
                                      w.w1[l].astype(np.float32))
        np.testing.assert_array_equal(sd[f"model.layers.{l}.mlp.down_proj.weight"],
                                      w.w2[l].astype(np.float32))


def test_missing_torch_is_one_line(tmp_path):
    """A torch that fails to import (shadowed here) -> one line naming torch, exit 1."""
    fake = tmp_path / "fake"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text("raise ImportError('No module named torch')\n")
    model = tmp_path / "model"
    model.mkdir()
    out = tmp_path / "o.h5"
    r = run_cli("--backend", "hf", "--model", model, "--prompt", "hi", "--out", out,
                env={"PYTHONPATH": str(fake)})
    assert_clean_failure(r, out)
    assert "torch" in r.stderr and "transformers" in r.stderr


# ---- tiny HF models (torch) ----------------------------------------------------------------------
def save_tokenizer(d):
    import tokenizers
    import transformers
    from tokenizers import decoders, models, pre_tokenizers, processors
    tk = tokenizers.Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)},
                                               unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tk.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    transformers.PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>",
                                         unk_token="<unk>").save_pretrained(d)


def make_hf_model(d, family="llama", seed=SEED):
    """A tiny randomly initialised causal LM saved (float32) with its tokenizer in d."""
    import torch
    import transformers
    common = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                  bos_token_id=1, eos_token_id=2, initializer_range=0.2)
    if family == "llama":
        cfg = transformers.LlamaConfig(rope_theta=500.0, **common)
    elif family == "mistral":
        cfg = transformers.MistralConfig(sliding_window=4, rope_theta=1000.0, **common)
    elif family == "qwen2":  # q/k/v biases; sliding window from layer max_window_layers on
        cfg = transformers.Qwen2Config(use_sliding_window=True, sliding_window=4,
                                       max_window_layers=1, rope_theta=2000.0, **common)
    elif family == "gemma2":
        cfg = transformers.Gemma2Config(head_dim=8, sliding_window=4, query_pre_attn_scalar=16,
                                        attn_logit_softcapping=2.0, final_logit_softcapping=None,
                                        **common)
    else:
        raise ValueError(family)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(cfg).to(torch.float32)
    model.save_pretrained(d)
    save_tokenizer(d)
    return d


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    if not have_torch():
        pytest.skip("torch/transformers not installed")
    d = tmp_path_factory.mktemp("hf") / "tiny-llama"
    make_hf_model(d)
    (d.parent / "text.txt").write_text(TEXT + "\n")
    return d


@pytest.fixture(scope="module")
def tiny_hf_dump(tiny_hf):
    out = tiny_hf.parent / "tiny.h5"
    r = run_cli("--backend", "hf", "--model", tiny_hf, "--text", tiny_hf.parent / "text.txt",
                "--grads", "--out", out)
    assert r.returncode == 0, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "wrote" in r.stderr, r.stderr
    return out


def load_safetensors(d):
    from safetensors.numpy import load_file
    return {k: v.astype(np.float64) for k, v in load_file(str(d / "model.safetensors")).items()}


def read(f, i, name):
    return f[f"layers/{i}/{name}"][...].astype(np.float64)


@needs_torch
def test_structure_and_attributes(tiny_hf, tiny_hf_dump):
    ids = [1] + [WORDS.index(w) for w in TEXT.split()]
    T = len(ids)
    with h5py.File(tiny_hf_dump, "r") as f:
        a = f.attrs
        assert a["format"] == "tq-kv-dump" and int(a["n_layers"]) == 2
        assert int(a["n_tokens"]) == T and a["model_name"] == "tiny-llama"
        assert a["weight_precision"] == "fp32" and a["backend"] == "hf"
        assert a["model_type"] == "llama" and "LlamaForCausalLM" in a["model_source"]
        assert f["tokens/ids"][...].tolist() == ids
        assert f["tokens/positions"][...].tolist() == list(range(T))
        assert float(a["mean_nll"]) > 0
        for i in range(2):
            g = f[f"layers/{i}"]
            assert set(g.keys()) == {"k", "v", "q", "k_pre", "q_pre", "grad2_k", "grad2_v"}
            for n in ("k", "v", "k_pre", "grad2_k", "grad2_v"):
                assert g[n].shape == (2, T, 8) and g[n].dtype == np.float32
            assert g["q"].shape == (4, T, 8) and g["q_pre"].shape == (4, T, 8)
            at = dict(g.attrs)
            assert at["n_heads"] == 4 and at["n_kv_heads"] == 2 and at["head_dim"] == 8
            assert at["attn_scale"] == pytest.approx(8 ** -0.5, rel=1e-12)
            assert at["rope_theta"] == 500.0 and at["rope_pairing"] == "half"
            assert at["rotary_dim"] == 8 and at["rope_scaling"] == "none"
            assert "sliding_window" not in at and "logit_softcap" not in at
            assert g["grad2_k"][...].min() >= 0 and g["grad2_k"][...].max() > 0
            assert np.abs(g["grad2_v"][:, T - 1]).max() == 0  # the last token predicts nothing


@needs_torch
def test_dump_matches_numpy_recomputation(tiny_hf, tiny_hf_dump):
    """From the saved weights alone: layer-0 q_pre/k_pre/v = RMSNorm(emb) W^T; q, k =
    rotate_half RoPE of q_pre, k_pre; attention of the dumped q, k, v through o_proj, the
    residual and the SwiGLU MLP gives the dumped layer-1 k_pre and v."""
    W = load_safetensors(tiny_hf)
    eps = 1e-6  # LlamaConfig default rms_norm_eps
    with h5py.File(tiny_hf_dump, "r") as f:
        ids, pos = f["tokens/ids"][...], f["tokens/positions"][...]
        t = {i: {n: read(f, i, n) for n in ("q", "k", "v", "q_pre", "k_pre")} for i in range(2)}
    for i in range(2):
        np.testing.assert_allclose(t[i]["k"], ref_rope_half(t[i]["k_pre"], pos, 500.0), atol=2e-6)
        np.testing.assert_allclose(t[i]["q"], ref_rope_half(t[i]["q_pre"], pos, 500.0), atol=2e-6)
    p = "model.layers.0."
    x = W["model.embed_tokens.weight"][ids]
    xb = ref_rmsnorm(x, W[p + "input_layernorm.weight"], eps)
    for n, proj, h in (("q_pre", "q_proj", 4), ("k_pre", "k_proj", 2), ("v", "v_proj", 2)):
        np.testing.assert_allclose(t[0][n], heads(xb @ W[p + f"self_attn.{proj}.weight"].T, h),
                                   atol=1e-5)
    att = ref_attention(t[0]["q"], t[0]["k"], t[0]["v"], 8 ** -0.5)
    x = x + att.transpose(1, 0, 2).reshape(len(ids), 32) @ W[p + "self_attn.o_proj.weight"].T
    xb = ref_rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
    g, u = xb @ W[p + "mlp.gate_proj.weight"].T, xb @ W[p + "mlp.up_proj.weight"].T
    x = x + (g / (1 + np.exp(-g)) * u) @ W[p + "mlp.down_proj.weight"].T
    xb = ref_rmsnorm(x, W["model.layers.1.input_layernorm.weight"], eps)
    p = "model.layers.1.self_attn."
    np.testing.assert_allclose(t[1]["k_pre"], heads(xb @ W[p + "k_proj.weight"].T, 2), atol=1e-4)
    np.testing.assert_allclose(t[1]["v"], heads(xb @ W[p + "v_proj.weight"].T, 2), atol=1e-4)


def load_backend(d, compute_dtype="fp32", tokenizer=None):
    from dumpkv.hf_backend import HfBackend
    return HfBackend(compute_dtype=compute_dtype).load(d, tokenizer)


def eager_attention_fp64(module, query, key, value, attention_mask, scaling, dropout=0.0, **kw):
    """transformers' eager attention keeps the softmax in float32 even in a float64 model (and
    its RMSNorm casts to float32), which makes finite differences noisy (1e-7 relative); the test
    swaps in these float64 versions."""
    import torch
    G = query.shape[1] // key.shape[1]
    k, v = key.repeat_interleave(G, dim=1), value.repeat_interleave(G, dim=1)
    s = query @ k.transpose(2, 3) * scaling
    if attention_mask is not None:
        s = s + attention_mask
    p = torch.softmax(s, dim=-1)
    return (p @ v).transpose(1, 2).contiguous(), p


def rmsnorm_fp64(self, x):
    import torch
    return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))


@needs_torch
def test_gradients_match_finite_differences(tiny_hf, monkeypatch):
    """|dNLL/dK|, |dNLL/dV| from the backward pass (sqrt of grad2) vs central differences of the
    float64 model, perturbing single post-RoPE K/V entries through the kv_hook override."""
    import transformers.models.llama.modeling_llama as modeling
    monkeypatch.setattr(modeling, "eager_attention_forward", eager_attention_fp64)
    monkeypatch.setattr(modeling.LlamaRMSNorm, "forward", rmsnorm_fp64)
    b = load_backend(tiny_hf, "fp64")
    ids = b.tokenize(TEXT)
    T = len(ids)
    cap = b.capture(ids, want_grads=True)

    def nll(layer, which, idx, delta):
        def hook(l, k, v):
            if l == layer:
                (k if which == "k" else v)[idx] += delta
            return k, v
        return b.capture(ids, want_q=False, kv_hook=hook).mean_nll

    rng = np.random.default_rng(SEED)
    worst, eps = 0.0, 1e-5
    for layer in range(2):
        for which in ("k", "v"):
            g2 = cap.layers[layer].tensors[f"grad2_{which}"]
            for _ in range(5):
                idx = (int(rng.integers(2)), int(rng.integers(T - 1)), int(rng.integers(8)))
                fd = (nll(layer, which, idx, eps) - nll(layer, which, idx, -eps)) / (2 * eps)
                g = np.sqrt(g2[idx])
                worst = max(worst, abs(abs(fd) - g) / max(g, 1e-3 * np.sqrt(g2.max())))
    print(f"\nhf gradient check: 20 entries, max relative error {worst:.2e}")
    assert worst < 1e-6


@needs_torch
def test_kv_hook_override_reaches_later_layers(tiny_hf):
    b = load_backend(tiny_hf)
    ids = b.tokenize(TEXT)
    base = b.capture(ids)
    seen = {}

    def hook(l, k, v):
        seen[l] = (k.copy(), v.copy())
        return (k, np.zeros_like(v)) if l == 0 else (k, v)
    alt = b.capture(ids, kv_hook=hook)
    np.testing.assert_array_equal(seen[0][0], base.layers[0].tensors["k"])
    np.testing.assert_array_equal(seen[0][1], base.layers[0].tensors["v"])
    assert np.abs(alt.layers[0].tensors["v"]).max() == 0
    np.testing.assert_array_equal(alt.layers[0].tensors["q"], base.layers[0].tensors["q"])
    assert np.abs(alt.layers[1].tensors["k"] - base.layers[1].tensors["k"]).max() > 1e-3


def attention_outputs_of_plain_model(d, ids):
    """Per layer, the input of o_proj ([H, T, d]) of an untouched eager model."""
    import torch
    import transformers
    model = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32,
                                                              attn_implementation="eager").eval()
    outs = {}
    for i, layer in enumerate(model.model.layers):
        layer.self_attn.o_proj.register_forward_pre_hook(
            lambda m, a, i=i: outs.__setitem__(i, a[0][0].double().numpy()))
    with torch.no_grad():
        model(input_ids=torch.tensor([ids]), use_cache=False)
    return {i: heads(o, 4) for i, o in outs.items()}


@needs_torch
@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "gemma2"])
def test_attention_from_dump_and_attrs_reproduces_model(tmp_path, family):
    """Attention recomputed from the captured q, k, v with the layer's attn_scale, sliding_window
    and logit_softcap equals the attention output of the model run without any capture, and
    q, k are the layer's rope_theta rotate_half RoPE of the captured q_pre, k_pre."""
    d = make_hf_model(tmp_path / family, family)
    b = load_backend(d)
    ids = b.tokenize(TEXT)
    cap = b.capture(ids)
    plain = attention_outputs_of_plain_model(d, ids)
    for ld in cap.layers:
        a = ld.attrs
        if family == "llama":
            assert "sliding_window" not in a and "logit_softcap" not in a
        if family == "mistral":
            assert a["sliding_window"] == 4 and a["rope_theta"] == 1000.0
        if family == "qwen2":
            assert ("sliding_window" in a) == (ld.index == 1) and a["rope_theta"] == 2000.0
        if family == "gemma2":  # layer_types alternate sliding, full
            assert a["attn_scale"] == pytest.approx(16 ** -0.5, rel=1e-12)
            assert a["logit_softcap"] == 2.0
            assert ("sliding_window" in a) == (ld.index == 0)
        t = {n: ld.tensors[n].astype(np.float64) for n in ("q", "k", "v", "q_pre", "k_pre")}
        pos = np.arange(len(ids))
        for post in ("q", "k"):
            np.testing.assert_allclose(t[post], ref_rope_half(t[post + "_pre"], pos,
                                                              a["rope_theta"]), atol=2e-6)
        att = ref_attention(t["q"], t["k"], t["v"], a["attn_scale"], a.get("logit_softcap"),
                            a.get("sliding_window"))
        np.testing.assert_allclose(att, plain[ld.index], atol=2e-6, err_msg=f"layer {ld.index}")
        # and the window/softcap matter here: ignoring them gives a different answer
        if "sliding_window" in a or "logit_softcap" in a:
            assert np.abs(ref_attention(t["q"], t["k"], t["v"], a["attn_scale"])
                          - plain[ld.index]).max() > 1e-3


@needs_torch
def test_hub_id_resolves_from_local_cache_offline(tmp_path, tiny_hf):
    """--model ORG/NAME loads from the hub cache layout (models--ORG--NAME/snapshots/<commit>)
    without any network access, and the commit is recorded."""
    import shutil
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--tq-test--tiny-llama"
    shutil.copytree(tiny_hf, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    out = tmp_path / "o.h5"
    r = run_cli("--model", "tq-test/tiny-llama", "--prompt", "the cat sat", "--out", out,
                env={"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["model_name"] == "tiny-llama" and commit in f.attrs["model_source"]
        want = [1] + [WORDS.index(w) for w in ("the", "cat", "sat")]
        assert f["tokens/ids"][...].tolist() == want


@needs_torch
def test_bad_inputs(tmp_path, tiny_hf):
    out = tmp_path / "o.h5"
    r = run_cli("--backend", "hf", "--model", tmp_path / "nowhere", "--prompt", "hi", "--out", out)
    assert_clean_failure(r, out)
    assert "nowhere" in r.stderr
    r = run_cli("--model", "some-org/not-cached-model", "--prompt", "hi", "--out", out)
    assert_clean_failure(r, out)  # a hub id that is not in the cache: offline, one line
    f = tmp_path / "x.bin"
    f.write_bytes(b"x")
    r = run_cli("--backend", "hf", "--model", f, "--prompt", "hi", "--out", out)
    assert_clean_failure(r, out)
    bare = tmp_path / "bare"
    import shutil
    shutil.copytree(tiny_hf, bare, ignore=shutil.ignore_patterns("tokenizer*"))
    r = run_cli("--backend", "hf", "--model", bare, "--prompt", "the cat", "--out", out)
    assert_clean_failure(r, out)
    assert "tokenizer" in r.stderr


# ---- llama2.c numpy backend vs converted HF model ----------------------------------------------
PIECES = ["<unk>", "\n<s>\n", "\n</s>\n", " ", "a", "b", "c", "d", "e", "h", "l", "n", "o", "r",
          "s", "t", ".", ","] + [" t", "th", "he", "an", "nd", " a", " the", "the", "and", " and",
                                  "st", "ed", "er", "on"]
L2C_TEXT = "the hat and the sand. the rat sees the ant, then the ant sees the rat."


def compare_conventions(np_dump, hf_dump, n_layers, head_dim):
    """Max abs difference of q/k/v/q_pre/k_pre (HF channels = llama2.c channels permuted by P),
    the same relative to each tensor's peak |x|, and the max difference of grad2 relative to its
    peak (grad2_k channel-permuted too)."""
    P = interleaved_to_half_perm(head_dim)
    worst, worst_rel, worst_g = 0.0, 0.0, 0.0
    with h5py.File(np_dump, "r") as a, h5py.File(hf_dump, "r") as b:
        assert a["tokens/ids"][...].tolist() == b["tokens/ids"][...].tolist()
        assert float(a.attrs["mean_nll"]) == pytest.approx(float(b.attrs["mean_nll"]), abs=1e-5)
        for i in range(n_layers):
            for n in ("q", "k", "v", "q_pre", "k_pre", "grad2_k", "grad2_v"):
                x, y = read(a, i, n), read(b, i, n)
                if n not in ("v", "grad2_v"):
                    x = x[..., P]
                diff, peak = np.abs(x - y).max(), np.abs(x).max()
                if n.startswith("grad2"):
                    worst_g = max(worst_g, diff / peak)
                else:
                    worst, worst_rel = max(worst, diff), max(worst_rel, diff / peak)
            la, lb = dict(a[f"layers/{i}"].attrs), dict(b[f"layers/{i}"].attrs)
            assert la["rope_pairing"] == "interleaved" and lb["rope_pairing"] == "half"
            for key in ("n_heads", "n_kv_heads", "head_dim", "rope_theta", "rotary_dim",
                        "rope_scaling"):
                assert la[key] == lb[key], key
            assert la["attn_scale"] == pytest.approx(lb["attn_scale"], rel=1e-12)
    print(f"\n{Path(hf_dump).name}: q/k/v/q_pre/k_pre max |diff| {worst:.2e} "
          f"({worst_rel:.2e} of the tensor's peak), grad2 max diff {worst_g:.2e} of its peak")
    return worst, worst_rel, worst_g


def convert(bin_path, out_dir):
    from dumpkv.llama2c_to_hf import save_hf_model
    save_hf_model(bin_path, out_dir)
    return out_dir


@needs_torch
def test_converted_tiny_llama2c_matches_numpy_backend(tmp_path):
    w = tiny_llama2c_weights(L2C, SEED + 1)
    write_checkpoint(tmp_path / "tiny.bin", L2C, w, shared=False)
    pieces = PIECES + [f"<x{i}>" for i in range(L2C.vocab_size - len(PIECES))]
    scores = [0.0] * 18 + [-float(i) for i in range(len(pieces) - 18)]
    Llama2cTokenizer([p.encode() for p in pieces], scores, max(len(p) for p in pieces)).save(
        tmp_path / "tok64.bin")
    hf_dir = convert(tmp_path / "tiny.bin", tmp_path / "tiny-hf")
    tok = ["--tokenizer", tmp_path / "tok64.bin", "--prompt", L2C_TEXT, "--grads"]
    r = run_cli("--model", tmp_path / "tiny.bin", *tok, "--out", tmp_path / "np.h5")
    assert r.returncode == 0, r.stderr
    r = run_cli("--backend", "hf", "--model", hf_dir, *tok, "--out", tmp_path / "hf.h5")
    assert r.returncode == 0, r.stderr
    worst, _, worst_g = compare_conventions(tmp_path / "np.h5", tmp_path / "hf.h5", 2, 8)
    assert worst < CROSS_TOL and worst_g < 1e-4


def shared_models():
    for d in (REPO.parent / "shared" / "models", Path("/work/shared/models")):
        if (d / "stories260K.bin").is_file() and (d / "tok512.bin").is_file():
            return d
    pytest.skip("../shared/models not present")


ZOO = "Zoo was a little girl named Lily. She loved to play outside in the park."


@needs_torch
def test_real_stories260K_converted_matches_bundled_dump(tmp_path):
    """The real stories260K converted to HF and dumped by the hf backend over the bundled text
    equals data/stories260K.h5 (numpy llama2.c backend) up to the channel permutation; greedy
    decoding of "Zoo" gives llama2.c's known story."""
    d = shared_models()
    hf_dir = convert(d / "stories260K.bin", tmp_path / "stories260K-hf")
    out = tmp_path / "hf.h5"
    r = run_cli("--backend", "hf", "--model", hf_dir, "--tokenizer", d / "tok512.bin", "--text",
                REPO / "data" / "stories260K_text.txt", "--grads", "--out", out)
    assert r.returncode == 0, r.stderr
    _, worst_rel, worst_g = compare_conventions(REPO / "data" / "stories260K.h5", out, 5, 8)
    # 426 positions: transformers computes the RoPE angles p * theta^(-2i/d) in float32 (numpy in
    # float64), an error of ~1e-6 of |q|, |k| at p ~ 400 that the later layers carry along (with
    # float32 summation-order differences): absolute differences reach 3e-5 on values up to 37,
    # 3.5e-6 of the peak, so here the bound is relative to the peak ...
    assert worst_rel < CROSS_REL_TOL and worst_g < 1e-4
    # ... and the RoPE angles explain it: layer 0's q, k rebuilt from the bundled q_pre, k_pre
    # with float32 angles as transformers computes them match the HF dump to float32 precision
    P = interleaved_to_half_perm(8)
    with h5py.File(REPO / "data" / "stories260K.h5", "r") as a, h5py.File(out, "r") as b:
        for pre, post in (("q_pre", "q"), ("k_pre", "k")):
            x = read(a, 0, pre)[..., P]
            f64_gap = np.abs(ref_rope_half(x, np.arange(x.shape[1]), 10000.0) - read(b, 0, post))
            f32_gap = np.abs(rope_half_fp32_angles(x, 10000.0) - read(b, 0, post))
            assert f32_gap.max() < CROSS_TOL < f64_gap.max()
    r = run_cli("--backend", "hf", "--model", hf_dir, "--tokenizer", d / "tok512.bin",
                "--prompt", "Zoo", "--generate", "30")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(ZOO), r.stdout
