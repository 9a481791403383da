"""numpy forward and backward pass of a llama-family decoder (weights from reader.load_gguf).

Per layer l (residual stream x: [T, d_model], row t = position t):

    h      = RMSNorm(x) * g_attn              RMSNorm(x) = x / sqrt(mean(x^2) + eps)
    q_pre  = h Wq^T,  k_pre = h Wk^T,  v = h Wv^T          (split into heads: [heads, T, head_dim])
    q, k   = RoPE(q_pre), RoPE(k_pre)          rotation of pairs by angle t * theta^(-2i/head_dim)
    k, v   = kv_hook(l, k, v)                 (optional; identity when no hook)
    o_h    = softmax(q_h k_g^T / sqrt(head_dim) + causal mask) v_g,   g = h // (n_head / n_kv_head)
    x1     = x + o Wo^T
    h2     = RMSNorm(x1) * g_ffn
    x      = x1 + (silu(h2 Wgate^T) * (h2 Wup^T)) Wdown^T

and finally logits = (RMSNorm(x) * g_out) Wout^T.  Matrix products run in the model dtype
(float32 by default); attention scores, softmax and the loss's log-sum-exp run in float64.

RoPE pairing: "interleaved" rotates (2i, 2i+1) -- the layout llama.cpp's HF->GGUF converter
produces for llama by permuting the q/k rows -- and "half" rotates (i, i + head_dim/2) (HF's
rotate_half).  Angle i uses frequency theta^(-2i/head_dim) in both cases.

Gradients: `backward` returns d(loss)/dK and d(loss)/dV for every layer, where loss is the mean
next-token negative log-likelihood over the T-1 predictions and K, V are the post-RoPE tensors
the attention actually consumed (i.e. the kv_hook's outputs when a hook is used).  The hook is
treated as the identity when gradients flow further back (straight-through), which only matters
for the gradients of *earlier* layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

KVHook = Callable[[int, np.ndarray, np.ndarray], "tuple[np.ndarray, np.ndarray]"]

CAPTURE_NAMES = ("q", "k", "v", "q_pre", "k_pre")
ROPE_PAIRINGS = ("interleaved", "half")


def rope_tables(n_pos: int, head_dim: int, theta: float, pos0: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of the rotation angles, [n_pos, head_dim/2] in float64.

    angle(t, i) = (pos0 + t) * theta^(-2i/head_dim), i = 0 .. head_dim/2-1.
    """
    half = head_dim // 2
    inv_freq = theta ** (-2.0 * np.arange(half, dtype=np.float64) / head_dim)
    ang = np.arange(pos0, pos0 + n_pos, dtype=np.float64)[:, None] * inv_freq[None, :]
    return np.cos(ang), np.sin(ang)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, pairing: str, inverse: bool = False) -> np.ndarray:
    """Rotate pairs of the last axis of x ([..., T, head_dim]) by the tabulated angles.

    inverse=True rotates by the negative angle: the transpose of the rotation, used to carry
    gradients back through RoPE.
    """
    c = cos.astype(x.dtype, copy=False)
    s = sin.astype(x.dtype, copy=False)
    if inverse:
        s = -s
    out = np.empty_like(x)
    if pairing == "interleaved":
        a, b = x[..., 0::2], x[..., 1::2]
        out[..., 0::2] = a * c - b * s
        out[..., 1::2] = a * s + b * c
    elif pairing == "half":
        h = x.shape[-1] // 2
        a, b = x[..., :h], x[..., h:]
        out[..., :h] = a * c - b * s
        out[..., h:] = a * s + b * c
    else:
        raise ValueError(f"rope pairing '{pairing}' is not one of {ROPE_PAIRINGS}")
    return out


