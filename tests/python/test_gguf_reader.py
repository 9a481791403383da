"""scripts/dumpkv_gguf/reader.py on tiny GGUF files written by gguf.GGUFWriter.

Quantized tensors are decoded here by hand from the GGML block layouts (Q8_0: fp16 scale + 32
int8; Q4_1: fp16 scale, fp16 min, 32 nibbles with the low nibbles holding elements 0..15) and
compared with the reader; the model built from the file is compared with the naive reference
forward on the hand-decoded weights, which checks names and [out, in] orientation end to end.
"""

from __future__ import annotations

import numpy as np
import pytest

from gguf_naive import naive_forward, tiny_config, tiny_weights

gguf = pytest.importorskip("gguf")

from dumpkv_gguf import GGUFError, LlamaModel, load_gguf  # noqa: E402
from dumpkv_gguf.tokenizer import ByteLevelBPETokenizer, bytes_to_unicode  # noqa: E402

Q = gguf.GGMLQuantizationType
# tensor suffix -> storage type in the tiny file (a mix of every type the test decodes)
TYPES = {"token_embd": Q.Q8_0, "output": Q.F16, "attn_q": Q.Q4_1, "attn_k": Q.Q8_0, "attn_v": Q.F16,
         "attn_output": Q.Q4_1, "ffn_gate": Q.Q8_0, "ffn_up": Q.Q4_1, "ffn_down": Q.Q4_1}
TOKENS = [5, 1, 33, 20, 20, 7, 39, 2]


def decode_q8_0(raw: np.ndarray, shape) -> np.ndarray:
    blocks = raw.reshape(-1, 34)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)
    return (d * q).reshape(shape)


def decode_q4_1(raw: np.ndarray, shape) -> np.ndarray:
    blocks = raw.reshape(-1, 20)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
    m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
    qs = blocks[:, 4:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
    return (d * q + m).reshape(shape)


def write_tiny(path, cfg, w, *, tied, arch="llama", skip_keys=(), skip_tensors=(), extra_tensors=None):
    """Write a tiny llama GGUF; returns the weights as a hand decoder reads them back."""
    wr = gguf.GGUFWriter(str(path), arch)
    p = arch + "."
    keys = {
        "block_count": (cfg["n_layer"], wr.add_uint32), "context_length": (cfg["context_length"], wr.add_uint32),
        "embedding_length": (cfg["d_model"], wr.add_uint32), "feed_forward_length": (cfg["d_ff"], wr.add_uint32),
        "attention.head_count": (cfg["n_head"], wr.add_uint32),
        "attention.head_count_kv": (cfg["n_kv_head"], wr.add_uint32),
        "rope.freq_base": (cfg["rope_theta"], wr.add_float32),
        "attention.layer_norm_rms_epsilon": (cfg["rms_eps"], wr.add_float32),
        "rope.dimension_count": (cfg["head_dim"], wr.add_uint32), "vocab_size": (cfg["vocab_size"], wr.add_uint32),
    }
    for k, (val, fn) in keys.items():
        if k not in skip_keys:
            fn(p + k, val)
    b2u = bytes_to_unicode()
    toks = [b2u[i] for i in range(cfg["vocab_size"] - 3)] + ["<|endoftext|>", "he", "Ġhe"]
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre("smollm")
    wr.add_token_list(toks)
    wr.add_token_types([1] * (len(toks) - 3) + [3, 1, 1])
    wr.add_token_merges(["h e", "Ġ he"])
    wr.add_bos_token_id(len(toks) - 3)
    wr.add_eos_token_id(len(toks) - 3)
    decoded = {}
    for name, arr in w.items():
        if name in skip_tensors or (tied and name == "output.weight"):
            continue
        kind = name.split(".")[-2]
        qt = TYPES.get(kind, Q.F32)
        if qt == Q.F32:
            wr.add_tensor(name, arr)
            decoded[name] = arr
        elif qt == Q.F16:
            wr.add_tensor(name, arr.astype(np.float16))
            decoded[name] = arr.astype(np.float16).astype(np.float32)
        else:
            raw = gguf.quants.quantize(arr, qt)
            wr.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qt)
            decoded[name] = (decode_q8_0 if qt == Q.Q8_0 else decode_q4_1)(raw, arr.shape)
    for name, arr in (extra_tensors or {}).items():
        wr.add_tensor(name, arr)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    if tied:
        decoded["output.weight"] = decoded["token_embd.weight"]
    return decoded


