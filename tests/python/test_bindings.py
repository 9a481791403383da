"""Tests of the pybind11 module `tq` (python/bindings.cpp), built into $TQ_BUILD_DIR/python.

Expected values come from outside the bindings: the analytic TurboQuant-MSE distortion, numpy's
own float16 rounding, the independent numpy attention reference (attn_kl_reference.py), a
from-the-paper SplitMix64 re-implementation of seed_for, and dumps written by h5py.
"""
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
_pkg = os.path.join(os.environ.get("TQ_BUILD_DIR", ""), "python", "tq")
if not os.environ.get("TQ_BUILD_DIR") or not os.path.isdir(_pkg):
    pytest.skip("tq python module not built ($TQ_BUILD_DIR/python/tq missing)",
                allow_module_level=True)
# Built but not importable (e.g. compiled for another Python ABI) is a failure, not a skip.
sys.path.insert(0, os.path.dirname(_pkg))
import tq  # noqa: E402

sys.path.insert(0, HERE)
import attn_kl_reference as ref  # noqa: E402

# Per-coordinate MSE of the optimal 4-bit Lloyd-Max quantiser for one coordinate of a uniformly
# random unit vector in d = 128 (the Beta-law codebook tq-mse uses), i.e. the NMSE of tq-mse:4
# on isotropic data up to the norm's rounding (TurboQuant, Zandieh et al. 2025, Table/Thm 1).
TQ_MSE4_NMSE_D128 = 0.009315


def gaussian(T, d, seed):
    return np.random.default_rng(seed).standard_normal((T, d)).astype(np.float32)


def test_module_matches_this_interpreter():
    import importlib.machinery

    ext = tq._tq.__file__
    assert any(ext.endswith(sfx) for sfx in importlib.machinery.EXTENSION_SUFFIXES), ext
    assert os.path.dirname(tq.__file__) == os.path.abspath(_pkg)


# ---- codecs --------------------------------------------------------------------------------------

def test_round_trip_tq_mse4_matches_analytic_nmse():
    x = gaussian(8192, 128, 1)
    codec = tq.Codec("tq-mse:4", 128, seed=7)
    xhat = codec.decode(codec.encode(x))
    assert xhat.dtype == np.float32 and xhat.shape == x.shape
    nmse_np = float(((x.astype(np.float64) - xhat) ** 2).sum() / (x.astype(np.float64) ** 2).sum())
    m = tq.recon_metrics(x, xhat)
    assert m["nmse"] == pytest.approx(nmse_np, rel=1e-9)
    # 8192 vectors: the sampling error of the mean is ~0.2 % (measured: -0.19 %); 3-bit would be
    # ~0.034, 5-bit ~0.0025.
    assert m["nmse"] == pytest.approx(TQ_MSE4_NMSE_D128, rel=0.01)


def test_byte_counts_sum_to_bytes_and_match_byte_count():
    x = gaussian(100, 64, 2)
    for spec in ["tq-mse:4", "tq-mse:2,norm=fp32", "fp16", "q4_0", "kivi:2"]:
        codec = tq.Codec(spec, 64, seed=3)
        e = codec.encode(x)
        assert e.payload_bytes + e.side_bytes + e.window_bytes == len(e.bytes) == len(e), spec
        bc = codec.byte_count(100)
        assert (bc.payload, bc.side, bc.window) == (e.payload_bytes, e.side_bytes, e.window_bytes)
        assert bc.total == len(e.bytes)
        assert e.bits_per_element == pytest.approx(len(e.bytes) * 8 / (100 * 64))
        assert (e.n_tokens, e.dim) == (100, 64)


def test_tq_mse4_bits_per_element():
    # 4-bit codes + one fp16 norm per 128-dim vector: 4 + 16/128 bits.
    e = tq.Codec("tq-mse:4", 128).encode(gaussian(10, 128, 0))
    assert e.bits_per_element == pytest.approx(4.125)


def test_deterministic_by_seed():
    x = gaussian(64, 128, 3)
    a = tq.Codec("tq-mse:3", 128, seed=11).encode(x).bytes
    b = tq.Codec("tq-mse:3", 128, seed=11).encode(x).bytes
    c = tq.Codec("tq-mse:3", 128, seed=12).encode(x).bytes
    assert isinstance(a, bytes)
    assert a == b
    assert a != c  # the rotation is drawn from the seed


def test_float64_input_is_converted_to_float32():
    x = gaussian(32, 64, 4)
    codec = tq.Codec("tq-mse:4", 64, seed=5)
    assert codec.encode(x.astype(np.float64)).bytes == codec.encode(x).bytes


def test_fp32_codec_is_exact():
    x = gaussian(50, 32, 5) * np.float32(1e3)
    x[0, :4] = [0.0, -0.0, 1e-40, 3.4e38]  # zero, signed zero, subnormal, near max
    e = tq.Codec("fp32", 32).encode(x)
    assert e.bytes == x.tobytes()
    xhat = tq.Codec("fp32", 32).decode(e)
    assert np.array_equal(xhat.view(np.uint32), x.view(np.uint32))


