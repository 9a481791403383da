"""h5py <-> tq interop for the KV dump format (docs/kv-dump-format.md).

Dumps written by h5py (fp32, fp16 as numpy float16, bf16 as uint16 + dtype attribute) must be
read by tq with exactly the stored values, and dumps written by tq in every dtype must be read
by h5py with the values numpy's own rounding gives. The C++ side is the test tool
tq_dumptool (found via $TQ_DUMPTOOL, $TQ_BUILD_DIR/tq_dumptool, or next to $TQ_BIN).
"""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

N_TOKENS = 6
# layer index -> (n_heads, n_kv_heads, head_dim, with q); layer 1 and 2 are absent on purpose.
LAYERS = {0: (4, 2, 8, True), 3: (2, 1, 16, False)}
N_LAYERS = 4


def find_tool():
    candidates = [os.environ.get("TQ_DUMPTOOL")]
    if os.environ.get("TQ_BUILD_DIR"):
        candidates.append(str(Path(os.environ["TQ_BUILD_DIR"]) / "tq_dumptool"))
    if os.environ.get("TQ_BIN"):
        candidates.append(str(Path(os.environ["TQ_BIN"]).parent / "tq_dumptool"))
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return None


@pytest.fixture(scope="module")
def tool():
    path = find_tool()
    if path is None:
        pytest.skip("tq_dumptool not found (set TQ_DUMPTOOL or TQ_BUILD_DIR)")
    return path


# ---- reference rounding in numpy ------------------------------------------------------------


def bf16_bits(x):
    """float32 -> bfloat16 bit patterns, round to nearest, ties to even (no NaNs in the tests)."""
    b = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def stored(x, dtype):
    """The float32 values a dump holds after storing float32 `x` as `dtype`."""
    if dtype == "f32":
        return x.astype(np.float32)
    if dtype == "f16":
        return x.astype(np.float16).astype(np.float32)
    return bf16_to_f32(bf16_bits(x))


def same_bits(a, b):
    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_bf16_reference_rounding():
    # 1 + 2^-8 is a tie between bf16 1.0 and 1.0078125: even mantissa wins; 1 + 3*2^-8 rounds up.
    x = np.array([1.0, 1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, -2.5, 3.0e38], dtype=np.float32)
    assert bf16_bits(x).tolist() == [0x3F80, 0x3F80, 0x3F82, 0xC020, 0x7F62]


# ---- reference data and an h5py writer --------------------------------------------------------


def reference_tensors(seed=1234):
    rng = np.random.default_rng(seed)
    out = {}
    for i, (nh, nkv, d, with_q) in LAYERS.items():
        names = {"k": nkv, "v": nkv}
        if with_q:
            names.update({"q": nh, "k_pre": nkv, "grad2_k": nkv, "grad2_v": nkv})
        for name, heads in names.items():
            x = (3.0 * rng.standard_normal((heads, N_TOKENS, d))).astype(np.float32)
            out[(i, name)] = x
    k = out[(0, "k")].reshape(-1)
    # awkward values: signed zero, fp16 max and subnormals, fp16 and bf16 rounding ties
    k[:6] = [-0.0, 65504.0, 2.0**-24, 1.0 + 2.0**-11, 1.0 + 2.0**-8, 3.0e-7]
    return out


def write_h5py_dump(path, tensors, dtype, fixed_length_strings=False):
    def s(text):
        return np.bytes_(text) if fixed_length_strings else text

    with h5py.File(path, "w") as f:
        f.attrs["format"] = s("tq-kv-dump")
        f.attrs["format_version"] = 1
        f.attrs["model_name"] = s("toy-h5py")
        f.attrs["model_source"] = s("numpy")
        f.attrs["weight_precision"] = s("fp32")
        f.attrs["n_layers"] = N_LAYERS
        f.attrs["n_tokens"] = N_TOKENS
        f.attrs["creator"] = s("test_h5py_interop.py")
        f.attrs["created"] = s("2024-05-06T07:08:09Z")
        f["tokens/ids"] = np.arange(100, 100 + N_TOKENS, dtype=np.int32)
        f["tokens/positions"] = np.arange(N_TOKENS, dtype=np.int32) + 10
        for i, (nh, nkv, d, _) in LAYERS.items():
            g = f.create_group(f"layers/{i}")
            g.attrs["n_heads"] = nh
            g.attrs["n_kv_heads"] = nkv
            g.attrs["head_dim"] = d
            g.attrs["rope_theta"] = 10000.0
            g.attrs["rope_pairing"] = s("interleaved" if i == 0 else "half")
        for (i, name), x in tensors.items():
            g = f[f"layers/{i}"]
            if dtype == "f32":
                g[name] = x
            elif dtype == "f16":
                g[name] = x.astype(np.float16)
            else:
                g[name] = bf16_bits(x)
                g[name].attrs["dtype"] = s("bfloat16")


def run_tool(tool, *args):
    return subprocess.run([tool, *args], capture_output=True, text=True, check=False)


def tool_dump(tool, path):
    r = run_tool(tool, "dump", str(path))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


