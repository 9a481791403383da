#pragma once
// Helpers for the lib/tq/io tests: a self-deleting temp directory, a small reference dump, and
// raw-HDF5 edits that break a valid dump in one specific way.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "tq/core/error.h"
#include "tq/core/half.h"
#include "tq/core/rng.h"
#include "tq/io/dump.h"
#include "tq/io/hdf5.h"

namespace tq::test {

namespace fs = std::filesystem;

/// A fresh directory under the system temp dir, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    dir_ = fs::temp_directory_path() /
           ("tq-io-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (dir_ / name).string(); }
  const fs::path& path() const { return dir_; }
  /// Number of entries (files, temp files) in the directory.
  size_t entries() const {
    return static_cast<size_t>(
        std::distance(fs::directory_iterator(dir_), fs::directory_iterator{}));
  }

 private:
  fs::path dir_;
};

/// Gaussian test tensor [n0, n1, n2] with a per-tensor seed (scale keeps values inside fp16).
inline Tensor3 random_tensor(size_t n0, size_t n1, size_t n2, uint64_t seed, float scale = 3.0f) {
  Tensor3 t;
  t.n0 = n0;
  t.n1 = n1;
  t.n2 = n2;
  t.data.resize(t.size());
  Rng rng(seed);
  for (float& x : t.data) x = scale * static_cast<float>(rng.gaussian());
  return t;
}

/// The value a float becomes after storage in `dtype` (what the reader must return).
inline float stored_value(float x, DType dtype) {
  switch (dtype) {
    case DType::F16: return fp16_to_float(float_to_fp16(x));
    case DType::BF16: return bf16_to_float(float_to_bf16(x));
    case DType::F32: break;
  }
  return x;
}

/// The reference dump: 7 tokens, layers 0 and 2 (layer 1 absent), n_layers = 3.
///   layer 0: n_heads 4, n_kv_heads 2, head_dim 8, datasets k, v, q, k_pre, grad2_k, grad2_v
///   layer 2: n_heads 2, n_kv_heads 2, head_dim 16, datasets k, v; sliding window, softcap
/// Layer 0's k also holds awkward values (signed zero, fp16 max / subnormal, rounding ties).
struct RefDump {
  static constexpr size_t kTokens = 7;
  DumpMeta meta;
  LayerInfo l0, l2;
  std::map<std::string, Tensor3> t0, t2;

  RefDump() {
    meta.model_name = "toy";
    meta.model_source = "unit-test";
    meta.weight_precision = "bf16";
    meta.created = "2024-01-02T03:04:05Z";
    meta.n_layers = 3;
    meta.token_ids = {1, 15043, 29892, 3186, 29991, 13, 2};
    meta.positions = {0, 1, 2, 3, 4, 5, 6};
    meta.extra_attributes["prompt_source"] = "unit test";

    l0.index = 0;
    l0.n_heads = 4;
    l0.n_kv_heads = 2;
    l0.head_dim = 8;
    l0.rope_theta = 500000.0;
    l0.rope_pairing = "half";
    t0["k"] = random_tensor(2, kTokens, 8, 11);
    t0["v"] = random_tensor(2, kTokens, 8, 12);
    t0["q"] = random_tensor(4, kTokens, 8, 13);
    t0["k_pre"] = random_tensor(2, kTokens, 8, 14);
    t0["grad2_k"] = random_tensor(2, kTokens, 8, 15, 1e-3f);
    t0["grad2_v"] = random_tensor(2, kTokens, 8, 16, 1e-3f);
    float* k = t0["k"].data.data();
    k[0] = -0.0f;
    k[1] = 65504.0f;                 // fp16 max
    k[2] = 0x1.0p-24f;               // smallest fp16 subnormal
    k[3] = 1.0f + 0x1.0p-11f;        // fp16 tie -> 1.0
    k[4] = 1.0f + 0x1.0p-8f;         // bf16 tie -> 1.0
    k[5] = 3.0e-7f;                  // fp16 subnormal range, not exact

    l2.index = 2;
    l2.n_heads = 2;
    l2.n_kv_heads = 2;
    l2.head_dim = 16;
    l2.attn_scale = 0.125;
    l2.sliding_window = 4096;
    l2.logit_softcap = 50.0;
    t2["k"] = random_tensor(2, kTokens, 16, 21);
    t2["v"] = random_tensor(2, kTokens, 16, 22);
  }

  static std::map<std::string, const Tensor3*> ptrs(const std::map<std::string, Tensor3>& m) {
    std::map<std::string, const Tensor3*> p;
    for (const auto& [name, t] : m) p[name] = &t;
    return p;
  }

  void write(const std::string& path, DType dtype, int deflate = 0) const {
    DumpWriter w(path, meta, dtype, deflate);
    w.write_layer(l0, ptrs(t0));
    w.write_layer(l2, ptrs(t2));
    w.close();
  }
};

/// Run `fn`, which must throw tq::Error; return its message (and check it is one line).
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find('\n') == std::string::npos);
    return msg;
  }
  FAIL("expected tq::Error");
  return {};
}

/// Open a dump for editing and hand the file id to `edit`.
inline void edit(const std::string& path, const std::function<void(hid_t)>& fn) {
  h5::File f = h5::open_file(path, /*writable=*/true);
  fn(f.get());
  REQUIRE(f.close());
}

/// Replace dataset `object` by a float32 one of shape `dims` filled with `value`.
inline void replace_dataset(hid_t file, const std::string& object, std::vector<hsize_t> dims,
                            hid_t type = H5T_IEEE_F32LE, float value = 0.5f) {
  REQUIRE(H5Ldelete(file, object.c_str(), H5P_DEFAULT) >= 0);
  h5::Dataset ds = h5::create_dataset(file, object, type, dims, {}, "test", object);
  size_t n = 1;
  for (hsize_t d : dims) n *= d;
  if (n == 0) return;
  if (H5Tget_class(type) == H5T_INTEGER) {
    std::vector<int32_t> buf(n, 1);
    h5::write_slab(ds.get(), H5T_NATIVE_INT32, std::vector<hsize_t>(dims.size(), 0), dims,
                   buf.data(), "test", object);
  } else {
    std::vector<float> buf(n, value);
    h5::write_slab(ds.get(), H5T_NATIVE_FLOAT, std::vector<hsize_t>(dims.size(), 0), dims,
                   buf.data(), "test", object);
  }
}

inline bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace tq::test
