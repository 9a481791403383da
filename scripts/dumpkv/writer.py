"""Writes a tq KV dump (HDF5; spec docs/kv-dump-format.md), shared by every backend.

Root attributes: format, format_version, model_name, model_source, weight_precision, n_layers,
n_tokens, creator, created, plus extra string attributes. /tokens/ids and /tokens/positions
(int32). /layers/<i>: float datasets [heads, tokens, head_dim] and the layer's attributes.

Storage dtypes: fp32; fp16 (IEEE half, numpy float16); bf16 (uint16 bit patterns with the dataset
attribute dtype="bfloat16", rounded to nearest-even). Datasets are chunked one head per chunk,
optionally gzip-compressed (with the shuffle filter). The file is written to a temporary name in
the target directory and renamed into place, so a failure never leaves a partial dump.
"""
import datetime
import os
import sys

import h5py
import numpy as np

from . import CREATOR
from .errors import DumpError

FORMAT_NAME = "tq-kv-dump"
FORMAT_VERSION = 1
DTYPES = ("fp32", "fp16", "bf16")
GZIP_LEVEL = 4
UNDERFLOW_WARN_FRACTION = 0.01  # warn when more than 1% of a dataset flushes to 0
GRAD_PREFIX = "grad2_"  # grad2_k, grad2_v: stored with grad_dtype
FP16_MAX = float(np.finfo(np.float16).max)


def float_to_bf16_bits(x):
    """float32 -> bfloat16 bit patterns (uint16), round to nearest-even; NaN stays a quiet NaN."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((u + (np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1)))) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        rounded[nan] = ((u[nan] >> 16) | np.uint32(0x40)).astype(np.uint16)
    return rounded


def bf16_bits_to_float(b):
    return (np.asarray(b, dtype=np.uint32) << 16).view(np.float32)


def created_timestamp():
    """ISO 8601 UTC time; honours SOURCE_DATE_EPOCH so that rebuilt dumps can be identical."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch
            else datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0))
    return when.isoformat().replace("+00:00", "Z")


def _attr(value):
    if isinstance(value, (bool, np.bool_)):
        raise TypeError("boolean attributes are not part of the format")
    if isinstance(value, (int, np.integer)):
        return np.int32(value)
    if isinstance(value, (float, np.floating)):
        return np.float64(value)
    return str(value)


def _encode(name, layer, arr, dtype):
    """Returns (array to store, extra dataset attributes)."""
    a32 = np.asarray(arr, dtype=np.float32)
    if not np.isfinite(a32).all():
        raise DumpError(f"layer {layer} dataset {name}: non-finite values")
    if dtype == "fp32":
        return a32, {}
    if dtype == "fp16":
        peak = float(np.abs(a32).max()) if a32.size else 0.0
        if peak > FP16_MAX:
            raise DumpError(f"layer {layer} dataset {name}: |x| up to {peak:g} overflows fp16; "
                            "use --dtype bf16 or fp32")
        h = a32.astype(np.float16)
        lost = int(np.count_nonzero((h == 0) & (a32 != 0)))
        if lost > UNDERFLOW_WARN_FRACTION * a32.size:
            print(f"dump_kv.py: warning: layer {layer} dataset {name}: {lost} of {a32.size} "
                  "nonzero values underflow to 0 in fp16", file=sys.stderr)
        return h, {}
    if dtype == "bf16":
        return float_to_bf16_bits(a32), {"dtype": "bfloat16"}
    raise ValueError(dtype)


def check_writable(out, force):
    if os.path.exists(out) and not force:
        raise DumpError(f"{out}: exists; pass --force to overwrite")
    d = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(d):
        raise DumpError(f"{out}: directory {d} does not exist")


def write_dump(out, capture, root_attrs, dtype="fp32", compress=False, force=False,
               grad_dtype=None):
    """capture: backend.Capture; root_attrs: model metadata + extra string attributes.
    dtype: storage of every dataset except the grad2_* ones, which use grad_dtype (default: the
    same as dtype). The format allows a dtype per dataset."""
    grad_dtype = dtype if grad_dtype is None else grad_dtype
    for flag, d in (("--dtype", dtype), ("--grad-dtype", grad_dtype)):
        if d not in DTYPES:
            raise DumpError(f"{flag} {d}: expected one of {', '.join(DTYPES)}")
    check_writable(out, force)
    T = int(len(capture.token_ids))
    attrs = dict(format=FORMAT_NAME, format_version=FORMAT_VERSION)
    attrs.update(root_attrs)
    attrs.update(n_tokens=T, creator=CREATOR, created=created_timestamp())
    for key in ("model_name", "model_source", "weight_precision", "n_layers"):
        if key not in attrs:
            raise ValueError(f"root attribute {key} missing")
    filters = dict(compression="gzip", compression_opts=GZIP_LEVEL, shuffle=True) if compress else {}
    tmp = os.path.join(os.path.dirname(os.path.abspath(out)),
                       f".{os.path.basename(out)}.tmp{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            for k, v in attrs.items():
                f.attrs[k] = _attr(v)
            tok = f.create_group("tokens")
            tok.create_dataset("ids", data=np.asarray(capture.token_ids, dtype=np.int32),
                               track_times=False)
            tok.create_dataset("positions", data=np.asarray(capture.positions, dtype=np.int32),
                               track_times=False)
            layers = f.create_group("layers")
            for ld in capture.layers:
                g = layers.create_group(str(ld.index))
                for k, v in ld.attrs.items():
                    g.attrs[k] = _attr(v)
                for name, arr in ld.tensors.items():
                    if arr.ndim != 3 or arr.shape[1] != T:
                        raise ValueError(f"layer {ld.index} {name}: shape {arr.shape}")
                    dt = grad_dtype if name.startswith(GRAD_PREFIX) else dtype
                    data, extra = _encode(name, ld.index, arr, dt)
                    ds = g.create_dataset(name, data=data, chunks=(1,) + data.shape[1:],
                                          track_times=False, **filters)
                    for k, v in extra.items():
                        ds.attrs[k] = v
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