def test_fp16_codec_equals_numpy_rounding():
    x = gaussian(64, 16, 6) * np.float32(100)
    # rounding ties, fp16 max, subnormals, signed zero
    x[0, :6] = [1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, 65504.0, 2.0**-24, 3.0e-7, -0.0]
    codec = tq.Codec("fp16", 16)
    xhat = codec.decode(codec.encode(x))
    want = x.astype(np.float16).astype(np.float32)
    assert np.array_equal(xhat.view(np.uint32), want.view(np.uint32))


def test_codec_spec_and_list():
    assert tq.Codec("tq-mse:4", 128).spec.split(",")[1] == "tq-mse:4"
    names = [n for n, _ in tq.codec_list()]
    assert {"tq-mse", "fp32", "fp16"} <= set(names)
    for name in ["fp32", "fp16"]:
        assert tq.Codec(name, 8).spec == name


def test_positions_length_checked():
    codec = tq.Codec("tq-mse:4", 16)
    x = gaussian(8, 16, 0)
    codec.encode(x, positions=np.arange(8, dtype=np.int32))
    with pytest.raises(ValueError, match="positions"):
        codec.encode(x, positions=list(range(7)))


# ---- errors --------------------------------------------------------------------------------------

def test_bad_spec_raises_value_error_naming_it():
    with pytest.raises(ValueError, match="nosuchcodec:3"):
        tq.Codec("nosuchcodec:3", 128)
    with pytest.raises(ValueError, match="tq-mse:4,bogus=1"):
        tq.Codec("tq-mse:4,bogus=1", 128)


