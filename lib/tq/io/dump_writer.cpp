// DumpWriter: writes a tq KV dump atomically (temporary file in the same directory, renamed
// into place by close()).
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <limits>
#include <set>
#include <system_error>
#include <unistd.h>

#include "tq/core/error.h"
#include "tq/core/half.h"
#include "tq/io/dump.h"
#include "tq/io/dump_schema.h"
#include "tq/io/hdf5.h"

namespace tq {

namespace {

namespace fs = std::filesystem;
using dump_schema::DatasetSpec;

/// "<dir>/.<name>.tmp-<pid>-<n>": same directory, so the final rename cannot cross devices.
std::string temp_path_for(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  const fs::path p(path);
  const std::string name = fmt::format(".{}.tmp-{}-{}", p.filename().string(),
                                       static_cast<long>(::getpid()), counter.fetch_add(1));
  return (p.parent_path() / name).string();
}

std::string utc_now_iso() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

struct DumpWriter::Impl {
  std::string path;       // final destination
  std::string temp_path;  // where data goes until close()
  DumpMeta meta;
  DType dtype = DType::F32;
  int deflate = 0;
  h5::File file;
  h5::Group layers;
  h5::Datatype fp16_type;
  std::set<int> written;
  bool closed = false;

  hid_t file_type() const {
    switch (dtype) {
      case DType::F16: return fp16_type.get();
      case DType::BF16: return H5T_STD_U16LE;
      case DType::F32: break;
    }
    return H5T_IEEE_F32LE;
  }
  /// The error location for messages: the destination path (the temp file is an artefact).
  const std::string& where() const { return path; }

