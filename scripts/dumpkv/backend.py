"""The interface between a model family and the dump writer.

A backend loads a model, tokenizes text, and runs a forward pass that captures each layer's
attention inputs (pre/post-RoPE Q and K, V) and, on request, the squared gradients of the mean
next-token NLL with respect to post-RoPE K and V. The CLI and the writer only talk to this
interface, so the GGUF and Hugging Face backends slot in as one module each.
"""
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from .errors import NotImplementedBackend


@dataclass
class LayerDump:
    """One /layers/<index> group: attributes and float datasets ([heads, tokens, head_dim])."""
    index: int
    attrs: dict
    tensors: dict = field(default_factory=dict)  # name -> np.ndarray, in writing order


@dataclass
class Capture:
    """The result of running a backend over a token sequence."""
    token_ids: np.ndarray   # int32 [T]
    positions: np.ndarray   # int32 [T]
    layers: list            # [LayerDump]
    mean_nll: float


class Backend(ABC):
    name = "?"

    @abstractmethod
    def load(self, model_path, tokenizer_path=None):
        """Reads the model (and tokenizer). Raises DumpError on bad files."""

    @property
    @abstractmethod
    def context_length(self) -> int:
        ...

    @abstractmethod
    def tokenize(self, text) -> list:
        """Token ids of text, with the model's BOS convention."""

    @abstractmethod
    def detokenize(self, ids) -> str:
        ...

    @abstractmethod
    def generate(self, ids, n_new) -> list:
        """Greedy continuation (for validating the forward pass)."""

    @abstractmethod
    def capture(self, ids, want_q=True, want_grads=False, kv_hook=None) -> Capture:
        """Forward over ids; per-layer K/V (+Q, pre-RoPE, squared gradients)."""

    @abstractmethod
    def metadata(self) -> dict:
        """Root attributes describing the model: model_name, model_source, weight_precision,
        n_layers, and any extra string attributes."""


class _Planned(Backend):
    """A backend announced in the CLI but not implemented yet."""

    def load(self, model_path, tokenizer_path=None):
        raise NotImplementedBackend(f"backend '{self.name}' is not implemented yet "
                                    "(llama2c, gguf and hf are available)")

    context_length = 0
    tokenize = detokenize = generate = capture = metadata = None  # never reached


BACKENDS = ("llama2c", "gguf", "hf")


def detect_backend(model_path):
    """llama2c for *.bin, gguf for *.gguf, else hf (a Hugging Face directory or repo id)."""
    ext = os.path.splitext(os.fspath(model_path))[1].lower()
    return {".bin": "llama2c", ".gguf": "gguf"}.get(ext, "hf")


def make_backend(name, **options):
    """options: device, compute_dtype (hf backend only)."""
    if name == "llama2c":
        from .llama2c_backend import Llama2cBackend
        return Llama2cBackend()
    if name == "gguf":
        from .gguf_backend import GgufBackend
        return GgufBackend()
    if name == "hf":
        from .hf_backend import HfBackend
        return HfBackend(**options)
    raise ValueError(name)
