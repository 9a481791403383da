// Python bindings of tq (module tq._tq, re-exported by python/tq/__init__.py).
//
// Arrays cross the boundary through Python's buffer protocol (PEP 3118), not numpy's C API:
// pybind11 2.10 (Debian) predates numpy 2's C-API changes, and the buffer protocol is the same in
// every numpy. Inputs: any object exporting a buffer of float32 ('f', used in place, no copy) or
// float64 ('d', converted to float32 once) that is C-contiguous with the expected number of
// dimensions; anything else raises ValueError naming the argument. Outputs are numpy arrays made
// by numpy.empty and filled through their writable buffer.
//
// Errors: tq::Error (bad spec, bad dump, bad options) becomes ValueError with its one-line message.
// encode/decode/train and the metrics release the GIL while the C++ code runs.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tq/codec/codec.h"
#include "tq/core/error.h"
#include "tq/core/rng.h"
#include "tq/io/dump.h"
#include "tq/metrics/attention.h"
#include "tq/metrics/inner_product.h"
#include "tq/metrics/reconstruction.h"

namespace py = pybind11;

namespace {

/// True when a buffer holds native-endian floats of one kind: PEP 3118 format "f"/"d", optionally
/// prefixed by '@', '=' or (on a little-endian host) '<'.
bool is_native_float(const py::buffer_info& info, char code, size_t size) {
  if (info.itemsize != static_cast<py::ssize_t>(size)) return false;
  const std::string& f = info.format;
  if (f.size() == 1) return f[0] == code;
  if (f.size() != 2 || f[1] != code) return false;
  const bool little = PY_LITTLE_ENDIAN != 0;
  return f[0] == '@' || f[0] == '=' || (f[0] == '<' && little) || (f[0] == '>' && !little);
}

/// A read-only float32 view of a C-contiguous input array: either the caller's own memory
/// (float32 input) or a converted copy (float64 input). Holds the buffer for its lifetime, so the
/// memory stays valid while the GIL is released.
class FloatArray {
 public:
  FloatArray(const py::handle& obj, const char* arg, int ndim) : arg_(arg) {
    if (obj.is_none() || !PyObject_CheckBuffer(obj.ptr())) {
      throw py::value_error(std::string(arg) + ": expected a float32 or float64 array, got " +
                            std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
    }
    auto buf = py::reinterpret_borrow<py::buffer>(obj);
    info_ = buf.request();
    if (info_.ndim != ndim) {
      throw py::value_error(std::string(arg) + ": expected " + std::to_string(ndim) +
                            " dimensions, got " + std::to_string(info_.ndim));
    }
    const bool f32 = is_native_float(info_, 'f', sizeof(float));
    const bool f64 = is_native_float(info_, 'd', sizeof(double));
    if (!f32 && !f64) {
      throw py::value_error(std::string(arg) + ": dtype must be float32 or float64 (buffer format '" +
                            info_.format + "')");
    }
    // C-contiguous: strides are the row-major strides of the shape (size-1 axes are free).
    py::ssize_t expect = info_.itemsize;
    for (py::ssize_t i = info_.ndim - 1; i >= 0; --i) {
      const auto k = static_cast<size_t>(i);
      if (info_.shape[k] > 1 && info_.strides[k] != expect) {
        throw py::value_error(std::string(arg) +
                              ": array must be C-contiguous (use numpy.ascontiguousarray)");
      }
      expect *= info_.shape[k];
    }
    for (py::ssize_t s : info_.shape) n_ *= static_cast<size_t>(s);
    if (f32) {
      data_ = static_cast<const float*>(info_.ptr);
    } else {
      copy_.resize(n_);
      const auto* src = static_cast<const double*>(info_.ptr);
      for (size_t i = 0; i < n_; ++i) copy_[i] = static_cast<float>(src[i]);
      data_ = copy_.data();
    }
  }

  FloatArray(const FloatArray&) = delete;  // data_ may point into copy_
  FloatArray& operator=(const FloatArray&) = delete;

  const float* data() const { return data_; }
  size_t size() const { return n_; }
  size_t shape(size_t i) const { return static_cast<size_t>(info_.shape[i]); }
  const char* name() const { return arg_; }

  /// Throws ValueError unless the shape equals `other`'s.
  void require_same_shape(const FloatArray& other) const {
    if (info_.shape != other.info_.shape) {
      throw py::value_error(std::string(arg_) + ": shape " + shape_str() + " differs from " +
                            other.arg_ + "'s " + other.shape_str());
    }
  }
  std::string shape_str() const {
    std::string s = "(";
    for (size_t i = 0; i < info_.shape.size(); ++i) {
      s += (i ? ", " : "") + std::to_string(info_.shape[i]);
    }
    return s + ")";
  }

 private:
  const char* arg_;
  py::buffer_info info_;
  std::vector<float> copy_;
  const float* data_ = nullptr;
  size_t n_ = 1;
};

/// A new numpy float32 array of the given shape, and a pointer to its (C-contiguous) data.
py::object new_float_array(const std::vector<py::ssize_t>& shape, float** data) {
  py::object np = py::module_::import("numpy");
  py::tuple t(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) t[i] = py::int_(shape[i]);
  py::object arr = np.attr("empty")(t, py::arg("dtype") = np.attr("float32"));
  py::buffer_info info = py::reinterpret_borrow<py::buffer>(arr).request(/*writable=*/true);
  *data = static_cast<float*>(info.ptr);
  return arr;
}

/// Encoded bytes plus the Python-visible accounting.
struct PyEncoded {
  tq::Encoded e;
  double bits_per_element() const {
    const double elems = static_cast<double>(e.n_tokens) * static_cast<double>(e.dim);
    return elems > 0 ? static_cast<double>(e.count.total()) * 8.0 / elems : 0.0;
  }
};

/// A codec built from a spec for one (dim, seed, tensor).
class PyCodec {
 public:
  PyCodec(const std::string& spec, size_t dim, uint64_t seed, const std::string& tensor,
          const std::string& codebook_dir) {
    tq::CodecContext ctx;
    ctx.dim = dim;
    ctx.seed = seed;
    ctx.tensor = tensor;
    ctx.codebook_dir = codebook_dir;
    codec_ = tq::make_codec(spec, ctx);
  }

