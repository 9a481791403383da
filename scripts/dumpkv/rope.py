"""Rotary position embedding (RoPE).

For a head vector x of size head_dim and position p, RoPE rotates rotary_dim/2 coordinate pairs
(a_i, b_i) by the angle p * theta^(-2i/head_dim), i = 0 .. rotary_dim/2 - 1:
    a' = a cos - b sin,   b' = a sin + b cos.
The pairing of coordinates differs between model families:
    "interleaved"  pairs (2i, 2i+1)        llama2.c, GGUF/llama.cpp (after its weight permutation)
    "half"         pairs (i, i + rotary_dim/2)   Hugging Face transformers (rotate_half)
The rotation is orthogonal, so its inverse (and its transpose, used to back-propagate a gradient
through it) is the rotation by the negated angle.
"""
import numpy as np

PAIRINGS = ("interleaved", "half")


def rope_cos_sin(positions, head_dim, theta, rotary_dim=None):
    """cos and sin of the rotation angles, float64 arrays [n_tokens, rotary_dim/2]."""
    rotary_dim = head_dim if rotary_dim is None else rotary_dim
    i2 = np.arange(0, rotary_dim, 2, dtype=np.float64)  # 2i = 0, 2, 4, ...
    inv_freq = 1.0 / np.power(float(theta), i2 / float(head_dim))
    angles = np.asarray(positions, dtype=np.float64)[:, None] * inv_freq[None, :]
    return np.cos(angles), np.sin(angles)


def _pair_views(rotary_dim, pairing):
    if pairing == "interleaved":
        return slice(0, rotary_dim, 2), slice(1, rotary_dim, 2)
    if pairing == "half":
        return slice(0, rotary_dim // 2), slice(rotary_dim // 2, rotary_dim)
    raise ValueError(f"unknown rope pairing {pairing!r}")


def apply_rope(x, cos, sin, pairing="interleaved", inverse=False):
    """Rotates x [..., n_tokens, head_dim] (the last rotary_dim = 2*cos.shape[1] coordinates are
    paired as described above; coordinates beyond rotary_dim pass through). Returns a new array of
    x's dtype; the rotation itself is computed in float64."""
    rotary_dim = 2 * cos.shape[1]
    ia, ib = _pair_views(rotary_dim, pairing)
    s = -sin if inverse else sin
    a = x[..., ia].astype(np.float64)
    b = x[..., ib].astype(np.float64)
    out = x.copy()
    out[..., ia] = a * cos - b * s
    out[..., ib] = a * s + b * cos
    return out