@pytest.mark.parametrize("tied", [False, True])
def test_reader_dequantizes_and_model_matches_reference(tmp_path, tied):
    cfg = tiny_config(vocab_size=40)
    w = tiny_weights(cfg, seed=21, tied=tied)
    path = tmp_path / "tiny.gguf"
    decoded = write_tiny(path, cfg, w, tied=tied)
    gm = load_gguf(path)
    want_cfg = dict(cfg, tied_embeddings=tied)
    for k, v in want_cfg.items():
        assert gm.config[k] == pytest.approx(v) if isinstance(v, float) else gm.config[k] == v, k
    assert gm.tensor_types["blk.0.attn_q.weight"] == "Q4_1"
    assert gm.tensor_types["token_embd.weight"] == "Q8_0"
    assert gm.tensor_types["blk.1.attn_norm.weight"] == "F32"
    if tied:
        assert "output.weight" not in gm.tensor_types
        assert gm.weights["output.weight"] is gm.weights["token_embd.weight"]
    for name, arr in decoded.items():
        got = gm.weights[name]
        assert got.dtype == np.float32 and got.shape == arr.shape, name
        np.testing.assert_allclose(got, arr, rtol=1e-6, atol=1e-7, err_msg=name)
        # and the quantized value is close to the original (orientation of the blocks is right)
        assert np.abs(got - w[name]).max() <= 0.2 * np.abs(w[name]).max(), name
    ref = naive_forward(cfg, decoded, TOKENS)
    fwd = LlamaModel.from_gguf(gm).forward(TOKENS)
    assert np.abs(fwd.logits - ref["logits"]).max() <= 2e-4 * np.abs(ref["logits"]).max()
    np.testing.assert_allclose(fwd.captures["k"][1], ref["k"][1], atol=2e-4 * np.abs(ref["k"][1]).max())


def test_tokenizer_from_gguf_metadata(tmp_path):
    cfg = tiny_config(vocab_size=259)
    path = tmp_path / "tok.gguf"
    write_tiny(path, cfg, tiny_weights(cfg, seed=1), tied=True)
    gm = load_gguf(path)
    assert gm.tokenizer["pre"] == "smollm" and gm.tokenizer["bos_token_id"] == 256
    tok = ByteLevelBPETokenizer.from_gguf_metadata(gm.tokenizer)
    # vocab: 256 byte tokens, 256 = <|endoftext|>, 257 = "he", 258 = "Ġhe"; merges "h e", "Ġ he".
    # pieces: "he" | " hehe" | " " | "1" (digits isolated by the smollm pre-tokenizer)
    assert tok.encode("he hehe 1") == [257, 258, 257, ord(" "), ord("1")]
    assert tok.encode("<|endoftext|>", parse_special=True) == [256]


def test_reader_errors(tmp_path):
    cfg = tiny_config()
    w = tiny_weights(cfg, seed=2)
    p1 = tmp_path / "nohead.gguf"
    write_tiny(p1, cfg, w, tied=False, skip_keys=("attention.head_count",))
    with pytest.raises(GGUFError, match="llama.attention.head_count"):
        load_gguf(p1)
    p2 = tmp_path / "arch.gguf"
    write_tiny(p2, cfg, w, tied=False, arch="gpt2")
    with pytest.raises(GGUFError, match="architecture 'gpt2'"):
        load_gguf(p2)
    p3 = tmp_path / "missing.gguf"
    write_tiny(p3, cfg, w, tied=False, skip_tensors=("blk.1.ffn_up.weight",))
    with pytest.raises(GGUFError, match="blk.1.ffn_up.weight"):
        load_gguf(p3)
    p4 = tmp_path / "extra.gguf"
    write_tiny(p4, cfg, w, tied=False, extra_tensors={"rope_freqs.weight": np.ones(8, np.float32)})
    with pytest.raises(GGUFError, match="rope_freqs"):
        load_gguf(p4)
    p5 = tmp_path / "junk.gguf"
    p5.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(GGUFError, match="junk.gguf"):
        load_gguf(p5)
    with pytest.raises(GGUFError, match="no such file"):
        load_gguf(tmp_path / "absent.gguf")
