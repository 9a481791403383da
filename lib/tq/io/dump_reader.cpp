// DumpReader: opens a tq KV dump, validates everything that can be checked without reading the
// tensors, and then reads one layer tensor or one head at a time as fp32.
#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "tq/core/error.h"
#include "tq/core/half.h"
#include "tq/io/dump.h"
#include "tq/io/dump_schema.h"
#include "tq/io/hdf5.h"

namespace tq {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
  }
  return "unknown";
}

const LayerInfo& DumpInfo::layer(int index) const {
  for (const LayerInfo& l : layers) {
    if (l.index == index) return l;
  }
  throw Error(fmt::format("{}: layer {} is not in this dump ({} layers present)", path, index,
                          layers.size()));
}

namespace {

using dump_schema::DatasetSpec;

/// How a dataset's numbers are stored, i.e. which read path converts them to fp32.
enum class Storage {
  F32,         // any 4-byte float: HDF5 converts to native float
  F64,         // 8-byte float: read as double, narrowed here
  F16,         // 2-byte float with binary16 layout (h5py float16)
  BF16Words,   // uint16 words + attribute dtype="bfloat16"
  BF16Float,   // 2-byte float type with bfloat16 layout
};

DType reported_dtype(Storage s) {
  switch (s) {
    case Storage::F16: return DType::F16;
    case Storage::BF16Words:
    case Storage::BF16Float: return DType::BF16;
    case Storage::F32:
    case Storage::F64: break;
  }
  return DType::F32;
}

std::string shape_text(const std::vector<hsize_t>& dims) {
  return fmt::format("[{}]", fmt::join(dims, ", "));
}

int to_int(int64_t v, const std::string& file, const std::string& object, const char* name) {
  if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max()) {
    h5::fail(file, object, fmt::format("attribute '{}' = {} is out of range", name, v));
  }
  return static_cast<int>(v);
}

int required_int(hid_t obj, const char* name, const std::string& file, const std::string& object) {
  const auto v = h5::attr_int(obj, name, file, object);
  if (!v) h5::fail(file, object, fmt::format("missing attribute '{}'", name));
  return to_int(*v, file, object, name);
}

int positive_int(hid_t obj, const char* name, const std::string& file, const std::string& object) {
  const int v = required_int(obj, name, file, object);
  if (v <= 0) h5::fail(file, object, fmt::format("attribute '{}' = {} must be positive", name, v));
  return v;
}

std::optional<double> positive_double(hid_t obj, const char* name, const std::string& file,
                                      const std::string& object) {
  const auto v = h5::attr_double(obj, name, file, object);
  if (v && !(std::isfinite(*v) && *v > 0.0)) {
    h5::fail(file, object, fmt::format("attribute '{}' = {} must be a positive number", name, *v));
  }
  return v;
}

/// Classify a dataset's storage type; anything tq cannot read exactly is an error here.
Storage classify(hid_t ds, const std::string& file, const std::string& object) {
  const h5::Datatype t = h5::type_of(ds, file, object);
  const H5T_class_t cls = H5Tget_class(t.get());
  const size_t size = H5Tget_size(t.get());
  if (cls == H5T_FLOAT) {
    if (size == 4) return Storage::F32;
    if (size == 8) return Storage::F64;
    if (size == 2 && h5::is_fp16_layout(t.get())) return Storage::F16;
    if (size == 2 && h5::is_bf16_layout(t.get())) return Storage::BF16Float;
    h5::fail(file, object, fmt::format("unsupported {}-byte float type", size));
  }
  if (cls == H5T_INTEGER && size == 2 && H5Tget_sign(t.get()) == H5T_SGN_NONE) {
    const auto tag = h5::attr_string(ds, dump_schema::kDtypeAttr, file, object);
    if (!tag) {
      h5::fail(file, object,
               "uint16 dataset without attribute dtype=\"bfloat16\" "
               "(bfloat16 data must be tagged)");
    }
    if (*tag != dump_schema::kBf16Name) {
      h5::fail(file, object,
               fmt::format("uint16 dataset with dtype=\"{}\" (only \"bfloat16\" is supported)",
                           *tag));
    }
    return Storage::BF16Words;
  }
  h5::fail(file, object,
           fmt::format("unsupported dtype ({} bytes, class {}); expected float32, float16, "
                       "bfloat16 (uint16 + dtype attribute) or float64",
                       size, static_cast<int>(cls)));
}