  std::string spec() const { return codec_->spec(); }
  size_t dim() const { return codec_->dim(); }
  bool needs_training() const { return codec_->needs_training(); }

  void train(const py::object& x) {
    FloatArray a(x, "x", 2);
    check_dim(a);
    py::gil_scoped_release nogil;
    codec_->train(a.data(), a.shape(0));
  }

  PyEncoded encode(const py::object& x, const py::object& positions) const {
    FloatArray a(x, "x", 2);
    check_dim(a);
    const size_t T = a.shape(0);
    std::vector<int32_t> pos;
    if (!positions.is_none()) {
      // Positions are small integers: take any integer sequence / array through Python ints.
      for (const py::handle item : positions) pos.push_back(py::cast<int32_t>(item));
      if (pos.size() != T) {
        throw py::value_error("positions: length " + std::to_string(pos.size()) +
                              " differs from x's " + std::to_string(T) + " rows");
      }
    }
    PyEncoded out;
    {
      py::gil_scoped_release nogil;
      out.e = codec_->encode(a.data(), T, pos.empty() ? nullptr : pos.data());
    }
    return out;
  }

  py::object decode(const PyEncoded& enc, const py::object& out) const {
    if (enc.e.dim != codec_->dim()) {
      throw py::value_error("encoded: dim " + std::to_string(enc.e.dim) + " differs from codec '" +
                            codec_->spec() + "' dim " + std::to_string(codec_->dim()));
    }
    float* data = nullptr;
    const auto T = static_cast<py::ssize_t>(enc.e.n_tokens), d = static_cast<py::ssize_t>(enc.e.dim);
    py::object arr;
    if (out.is_none()) {
      arr = new_float_array({T, d}, &data);
    } else {  // decode into the caller's array (e.g. a preallocated cache): float32 [T, d], C order
      if (!PyObject_CheckBuffer(out.ptr())) throw py::value_error("out: expected a writable float32 array");
      py::buffer_info info;
      try {
        info = py::reinterpret_borrow<py::buffer>(out).request(/*writable=*/true);
      } catch (const py::error_already_set&) {
        throw py::value_error("out: array is not writable");
      } catch (const py::buffer_error&) {
        throw py::value_error("out: array is not writable");
      }
      if (info.ndim != 2 || info.shape[0] != T || info.shape[1] != d || !is_native_float(info, 'f', sizeof(float)) ||
          (T > 1 && info.strides[0] != d * static_cast<py::ssize_t>(sizeof(float))) ||
          (d > 1 && info.strides[1] != static_cast<py::ssize_t>(sizeof(float)))) {
        throw py::value_error("out: expected a C-contiguous float32 array of shape (" + std::to_string(T) + ", " +
                              std::to_string(d) + ")");
      }
      data = static_cast<float*>(info.ptr);
      arr = out;
    }
    {
      py::gil_scoped_release nogil;
      codec_->decode(enc.e, data);
    }
    return arr;
  }

