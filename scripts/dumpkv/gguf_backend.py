"""Backend for llama-family GGUF files (llama.cpp's format): the pure-numpy model of
scripts/dumpkv_gguf (docs/gguf-backend.md). Weights are dequantized to float32 once at load time;
the forward runs in float32 with float64 softmax, the backward gives d(mean NLL)/d(post-RoPE K, V).

The file's own byte-level BPE tokenizer is used (its BOS convention: SmolLM2 adds none), so
--tokenizer is not accepted. RoPE rotates interleaved pairs (2i, 2i+1) of each head, because
llama.cpp's converter permutes the q/k rows of llama models; the dumped K/Q are in that order.
"""
import os
from collections import Counter

import numpy as np

from .backend import Backend, Capture, LayerDump
from .errors import DumpError
from .llama2c_backend import sha256_of

EMBEDDING = "token_embd.weight"
OUTPUT = "output.weight"


def describe_weight_precision(tensor_types):
    """One line naming the storage types of the matrices, e.g. "Q4_1 (embedding Q8_0)".

    The 1-D norm gains (F32 in every converter) are not mentioned. The most common type among the
    per-layer matrices comes first; the other layer types (with counts), the embedding's and a
    separate classifier's types follow in parentheses."""
    layer = Counter(t for name, t in tensor_types.items()
                    if name.startswith("blk.") and not name.endswith("norm.weight"))
    if not layer:
        return "unknown"
    ranked = sorted(layer.items(), key=lambda kv: (-kv[1], kv[0]))
    notes = []
    if len(ranked) > 1:
        notes.append("other layer matrices: " + ", ".join(f"{n} x {t}" for t, n in ranked[1:]))
    ends = [f"{label} {tensor_types[name]}" for label, name in
            (("embedding", EMBEDDING), ("output", OUTPUT)) if name in tensor_types]
    if ends:
        notes.append(", ".join(ends))
    return ranked[0][0] + (f" ({'; '.join(notes)})" if notes else "")


class GgufBackend(Backend):
    name = "gguf"

    def load(self, model_path, tokenizer_path=None):
        if tokenizer_path is not None:
            raise DumpError("--tokenizer: the gguf backend uses the GGUF file's own tokenizer")
        self.model_path = os.fspath(model_path)
        if not os.path.isfile(self.model_path):
            raise DumpError(f"{self.model_path}: model file not found")
        try:
            from dumpkv_gguf import GGUFError, load
        except ImportError as e:  # the `gguf` package is optional
            raise DumpError(f"backend gguf: {e} (scripts/venv gguf regex)")
        try:
            self.gm, self.model, self.tokenizer = load(self.model_path)
        except ImportError as e:
            raise DumpError(f"backend gguf: {e}")
        except GGUFError as e:
            msg = str(e)
            raise DumpError(msg if self.model_path in msg else f"{self.model_path}: {msg}")
        self.model_sha256 = sha256_of(self.model_path)
        return self

    @property
    def config(self):
        return self.gm.config

    @property
    def context_length(self):
        return int(self.config["context_length"])

    def tokenize(self, text):
        try:
            return self.tokenizer.encode(text)
        except ValueError as e:
            raise DumpError(f"{os.path.basename(self.model_path)}: tokenizer: {e}")

    def detokenize(self, ids):
        return self.tokenizer.decode(ids)

    def generate(self, ids, n_new):
        return self.model.greedy(ids, n_new, stop_token=self.tokenizer.eos_token_id)

    def layer_attrs(self):
        c = self.config
        return dict(n_heads=int(c["n_head"]), n_kv_heads=int(c["n_kv_head"]),
                    head_dim=int(c["head_dim"]), attn_scale=float(self.model.attn_scale),
                    rope_theta=float(c["rope_theta"]), rope_pairing=c["rope_pairing"],
                    rotary_dim=int(c["rope_dim"]), rope_scaling="none")

    def capture(self, ids, want_q=True, want_grads=False, kv_hook=None):
        ids = np.asarray(ids, dtype=np.int64)
        names = ("k", "v", "k_pre") + (("q", "q_pre") if want_q else ())
        if want_grads:
            fwd, g2 = self.model.kv_grad2(ids, kv_hook=kv_hook, capture=names)
        else:
            fwd, g2 = self.model.forward(ids, capture=names, kv_hook=kv_hook), None
        c = fwd.captures
        order = ("k", "v", "q", "k_pre", "q_pre") if want_q else ("k", "v", "k_pre")
        layers = []
        for li in range(int(self.config["n_layer"])):
            t = {name: c[name][li] for name in order}
            if g2 is not None:
                t["grad2_k"] = g2["grad2_k"][li]
                t["grad2_v"] = g2["grad2_v"][li]
            layers.append(LayerDump(index=li, attrs=self.layer_attrs(), tensors=t))
        return Capture(token_ids=ids.astype(np.int32), positions=np.arange(len(ids), dtype=np.int32),
                       layers=layers, mean_nll=fwd.nll())

    def metadata(self):
        base = os.path.basename(self.model_path)
        name = self.gm.metadata.get("general.name") or os.path.splitext(base)[0]
        return dict(model_name=str(name),
                    model_source=f"GGUF file {base} (sha256 {self.model_sha256})",
                    weight_precision=describe_weight_precision(self.gm.tensor_types),
                    n_layers=int(self.config["n_layer"]), backend=self.name,
                    tokenizer=f"{base} (tokenizer.ggml.pre={self.gm.tokenizer.get('pre')})",
                    model_sha256=self.model_sha256,
                    compute_precision="weights dequantized to fp32; fp32 matmuls, fp64 softmax")