def rms_norm(x: np.ndarray, gain: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """(x * r * gain, r) with r = 1/sqrt(mean(x^2) + eps) per row."""
    ms = np.mean(np.square(x, dtype=np.float64), axis=-1, keepdims=True)
    r = (1.0 / np.sqrt(ms + eps)).astype(x.dtype)
    return x * r * gain, r


def rms_norm_backward(x: np.ndarray, r: np.ndarray, gain: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Gradient w.r.t. x of y = x * r(x) * gain.

    With u = dy * gain and dr/dx_j = -r^3 x_j / D:  dx = r u - x r^3 (u . x) / D.
    """
    u = dy * gain
    d = x.shape[-1]
    ux = np.sum(u.astype(np.float64) * x, axis=-1, keepdims=True)
    return (r * u - x * (r ** 3) * (ux / d).astype(x.dtype)).astype(x.dtype)


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def _causal_mask(t: int) -> np.ndarray:
    return np.triu(np.ones((t, t), dtype=bool), k=1)


def next_token_nll(logits: np.ndarray, tokens: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean NLL of tokens[1:] under logits[:-1] (float64) and the per-position values."""
    z = logits[:-1].astype(np.float64)
    zmax = z.max(axis=-1, keepdims=True)
    lse = (zmax + np.log(np.exp(z - zmax).sum(axis=-1, keepdims=True)))[:, 0]
    nll = lse - z[np.arange(z.shape[0]), np.asarray(tokens[1:])]
    return float(nll.mean()) if nll.size else float("nan"), nll


@dataclass
class _LayerTape:
    x: np.ndarray      # layer input [T, D]
    r1: np.ndarray     # RMSNorm factor of x [T, 1]
    q: np.ndarray      # post-RoPE queries [H, T, hd]
    k: np.ndarray      # post-RoPE keys as used by attention [KVH, T, hd]
    v: np.ndarray      # values as used by attention [KVH, T, hd]
    x1: np.ndarray     # residual after attention [T, D]
    r2: np.ndarray     # RMSNorm factor of x1
    gate: np.ndarray   # [T, d_ff]
    up: np.ndarray     # [T, d_ff]


@dataclass
class ForwardResult:
    tokens: np.ndarray
    logits: np.ndarray                                   # [T, vocab], model dtype
    captures: dict[str, list[np.ndarray]] = field(default_factory=dict)  # name -> per layer [heads, T, hd]
    tape: list[_LayerTape] | None = None
    final_x: np.ndarray | None = None
    final_r: np.ndarray | None = None

    def nll(self) -> float:
        return next_token_nll(self.logits, self.tokens)[0]


class LlamaModel:
    """Llama-family decoder over a reader.GGUFModel's config and weights (see reader.py)."""

    def __init__(self, config: dict, weights: dict[str, np.ndarray], dtype=np.float32):
        self.cfg = dict(config)
        self.dtype = np.dtype(dtype)
        c = self.cfg
        if c["rope_pairing"] not in ROPE_PAIRINGS:
            raise ValueError(f"rope_pairing '{c['rope_pairing']}' is not one of {ROPE_PAIRINGS}")
        if c["head_dim"] % 2:
            raise ValueError(f"head_dim {c['head_dim']} must be even for RoPE")
        self.n_layer, self.d_model = c["n_layer"], c["d_model"]
        self.n_head, self.n_kv_head, self.head_dim = c["n_head"], c["n_kv_head"], c["head_dim"]
        self.group = self.n_head // self.n_kv_head
        self.eps = float(c["rms_eps"])

        def w(name):
            return np.ascontiguousarray(weights[name], dtype=self.dtype)

        self.tok_embd = w("token_embd.weight")
        self.out_w = self.tok_embd if weights.get("output.weight") is weights["token_embd.weight"] \
            else w("output.weight")
        self.out_norm = w("output_norm.weight")
        names = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm",
                 "ffn_gate", "ffn_up", "ffn_down")
        self.layers = [{n: w(f"blk.{i}.{n}.weight") for n in names} for i in range(self.n_layer)]

    @classmethod
    def from_gguf(cls, gguf_model, dtype=np.float32) -> "LlamaModel":
        return cls(gguf_model.config, gguf_model.weights, dtype=dtype)

    # -- helpers -----------------------------------------------------------------------------
    def _heads(self, y: np.ndarray, n: int) -> np.ndarray:
        """[T, n*hd] -> [n, T, hd] (contiguous)."""
        t = y.shape[0]
        return np.ascontiguousarray(y.reshape(t, n, self.head_dim).transpose(1, 0, 2))

    def _unheads(self, y: np.ndarray) -> np.ndarray:
        """[n, T, hd] -> [T, n*hd]."""
        n, t, hd = y.shape
        return np.ascontiguousarray(y.transpose(1, 0, 2).reshape(t, n * hd))

    def _attention_probs(self, q: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Causal softmax probabilities [KVH, group, T, T] in float64."""
        t = q.shape[1]
        qg = q.reshape(self.n_kv_head, self.group, t, self.head_dim)
        scores = np.matmul(qg, k[:, None].swapaxes(-1, -2)).astype(np.float64)
        scores *= self.attn_scale
        scores[..., _causal_mask(t)] = -np.inf
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        return scores

    # -- forward -----------------------------------------------------------------------------
    def forward(self, tokens: Iterable[int], *, capture: Iterable[str] | None = CAPTURE_NAMES,
                kv_hook: KVHook | None = None, keep_for_backward: bool = False) -> ForwardResult:
        """Run the model on a token sequence (positions 0..T-1).

        capture: names from CAPTURE_NAMES to record per layer as float32 [heads, T, head_dim]
          (k and v as attention saw them, i.e. *after* kv_hook; k_pre is the layer's own
          pre-RoPE output; a hook that wants the K/V it was given can record them itself).
        kv_hook(layer, k, v) -> (k', v'): called right after each layer's post-RoPE K and V are
          produced ([n_kv_head, T, head_dim] each, model dtype); attention then uses k', v',
          so later layers see the effect (closed-loop replay of a KV-cache codec). The hook may
          instead return an object with arrays .k, .v (the final cache) and a method
          attend(q, scale) -> float64 [n_head, T, head_dim] that gives each query its own cache
          state (scripts/dumpkv/replay.py, for codecs whose cache changes as tokens arrive).
        keep_for_backward: keep what `backward` needs.
        """
        toks = np.asarray(list(tokens) if not isinstance(tokens, np.ndarray) else tokens, dtype=np.int64)
        if toks.ndim != 1 or toks.size == 0:
            raise ValueError("tokens must be a non-empty 1-D sequence")
        if toks.min() < 0 or toks.max() >= self.tok_embd.shape[0]:
            raise ValueError(f"token id out of range [0, {self.tok_embd.shape[0]})")
        cap = tuple(capture or ())
        for name in cap:
            if name not in CAPTURE_NAMES:
                raise ValueError(f"unknown capture '{name}' (known: {', '.join(CAPTURE_NAMES)})")
        t = toks.size
        cos, sin = rope_tables(t, self.head_dim, float(self.cfg["rope_theta"]))
        pairing = self.cfg["rope_pairing"]
        res = ForwardResult(tokens=toks, logits=np.empty(0), captures={n: [] for n in cap},
                            tape=[] if keep_for_backward else None)
        x = self.tok_embd[toks]  # fancy indexing copies
        for li, lw in enumerate(self.layers):
            h, r1 = rms_norm(x, lw["attn_norm"], self.eps)
            q_pre = self._heads(h @ lw["attn_q"].T, self.n_head)
            k_pre = self._heads(h @ lw["attn_k"].T, self.n_kv_head)
            v = self._heads(h @ lw["attn_v"].T, self.n_kv_head)
            q = apply_rope(q_pre, cos, sin, pairing)
            k = apply_rope(k_pre, cos, sin, pairing)
            stepwise = None
            if kv_hook is not None:
                ret = kv_hook(li, k, v)
                if hasattr(ret, "attend"):  # per-query cache states (replay of token-group codecs)
                    if keep_for_backward:
                        raise ValueError("a stepwise kv_hook result has no backward pass")
                    stepwise, (k2, v2) = ret, (ret.k, ret.v)
                else:
                    k2, v2 = ret
                k2 = np.asarray(k2, dtype=self.dtype)
                v2 = np.asarray(v2, dtype=self.dtype)
                if k2.shape != k.shape or v2.shape != v.shape:
                    raise ValueError(f"kv_hook at layer {li} returned shapes {k2.shape}, {v2.shape}; "
                                     f"expected {k.shape}")
                k, v = k2, v2
            for name, arr in (("q_pre", q_pre), ("k_pre", k_pre), ("q", q), ("k", k), ("v", v)):
                if name in res.captures:
                    res.captures[name].append(arr.astype(np.float32, copy=True))
            if stepwise is not None:
                o = self._unheads(stepwise.attend(q, self.attn_scale).astype(self.dtype))
            else:
                p = self._attention_probs(q, k)
                o = np.matmul(p, v[:, None].astype(np.float64))  # [KVH, G, T, hd]
                o = self._unheads(o.reshape(self.n_head, t, self.head_dim).astype(self.dtype))
            x1 = x + o @ lw["attn_output"].T
            h2, r2 = rms_norm(x1, lw["ffn_norm"], self.eps)
            gate = h2 @ lw["ffn_gate"].T
            up = h2 @ lw["ffn_up"].T
            x_next = x1 + (silu(gate) * up) @ lw["ffn_down"].T
            if keep_for_backward:
                res.tape.append(_LayerTape(x=x, r1=r1, q=q, k=k, v=v, x1=x1, r2=r2, gate=gate, up=up))
            x = x_next
        hf, rf = rms_norm(x, self.out_norm, self.eps)
        res.logits = hf @ self.out_w.T
        if keep_for_backward:
            res.final_x, res.final_r = x, rf
        return res

    # -- backward ----------------------------------------------------------------------------
    def backward(self, fwd: ForwardResult) -> dict[str, list[np.ndarray]]:
        """d(mean next-token NLL)/d(K, V) per layer, {"k": [...], "v": [...]}, each float32
        [n_kv_head, T, head_dim], for a forward run with keep_for_backward=True."""
        if fwd.tape is None:
            raise ValueError("backward needs forward(..., keep_for_backward=True)")
        toks, t = fwd.tokens, fwd.tokens.size
        if t < 2:
            raise ValueError("the next-token loss needs at least 2 tokens")
        cos, sin = rope_tables(t, self.head_dim, float(self.cfg["rope_theta"]))
        pairing = self.cfg["rope_pairing"]
        scale = self.attn_scale

        # loss = mean_{t<T-1} [logsumexp(z_t) - z_t[tok_{t+1}]]  ->  dz_t = (softmax(z_t) - e_tok)/(T-1)
        z = fwd.logits[:-1].astype(np.float64)
        z -= z.max(axis=-1, keepdims=True)
        pz = np.exp(z)
        pz /= pz.sum(axis=-1, keepdims=True)
        pz[np.arange(t - 1), toks[1:]] -= 1.0
        dlogits = np.zeros(fwd.logits.shape, dtype=self.dtype)
        dlogits[:-1] = pz / (t - 1)
        dhf = dlogits @ self.out_w
        dx = rms_norm_backward(fwd.final_x, fwd.final_r, self.out_norm, dhf)

        grads_k: list[np.ndarray] = [None] * self.n_layer  # type: ignore[list-item]
        grads_v: list[np.ndarray] = [None] * self.n_layer  # type: ignore[list-item]
        for li in range(self.n_layer - 1, -1, -1):
            lw, tp = self.layers[li], fwd.tape[li]
            # FFN: y = (silu(g) * u) Wd^T;  silu'(g) = s (1 + g (1 - s)), s = sigmoid(g)
            dact = dx @ lw["ffn_down"]
            sig = 1.0 / (1.0 + np.exp(-tp.gate))
            dgate = dact * tp.up * (sig * (1.0 + tp.gate * (1.0 - sig)))
            dup = dact * (tp.gate * sig)
            dh2 = dgate @ lw["ffn_gate"] + dup @ lw["ffn_up"]
            dx1 = dx + rms_norm_backward(tp.x1, tp.r2, lw["ffn_norm"], dh2)

            # attention, in float64: O = P V, P = softmax(S), S = Q K^T * scale
            do = self._heads(dx1 @ lw["attn_output"], self.n_head).astype(np.float64)
            do = do.reshape(self.n_kv_head, self.group, t, self.head_dim)
            p = self._attention_probs(tp.q, tp.k)
            v64 = tp.v.astype(np.float64)
            dv = np.matmul(p.swapaxes(-1, -2), do).sum(axis=1)           # [KVH, T, hd]
            dp = np.matmul(do, v64[:, None].swapaxes(-1, -2))             # [KVH, G, T, T]
            ds = p * (dp - np.sum(dp * p, axis=-1, keepdims=True))
            ds *= scale
            dq = np.matmul(ds, tp.k.astype(np.float64)[:, None])          # [KVH, G, T, hd]
            qg = tp.q.astype(np.float64).reshape(self.n_kv_head, self.group, t, self.head_dim)
            dk = np.matmul(ds.swapaxes(-1, -2), qg).sum(axis=1)           # [KVH, T, hd]
            grads_k[li] = dk.astype(np.float32)
            grads_v[li] = dv.astype(np.float32)
            if li == 0:
                break  # nothing upstream of layer 0's K/V is needed

            dq = dq.reshape(self.n_head, t, self.head_dim).astype(self.dtype)
            dq_pre = apply_rope(dq, cos, sin, pairing, inverse=True)
            dk_pre = apply_rope(dk.astype(self.dtype), cos, sin, pairing, inverse=True)
            dh = (self._unheads(dq_pre) @ lw["attn_q"] + self._unheads(dk_pre) @ lw["attn_k"]
                  + self._unheads(dv.astype(self.dtype)) @ lw["attn_v"])
            dx = dx1 + rms_norm_backward(tp.x, tp.r1, lw["attn_norm"], dh)
        return {"k": grads_k, "v": grads_v}

    def kv_grad2(self, tokens: Iterable[int], *, kv_hook: KVHook | None = None,
                 capture: Iterable[str] | None = CAPTURE_NAMES) -> tuple[ForwardResult, dict[str, list[np.ndarray]]]:
        """Forward + backward; returns (forward result, {"grad2_k": [...], "grad2_v": [...]})
        with the element-wise squared gradients per layer ([n_kv_head, T, head_dim] float32)."""
        fwd = self.forward(tokens, capture=capture, kv_hook=kv_hook, keep_for_backward=True)
        g = self.backward(fwd)
        fwd.tape = None  # release the activations
        return fwd, {"grad2_k": [np.square(a) for a in g["k"]], "grad2_v": [np.square(a) for a in g["v"]]}

    @property
    def attn_scale(self) -> float:
        """The factor applied to q.k in the attention scores."""
        return 1.0 / float(np.sqrt(self.head_dim))

    def greedy(self, tokens: Iterable[int], n_new: int, stop_token: int | None = None) -> list[int]:
        """Greedy (argmax) continuation by up to n_new tokens, stopping before stop_token
        (full recomputation per step; fine for short continuations)."""
        seq = [int(x) for x in tokens]
        out: list[int] = []
        for _ in range(n_new):
            nxt = int(np.argmax(self.forward(seq, capture=None).logits[-1]))
            if stop_token is not None and nxt == stop_token:
                break
            seq.append(nxt)
            out.append(nxt)
        return out
