"""tq: KV-cache compression codecs and metrics, from the tq C++ library (pybind11 module tq._tq).

    import numpy as np, tq
    codec = tq.Codec("tq-mse:4", dim=128, seed=tq.seed_for(0, layer=3, head=1, tensor="k"))
    enc = codec.encode(x)              # x: float32 (or float64, converted) [T, 128], C-contiguous
    xhat = codec.decode(enc)           # float32 [T, 128]
    tq.recon_metrics(x, xhat)["nmse"]

Arrays are passed through the buffer protocol: float32 input is used in place, float64 is
converted to float32, other dtypes / non-C-contiguous arrays / wrong shapes raise ValueError
naming the argument. Errors of the C++ library (bad codec spec, bad dump) raise ValueError with
its one-line message. See docs/python.md.
"""
from ._tq import (  # noqa: F401
    ByteCount,
    Codec,
    Encoded,
    attention_metrics,
    codec_list,
    ip_metrics,
    read_dump,
    recon_metrics,
    seed_for,
)

__all__ = [
    "ByteCount",
    "Codec",
    "Encoded",
    "attention_metrics",
    "codec_list",
    "ip_metrics",
    "read_dump",
    "recon_metrics",
    "seed_for",
]
