"""Backend for Hugging Face transformers causal language models (torch).

Capture. transformers routes every attention layer of its modern decoders (Llama, Mistral,
Qwen2/3, Gemma 1-3, Phi-3, ...) through ``ALL_ATTENTION_FUNCTIONS``: after the projections and
RoPE, the layer calls ``attention_interface(module, query, key, value, mask, scaling=...,
sliding_window=..., softcap=...)`` with query [1, n_heads, T, head_dim] and key/value
[1, n_kv_heads, T, head_dim]. This backend registers one more implementation, ``tq_capture``
(AttentionInterface.register, the public extension point), and switches the loaded model to it.
It records query, key and value exactly as attention receives them (post-RoPE, post any q/k
norm), applies the optional kv_hook override, and then runs the model's own
``eager_attention_forward`` (the modeling module's, so Gemma 2's softcap and every model's
masking behave as in "eager" mode). The per-layer scaling, sliding window and softcap are read
from the arguments the layer passed, so the dump records what the model really did.

Pre-RoPE q/k come from a wrapper placed, during a capture only, around the modeling module's
``apply_rotary_pos_emb(q, k, cos, sin, ...)``: it records its inputs (and the width of cos, the
rotary dimension); the attention function pairs the most recent record with its own call after
checking that the rotated outputs are the very tensors attention got. Models without that function
(or with another signature) get no k_pre/q_pre (a warning says so); everything else still works.

RoPE convention: transformers' rotate_half pairs coordinates (i, i + rotary_dim/2), so layers are
written with rope_pairing = "half".

Gradients (``want_grads``): the mean next-token NLL is back-propagated once; the captured K and V
tensors keep their gradients (``retain_grad``). A K/V that does not require grad (layer 0, since
the weights are frozen) is turned into a leaf that does: nothing upstream of it is differentiable,
so no gradient path is cut. A kv_hook is straight-through in the backward (as in the numpy
backend): k' = k + (hook(k) - k).detach(). Without gradients attention reads hook(k) itself
(bit for bit; closed-loop replay, replay.py). ``stepwise_logits`` runs an incremental decode
through a DynamicCache subclass that lets a callback replace the cached prefix attention reads
(replay's prefix mode).

Offline only: HF_HUB_OFFLINE is set and models load with local_files_only, from a local directory
or the local hub cache. No remote code is executed (trust_remote_code=False).
"""
import json
import math
import os
import sys

import numpy as np

from .backend import Backend, Capture, LayerDump
from .errors import DumpError

CAPTURE_IMPL = "tq_capture"
COMPUTE_DTYPES = ("fp32", "bf16", "fp16", "fp64")
ROPE_NON_SCALING_KEYS = ("rope_theta", "rope_type", "type", "partial_rotary_factor")


def _import_torch():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import torch
        import transformers
    except ImportError as e:
        raise DumpError(f"the hf backend needs torch and transformers (pip install torch "
                        f"transformers): {e}")
    transformers.utils.logging.disable_progress_bar()  # keep stderr to dump_kv.py's own lines
    return torch, transformers


def _one_line(e):
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    return lines[0] if lines else type(e).__name__


