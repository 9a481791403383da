"""A Llama-family decoder in numpy, with K/V capture, K/V override and an analytic backward pass.

Architecture (llama2.c / Llama 2): token embedding; per layer
    xb  = RMSNorm(x) * w_att
    q, k, v = xb Wq^T, xb Wk^T, xb Wv^T           (weights stored [out, in])
    q, k = RoPE(q), RoPE(k)                        (per head)
    o_h = softmax(q_h k_g^T * scale + causal mask) v_g,  g = h // (n_heads / n_kv_heads)  (GQA)
    x  += concat_h(o_h) Wo^T
    x  += W2 (silu(W1 xb2) * (W3 xb2)),  xb2 = RMSNorm(x) * w_ffn     (SwiGLU)
then logits = (RMSNorm(x) * w_final) Wcls^T.  RMSNorm(x) = x / sqrt(mean(x^2) + eps).

The forward runs over the whole sequence at once (causal mask), in the model's compute dtype
(float32 like llama2.c, or float64 for finite-difference tests); attention scores and softmax
are always float64.

K/V override: ``forward(..., kv_hook=f)`` calls ``f(layer, k, v)`` with each layer's post-RoPE K
[n_kv_heads, T, head_dim] and V right after they are produced, and the layer's attention uses the
arrays it returns (e.g. codec-encoded-and-decoded K/V for closed-loop replay, or a perturbed K for
a finite-difference check). Later layers then see the effect.

Backward: ``kv_gradients`` differentiates L = mean_{t=0}^{T-2} -log p(ids[t+1] | ids[..t]) with
respect to every layer's post-RoPE K and V (as attention saw them) by reverse-mode through the
final norm and classifier, every layer's SwiGLU block, attention output projection, causal
softmax attention and the Q/K/V projections of the layers above. Done in float64. A kv_hook is
treated as the identity in the backward (straight-through); only d/dK, d/dV of the layer are
exact regardless of the hook.
"""
from dataclasses import dataclass, field

import numpy as np

from .rope import apply_rope, rope_cos_sin


@dataclass
class LlamaConfig:
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    rope_pairing: str = "interleaved"

    @property
    def head_dim(self):
        return self.dim // self.n_heads

    @property
    def kv_dim(self):
        return self.n_kv_heads * self.head_dim

    @property
    def attn_scale(self):
        return 1.0 / np.sqrt(self.head_dim)


@dataclass
class LlamaWeights:
    """All matrices [out, in] like llama2.c's matmul(xout, x, W, n=in, d=out)."""
    tok_emb: np.ndarray   # [vocab, dim]
    rms_att: np.ndarray   # [L, dim]
    wq: np.ndarray        # [L, dim, dim]
    wk: np.ndarray        # [L, kv_dim, dim]
    wv: np.ndarray        # [L, kv_dim, dim]
    wo: np.ndarray        # [L, dim, dim]
    rms_ffn: np.ndarray   # [L, dim]
    w1: np.ndarray        # [L, hidden, dim]
    w2: np.ndarray        # [L, dim, hidden]
    w3: np.ndarray        # [L, hidden, dim]
    rms_final: np.ndarray  # [dim]
    wcls: np.ndarray      # [vocab, dim]

    def astype(self, dtype):
        return LlamaWeights(**{k: np.ascontiguousarray(getattr(self, k), dtype=dtype)
                               for k in self.__dataclass_fields__})


@dataclass
class LayerCapture:
    """What one layer's attention saw, heads first: q/q_pre [n_heads, T, hd], k/k_pre/v
    [n_kv_heads, T, hd] (k, v after any kv_hook), attn_out [n_heads, T, hd] = softmax(.) v per
    head, before the output projection."""
    q_pre: np.ndarray
    k_pre: np.ndarray
    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    attn_out: np.ndarray


@dataclass
class ForwardResult:
    ids: np.ndarray
    logits: np.ndarray                 # [T, vocab]
    layers: list                       # [LayerCapture] per layer
    _cache: list = field(default_factory=list, repr=False)  # per-layer activations for backward
    _x_final: np.ndarray = None


def rmsnorm(x, w, eps):
    ms = np.mean(x * x, axis=-1, keepdims=True)
    return x * (1.0 / np.sqrt(ms + x.dtype.type(eps))) * w


def rmsnorm_backward(x, w, eps, dy):
    """Gradient w.r.t. x of y = x * r * w, r = (mean(x^2) + eps)^(-1/2):
    dx = r * g - r^3 * x * mean(g * x),  g = dy * w."""
    r = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    g = dy * w
    return r * g - (r ** 3) * x * np.mean(g * x, axis=-1, keepdims=True)


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


