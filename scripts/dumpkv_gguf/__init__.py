"""GGUF backend for scripts/dump_kv.py: a pure-numpy llama-family model read from a GGUF file.

    from dumpkv_gguf import load
    gm, model, tok = load("SmolLM2-135M-Instruct.Q4_1.gguf")
    ids = tok.encode("The capital of France is")
    fwd = model.forward(ids)                      # fwd.logits [T, vocab]; fwd.captures["k"][layer] ...
    fwd, g2 = model.kv_grad2(ids)                 # g2["grad2_k"][layer]: [n_kv_head, T, head_dim]

See reader.py (config / weight naming), tokenizer.py and model.py, and docs/gguf-backend.md.
"""

from __future__ import annotations

from .model import CAPTURE_NAMES, ForwardResult, LlamaModel, next_token_nll
from .reader import GGUFError, GGUFModel, load_gguf
from .tokenizer import ByteLevelBPETokenizer

__all__ = ["CAPTURE_NAMES", "ByteLevelBPETokenizer", "ForwardResult", "GGUFError", "GGUFModel",
           "LlamaModel", "load", "load_gguf", "next_token_nll"]


def load(path, dtype=None):
    """(GGUFModel, LlamaModel, ByteLevelBPETokenizer) for a GGUF file."""
    import numpy as np

    gm = load_gguf(path)
    model = LlamaModel.from_gguf(gm, dtype=np.float32 if dtype is None else dtype)
    tok = ByteLevelBPETokenizer.from_gguf_metadata(gm.tokenizer)
    return gm, model, tok