@pytest.mark.parametrize(
    "bad, what",
    [
        (np.zeros((4, 16), dtype=np.int32), "dtype"),
        (np.zeros((4, 16), dtype=np.float16), "dtype"),
        (np.zeros(16, dtype=np.float32), "dimensions"),
        (np.zeros((4, 8), dtype=np.float32), "dim"),
        (np.zeros((16, 4), dtype=np.float32).T, "C-contiguous"),
        ("not an array", "float32"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(bad, what):
    with pytest.raises(ValueError, match=f"^x: .*{what}"):
        tq.Codec("tq-mse:4", 16).encode(bad)


def test_decode_rejects_other_dim():
    e = tq.Codec("fp32", 8).encode(np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match="encoded"):
        tq.Codec("fp32", 16).decode(e)


def test_decode_into_a_preallocated_array():
    x = gaussian(300, 64, 7)
    codec = tq.Codec("hr,tq-mse:3", dim=64, seed=5)
    enc = codec.encode(x)
    fresh = codec.decode(enc)
    out = np.full((300, 64), np.nan, dtype=np.float32)
    got = codec.decode(enc, out=out)
    assert got is out
    assert np.array_equal(out, fresh)
    for bad in (np.zeros((300, 63), np.float32), np.zeros((300, 64), np.float64),
                np.zeros((64, 300), np.float32).T, np.zeros(300 * 64, np.float32), [[0.0] * 64] * 300):
        with pytest.raises(ValueError, match="out"):
            codec.decode(enc, out=bad)
    ro = np.zeros((300, 64), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out: array is not writable"):
        codec.decode(enc, out=ro)


def test_metric_shape_mismatch_names_argument():
    with pytest.raises(ValueError, match="^xhat: shape"):
        tq.recon_metrics(np.zeros((4, 8), np.float32), np.zeros((4, 9), np.float32))


# ---- seeds ---------------------------------------------------------------------------------------

M64 = (1 << 64) - 1


def _splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def _fnv1a(tag):
    h = 0xCBF29CE484222325
    for ch in tag.encode():
        h = ((h ^ ch) * 0x100000001B3) & M64
    return h


def _combine(seed, value):
    return _splitmix64(seed ^ _splitmix64((value + 0x632BE59BD9B4E019) & M64))


def test_seed_for_matches_documented_derivation():
    for run_seed, layer, head, tensor in [(0, 0, 0, "k"), (1234, 3, 7, "v"), (M64, 31, 0, "q")]:
        want = _combine(_combine(_combine(run_seed, layer), head), _fnv1a(tensor))
        assert tq.seed_for(run_seed, layer, head, tensor) == want


# ---- metrics -------------------------------------------------------------------------------------

def test_recon_metrics_against_numpy():
    x = gaussian(300, 32, 7).astype(np.float64)
    xhat = (x + 0.1 * gaussian(300, 32, 8)).astype(np.float32)
    x = x.astype(np.float32)
    m = tq.recon_metrics(x, xhat)
    xd, hd = x.astype(np.float64), xhat.astype(np.float64)
    e = xd - hd
    rel = np.linalg.norm(e, axis=1) / np.linalg.norm(xd, axis=1)
    cos = (xd * hd).sum(1) / np.linalg.norm(xd, axis=1) / np.linalg.norm(hd, axis=1)
    assert m["mse"] == pytest.approx((e**2).mean(), rel=1e-9)
    assert m["nmse"] == pytest.approx((e**2).sum() / (xd**2).sum(), rel=1e-9)
    assert m["max_abs_err"] == pytest.approx(np.abs(e).max(), rel=1e-12)
    # per-vector ratios are stored as float32 in the C++ accumulator
    for p in (50, 95, 99):
        assert m[f"rel_err_p{p}"] == pytest.approx(np.percentile(rel, p), rel=1e-6)
    assert m["cosine_mean"] == pytest.approx(cos.mean(), rel=1e-9)


@pytest.mark.parametrize("window, softcap, min_pos", [(0, 0.0, 16), (32, 5.0, 4)])
def test_attention_metrics_match_numpy_reference(window, softcap, min_pos):
    T, d, scale = 200, 64, 0.125
    q, k, v = gaussian(T, d, 10), gaussian(T, d, 11), gaussian(T, d, 12)
    codec = tq.Codec("tq-mse:3", d, seed=2)
    kh, vh = codec.decode(codec.encode(k)), codec.decode(codec.encode(v))
    m = tq.attention_metrics(q, k, v, kh, vh, scale, sliding_window=window, softcap=softcap,
                             min_pos=min_pos)
    w, c = (window or None), (softcap or None)
    kl = ref.attn_kl(q, k, kh, scale, min_pos=min_pos, window=w, softcap=c)
    assert kl > 1e-4  # a 3-bit codec changes attention measurably
    assert m["attn_kl"] == pytest.approx(kl, rel=1e-9)
    err_sq, out_sq = ref.attn_out_sums(q, k, v, kh, vh, scale, min_pos=min_pos, window=w,
                                       softcap=c)
    assert m["attn_out_err"] == pytest.approx(np.sqrt(err_sq / out_sq), rel=1e-9)
    assert m["n_pos"] == T - min_pos
    assert 0.0 <= m["attn_top1"] <= 1.0


def test_attention_metrics_without_values_and_exact_keys():
    T, d = 64, 16
    q, k = gaussian(T, d, 13), gaussian(T, d, 14)
    m = tq.attention_metrics(q, k, None, k, None, 0.25)
    assert m["attn_kl"] == 0.0 and m["attn_top1"] == 1.0
    assert "attn_out_err" not in m
    with pytest.raises(ValueError, match="v, vhat"):
        tq.attention_metrics(q, k, k, k, None, 0.25)
    with pytest.raises(ValueError, match="scale"):
        tq.attention_metrics(q, k, None, k, None, 0.0)


def test_ip_metrics_of_scaled_keys():
    # k̂ = c·k gives ip_bias = c − 1 and ip_rms = |c − 1| exactly (inner_product.h).
    T, d, c = 80, 32, 0.9
    q, k = gaussian(T, d, 15), gaussian(T, d, 16)
    m = tq.ip_metrics(q, k, (k * np.float32(c)))
    assert m["n_pairs"] == T * (T + 1) // 2
    assert m["ip_bias"] == pytest.approx(c - 1, abs=1e-6)
    assert m["ip_rms"] == pytest.approx(1 - c, rel=1e-5)


# ---- dumps ---------------------------------------------------------------------------------------

def test_read_dump_written_by_h5py(tmp_path):
    pytest.importorskip("h5py")
    import test_h5py_interop as interop

    tensors = interop.reference_tensors()
    path = str(tmp_path / "d.h5")
    interop.write_h5py_dump(path, tensors, "f16")
    for (layer, name), x in tensors.items():
        got = tq.read_dump(path, layer, name)
        assert got.dtype == np.float32 and got.shape == x.shape
        assert np.array_equal(got, x.astype(np.float16).astype(np.float32))
    with pytest.raises(ValueError, match="d.h5"):
        tq.read_dump(path, 1, "k")  # layer 1 is absent
    with pytest.raises(ValueError, match="nonexistent.h5"):
        tq.read_dump(str(tmp_path / "nonexistent.h5"), 0, "k")


# ---- threads -------------------------------------------------------------------------------------

def test_threads_share_a_codec_and_give_sequential_bytes():
    from concurrent.futures import ThreadPoolExecutor

    heads = [gaussian(512, 128, 100 + h) for h in range(8)]
    codec = tq.Codec("tq-mse:4", 128, seed=9)
    want = [codec.encode(x).bytes for x in heads]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda x: codec.encode(x).bytes, heads))
        dec = list(pool.map(lambda b: codec.decode(codec.encode(b)), heads))
    assert got == want
    for x, xh in zip(heads, dec):
        assert np.array_equal(xh, codec.decode(codec.encode(x)))