  void write_tensor(hid_t group, const std::string& name, const std::string& object,
                    const Tensor3& t);
  void discard() {
    layers.reset();
    file.reset();
    std::error_code ec;
    fs::remove(temp_path, ec);
  }
};

void DumpWriter::Impl::write_tensor(hid_t group, const std::string& name,
                                    const std::string& object, const Tensor3& t) {
  const size_t per_head = t.n1 * t.n2;
  const size_t elem = dtype == DType::F32 ? 4 : 2;
  // Chunks of whole heads' token ranges: (1, tokens_per_chunk, head_dim), at most kMaxChunkBytes.
  const size_t rows = std::max<size_t>(1, dump_schema::kMaxChunkBytes / (t.n2 * elem));
  h5::Layout layout;
  layout.chunk = {1, std::min(t.n1, rows), t.n2};
  layout.deflate = deflate;
  const h5::Dataset ds =
      h5::create_dataset(group, name, file_type(), {t.n0, t.n1, t.n2}, layout, where(), object);
  if (dtype == DType::BF16) {
    h5::write_attr(ds.get(), dump_schema::kDtypeAttr, std::string(dump_schema::kBf16Name),
                   where(), object);
  }
  std::vector<uint16_t> words(dtype == DType::F32 ? 0 : per_head);
  for (size_t h = 0; h < t.n0; ++h) {
    const float* src = t.at(h);
    const std::vector<hsize_t> start{h, 0, 0}, count{1, t.n1, t.n2};
    switch (dtype) {
      case DType::F32:
        h5::write_slab(ds.get(), H5T_NATIVE_FLOAT, start, count, src, where(), object);
        continue;
      case DType::F16:
        float_to_fp16(src, words.data(), per_head);
        break;
      case DType::BF16:
        for (size_t i = 0; i < per_head; ++i) words[i] = float_to_bf16(src[i]);
        break;
    }
    // fp16 words are written with the fp16 type itself as memory type: bits are copied as-is.
    const hid_t mem = dtype == DType::F16 ? fp16_type.get() : H5T_NATIVE_UINT16;
    h5::write_slab(ds.get(), mem, start, count, words.data(), where(), object);
  }
}

DumpWriter::DumpWriter(const std::string& path, const DumpMeta& meta, DType dtype,
                       int deflate_level)
    : impl_(std::make_unique<Impl>()) {
  Impl& w = *impl_;
  w.path = path;
  w.meta = meta;
  w.dtype = dtype;
  w.deflate = deflate_level;
  if (deflate_level < 0 || deflate_level > 9) {
    throw Error(fmt::format("{}: deflate level {} must be in 0..9", path, deflate_level));
  }
  const size_t n_tokens = meta.token_ids.size();
  if (n_tokens == 0) throw Error(fmt::format("{}: cannot write a dump with 0 tokens", path));
  if (n_tokens > static_cast<size_t>(std::numeric_limits<int>::max())) {
    throw Error(fmt::format("{}: too many tokens ({})", path, n_tokens));
  }
  if (!meta.positions.empty() && meta.positions.size() != n_tokens) {
    throw Error(fmt::format("{}: {} positions for {} tokens", path, meta.positions.size(),
                            n_tokens));
  }
  if (meta.n_layers < 0) throw Error(fmt::format("{}: n_layers={} < 0", path, meta.n_layers));
  if (dtype == DType::F16) w.fp16_type = h5::make_fp16_type();

  w.temp_path = temp_path_for(path);
  try {
    w.file = h5::create_file(w.temp_path);
  } catch (const Error&) {
    throw Error(fmt::format("{}: cannot create (temporary file {} in the same directory)", path,
                            w.temp_path));
  }
  try {
    const hid_t root = w.file.get();
    const std::string& f = w.where();
    h5::write_attr(root, "format", std::string(kDumpFormatName), f, "/");
    h5::write_attr(root, "format_version", int64_t{kDumpFormatVersion}, f, "/");
    h5::write_attr(root, "model_name", meta.model_name, f, "/");
    h5::write_attr(root, "model_source", meta.model_source, f, "/");
    h5::write_attr(root, "weight_precision", meta.weight_precision, f, "/");
    h5::write_attr(root, "n_tokens", static_cast<int64_t>(n_tokens), f, "/");
    h5::write_attr(root, "creator", meta.creator, f, "/");
    h5::write_attr(root, "created", meta.created.empty() ? utc_now_iso() : meta.created, f, "/");
    for (const auto& [k, v] : meta.extra_attributes) {
      if (k == "format" || k == "format_version" || k == "n_tokens" || k == "n_layers") {
        throw Error(
            fmt::format("{}: extra attribute '{}' would override a format attribute", f, k));
      }
      h5::write_attr(root, k, v, f, "/");
    }

    const h5::Group tokens = h5::create_group(root, "tokens", f, "/tokens");
    std::vector<int32_t> positions = meta.positions;
    if (positions.empty()) {
      positions.resize(n_tokens);
      for (size_t t = 0; t < n_tokens; ++t) positions[t] = static_cast<int32_t>(t);
    }
    for (const auto& [name, values] :
         {std::pair<const char*, const std::vector<int32_t>*>{"ids", &meta.token_ids},
          {"positions", &positions}}) {
      const std::string obj = std::string("/tokens/") + name;
      const h5::Dataset ds =
          h5::create_dataset(tokens.get(), name, H5T_STD_I32LE, {n_tokens}, {}, f, obj);
      h5::write_slab(ds.get(), H5T_NATIVE_INT32, {0}, {n_tokens}, values->data(), f, obj);
    }
    w.layers = h5::create_group(root, "layers", f, "/layers");
  } catch (...) {
    w.discard();
    throw;
  }
}

DumpWriter::~DumpWriter() {
  if (impl_ && !impl_->closed) impl_->discard();
}

void DumpWriter::write_layer(const LayerInfo& L,
                             const std::map<std::string, const Tensor3*>& tensors) {
  Impl& w = *impl_;
  const std::string& f = w.where();
  const std::string lpath = dump_schema::layer_path(L.index);
  if (w.closed) throw Error(fmt::format("{}: write_layer after close()", f));
  if (L.index < 0 || (w.meta.n_layers > 0 && L.index >= w.meta.n_layers)) {
    h5::fail(f, lpath, fmt::format("layer index {} outside [0, n_layers={})", L.index,
                                   w.meta.n_layers));
  }
  if (w.written.count(L.index) != 0) h5::fail(f, lpath, "layer written twice");
  if (L.n_heads <= 0 || L.n_kv_heads <= 0 || L.head_dim <= 0) {
    h5::fail(f, lpath, fmt::format("n_heads={}, n_kv_heads={}, head_dim={} must be positive",
                                   L.n_heads, L.n_kv_heads, L.head_dim));
  }
  if (L.n_heads % L.n_kv_heads != 0) {
    h5::fail(f, lpath, fmt::format("n_heads={} is not a multiple of n_kv_heads={}", L.n_heads,
                                   L.n_kv_heads));
  }
  if (L.rope_pairing != "interleaved" && L.rope_pairing != "half") {
    h5::fail(f, lpath, fmt::format("rope_pairing=\"{}\" (expected \"interleaved\" or \"half\")",
                                   L.rope_pairing));
  }
  const int rotary_dim = L.rotary_dim > 0 ? L.rotary_dim : L.head_dim;
  if (rotary_dim > L.head_dim || rotary_dim % 2 != 0) {
    h5::fail(f, lpath, fmt::format("rotary_dim={} must be even and at most head_dim={}",
                                   rotary_dim, L.head_dim));
  }

  // Validate every tensor before writing anything, so a bad call leaves the file unchanged.
  const size_t T = w.meta.token_ids.size();
  const size_t d = static_cast<size_t>(L.head_dim);
  for (const auto& [name, t] : tensors) {
    const std::string obj = lpath + "/" + name;
    const DatasetSpec* spec = dump_schema::find_dataset(name);
    if (spec == nullptr) h5::fail(f, obj, "unknown dataset name");
    if (t == nullptr) h5::fail(f, obj, "null tensor");
    const size_t heads = static_cast<size_t>(spec->query_heads ? L.n_heads : L.n_kv_heads);
    if (t->n0 != heads || t->n1 != T || t->n2 != d || t->data.size() != t->size()) {
      h5::fail(f, obj, fmt::format("shape [{}, {}, {}] ({} values) does not match {}={}, "
                                   "n_tokens={}, head_dim={}",
                                   t->n0, t->n1, t->n2, t->data.size(),
                                   spec->query_heads ? "n_heads" : "n_kv_heads", heads, T, d));
    }
    // Values the file cannot hold (non-finite, or beyond the fp16 range) would make a dump the
    // reader rejects: refuse them here, naming the element.
    const float limit = w.dtype == DType::F16 ? kFp16Max : std::numeric_limits<float>::max();
    for (size_t i = 0; i < t->data.size(); ++i) {
      const float x = t->data[i];
      if (!(std::fabs(x) <= limit) ||
          (w.dtype == DType::BF16 && !std::isfinite(bf16_to_float(float_to_bf16(x))))) {
        h5::fail(f, obj, fmt::format("value {} at head {}, token {}, dim {} is not representable "
                                     "as finite {}",
                                     x, i / (T * d), (i / d) % T, i % d, dtype_name(w.dtype)));
      }
    }
  }
  for (const DatasetSpec& spec : dump_schema::kLayerDatasets) {
    if (spec.required && tensors.count(spec.name) == 0) {
      h5::fail(f, lpath + "/" + spec.name, "missing required tensor");
    }
  }

  const h5::Group g =
      h5::create_group(w.layers.get(), std::to_string(L.index), f, lpath);
  const hid_t id = g.get();
  h5::write_attr(id, "n_heads", int64_t{L.n_heads}, f, lpath);
  h5::write_attr(id, "n_kv_heads", int64_t{L.n_kv_heads}, f, lpath);
  h5::write_attr(id, "head_dim", int64_t{L.head_dim}, f, lpath);
  const double scale =
      L.attn_scale > 0.0 ? L.attn_scale : 1.0 / std::sqrt(static_cast<double>(L.head_dim));
  h5::write_attr(id, "attn_scale", scale, f, lpath);
  h5::write_attr(id, "rope_theta", L.rope_theta, f, lpath);
  h5::write_attr(id, "rope_pairing", L.rope_pairing, f, lpath);
  h5::write_attr(id, "rotary_dim", int64_t{rotary_dim}, f, lpath);
  h5::write_attr(id, "rope_scaling", L.rope_scaling, f, lpath);
  if (L.sliding_window) h5::write_attr(id, "sliding_window", int64_t{*L.sliding_window}, f, lpath);
  if (L.logit_softcap) h5::write_attr(id, "logit_softcap", *L.logit_softcap, f, lpath);
  for (const auto& [name, t] : tensors) w.write_tensor(id, name, lpath + "/" + name, *t);
  w.written.insert(L.index);
}

void DumpWriter::close() {
  Impl& w = *impl_;
  if (w.closed) return;
  const std::string& f = w.where();
  try {
    if (w.written.empty()) throw Error(fmt::format("{}: no layers written", f));
    const int n_layers = w.meta.n_layers > 0 ? w.meta.n_layers : *w.written.rbegin() + 1;
    h5::write_attr(w.file.get(), "n_layers", int64_t{n_layers}, f, "/");
    w.layers.reset();
    if (H5Fflush(w.file.get(), H5F_SCOPE_GLOBAL) < 0) h5::fail_hdf5(f, "", "cannot flush");
    if (!w.file.close()) h5::fail_hdf5(f, "", "cannot close");
    std::error_code ec;
    fs::rename(w.temp_path, w.path, ec);
    if (ec) throw Error(fmt::format("{}: cannot rename {} into place: {}", f, w.temp_path,
                                    ec.message()));
  } catch (...) {
    w.discard();
    w.closed = true;
    throw;
  }
  w.closed = true;
}

}  // namespace tq