  tq::ByteCount byte_count(size_t n) const { return codec_->byte_count(n); }

 private:
  void check_dim(const FloatArray& a) const {
    if (a.shape(1) != codec_->dim()) {
      throw py::value_error(std::string(a.name()) + ": " + std::to_string(a.shape(1)) +
                            " columns, codec '" + codec_->spec() + "' has dim " +
                            std::to_string(codec_->dim()));
    }
  }
  std::unique_ptr<tq::Codec> codec_;
};

py::dict recon_metrics(const py::object& x, const py::object& xhat) {
  FloatArray a(x, "x", 2), b(xhat, "xhat", 2);
  b.require_same_shape(a);
  tq::metrics::ReconSummary s;
  {
    py::gil_scoped_release nogil;
    s = tq::metrics::ReconStats::of_head(a.data(), b.data(), a.shape(0), a.shape(1)).summary();
  }
  py::dict d;
  d["n_vectors"] = s.n_vectors;
  d["n_elements"] = s.n_elements;
  d["n_zero_vectors"] = s.n_zero_vectors;
  d["mse"] = s.mse;
  d["nmse"] = s.nmse_pooled;
  d["nmse_centred"] = s.nmse_centred_pooled;
  d["nmse_shift_free"] = s.nmse_shift_free_pooled;
  d["max_abs_err"] = s.max_abs_err;
  d["rel_err_p50"] = s.rel_err_p50;
  d["rel_err_p95"] = s.rel_err_p95;
  d["rel_err_p99"] = s.rel_err_p99;
  d["rel_err_max"] = s.rel_err_max;
  d["cosine_mean"] = s.cosine_mean;
  return d;
}

py::dict attention_metrics(const py::object& q, const py::object& k, const py::object& v,
                           const py::object& khat, const py::object& vhat, double scale,
                           size_t sliding_window, double softcap, size_t min_pos, size_t top_k,
                           size_t query_stride) {
  FloatArray aq(q, "q", 2), ak(k, "k", 2), akh(khat, "khat", 2);
  akh.require_same_shape(ak);
  aq.require_same_shape(ak);
  if (v.is_none() != vhat.is_none()) {
    throw py::value_error("v, vhat: give both or neither");
  }
  std::optional<FloatArray> av, avh;
  if (!v.is_none()) {
    av.emplace(v, "v", 2);
    avh.emplace(vhat, "vhat", 2);
    av->require_same_shape(ak);
    avh->require_same_shape(ak);
  }
  tq::metrics::AttnOptions opt;
  opt.scale = scale;
  opt.sliding_window = sliding_window;
  opt.softcap = softcap;
  opt.min_pos = min_pos;
  opt.top_k = top_k;
  opt.query_stride = query_stride;
  tq::metrics::AttnSummary s;
  {
    py::gil_scoped_release nogil;
    s = tq::metrics::attention_head(aq.data(), ak.data(), av ? av->data() : nullptr, akh.data(),
                                    avh ? avh->data() : nullptr, ak.shape(0), ak.shape(1), opt)
            .summary();
  }
  py::dict d;
  d["n_pos"] = s.n_pos;
  d["attn_kl"] = s.kl;
  d["attn_kl_nosink"] = s.kl_nosink;
  d["attn_top1"] = s.top1;
  d["attn_topk"] = s.topk;
  if (s.has_values) {
    d["attn_out_err"] = s.out_err;
    d["attn_out_err_mean_ratio"] = s.out_err_mean_ratio;
    d["attn_wv_err"] = s.wv_err;
    d["attn_wv_nerr"] = s.wv_nerr;
  }
  py::list bins;
  for (const auto& b : s.bins) {
    py::dict bd;
    bd["lo"] = b.lo;
    bd["hi"] = b.hi;
    bd["n"] = b.n;
    bd["kl"] = b.kl;
    bins.append(bd);
  }
  d["kl_by_position"] = bins;
  return d;
}

py::dict ip_metrics(const py::object& q, const py::object& k, const py::object& khat,
                    size_t query_stride) {
  FloatArray aq(q, "q", 2), ak(k, "k", 2), akh(khat, "khat", 2);
  akh.require_same_shape(ak);
  aq.require_same_shape(ak);
  if (query_stride == 0) throw py::value_error("query_stride: must be >= 1");
  tq::metrics::IpStats s;
  {
    py::gil_scoped_release nogil;
    s = tq::metrics::ip_stats_head(aq.data(), ak.data(), akh.data(), ak.shape(0), ak.shape(1),
                                   query_stride);
  }
  py::dict d;
  d["n_pairs"] = s.n_pairs;
  d["ip_bias"] = s.bias();
  d["ip_rms"] = s.rms();
  d["ip_mean_err"] = s.n_pairs ? s.sum_err / static_cast<double>(s.n_pairs) : 0.0;
  return d;
}

py::object read_dump(const std::string& path, int layer, const std::string& name) {
  tq::Tensor3 t;
  {
    py::gil_scoped_release nogil;
    tq::DumpReader reader(path);
    t = reader.read(layer, name);
  }
  float* data = nullptr;
  py::object arr = new_float_array({static_cast<py::ssize_t>(t.n0), static_cast<py::ssize_t>(t.n1),
                                    static_cast<py::ssize_t>(t.n2)},
                                   &data);
  if (t.size() > 0) std::memcpy(data, t.data.data(), t.size() * sizeof(float));
  return arr;
}

}  // namespace

PYBIND11_MODULE(_tq, m) {
  m.doc() = "tq: KV-cache compression codecs and metrics (C++ library bindings)";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const tq::Error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  py::class_<tq::ByteCount>(m, "ByteCount", "Bytes of an encoding split by what they carry.")
      .def_readonly("payload", &tq::ByteCount::payload)
      .def_readonly("side", &tq::ByteCount::side)
      .def_readonly("window", &tq::ByteCount::window)
      .def_property_readonly("total", &tq::ByteCount::total)
      .def("__repr__", [](const tq::ByteCount& c) {
        return "ByteCount(payload=" + std::to_string(c.payload) + ", side=" +
               std::to_string(c.side) + ", window=" + std::to_string(c.window) + ")";
      });

  py::class_<PyEncoded>(m, "Encoded", "One encoded head: bytes and their accounting.")
      .def_property_readonly("bytes",
                             [](const PyEncoded& e) {
                               return py::bytes(reinterpret_cast<const char*>(e.e.bytes.data()),
                                                e.e.bytes.size());
                             })
      .def_property_readonly("n_tokens", [](const PyEncoded& e) { return e.e.n_tokens; })
      .def_property_readonly("dim", [](const PyEncoded& e) { return e.e.dim; })
      .def_property_readonly("payload_bytes", [](const PyEncoded& e) { return e.e.count.payload; })
      .def_property_readonly("side_bytes", [](const PyEncoded& e) { return e.e.count.side; })
      .def_property_readonly("window_bytes", [](const PyEncoded& e) { return e.e.count.window; })
      .def_property_readonly("bits_per_element", &PyEncoded::bits_per_element)
      .def("__len__", [](const PyEncoded& e) { return e.e.bytes.size(); })
      .def("__repr__", [](const PyEncoded& e) {
        return "Encoded(n_tokens=" + std::to_string(e.e.n_tokens) + ", dim=" +
               std::to_string(e.e.dim) + ", bytes=" + std::to_string(e.e.bytes.size()) + ")";
      });

  py::class_<PyCodec>(m, "Codec", "A codec built from a spec string for one (dim, seed, tensor).")
      .def(py::init<const std::string&, size_t, uint64_t, const std::string&, const std::string&>(),
           py::arg("spec"), py::arg("dim"), py::arg("seed") = 0, py::arg("tensor") = "k",
           py::arg("codebook_dir") = "")
      .def_property_readonly("spec", &PyCodec::spec, "canonical spec (all parameters explicit)")
      .def_property_readonly("dim", &PyCodec::dim)
      .def_property_readonly("needs_training", &PyCodec::needs_training)
      .def("train", &PyCodec::train, py::arg("x"), "learn data-dependent state from x [n, d]")
      .def("encode", &PyCodec::encode, py::arg("x"), py::arg("positions") = py::none(),
           "encode x [T, d] (float32 used in place, float64 converted) -> Encoded")
      .def("decode", &PyCodec::decode, py::arg("encoded"), py::arg("out") = py::none(),
           "decode -> float32 array [T, d]; with out= (a writable C-contiguous float32 [T, d] array) "
           "decode into it and return it")
      .def("byte_count", &PyCodec::byte_count, py::arg("n"),
           "bytes of a hypothetical n-token encoding, without encoding")
      .def("__repr__", [](const PyCodec& c) { return "Codec('" + c.spec() + "')"; });

  m.def(
      "seed_for",
      [](uint64_t run_seed, int64_t layer, int64_t head, const std::string& tensor) {
        return tq::seed_for(run_seed, layer, head, tensor);
      },
      py::arg("run_seed"), py::arg("layer"), py::arg("head"), py::arg("tensor"),
      "seed of one (layer, head, tensor) stream, as the CLI derives it");
  m.def(
      "codec_list", [] { return tq::codec_list(); },
      "registered codecs as (name, description) pairs");
  m.def("recon_metrics", &recon_metrics, py::arg("x"), py::arg("xhat"),
        "reconstruction metrics of one head x, xhat [T, d]");
  m.def("attention_metrics", &attention_metrics, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("khat"), py::arg("vhat"), py::arg("scale"), py::arg("sliding_window") = 0,
        py::arg("softcap") = 0.0, py::arg("min_pos") = 16, py::arg("top_k") = 5,
        py::arg("query_stride") = 1,
        "attention fidelity of one query head; v and vhat may both be None");
  m.def("ip_metrics", &ip_metrics, py::arg("q"), py::arg("k"), py::arg("khat"),
        py::arg("query_stride") = 1, "inner-product fidelity of one query head");
  m.def("read_dump", &read_dump, py::arg("path"), py::arg("layer"), py::arg("name"),
        "read one tensor of a dump layer as float32 [heads, T, d]");
}