/// Read an int32 vector dataset of length n (token ids or positions).
std::vector<int32_t> read_token_vector(hid_t file_id, const std::string& path, size_t n,
                                       const std::string& file) {
  if (!h5::exists(file_id, path) || h5::object_kind(file_id, path) != H5I_DATASET) {
    h5::fail(file, path, "missing dataset");
  }
  const h5::Dataset ds = h5::open_dataset(file_id, path, file, path);
  const auto dims = h5::shape(ds.get(), file, path);
  if (dims.size() != 1 || dims[0] != n) {
    h5::fail(file, path, fmt::format("shape {} does not match n_tokens={}", shape_text(dims), n));
  }
  if (H5Tget_class(h5::type_of(ds.get(), file, path).get()) != H5T_INTEGER) {
    h5::fail(file, path, "must be an integer dataset (int32)");
  }
  std::vector<int32_t> v(n);
  h5::read_slab(ds.get(), H5T_NATIVE_INT32, {0}, {n}, v.data(), file, path);
  return v;
}

/// Throw naming head/token/dim of the first non-finite value in `p` = heads [head0, ...).
void check_finite(const float* p, size_t n_heads, size_t n_tokens, size_t dim, size_t head0,
                  const std::string& file, const std::string& object) {
  const size_t n = n_heads * n_tokens * dim;
  // Branch-free scan first (an all-ones exponent means inf or NaN); locate only on failure.
  bool bad = false;
  for (size_t i = 0; i < n; ++i) {
    bad |= (std::bit_cast<uint32_t>(p[i]) & 0x7F800000u) == 0x7F800000u;
  }
  if (!bad) return;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(p[i])) {
      const size_t head = head0 + i / (n_tokens * dim);
      const size_t token = (i / dim) % n_tokens;
      h5::fail(file, object,
               fmt::format("non-finite value {} at head {}, token {}, dim {}", p[i], head, token,
                           i % dim));
    }
  }
}

}  // namespace

struct DumpReader::Impl {
  DumpInfo info;
  h5::File file;
  std::map<std::string, Storage> storage;  // object path -> how it is stored

  void open(const std::string& path);
  LayerInfo read_layer(int index);
  /// Read heads [head0, head0 + n_heads) of a dataset into `out` as fp32 and check finiteness.
  void read_heads(const std::string& object, size_t head0, size_t n_heads, size_t n_tokens,
                  size_t dim, float* out) const;
};

void DumpReader::Impl::open(const std::string& path) {
  info.path = path;
  file = h5::open_file(path);
  const hid_t root = file.get();
  const std::string& f = info.path;

  const auto format = h5::attr_string(root, "format", f, "/");
  if (!format) {
    h5::fail(f, "", fmt::format("not a tq KV dump (root attribute 'format' is missing; expected "
                                "format=\"{}\")",
                                kDumpFormatName));
  }
  if (*format != kDumpFormatName) {
    h5::fail(f, "", fmt::format("not a tq KV dump (format=\"{}\", expected \"{}\")", *format,
                                kDumpFormatName));
  }
  const auto version = h5::attr_int(root, "format_version", f, "/");
  if (!version) h5::fail(f, "", "missing root attribute 'format_version'");
  if (*version != kDumpFormatVersion) {
    h5::fail(f, "", fmt::format("unsupported format_version {} (this tq reads version {})",
                                *version, kDumpFormatVersion));
  }
  info.format_version = static_cast<int>(*version);

  const int n_tokens = required_int(root, "n_tokens", f, "/");
  if (n_tokens <= 0) h5::fail(f, "", fmt::format("empty dump: n_tokens = {}", n_tokens));
  info.n_tokens = n_tokens;

  auto text = [&](const char* name, const char* fallback) {
    return h5::attr_string(root, name, f, "/").value_or(fallback);
  };
  info.model_name = text("model_name", "unknown");
  info.model_source = text("model_source", "unknown");
  info.weight_precision = text("weight_precision", "unknown");
  info.creator = text("creator", "unknown");
  info.created = text("created", "");
  for (const std::string& name : h5::attr_names(root, f, "/")) {
    info.attributes[name] = h5::attr_text(root, name, f, "/");
  }

  info.token_ids = read_token_vector(root, "/tokens/ids", static_cast<size_t>(n_tokens), f);
  info.positions = read_token_vector(root, "/tokens/positions", static_cast<size_t>(n_tokens), f);
  for (size_t t = 0; t < info.positions.size(); ++t) {
    if (info.positions[t] < 0) {
      h5::fail(f, "/tokens/positions", fmt::format("negative position {} at token {}",
                                                   info.positions[t], t));
    }
  }

  if (!h5::exists(root, "/layers") || h5::object_kind(root, "/layers") != H5I_GROUP) {
    h5::fail(f, "/layers", "missing group");
  }
  std::vector<int> indices;
  {
    const h5::Group layers = h5::open_group(root, "/layers", f, "/layers");
    for (const std::string& name : h5::members(layers.get(), f, "/layers")) {
      int index = -1;
      auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
      const bool digits =
          !name.empty() && name.size() <= 9 && std::all_of(name.begin(), name.end(), is_digit);
      if (digits) index = std::stoi(name);
      if (!digits || std::to_string(index) != name) {
        h5::fail(f, "/layers/" + name, "layer group names must be layer numbers (0, 1, ...)");
      }
      indices.push_back(index);
    }
  }
  if (indices.empty()) h5::fail(f, "/layers", "no layers in the dump");
  std::sort(indices.begin(), indices.end());
  const auto n_layers = h5::attr_int(root, "n_layers", f, "/");
  info.n_layers = n_layers ? to_int(*n_layers, f, "/", "n_layers") : indices.back() + 1;
  if (info.n_layers <= indices.back()) {
    h5::fail(f, "", fmt::format("n_layers={} but /layers/{} exists", info.n_layers,
                                indices.back()));
  }
  for (int index : indices) info.layers.push_back(read_layer(index));
}

