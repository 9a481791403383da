"""Backend for llama2.c legacy checkpoints: pure numpy, float32 like run.c."""
import hashlib
import os

import numpy as np

from .backend import Backend, Capture, LayerDump
from .errors import DumpError
from .llama2c_format import read_checkpoint
from .llama2c_tokenizer import BOS, Llama2cTokenizer
from .llama_numpy import LlamaModel


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_tokenizer_path(model_path, vocab_size):
    """tok<vocab>.bin next to the model (llama2.c's naming for custom vocabularies), else
    tokenizer.bin there."""
    d = os.path.dirname(os.path.abspath(model_path))
    for name in (f"tok{vocab_size}.bin", "tokenizer.bin"):
        if os.path.isfile(os.path.join(d, name)):
            return os.path.join(d, name)
    raise DumpError(f"no --tokenizer given and neither tok{vocab_size}.bin nor tokenizer.bin "
                    f"is next to {model_path}")


class Llama2cBackend(Backend):
    name = "llama2c"

    def __init__(self, dtype=np.float32):
        self.dtype = dtype

    def load(self, model_path, tokenizer_path=None):
        self.model_path = os.fspath(model_path)
        config, weights = read_checkpoint(self.model_path)
        self.model = LlamaModel(config, weights, dtype=self.dtype)
        self.tokenizer_path = tokenizer_path or default_tokenizer_path(model_path,
                                                                       config.vocab_size)
        self.tokenizer = Llama2cTokenizer.load(self.tokenizer_path, config.vocab_size)
        self.model_sha256 = sha256_of(self.model_path)
        return self

    @property
    def config(self):
        return self.model.config

    @property
    def context_length(self):
        return self.config.seq_len

    def tokenize(self, text):
        return self.tokenizer.encode(text, bos=True)

    def detokenize(self, ids):
        return self.tokenizer.decode(ids)

    def generate(self, ids, n_new):
        return self.model.greedy(ids, n_new, stop_token=BOS)  # run.c stops when BOS is sampled

    def layer_attrs(self):
        c = self.config
        return dict(n_heads=c.n_heads, n_kv_heads=c.n_kv_heads, head_dim=c.head_dim,
                    attn_scale=float(c.attn_scale), rope_theta=float(c.rope_theta),
                    rope_pairing=c.rope_pairing, rotary_dim=c.head_dim, rope_scaling="none")

    def capture(self, ids, want_q=True, want_grads=False, kv_hook=None):
        ids = np.asarray(ids, dtype=np.int64)
        res = self.model.forward(ids, kv_hook=kv_hook, keep_for_backward=want_grads)
        grads = self.model.kv_gradients(res) if want_grads else None
        layers = []
        for l, cap in enumerate(res.layers):
            t = {"k": cap.k, "v": cap.v}
            if want_q:
                t["q"] = cap.q
            t["k_pre"] = cap.k_pre
            if want_q:
                t["q_pre"] = cap.q_pre
            if grads is not None:
                dk, dv = grads[l]
                t["grad2_k"] = dk * dk
                t["grad2_v"] = dv * dv
            layers.append(LayerDump(index=l, attrs=self.layer_attrs(), tensors=t))
        return Capture(token_ids=ids.astype(np.int32), positions=np.arange(len(ids), dtype=np.int32),
                       layers=layers, mean_nll=LlamaModel.mean_nll(res.logits, ids))

    def metadata(self):
        base = os.path.basename(self.model_path)
        return dict(model_name=os.path.splitext(base)[0],
                    model_source=f"llama2.c checkpoint {base} (sha256 {self.model_sha256})",
                    weight_precision="fp32", n_layers=self.config.n_layers,
                    backend=self.name, tokenizer=os.path.basename(self.tokenizer_path),
                    model_sha256=self.model_sha256)
