// Kernel table selection (see kernels.h).
#include "tq/simd/kernels.h"

#include <atomic>
#include <vector>

#include <fmt/format.h>

#include "tq/core/error.h"

namespace tq::simd {

namespace {

std::atomic<int> g_override{-1};

const Kernels& table(Level level) {
  switch (level) {
    case Level::Avx512: return avx512_kernels();
    case Level::Avx2: return avx2_kernels();
    case Level::Scalar: break;
  }
  return scalar_kernels();
}

Level cap(Level level) {
  const Level detected = detected_level();
  return static_cast<int>(level) < static_cast<int>(detected) ? level : detected;
}

}  // namespace

const Kernels& kernels() {
  const int o = g_override.load(std::memory_order_relaxed);
  if (o >= 0) return table(static_cast<Level>(o));
  static const Kernels& active = table(simd_level());
  return active;
}

const Kernels& kernels_for(Level level) {
  if (static_cast<int>(level) > static_cast<int>(detected_level()))
    throw Error(fmt::format("SIMD level {} is not supported by this CPU (best: {})", level_name(level),
                            level_name(detected_level())));
  return table(level);
}

ScopedLevel::ScopedLevel(Level level) : previous_(g_override.load()) { g_override.store(static_cast<int>(cap(level))); }

ScopedLevel::~ScopedLevel() { g_override.store(previous_); }

void rht_encode_rows_composed(const Kernels& k, const float* x, size_t n, const float* signs, size_t p, float fs,
                              const float* bounds, int bits, uint8_t* out, float* norms, const float* centroids,
                              float* ips) {
  constexpr size_t kMax = 4096;
  float y_stack[kMax];
  uint8_t c_stack[kMax];
  std::vector<float> y_heap;
  std::vector<uint8_t> c_heap;
  float* y = y_stack;
  uint8_t* c = c_stack;
  if (p > kMax) {
    y_heap.resize(p);
    c_heap.resize(p);
    y = y_heap.data();
    c = c_heap.data();
  }
  const size_t row_bytes = p * static_cast<size_t>(bits) / 8;
  std::vector<float> cv(ips != nullptr ? p : 0);
  for (size_t t = 0; t < n; ++t) {
    const float m = rht_row_multiplier(k.sum_squares(x + t * p, p), norms + t);
    k.scale(x + t * p, m, y, p);
    k.mul(y, signs, y, p);
    k.fwht(y, p, fs);
    k.quantize(y, p, bounds, bits, c);
    if (ips != nullptr) {  // EDEN: <y, c> with c the centroids of the codes
      k.lookup(c, p, centroids, bits, cv.data());
      ips[t] = k.dot(y, cv.data(), p);
    }
    k.pack(c, p, bits, out + t * row_bytes);
  }
}

void rht_decode_rows_composed(const Kernels& k, const uint8_t* in, size_t n, const float* table, int bits,
                              const float* signs, size_t p, float fs, const float* sc, float* out) {
  constexpr size_t kMax = 4096;
  uint8_t c_stack[kMax];
  std::vector<uint8_t> c_heap;
  uint8_t* c = c_stack;
  if (p > kMax) {
    c_heap.resize(p);
    c = c_heap.data();
  }
  const size_t row_bytes = p * static_cast<size_t>(bits) / 8;
  for (size_t t = 0; t < n; ++t) {
    float* o = out + t * p;
    k.unpack(in + t * row_bytes, p, bits, c);
    k.lookup(c, p, table, bits, o);
    k.fwht(o, p, fs);
    k.mul(o, signs, o, p);
    k.scale(o, sc[t], o, p);
  }
}

}  // namespace tq::simd