def _torch_dtype_name(dt):
    s = str(dt).replace("torch.", "")
    return {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float64": "fp64"}.get(s, s)


class _Recorder:
    """Collects what each attention layer received during one forward pass."""

    def __init__(self, torch, n_tokens, want_grads, kv_hook):
        self.torch = torch
        self.T = n_tokens
        self.want_grads = want_grads
        self.kv_hook = kv_hook
        self.layers = {}          # layer index -> dict
        self.order = 0
        self.pending_rope = None  # (q_in, k_in, q_out, k_out, rotary_dim) of the last RoPE call

    def on_rope(self, q, k, cos, out):
        if isinstance(out, tuple) and len(out) == 2:
            self.pending_rope = (q, k, out[0], out[1], int(cos.shape[-1]))

    def on_attention(self, module, query, key, value, kwargs):
        torch = self.torch
        idx = getattr(module, "layer_idx", None)
        idx = self.order if idx is None else int(idx)
        self.order += 1
        if idx in self.layers:
            raise DumpError(f"attention layer {idx} ran twice in one forward pass (unsupported "
                            "model structure)")
        for name, t in (("query", query), ("key", key), ("value", value)):
            if t.ndim != 4 or t.shape[0] != 1 or t.shape[2] != self.T:
                raise DumpError(f"layer {idx}: attention {name} has shape {tuple(t.shape)}, "
                                f"expected [1, heads, {self.T}, head_dim]")
        if not (query.shape[-1] == key.shape[-1] == value.shape[-1]):
            raise DumpError(f"layer {idx}: q/k/v head sizes {query.shape[-1]}/{key.shape[-1]}/"
                            f"{value.shape[-1]} differ; the dump format needs one head_dim")
        rec = dict(module=module, scaling=kwargs.get("scaling"),
                   sliding_window=kwargs.get("sliding_window"), softcap=kwargs.get("softcap"))
        rope = self.pending_rope
        self.pending_rope = None
        if rope is not None and rope[2] is query and rope[3] is key:
            rec["q_pre"], rec["k_pre"], rec["rotary_dim"] = _np(rope[0]), _np(rope[1]), rope[4]
        if self.kv_hook is not None:
            k2, v2 = self.kv_hook(idx, _np(key), _np(value))
            k2 = torch.as_tensor(np.asarray(k2)[None], dtype=key.dtype, device=key.device)
            v2 = torch.as_tensor(np.asarray(v2)[None], dtype=value.dtype, device=value.device)
            if k2.shape != key.shape or v2.shape != value.shape:
                raise ValueError(f"kv_hook changed the K/V shape in layer {idx}")
            if self.want_grads:  # straight-through in the backward
                key = key + (k2 - key).detach()
                value = value + (v2 - value).detach()
            else:  # exactly the hook's values (k + (k2 - k) can differ from k2 in the last bit)
                key, value = k2, v2
        if self.want_grads:
            key, value = (_track_grad(t) for t in (key, value))
            rec["key_t"], rec["value_t"] = key, value
        rec["q"], rec["k"], rec["v"] = _np(query), _np(key), _np(value)
        self.layers[idx] = rec
        return key, value


def _np(t):
    """[1, H, T, d] torch tensor -> numpy [H, T, d], float32 (float64 for a float64 model)."""
    t = t.detach()[0]
    keep64 = t.dtype.is_floating_point and t.element_size() == 8
    return (t if keep64 else t.float()).cpu().numpy().copy()


def _track_grad(t):
    if t.requires_grad:
        t.retain_grad()
        return t
    return t.detach().requires_grad_(True)  # a leaf: nothing upstream is differentiable


_ACTIVE = []  # the recorder of the capture in progress (at most one)


def _capture_attention(module, query, key, value, attention_mask, *args, **kwargs):
    """The tq_capture attention implementation: record, then the model's own eager attention."""
    if _ACTIVE:
        key, value = _ACTIVE[-1].on_attention(module, query, key, value, kwargs)
    modeling = sys.modules.get(type(module).__module__)
    eager = getattr(modeling, "eager_attention_forward", None)
    if eager is None:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
        eager = ALL_ATTENTION_FUNCTIONS["sdpa"]
    return eager(module, query, key, value, attention_mask, *args, **kwargs)


def _register_capture_impl(transformers):
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    transformers.AttentionInterface.register(CAPTURE_IMPL, _capture_attention)
    AttentionMaskInterface.register(CAPTURE_IMPL, ALL_MASK_ATTENTION_FUNCTIONS["eager"])


class _RopeWrap:
    """Context manager: wraps apply_rotary_pos_emb in the given modeling modules."""

    def __init__(self, modules, recorder):
        self.modules = [m for m in modules if callable(getattr(m, "apply_rotary_pos_emb", None))]
        self.recorder = recorder
        self.saved = []

    def __enter__(self):
        for m in self.modules:
            orig = m.apply_rotary_pos_emb
            rec = self.recorder

            def wrapped(q, k, cos, sin, *a, _orig=orig, **kw):
                out = _orig(q, k, cos, sin, *a, **kw)
                rec.on_rope(q, k, cos, out)
                return out
            self.saved.append((m, orig))
            m.apply_rotary_pos_emb = wrapped
        return self

    def __exit__(self, *exc):
        for m, orig in reversed(self.saved):
            m.apply_rotary_pos_emb = orig
        self.saved.clear()
        return False


def _cached_hub_commit(model_path):
    """The snapshot commit a hub id resolved to in the local cache (None for a directory)."""
    if os.path.isdir(model_path):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
        found = try_to_load_from_cache(model_path, "config.json")
    except (ImportError, ValueError):
        return None
    parts = os.path.normpath(found).split(os.sep) if isinstance(found, str) else []
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None


def _json_or_none(d):
    if not d:
        return "none"
    return json.dumps(d, sort_keys=True, default=str)


class HfBackend(Backend):
    name = "hf"

    def __init__(self, device="cpu", compute_dtype="fp32"):
        if compute_dtype not in COMPUTE_DTYPES:
            raise DumpError(f"--hf-dtype {compute_dtype}: expected one of "
                            f"{', '.join(COMPUTE_DTYPES)}")
        self.device = device
        self.compute_dtype = compute_dtype
        self._warned = set()

    # ---- loading ------------------------------------------------------------------------------
    def load(self, model_path, tokenizer_path=None):
        torch, transformers = _import_torch()
        self.torch = torch
        self.model_path = os.fspath(model_path)
        if os.path.isfile(self.model_path):
            raise DumpError(f"{self.model_path}: a file; the hf backend takes a model directory "
                            "(config.json + weights) or a cached hub id")
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
                 "fp64": torch.float64}[self.compute_dtype]
        try:
            device = torch.device(self.device)
        except (RuntimeError, ValueError) as e:
            raise DumpError(f"--device {self.device}: {_one_line(e)}")
        _register_capture_impl(transformers)
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                self.model_path, dtype=dtype, local_files_only=True, trust_remote_code=False,
                attn_implementation="eager")
        except (OSError, ValueError, KeyError, ImportError, RuntimeError) as e:
            raise DumpError(f"{self.model_path}: cannot load a Hugging Face causal LM offline "
                            f"(local directory or cached hub id): {_one_line(e)}")
        try:
            model.set_attn_implementation(CAPTURE_IMPL)
        except (ValueError, KeyError) as e:
            raise DumpError(f"{self.model_path}: model class {type(model).__name__} does not "
                            f"support pluggable attention, so K/V cannot be captured: "
                            f"{_one_line(e)}")
        model.requires_grad_(False)
        try:
            self.model = model.to(device).eval()
        except (RuntimeError, AssertionError) as e:
            raise DumpError(f"--device {self.device}: {_one_line(e)}")
        self.hf_config = model.config
        self.text_config = (model.config.get_text_config() if hasattr(model.config,
                                                                      "get_text_config")
                            else model.config)
        self._load_tokenizer(tokenizer_path, transformers)
        return self

    def _load_tokenizer(self, tokenizer_path, transformers):
        if tokenizer_path is not None and os.path.isfile(tokenizer_path):
            # a llama2.c tokenizer (tok*.bin), for models converted with llama2c_to_hf
            from .llama2c_tokenizer import Llama2cTokenizer
            self.tokenizer_path = os.fspath(tokenizer_path)
            self.l2c_tokenizer = Llama2cTokenizer.load(self.tokenizer_path,
                                                       self.text_config.vocab_size)
            self.tokenizer = None
            return
        self.l2c_tokenizer = None
        self.tokenizer_path = os.fspath(tokenizer_path or self.model_path)
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(
                self.tokenizer_path, local_files_only=True, trust_remote_code=False)
        except (OSError, ValueError, KeyError, ImportError, TypeError) as e:
            raise DumpError(f"{self.tokenizer_path}: no usable tokenizer (pass --tokenizer DIR, "
                            f"or a llama2.c tok*.bin): {_one_line(e)}")

    # ---- text ---------------------------------------------------------------------------------
    @property
    def context_length(self):
        c = self.text_config
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length",
                    "seq_length"):
            v = getattr(c, key, None)
            if isinstance(v, int) and v > 0:
                return v
        return 1 << 20

    def tokenize(self, text):
        if self.l2c_tokenizer is not None:
            return self.l2c_tokenizer.encode(text, bos=True)
        ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        if not ids:
            raise DumpError("the text tokenizes to no tokens")
        return [int(i) for i in ids]

    def detokenize(self, ids):
        if self.l2c_tokenizer is not None:
            return self.l2c_tokenizer.decode(ids)
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _eos_ids(self):
        eos = getattr(self.hf_config, "eos_token_id", None)
        if eos is None:
            return set()
        return set(eos) if isinstance(eos, (list, tuple)) else {int(eos)}

    def _ids_tensor(self, ids):
        return self.torch.tensor([list(ids)], dtype=self.torch.long, device=self.model.device)

    def generate(self, ids, n_new):
        """Greedy continuation recomputing the whole prefix per step (validation lengths)."""
        out, eos = [int(t) for t in ids], self._eos_ids()
        with self.torch.no_grad():
            for _ in range(n_new):
                if len(out) >= self.context_length:
                    break
                logits = self.model(input_ids=self._ids_tensor(out), use_cache=False).logits
                nxt = int(logits[0, -1].argmax())
                if nxt in eos:
                    break
                out.append(nxt)
        return out

    # ---- capture ------------------------------------------------------------------------------
    def _warn_once(self, msg):
        if msg not in self._warned:
            self._warned.add(msg)
            print(f"dump_kv.py: warning: {msg}", file=sys.stderr)

    def logits(self, ids):
        """Float64 numpy logits [T, vocab] of a plain forward (for tests and validation)."""
        with self.torch.no_grad():
            out = self.model(input_ids=self._ids_tensor(ids), use_cache=False).logits
        return out[0].double().cpu().numpy()

    def capture(self, ids, want_q=True, want_grads=False, kv_hook=None):
        torch = self.torch
        ids = [int(i) for i in ids]
        T = len(ids)
        rec = _Recorder(torch, T, want_grads, kv_hook)
        modeling = {sys.modules.get(type(m).__module__) for m in self.model.modules()}
        modeling.discard(None)
        _ACTIVE.append(rec)
        try:
            with _RopeWrap(modeling, rec), torch.set_grad_enabled(want_grads):
                logits = self.model(input_ids=self._ids_tensor(ids), use_cache=False).logits[0]
                nll = None
                if T > 1:  # mean over the T-1 predicted positions, as LlamaModel.mean_nll
                    nll = torch.nn.functional.cross_entropy(logits[:-1].double(),
                                                            self._ids_tensor(ids)[0, 1:])
                    if want_grads:
                        nll.backward()
        finally:
            _ACTIVE.remove(rec)
        if not rec.layers:
            raise DumpError(f"{self.model_path}: no attention layer went through the attention "
                            f"interface ({type(self.model).__name__} is not supported)")
        mean_nll = float(nll.detach()) if nll is not None else float("nan")
        self.last_logits = logits.detach().double().cpu().numpy()  # [T, vocab], for --replay
        layers = []
        for idx in sorted(rec.layers):
            r = rec.layers[idx]
            t = {"k": r["k"], "v": r["v"]}
            if want_q:
                t["q"] = r["q"]
            if "k_pre" in r:
                t["k_pre"] = r["k_pre"]
                if want_q:
                    t["q_pre"] = r["q_pre"]
            else:
                self._warn_once("pre-RoPE q/k not captured (no apply_rotary_pos_emb(q, k, cos, "
                                "sin) seen before attention); k_pre/q_pre omitted")
            if want_grads:
                for name, key in (("grad2_k", "key_t"), ("grad2_v", "value_t")):
                    g = r[key].grad
                    g = (np.zeros(r["k"].shape, np.float32) if g is None
                         else g.detach()[0].double().cpu().numpy())
                    t[name] = g * g
            layers.append(LayerDump(index=idx, attrs=self.layer_attrs(idx, r), tensors=t))
        return Capture(token_ids=np.asarray(ids, dtype=np.int32),
                       positions=np.arange(T, dtype=np.int32), layers=layers, mean_nll=mean_nll)

    # ---- replay through the cache, token by token ----------------------------------------------
    def stepwise_logits(self, ids, kv_fn):
        """Float64 logits [T, vocab] of an incremental decode: token t is fed alone with the
        cache of tokens 0..t-1, and every attention layer reads the K/V that kv_fn(layer, k, v)
        returns for the whole cached prefix k, v (numpy [n_kv_heads, t+1, head_dim], the raw
        post-RoPE K/V of tokens 0..t). The cache itself keeps the raw K/V, so kv_fn sees the
        uncompressed prefix at every step (the prefix replay mode of docs/replay.md)."""
        torch = self.torch
        from transformers import DynamicCache

        class _ReplayCache(DynamicCache):
            def update(self, key_states, value_states, layer_idx, cache_kwargs=None):
                k, v = super().update(key_states, value_states, layer_idx, cache_kwargs)
                k2, v2 = kv_fn(int(layer_idx), _np(k), _np(v))
                return (torch.as_tensor(np.asarray(k2)[None], dtype=k.dtype, device=k.device),
                        torch.as_tensor(np.asarray(v2)[None], dtype=v.dtype, device=v.device))

        # no config: every layer keeps all its tokens (a sliding-window layer of a config-built
        # cache would drop old ones); the attention mask still applies the model's window
        cache = _ReplayCache()
        ids = [int(i) for i in ids]
        out = []
        with torch.no_grad():
            for t, tok in enumerate(ids):
                pos = torch.tensor([[t]], dtype=torch.long, device=self.model.device)
                res = self.model(input_ids=self._ids_tensor([tok]), past_key_values=cache,
                                 use_cache=True, position_ids=pos,
                                 cache_position=pos[0])
                out.append(res.logits[0, -1].double().cpu().numpy())
        return np.stack(out)

    # ---- attributes ---------------------------------------------------------------------------
    def _layer_type(self, idx):
        types = getattr(self.text_config, "layer_types", None)
        return types[idx] if types and idx < len(types) else None

    def rope_parameters(self, idx):
        """The config's RoPE dict for layer idx (transformers 5 rope_parameters, possibly keyed
        by layer type; or transformers 4 rope_theta + rope_scaling)."""
        c = self.text_config
        params = getattr(c, "rope_parameters", None)
        if isinstance(params, dict) and params and all(isinstance(v, dict)
                                                       for v in params.values()):
            params = params.get(self._layer_type(idx)) or next(iter(params.values()))
        if not isinstance(params, dict):
            params = dict(getattr(c, "rope_scaling", None) or {})
            if getattr(c, "rope_theta", None) is not None:
                params["rope_theta"] = c.rope_theta
        return dict(params)

    def layer_attrs(self, idx, r):
        c = self.text_config
        q, k = r["q"], r["k"]
        head_dim = int(k.shape[-1])
        rope = self.rope_parameters(idx)
        module = r["module"]
        scaling = r["scaling"]
        if scaling is None:
            scaling = getattr(module, "scaling", None)
        if scaling is None:
            scaling = 1.0 / math.sqrt(head_dim)
        prf = rope.get("partial_rotary_factor", getattr(c, "partial_rotary_factor", None))
        rotary_cfg = int(head_dim * prf) if prf else head_dim
        rotary_dim = r.get("rotary_dim", rotary_cfg)
        if rotary_dim != rotary_cfg:
            self._warn_once(f"layer {idx}: RoPE rotated {rotary_dim} dims, the config says "
                            f"{rotary_cfg}; the dump records {rotary_dim}")
        theta = rope.get("rope_theta", getattr(c, "rope_theta", None))
        if theta is None:
            theta = 10000.0
            self._warn_once("no rope_theta in the config; recorded 10000")
        scaling_dict = {k2: v for k2, v in rope.items() if k2 not in ROPE_NON_SCALING_KEYS}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in (None, "default"):
            scaling_dict["rope_type"] = rope_type
        attrs = dict(n_heads=int(q.shape[0]), n_kv_heads=int(k.shape[0]), head_dim=head_dim,
                     attn_scale=float(scaling), rope_theta=float(theta), rope_pairing="half",
                     rotary_dim=int(rotary_dim), rope_scaling=_json_or_none(scaling_dict))
        window = r["sliding_window"]
        if window is None and self._layer_type(idx) == "sliding_attention":
            window = getattr(c, "sliding_window", None)
        if window is not None:
            attrs["sliding_window"] = int(window)
        softcap = r["softcap"]
        if softcap is None:
            softcap = getattr(module, "attn_logit_softcapping", None)
        if softcap is None:
            softcap = getattr(c, "attn_logit_softcapping", None)
        if softcap is not None:
            attrs["logit_softcap"] = float(softcap)
        return attrs

    def metadata(self):
        c = self.hf_config
        name = os.path.basename(os.path.normpath(self.model_path))
        stored = getattr(c, "dtype", None) or getattr(c, "torch_dtype", None)
        stored = _torch_dtype_name(stored) if stored is not None else self.compute_dtype
        commit = getattr(c, "_commit_hash", None) or _cached_hub_commit(self.model_path)
        source = f"Hugging Face transformers {type(self.model).__name__} from {self.model_path}"
        if commit:
            source += f" (commit {commit})"
        meta = dict(model_name=name, model_source=source, weight_precision=stored,
                    n_layers=int(self.text_config.num_hidden_layers),
                    backend=self.name, model_type=str(getattr(c, "model_type", "?")),
                    compute_dtype=self.compute_dtype,
                    tokenizer=os.path.basename(os.path.normpath(self.tokenizer_path)),
                    transformers_version=__import__("transformers").__version__,
                    torch_version=self.torch.__version__)
        return meta
