"""Reading llama2.c legacy ("version 0") checkpoints.

Layout (little-endian), as written by llama2.c's export and read by its run.c:
  header   7 x int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
           (vocab_size < 0 means the classifier is stored separately, |vocab_size| is the vocab)
  float32  token_embedding [vocab, dim], rms_att [L, dim], wq [L, dim, dim], wk [L, kv_dim, dim],
           wv [L, kv_dim, dim], wo [L, dim, dim], rms_ffn [L, dim], w1 [L, hidden, dim],
           w2 [L, dim, hidden], w3 [L, hidden, dim], rms_final [dim],
           freq_cis_real, freq_cis_imag [seq_len * head_dim / 2 each; legacy RoPE tables, unused],
           wcls [vocab, dim] only when unshared.
  Every matrix is [out, in]: run.c computes xout[i] = sum_j W[i*in + j] x[j].
Newer llama2.c exports (version >= 1) start with the magic "ak42" and are not read here.
"""
import os

import numpy as np

from .errors import DumpError
from .llama_numpy import LlamaConfig, LlamaWeights

HEADER_INTS = 7
HEADER_BYTES = HEADER_INTS * 4
LLAMA2C_MAGIC = 0x616B3432   # "ak42", the header of llama2.c version >= 1 exports
MAX_REASONABLE = 1 << 20    # sanity bound on any header dimension


def _tensor_sizes(c: LlamaConfig, shared: bool):
    L, d, kv, h, V = c.n_layers, c.dim, c.kv_dim, c.hidden_dim, c.vocab_size
    sizes = [("tok_emb", (V, d)), ("rms_att", (L, d)), ("wq", (L, d, d)), ("wk", (L, kv, d)),
             ("wv", (L, kv, d)), ("wo", (L, d, d)), ("rms_ffn", (L, d)), ("w1", (L, h, d)),
             ("w2", (L, d, h)), ("w3", (L, h, d)), ("rms_final", (d,)),
             ("_freq_cis", (c.seq_len * c.head_dim,))]  # real + imag halves, skipped
    if not shared:
        sizes.append(("wcls", (V, d)))
    return sizes


def expected_file_size(c: LlamaConfig, shared: bool) -> int:
    return HEADER_BYTES + 4 * sum(int(np.prod(s)) for _, s in _tensor_sizes(c, shared))


def read_checkpoint(path):
    """Returns (LlamaConfig, LlamaWeights as float32 views of the file). Raises DumpError with one
    line naming the file on any inconsistency."""
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise DumpError(f"{name}: model file not found")
    size = os.path.getsize(name)
    if size < HEADER_BYTES:
        raise DumpError(f"{name}: {size} bytes is too short for a llama2.c checkpoint header")
    raw = np.fromfile(name, dtype="<i4", count=HEADER_INTS)
    if np.uint32(raw[0]) == LLAMA2C_MAGIC:
        raise DumpError(f"{name}: llama2.c version>=1 export (magic 'ak42'); only the legacy "
                        "version-0 .bin format is supported")
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = (int(v) for v in raw)
    shared = vocab > 0
    vocab = abs(vocab)
    fields = dict(dim=dim, hidden_dim=hidden, n_layers=n_layers, n_heads=n_heads,
                  n_kv_heads=n_kv_heads, vocab_size=vocab, seq_len=seq_len)
    bad = [k for k, v in fields.items() if not 0 < v <= MAX_REASONABLE]
    if bad or dim % n_heads or n_heads % n_kv_heads or (dim // n_heads) % 2:
        hdr = ", ".join(f"{k}={v}" for k, v in fields.items())
        raise DumpError(f"{name}: not a llama2.c checkpoint (implausible header: {hdr})")
    config = LlamaConfig(**fields)
    want = expected_file_size(config, shared)
    if size != want:
        raise DumpError(f"{name}: {size} bytes, but a llama2.c checkpoint with header dim={dim} "
                        f"hidden={hidden} layers={n_layers} heads={n_heads}/{n_kv_heads} "
                        f"vocab={vocab} seq_len={seq_len} ({'shared' if shared else 'separate'} "
                        f"classifier) has {want} bytes")
    flat = np.fromfile(name, dtype="<f4", offset=HEADER_BYTES)
    tensors, off = {}, 0
    for key, shape in _tensor_sizes(config, shared):
        n = int(np.prod(shape))
        tensors[key] = flat[off:off + n].reshape(shape)
        off += n
    del tensors["_freq_cis"]
    if shared:
        tensors["wcls"] = tensors["tok_emb"]
    if not all(np.isfinite(t).all() for t in tensors.values()):
        raise DumpError(f"{name}: checkpoint contains non-finite weights")
    return config, LlamaWeights(**tensors)


def write_checkpoint(path, config: LlamaConfig, weights: LlamaWeights, shared=True):
    """Writes a legacy llama2.c checkpoint (used by the tests to make tiny random models)."""
    header = np.array([config.dim, config.hidden_dim, config.n_layers, config.n_heads,
                       config.n_kv_heads, config.vocab_size if shared else -config.vocab_size,
                       config.seq_len], dtype="<i4")
    with open(path, "wb") as f:
        f.write(header.tobytes())
        for key, shape in _tensor_sizes(config, shared):
            arr = (np.zeros(shape) if key == "_freq_cis" else getattr(weights, key))
            f.write(np.ascontiguousarray(arr, dtype="<f4").tobytes())