def causal_attention(q, k, v, scale):
    """q [H, T, hd], k, v [KVH, T, hd] -> (out [H, T, hd] in q's dtype, probs float64
    [KVH, G, T, T]). Head h reads kv head h // G (G = H / KVH). Scores and softmax in float64."""
    H, T, hd = q.shape
    KVH = k.shape[0]
    G = H // KVH
    qg = q.astype(np.float64).reshape(KVH, G, T, hd)
    scores = (qg @ k.astype(np.float64)[:, None].transpose(0, 1, 3, 2)) * scale  # [KVH,G,T,T]
    future = np.triu(np.ones((T, T), dtype=bool), k=1)
    scores[..., future] = -np.inf
    scores -= scores.max(axis=-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=-1, keepdims=True)
    out = probs.astype(q.dtype) @ v[:, None]  # [KVH, G, T, hd]
    return out.reshape(H, T, hd), probs


class LlamaModel:
    def __init__(self, config: LlamaConfig, weights: LlamaWeights, dtype=np.float32):
        self.config = config
        self.dtype = np.dtype(dtype)
        self.w = weights.astype(self.dtype)
        self._w64 = None

    # ---- forward ------------------------------------------------------------------------------
    def forward(self, ids, kv_hook=None, keep_for_backward=False):
        c, w, dt = self.config, self.w, self.dtype
        ids = np.asarray(ids, dtype=np.int64)
        T = len(ids)
        if T < 1 or T > c.seq_len:
            raise ValueError(f"sequence length {T} outside 1..{c.seq_len}")
        H, KVH, hd = c.n_heads, c.n_kv_heads, c.head_dim
        cos, sin = rope_cos_sin(np.arange(T), hd, c.rope_theta)
        x = w.tok_emb[ids].copy()
        res = ForwardResult(ids=ids, logits=None, layers=[])
        for l in range(c.n_layers):
            x_in = x
            xb = rmsnorm(x, w.rms_att[l], c.norm_eps)
            q_pre = (xb @ w.wq[l].T).reshape(T, H, hd).transpose(1, 0, 2)
            k_pre = (xb @ w.wk[l].T).reshape(T, KVH, hd).transpose(1, 0, 2)
            v = np.ascontiguousarray((xb @ w.wv[l].T).reshape(T, KVH, hd).transpose(1, 0, 2))
            q = apply_rope(q_pre, cos, sin, c.rope_pairing)
            k = apply_rope(k_pre, cos, sin, c.rope_pairing)
            stepwise = None
            if kv_hook is not None:
                ret = kv_hook(l, k, v)
                if hasattr(ret, "attend"):  # per-query cache states (replay of token-group codecs)
                    if keep_for_backward:
                        raise ValueError("a stepwise kv_hook result has no backward pass")
                    stepwise, (k2, v2) = ret, (ret.k, ret.v)
                else:
                    k2, v2 = ret
                if k2.shape != k.shape or v2.shape != v.shape:
                    raise ValueError(f"kv_hook changed the K/V shape in layer {l}")
                k, v = np.asarray(k2, dtype=dt), np.asarray(v2, dtype=dt)
            if stepwise is not None:
                attn, probs = stepwise.attend(q, c.attn_scale).astype(q.dtype), None
            else:
                attn, probs = causal_attention(q, k, v, c.attn_scale)
            x = x + attn.transpose(1, 0, 2).reshape(T, c.dim) @ w.wo[l].T
            x_mid = x
            xb2 = rmsnorm(x, w.rms_ffn[l], c.norm_eps)
            h1 = xb2 @ w.w1[l].T
            h3 = xb2 @ w.w3[l].T
            x = x + ((h1 * _sigmoid(h1)) * h3) @ w.w2[l].T
            res.layers.append(LayerCapture(np.ascontiguousarray(q_pre), np.ascontiguousarray(k_pre),
                                           q, k, v, attn))
            if keep_for_backward:
                res._cache.append(dict(x_in=x_in, probs=probs, x_mid=x_mid, h1=h1, h3=h3))
        res._x_final = x
        res.logits = rmsnorm(x, w.rms_final, c.norm_eps) @ w.wcls.T
        return res

    @staticmethod
    def mean_nll(logits, ids):
        """Mean over t = 0..T-2 of -log softmax(logits[t])[ids[t+1]], in float64."""
        z = np.asarray(logits, dtype=np.float64)[:-1]
        z = z - z.max(axis=-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        return float(-np.mean(logp[np.arange(len(ids) - 1), np.asarray(ids)[1:]]))

    # ---- backward -----------------------------------------------------------------------------
    def kv_gradients(self, res: ForwardResult):
        """Returns [(dL/dK, dL/dV)] per layer, float64 [n_kv_heads, T, hd], for L = mean_nll.
        ``res`` must come from forward(..., keep_for_backward=True)."""
        if not res._cache:
            raise ValueError("forward was run without keep_for_backward=True")
        c = self.config
        if self._w64 is None:
            self._w64 = self.w.astype(np.float64)
        w = self._w64
        ids = res.ids
        T = len(ids)
        if T < 2:
            raise ValueError("gradients need at least 2 tokens (one predicted token)")
        H, KVH, hd = c.n_heads, c.n_kv_heads, c.head_dim
        G = H // KVH
        scale = c.attn_scale
        cos, sin = rope_cos_sin(np.arange(T), hd, c.rope_theta)
        f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731

        # d mean-NLL / d logits = (softmax - onehot(target)) / (T-1) on rows 0..T-2, 0 on row T-1
        z = f64(res.logits)
        p = np.exp(z - z.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        p[np.arange(T - 1), ids[1:]] -= 1.0
        p[T - 1] = 0.0
        dlogits = p / (T - 1)
        dx = rmsnorm_backward(f64(res._x_final), w.rms_final, c.norm_eps, dlogits @ w.wcls)

        grads = [None] * c.n_layers
        for l in reversed(range(c.n_layers)):
            cache, cap = res._cache[l], res.layers[l]
            # SwiGLU block: x_out = x_mid + (silu(h1) * h3) W2^T
            h1, h3 = f64(cache["h1"]), f64(cache["h3"])
            s = _sigmoid(h1)
            da = dx @ w.w2[l]
            dh3 = da * (h1 * s)
            dh1 = da * h3 * s * (1.0 + h1 * (1.0 - s))  # silu'(z) = s (1 + z (1 - s))
            dxb2 = dh1 @ w.w1[l] + dh3 @ w.w3[l]
            dx_mid = dx + rmsnorm_backward(f64(cache["x_mid"]), w.rms_ffn[l], c.norm_eps, dxb2)
            # attention output projection: x_mid = x_in + O Wo^T
            dO = (dx_mid @ w.wo[l]).reshape(T, H, hd).transpose(1, 0, 2).reshape(KVH, G, T, hd)
            P = cache["probs"]  # [KVH, G, T, T]
            q = f64(cap.q).reshape(KVH, G, T, hd)
            k, v = f64(cap.k), f64(cap.v)
            # O = P V  ->  dV = sum_g P^T dO,  dP = dO V^T
            dV = np.einsum("kgts,kgtd->ksd", P, dO)
            dP = dO @ v[:, None].transpose(0, 1, 3, 2)
            # softmax rows: dS = P * (dP - sum_s P dP); masked entries have P = 0
            dS = P * (dP - np.sum(P * dP, axis=-1, keepdims=True))
            # S = scale * Q K^T  ->  dQ = scale dS K,  dK = scale sum_g dS^T Q
            dQ = scale * (dS @ k[:, None])
            dK = scale * np.einsum("kgts,kgtd->ksd", dS, q)
            grads[l] = (dK, dV)
            if l == 0:
                break
            # RoPE is a rotation: back-propagate with the inverse rotation; then the projections
            dq_pre = apply_rope(dQ.reshape(H, T, hd), cos, sin, c.rope_pairing, inverse=True)
            dk_pre = apply_rope(dK, cos, sin, c.rope_pairing, inverse=True)
            dxb = (dq_pre.transpose(1, 0, 2).reshape(T, c.dim) @ w.wq[l]
                   + dk_pre.transpose(1, 0, 2).reshape(T, c.kv_dim) @ w.wk[l]
                   + dV.transpose(1, 0, 2).reshape(T, c.kv_dim) @ w.wv[l])
            dx = dx_mid + rmsnorm_backward(f64(cache["x_in"]), w.rms_att[l], c.norm_eps, dxb)
        return grads

    # ---- decoding -----------------------------------------------------------------------------
    def greedy(self, ids, n_new, stop_token=None):
        """Greedy (argmax) continuation of ids by up to n_new tokens; stops before stop_token or at
        the context length. Recomputes the whole prefix per step (fine for validation lengths)."""
        out = list(int(t) for t in ids)
        for _ in range(n_new):
            if len(out) >= self.config.seq_len:
                break
            nxt = int(np.argmax(self.forward(out).logits[-1]))
            if stop_token is not None and nxt == stop_token:
                break
            out.append(nxt)
        return out