LayerInfo DumpReader::Impl::read_layer(int index) {
  const std::string& f = info.path;
  const std::string lpath = dump_schema::layer_path(index);
  if (h5::object_kind(file.get(), lpath) != H5I_GROUP) h5::fail(f, lpath, "is not a group");
  const h5::Group g = h5::open_group(file.get(), lpath, f, lpath);
  const hid_t id = g.get();

  LayerInfo L;
  L.index = index;
  L.n_heads = positive_int(id, "n_heads", f, lpath);
  L.n_kv_heads = positive_int(id, "n_kv_heads", f, lpath);
  L.head_dim = positive_int(id, "head_dim", f, lpath);
  if (L.n_heads % L.n_kv_heads != 0) {
    h5::fail(f, lpath, fmt::format("n_heads={} is not a multiple of n_kv_heads={}", L.n_heads,
                                   L.n_kv_heads));
  }
  L.attn_scale = positive_double(id, "attn_scale", f, lpath)
                     .value_or(1.0 / std::sqrt(static_cast<double>(L.head_dim)));
  L.rope_theta = positive_double(id, "rope_theta", f, lpath).value_or(L.rope_theta);
  L.rope_pairing = h5::attr_string(id, "rope_pairing", f, lpath).value_or(L.rope_pairing);
  if (L.rope_pairing != "interleaved" && L.rope_pairing != "half") {
    h5::fail(f, lpath, fmt::format("rope_pairing=\"{}\" (expected \"interleaved\" or \"half\")",
                                   L.rope_pairing));
  }
  L.rotary_dim = h5::attr_int(id, "rotary_dim", f, lpath)
                     ? required_int(id, "rotary_dim", f, lpath)
                     : L.head_dim;
  if (L.rotary_dim < 0 || L.rotary_dim > L.head_dim || L.rotary_dim % 2 != 0) {
    h5::fail(f, lpath, fmt::format("rotary_dim={} must be even and in [0, head_dim={}]",
                                   L.rotary_dim, L.head_dim));
  }
  L.rope_scaling = h5::attr_string(id, "rope_scaling", f, lpath).value_or(L.rope_scaling);
  if (h5::has_attr(id, "sliding_window")) {
    L.sliding_window = positive_int(id, "sliding_window", f, lpath);
  }
  L.logit_softcap = positive_double(id, "logit_softcap", f, lpath);

  const size_t T = static_cast<size_t>(info.n_tokens);
  const size_t d = static_cast<size_t>(L.head_dim);
  for (const DatasetSpec& spec : dump_schema::kLayerDatasets) {
    const std::string obj = lpath + "/" + spec.name;
    if (!h5::exists(id, spec.name)) {
      if (spec.required) h5::fail(f, obj, "missing dataset");
      continue;
    }
    if (h5::object_kind(id, spec.name) != H5I_DATASET) h5::fail(f, obj, "is not a dataset");
    const h5::Dataset ds = h5::open_dataset(id, spec.name, f, obj);
    const auto dims = h5::shape(ds.get(), f, obj);
    const int heads = spec.query_heads ? L.n_heads : L.n_kv_heads;
    const char* heads_name = spec.query_heads ? "n_heads" : "n_kv_heads";
    if (dims.size() != 3) {
      h5::fail(f, obj, fmt::format("shape {} has rank {}, expected [{}, n_tokens, head_dim]",
                                   shape_text(dims), dims.size(), heads_name));
    }
    if (dims[0] == 0 || dims[1] == 0 || dims[2] == 0) {
      h5::fail(f, obj, fmt::format("empty dataset (shape {})", shape_text(dims)));
    }
    if (dims[0] != static_cast<hsize_t>(heads) || dims[1] != T || dims[2] != d) {
      h5::fail(f, obj, fmt::format("shape {} does not match {}={}, n_tokens={}, head_dim={}",
                                   shape_text(dims), heads_name, heads, T, d));
    }
    const Storage s = classify(ds.get(), f, obj);
    storage[obj] = s;
    L.datasets[spec.name] = reported_dtype(s);
  }
  return L;
}

