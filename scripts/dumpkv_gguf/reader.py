"""Read a llama-family GGUF file into plain numpy structures.

`load_gguf(path)` returns a `GGUFModel` with

* ``config``  -- dict of the hyper-parameters the forward pass needs (see `CONFIG_KEYS`),
* ``weights`` -- dict ``name -> float32 ndarray`` with every tensor dequantized,
* ``tokenizer`` -- dict with the vocabulary metadata (tokens, merges, token types, special ids),
* ``tensor_types`` -- dict ``name -> GGML type name`` as stored in the file (e.g. ``"Q4_1"``),
* ``metadata`` -- every scalar / short metadata field of the file (for provenance).

Weight naming and orientation
-----------------------------
Names are the GGUF tensor names unchanged:

===========================  ==============================  =====================
name                         shape                           meaning
===========================  ==============================  =====================
token_embd.weight            [vocab, d_model]                row t = embedding of t
output_norm.weight           [d_model]                       final RMSNorm gain
output.weight                [vocab, d_model]                classifier, logits = W @ h
blk.{l}.attn_norm.weight     [d_model]                       pre-attention RMSNorm gain
blk.{l}.attn_q.weight        [n_head*head_dim, d_model]      q = W @ h
blk.{l}.attn_k.weight        [n_kv_head*head_dim, d_model]   k = W @ h
blk.{l}.attn_v.weight        [n_kv_head*head_dim, d_model]   v = W @ h
blk.{l}.attn_output.weight   [d_model, n_head*head_dim]      out = W @ o
blk.{l}.ffn_norm.weight      [d_model]                       pre-FFN RMSNorm gain
blk.{l}.ffn_gate.weight      [d_ff, d_model]                 gate = W @ h
blk.{l}.ffn_up.weight        [d_ff, d_model]                 up = W @ h
blk.{l}.ffn_down.weight      [d_model, d_ff]                 y = W @ (silu(gate) * up)
===========================  ==============================  =====================

Every matrix is [out, in], so ``y = W @ x`` (for row-major activations ``Y = X @ W.T``).  This is
simply the numpy view of GGUF's storage: GGUF lists dimensions fastest-first (ne0 = in), numpy
shapes list them slowest-first.

Tied embeddings: when the file has no ``output.weight`` the classifier is the embedding matrix;
``weights["output.weight"]`` is then the *same array object* as ``weights["token_embd.weight"]``
and ``config["tied_embeddings"]`` is True.

The q/k rows are kept in GGUF order.  For ``llama`` the HF->GGUF converter permuted them so that
RoPE rotates interleaved pairs (2i, 2i+1) of each head; ``config["rope_pairing"]`` records this.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Architectures whose GGUF layout this package knows, with the RoPE pairing the converter leaves
# in the q/k rows.  llama.cpp uses LLAMA_ROPE_TYPE_NORM (adjacent pairs) for these.
SUPPORTED_ARCHS = {"llama": "interleaved"}

CONFIG_KEYS = (
    "arch", "n_layer", "d_model", "d_ff", "n_head", "n_kv_head", "head_dim", "rope_dim",
    "rope_theta", "rms_eps", "context_length", "vocab_size", "tied_embeddings", "rope_pairing",
)

# Metadata arrays longer than this are not copied into GGUFModel.metadata (the vocabulary is
# exposed separately through GGUFModel.tokenizer).
_MAX_METADATA_ARRAY = 64


class GGUFError(ValueError):
    """A GGUF file that this reader cannot turn into a llama-family model (one-line message)."""


@dataclass
class GGUFModel:
    path: str
    config: dict[str, Any]
    weights: dict[str, np.ndarray]
    tokenizer: dict[str, Any]
    tensor_types: dict[str, str]
    metadata: dict[str, Any] = field(default_factory=dict)


def _import_gguf():
    try:
        import gguf  # noqa: PLC0415  (optional dependency, imported lazily)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the GGUF backend needs the `gguf` package: scripts/venv gguf") from exc
    return gguf


def _field_value(fld) -> Any:
    """Python value of one metadata field (scalars, strings, arrays of either)."""
    return fld.contents()


def read_metadata(reader) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, fld in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        if len(fld.types) > 1 and len(fld.data) > _MAX_METADATA_ARRAY:
            continue  # large arrays (tokens, merges, ...) are read on demand
        out[name] = _field_value(fld)
    return out


def _require(reader, key: str, path: str):
    fld = reader.fields.get(key)
    if fld is None:
        raise GGUFError(f"{path}: GGUF metadata key '{key}' is missing")
    return _field_value(fld)


def _optional(reader, key: str, default=None):
    fld = reader.fields.get(key)
    return default if fld is None else _field_value(fld)


def read_config(reader, path: str) -> dict[str, Any]:
    arch = _require(reader, "general.architecture", path)
    if arch not in SUPPORTED_ARCHS:
        raise GGUFError(f"{path}: architecture '{arch}' is not supported (supported: "
                        f"{', '.join(sorted(SUPPORTED_ARCHS))})")
    p = arch + "."
    scaling = _optional(reader, p + "rope.scaling.type")
    if scaling not in (None, "none"):
        raise GGUFError(f"{path}: RoPE scaling '{scaling}' ({p}rope.scaling.type) is not supported")
    n_head = int(_require(reader, p + "attention.head_count", path))
    d_model = int(_require(reader, p + "embedding_length", path))
    if d_model % n_head:
        raise GGUFError(f"{path}: {p}embedding_length {d_model} is not a multiple of head_count {n_head}")
    head_dim = d_model // n_head
    for key in ("attention.key_length", "attention.value_length"):
        val = _optional(reader, p + key)
        if val is not None and int(val) != head_dim:
            raise GGUFError(f"{path}: {p}{key}={val} differs from embedding_length/head_count={head_dim}")
    rope_dim = int(_optional(reader, p + "rope.dimension_count", head_dim))
    if rope_dim != head_dim:
        raise GGUFError(f"{path}: partial RoPE ({p}rope.dimension_count={rope_dim} < head_dim={head_dim}) "
                        "is not supported")
    tokens_fld = reader.fields.get("tokenizer.ggml.tokens")
    vocab = _optional(reader, p + "vocab_size")
    if vocab is None:
        if tokens_fld is None:
            raise GGUFError(f"{path}: neither {p}vocab_size nor tokenizer.ggml.tokens is present")
        vocab = len(tokens_fld.data)
    n_kv_head = int(_optional(reader, p + "attention.head_count_kv", n_head))
    if n_head % n_kv_head:
        raise GGUFError(f"{path}: head_count {n_head} is not a multiple of head_count_kv {n_kv_head}")
    return {
        "arch": arch,
        "n_layer": int(_require(reader, p + "block_count", path)),
        "d_model": d_model,
        "d_ff": int(_require(reader, p + "feed_forward_length", path)),
        "n_head": n_head,
        "n_kv_head": n_kv_head,
        "head_dim": head_dim,
        "rope_dim": rope_dim,
        # llama.cpp's default when the key is absent is 10000 (the original LLaMA value).
        "rope_theta": float(_optional(reader, p + "rope.freq_base", 10000.0)),
        "rms_eps": float(_require(reader, p + "attention.layer_norm_rms_epsilon", path)),
        "context_length": int(_require(reader, p + "context_length", path)),
        "vocab_size": int(vocab),
        "tied_embeddings": False,  # filled in by load_gguf
        "rope_pairing": SUPPORTED_ARCHS[arch],
    }


def read_tokenizer_metadata(reader) -> dict[str, Any]:
    def arr(key):
        fld = reader.fields.get(key)
        return None if fld is None else list(_field_value(fld))

    def scalar(key, default=None):
        return _optional(reader, key, default)

    tok = {
        "model": scalar("tokenizer.ggml.model"),
        "pre": scalar("tokenizer.ggml.pre", "default"),
        "tokens": arr("tokenizer.ggml.tokens"),
        "token_type": arr("tokenizer.ggml.token_type"),
        "merges": arr("tokenizer.ggml.merges"),
        "bos_token_id": scalar("tokenizer.ggml.bos_token_id"),
        "eos_token_id": scalar("tokenizer.ggml.eos_token_id"),
        "unknown_token_id": scalar("tokenizer.ggml.unknown_token_id"),
        "padding_token_id": scalar("tokenizer.ggml.padding_token_id"),
        "add_bos_token": scalar("tokenizer.ggml.add_bos_token"),
        "add_eos_token": scalar("tokenizer.ggml.add_eos_token"),
    }
    if tok["token_type"] is not None:
        tok["token_type"] = [int(t) for t in tok["token_type"]]
    return tok


def dequantize_tensor(tensor) -> np.ndarray:
    """float32 array of one ReaderTensor in numpy order ([out, in] for matrices)."""
    gguf = _import_gguf()
    qtype = tensor.tensor_type
    try:
        arr = gguf.quants.dequantize(tensor.data, qtype)
    except NotImplementedError as exc:
        raise GGUFError(f"tensor '{tensor.name}': GGML type {qtype.name} cannot be dequantized "
                        f"by gguf {getattr(gguf, '__version__', '?')}: {exc}") from exc
    # GGUF shapes are fastest-first; numpy's are the reverse.
    shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
    arr = np.ascontiguousarray(arr, dtype=np.float32).reshape(shape)
    return arr


def _check_shapes(cfg: dict[str, Any], weights: dict[str, np.ndarray], path: str) -> None:
    d, dff, hd = cfg["d_model"], cfg["d_ff"], cfg["head_dim"]
    qd, kvd = cfg["n_head"] * hd, cfg["n_kv_head"] * hd
    want = {"token_embd.weight": (cfg["vocab_size"], d), "output_norm.weight": (d,),
            "output.weight": (cfg["vocab_size"], d)}
    for layer in range(cfg["n_layer"]):
        b = f"blk.{layer}."
        want.update({
            b + "attn_norm.weight": (d,), b + "ffn_norm.weight": (d,),
            b + "attn_q.weight": (qd, d), b + "attn_k.weight": (kvd, d), b + "attn_v.weight": (kvd, d),
            b + "attn_output.weight": (d, qd), b + "ffn_gate.weight": (dff, d),
            b + "ffn_up.weight": (dff, d), b + "ffn_down.weight": (d, dff),
        })
    for name, shape in want.items():
        if name not in weights:
            raise GGUFError(f"{path}: tensor '{name}' is missing")
        if tuple(weights[name].shape) != shape:
            raise GGUFError(f"{path}: tensor '{name}' has shape {tuple(weights[name].shape)}, "
                            f"expected {shape}")
    extra = sorted(set(weights) - set(want))
    if extra:
        # rope_freqs (Llama 3.1 frequency factors), biases, ... would change the maths silently.
        raise GGUFError(f"{path}: unsupported tensor(s) {', '.join(extra[:4])}"
                        f"{' ...' if len(extra) > 4 else ''}")


def load_gguf(path: str | os.PathLike) -> GGUFModel:
    """Read config, tokenizer metadata and all weights (dequantized to float32) of a GGUF file."""
    gguf = _import_gguf()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise GGUFError(f"{path}: no such file")
    try:
        reader = gguf.GGUFReader(path, "r")
    except Exception as exc:  # the gguf package raises ValueError / struct errors on bad files
        raise GGUFError(f"{path}: not a readable GGUF file ({exc})") from exc
    cfg = read_config(reader, path)
    weights: dict[str, np.ndarray] = {}
    types: dict[str, str] = {}
    for t in reader.tensors:
        weights[t.name] = dequantize_tensor(t)
        types[t.name] = t.tensor_type.name
    if "output.weight" not in weights and "token_embd.weight" in weights:
        weights["output.weight"] = weights["token_embd.weight"]
        cfg["tied_embeddings"] = True
    _check_shapes(cfg, weights, path)
    return GGUFModel(path=path, config=cfg, weights=weights,
                     tokenizer=read_tokenizer_metadata(reader), tensor_types=types,
                     metadata=read_metadata(reader))