# ---- h5py writes, tq reads --------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
def test_tq_reads_h5py_dump_exactly(tool, tmp_path, dtype):
    tensors = reference_tensors()
    path = tmp_path / f"h5py_{dtype}.h5"
    write_h5py_dump(path, tensors, dtype)
    j = tool_dump(tool, path)
    assert j["n_tokens"] == N_TOKENS
    assert j["n_layers"] == N_LAYERS
    assert j["token_ids"] == list(range(100, 100 + N_TOKENS))
    assert j["positions"] == list(range(10, 10 + N_TOKENS))
    assert j["attributes"]["model_name"] == "toy-h5py"
    assert [layer["index"] for layer in j["layers"]] == sorted(LAYERS)
    want_name = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[dtype]
    for layer in j["layers"]:
        i = layer["index"]
        nh, nkv, d, _ = LAYERS[i]
        assert (layer["n_heads"], layer["n_kv_heads"], layer["head_dim"]) == (nh, nkv, d)
        assert layer["attn_scale"] == pytest.approx(1.0 / np.sqrt(d), rel=1e-15)
        assert layer["rope_pairing"] == ("interleaved" if i == 0 else "half")
        names = {n for (li, n) in tensors if li == i}
        assert set(layer["datasets"]) == names
        for name, ds in layer["datasets"].items():
            x = tensors[(i, name)]
            assert ds["dtype"] == want_name
            assert ds["shape"] == list(x.shape)
            got = np.array(ds["values"], dtype=np.float64)
            # every value printed by tq is exactly a float32
            assert np.array_equal(got.astype(np.float32).astype(np.float64), got)
            assert same_bits(got.astype(np.float32).reshape(x.shape), stored(x, dtype)), (i, name)


def test_tq_reads_fixed_length_string_attributes(tool, tmp_path):
    path = tmp_path / "fixed.h5"
    write_h5py_dump(path, reference_tensors(), "f32", fixed_length_strings=True)
    j = tool_dump(tool, path)
    assert j["attributes"]["format"] == "tq-kv-dump"
    assert j["layers"][1]["rope_pairing"] == "half"


def test_tq_reads_h5py_compressed_dump(tool, tmp_path):
    tensors = reference_tensors()
    path = tmp_path / "gzip.h5"
    write_h5py_dump(path, {}, "f32")
    with h5py.File(path, "a") as f:
        for (i, name), x in tensors.items():
            f[f"layers/{i}"].create_dataset(
                name, data=x.astype(np.float16), chunks=(1, 3, x.shape[2]),
                compression="gzip", shuffle=True)
    j = tool_dump(tool, path)
    v = np.array(j["layers"][0]["datasets"]["q"]["values"], dtype=np.float32)
    assert same_bits(v.reshape(tensors[(0, "q")].shape), stored(tensors[(0, "q")], "f16"))


def test_tq_rejects_h5py_file_without_format(tool, tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3, dtype=np.float32)
    r = run_tool(tool, "dump", str(path))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(path) in lines[0] and "format" in lines[0]


def test_tq_rejects_untagged_uint16(tool, tmp_path):
    path = tmp_path / "untagged.h5"
    tensors = reference_tensors()
    write_h5py_dump(path, tensors, "bf16")
    with h5py.File(path, "a") as f:
        del f["layers/3/v"].attrs["dtype"]
    r = run_tool(tool, "dump", str(path))
    assert r.returncode == 1
    assert f"{path}: /layers/3/v: uint16 dataset without attribute" in r.stderr


# ---- tq writes, h5py reads --------------------------------------------------------------------


@pytest.mark.parametrize("deflate", [0, 3])
@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
def test_h5py_reads_tq_dump(tool, tmp_path, dtype, deflate):
    tensors = reference_tensors(seed=99)
    src = tmp_path / "src.h5"
    out = tmp_path / f"tq_{dtype}.h5"
    write_h5py_dump(src, tensors, "f32")
    r = run_tool(tool, "copy", str(src), str(out), "--dtype", dtype, "--deflate", str(deflate))
    assert r.returncode == 0, r.stderr
    # no temporary file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, out.name])
    with h5py.File(out, "r") as f:
        assert f.attrs["format"] == "tq-kv-dump"
        assert f.attrs["format_version"] == 1
        assert f.attrs["n_tokens"] == N_TOKENS
        assert f.attrs["n_layers"] == N_LAYERS
        assert f.attrs["model_name"] == "toy-h5py"
        assert f.attrs["created"] == "2024-05-06T07:08:09Z"
        assert f["tokens/ids"].dtype == np.int32
        assert f["tokens/ids"][()].tolist() == list(range(100, 100 + N_TOKENS))
        assert f["tokens/positions"][()].tolist() == list(range(10, 10 + N_TOKENS))
        assert sorted(f["layers"].keys(), key=int) == [str(i) for i in sorted(LAYERS)]
        for i, (nh, nkv, d, _) in LAYERS.items():
            g = f[f"layers/{i}"]
            assert (g.attrs["n_heads"], g.attrs["n_kv_heads"], g.attrs["head_dim"]) == (nh, nkv, d)
            assert g.attrs["attn_scale"] == pytest.approx(1.0 / np.sqrt(d), rel=1e-15)
            assert g.attrs["rotary_dim"] == d
        for (i, name), x in tensors.items():
            ds = f[f"layers/{i}/{name}"]
            assert ds.shape == x.shape
            if dtype == "f32":
                assert ds.dtype == np.float32
                got = ds[()]
            elif dtype == "f16":
                assert ds.dtype == np.float16  # h5py recognises tq's HDF5 half type
                got = ds[()].astype(np.float32)
            else:
                assert ds.dtype == np.uint16
                assert ds.attrs["dtype"] == "bfloat16"
                got = bf16_to_f32(ds[()])
            if deflate:
                assert ds.compression == "gzip" and ds.shuffle
            assert same_bits(got, stored(x, dtype)), (i, name)