void DumpReader::Impl::read_heads(const std::string& object, size_t head0, size_t n_heads,
                                  size_t n_tokens, size_t dim, float* out) const {
  const std::string& f = info.path;
  const h5::Dataset ds = h5::open_dataset(file.get(), object, f, object);
  const std::vector<hsize_t> start{head0, 0, 0};
  const std::vector<hsize_t> count{n_heads, n_tokens, dim};
  const size_t n = n_heads * n_tokens * dim;
  switch (storage.at(object)) {
    case Storage::F32:
      h5::read_slab(ds.get(), H5T_NATIVE_FLOAT, start, count, out, f, object);
      break;
    case Storage::F64: {
      std::vector<double> buf(n);
      h5::read_slab(ds.get(), H5T_NATIVE_DOUBLE, start, count, buf.data(), f, object);
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(buf[i]);  // overflow -> inf
      break;
    }
    case Storage::F16:
    case Storage::BF16Float: {
      // Read the raw 16-bit words: the memory type is the file's own float type in native byte
      // order, so HDF5 copies (or byte-swaps) bits instead of converting values. Then decode the
      // whole buffer at once.
      const h5::Datatype mem = h5::type_of(ds.get(), f, object);
      H5Tset_order(mem.get(), H5Tget_order(H5T_NATIVE_UINT16));
      std::vector<uint16_t> buf(n);
      h5::read_slab(ds.get(), mem.get(), start, count, buf.data(), f, object);
      if (storage.at(object) == Storage::F16) {
        fp16_to_float(buf.data(), out, n);
      } else {
        bf16_to_float(buf.data(), out, n);
      }
      break;
    }
    case Storage::BF16Words: {
      std::vector<uint16_t> buf(n);
      h5::read_slab(ds.get(), H5T_NATIVE_UINT16, start, count, buf.data(), f, object);
      bf16_to_float(buf.data(), out, n);
      break;
    }
  }
  check_finite(out, n_heads, n_tokens, dim, head0, f, object);
}

DumpReader::DumpReader(const std::string& path) : impl_(std::make_unique<Impl>()) {
  impl_->open(path);
}
DumpReader::~DumpReader() = default;
DumpReader::DumpReader(DumpReader&&) noexcept = default;
DumpReader& DumpReader::operator=(DumpReader&&) noexcept = default;

const DumpInfo& DumpReader::info() const { return impl_->info; }

namespace {
struct Target {
  std::string object;
  size_t heads, tokens, dim;
};
Target locate(const DumpInfo& info, int layer, const std::string& name) {
  const LayerInfo& L = info.layer(layer);
  const std::string object = dump_schema::layer_path(layer) + "/" + name;
  if (!L.has(name)) {
    std::vector<std::string> have;
    for (const auto& [n, t] : L.datasets) have.push_back(n);
    h5::fail(info.path, object,
             fmt::format("no such dataset (layer {} has: {})", layer, fmt::join(have, ", ")));
  }
  const DatasetSpec* spec = dump_schema::find_dataset(name);
  const int heads = spec != nullptr && spec->query_heads ? L.n_heads : L.n_kv_heads;
  return {object, static_cast<size_t>(heads), static_cast<size_t>(info.n_tokens),
          static_cast<size_t>(L.head_dim)};
}
}  // namespace

Tensor3 DumpReader::read(int layer, const std::string& name) const {
  const Target t = locate(impl_->info, layer, name);
  Tensor3 out;
  out.n0 = t.heads;
  out.n1 = t.tokens;
  out.n2 = t.dim;
  out.data.resize(out.size());
  impl_->read_heads(t.object, 0, t.heads, t.tokens, t.dim, out.data.data());
  return out;
}

std::vector<float> DumpReader::read_head(int layer, const std::string& name, int head) const {
  const Target t = locate(impl_->info, layer, name);
  if (head < 0 || static_cast<size_t>(head) >= t.heads) {
    h5::fail(impl_->info.path, t.object,
             fmt::format("head {} out of range (dataset has {} heads)", head, t.heads));
  }
  std::vector<float> out(t.tokens * t.dim);
  impl_->read_heads(t.object, static_cast<size_t>(head), 1, t.tokens, t.dim, out.data());
  return out;
}

}  // namespace tq
