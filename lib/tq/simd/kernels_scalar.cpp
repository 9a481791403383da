// Scalar kernels: the portable reference every SIMD table must reproduce bit for bit (see
// kernels.h). Compiled for the baseline target with -ffp-contract=off.
#include <cmath>
#include <cstring>

#include "tq/core/half.h"
#include "tq/simd/kernels.h"

namespace tq::simd {

namespace {

constexpr size_t kLanes = 16;  // the canonical reduction width

float fold16(float* acc) {
  for (size_t w = kLanes / 2; w > 0; w /= 2)
    for (size_t j = 0; j < w; ++j) acc[j] += acc[j + w];
  return acc[0];
}

float sum_squares(const float* x, size_t n) {
  float acc[kLanes] = {};
  for (size_t i = 0; i < n; ++i) acc[i % kLanes] += x[i] * x[i];
  return fold16(acc);
}

float dot(const float* a, const float* b, size_t n) {
  float acc[kLanes] = {};
  for (size_t i = 0; i < n; ++i) acc[i % kLanes] += a[i] * b[i];
  return fold16(acc);
}

void scale(const float* x, float s, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = x[i] * s;
}

void mul(const float* a, const float* b, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = a[i] * b[i];
}

void fwht(float* x, size_t p, float s) {
  for (size_t h = 1; h < p; h *= 2) {
    for (size_t i = 0; i < p; i += 2 * h) {
      for (size_t j = i; j < i + h; ++j) {
        const float a = x[j];
        const float b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
  for (size_t i = 0; i < p; ++i) x[i] *= s;
}

void matmul_rows(const float* in, float* out, size_t n, const float* m, size_t d) {
  constexpr size_t kBlockRows = 4;
  float stack_acc[kBlockRows * 256];
  float* heap_acc = nullptr;
  float* acc = stack_acc;
  if (d > 256) acc = heap_acc = new float[kBlockRows * d];
  for (size_t t0 = 0; t0 < n; t0 += kBlockRows) {
    const size_t rows = n - t0 < kBlockRows ? n - t0 : kBlockRows;
    for (size_t j = 0; j < rows * d; ++j) acc[j] = 0.0f;
    for (size_t k = 0; k < d; ++k) {
      const float* mk = m + k * d;
      for (size_t r = 0; r < rows; ++r) {
        const float xk = in[(t0 + r) * d + k];
        float* a = acc + r * d;
        for (size_t j = 0; j < d; ++j) a[j] += xk * mk[j];
      }
    }
    // written only after the whole block was read, so in == out is safe
    std::memcpy(out + t0 * d, acc, rows * d * sizeof(float));
  }
  delete[] heap_acc;
}

void quantize(const float* x, size_t n, const float* b, int bits, uint8_t* codes) {
  const size_t k = size_t{1} << bits;
  for (size_t i = 0; i < n; ++i) {
    const float v = x[i];
    size_t idx = 0;
    for (size_t step = k / 2; step > 0; step /= 2) idx += (v > b[idx + step - 1]) ? step : 0;
    codes[i] = static_cast<uint8_t>(idx);
  }
}

void lookup(const uint8_t* codes, size_t n, const float* table, int bits, float* out) {
  (void)bits;
  for (size_t i = 0; i < n; ++i) out[i] = table[codes[i]];
}

void pack(const uint8_t* codes, size_t n, int bits, uint8_t* out) {
  if (n == 0) return;
  if (bits == 8) {
    std::memcpy(out, codes, n);
    return;
  }
  const auto mask = static_cast<uint64_t>((1u << bits) - 1u);
  uint64_t acc = 0;  // pending bits, LSB first
  int have = 0;      // number of pending bits (< 8 between codes)
  size_t o = 0;
  for (size_t i = 0; i < n; ++i) {
    acc |= (codes[i] & mask) << have;
    have += bits;
    while (have >= 8) {
      out[o++] = static_cast<uint8_t>(acc);
      acc >>= 8;
      have -= 8;
    }
  }
  if (have > 0) out[o] = static_cast<uint8_t>(acc);
}

void unpack(const uint8_t* in, size_t n, int bits, uint8_t* codes) {
  if (n == 0) return;
  if (bits == 8) {
    std::memcpy(codes, in, n);
    return;
  }
  const auto mask = static_cast<uint64_t>((1u << bits) - 1u);
  uint64_t acc = 0;
  int have = 0;
  size_t pos = 0;
  for (size_t i = 0; i < n; ++i) {
    while (have < bits) {
      acc |= static_cast<uint64_t>(in[pos++]) << have;
      have += 8;
    }
    codes[i] = static_cast<uint8_t>(acc & mask);
    acc >>= bits;
    have -= bits;
  }
}

void f32_to_f16(const float* in, uint16_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = float_to_fp16(in[i]);
}

void f16_to_f32(const uint16_t* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = fp16_to_float(in[i]);
}

// ---- ggml block formats (semantics documented in lib/tq/codec/block_formats.cpp) -------------

/// fp32 -> fp16 saturating at +-65504 (as bytes::put_fp16), little endian.
void put_scale(uint8_t* p, float v) {
  if (v > kFp16Max) v = kFp16Max;
  if (v < -kFp16Max) v = -kFp16Max;
  const uint16_t h = float_to_fp16(v);
  p[0] = static_cast<uint8_t>(h & 0xFFu);
  p[1] = static_cast<uint8_t>(h >> 8);
}

float get_scale(const uint8_t* p) { return fp16_to_float(static_cast<uint16_t>(p[0] | (p[1] << 8))); }

int clamp_trunc(float v, int lo, int hi) {
  if (!(v > static_cast<float>(lo))) return lo;
  if (v >= static_cast<float>(hi)) return hi;
  return static_cast<int>(v);
}

void q8_0_encode(const float* x, size_t n_blocks, uint8_t* out) {
  for (size_t blk = 0; blk < n_blocks; ++blk, x += kQBlock, out += kQ8_0BlockBytes) {
    float amax = 0.0f;
    for (size_t j = 0; j < kQBlock; ++j) {
      const float a = std::fabs(x[j]);
      amax = amax < a ? a : amax;
    }
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    put_scale(out, d);
    for (size_t j = 0; j < kQBlock; ++j) {
      const int q = clamp_trunc(std::round(x[j] * id), -127, 127);  // round half away from 0
      out[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(q));
    }
  }
}

void q8_0_decode(const uint8_t* in, size_t n_blocks, float* out, bool /*stream*/) {
  for (size_t blk = 0; blk < n_blocks; ++blk, in += kQ8_0BlockBytes, out += kQBlock) {
    const float d = get_scale(in);
    for (size_t j = 0; j < kQBlock; ++j) out[j] = static_cast<float>(static_cast<int8_t>(in[2 + j])) * d;
  }
}

void q4_0_encode(const float* x, size_t n_blocks, uint8_t* out) {
  for (size_t blk = 0; blk < n_blocks; ++blk, x += kQBlock, out += kQ4_0BlockBytes) {
    float amax = 0.0f, max = 0.0f;  // max: the element of largest magnitude (first one on ties)
    for (size_t j = 0; j < kQBlock; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    put_scale(out, d);
    uint8_t codes[kQBlock];
    for (size_t j = 0; j < kQBlock; ++j) codes[j] = static_cast<uint8_t>(clamp_trunc(x[j] * id + 8.5f, 0, 15));
    for (size_t j = 0; j < kQBlock / 2; ++j)
      out[2 + j] = static_cast<uint8_t>(codes[j] | (codes[j + kQBlock / 2] << 4));
  }
}

void q4_0_decode(const uint8_t* in, size_t n_blocks, float* out, bool /*stream*/) {
  for (size_t blk = 0; blk < n_blocks; ++blk, in += kQ4_0BlockBytes, out += kQBlock) {
    const float d = get_scale(in);
    for (size_t j = 0; j < kQBlock / 2; ++j) {
      out[j] = (static_cast<float>(in[2 + j] & 0x0Fu) - 8.0f) * d;
      out[j + kQBlock / 2] = (static_cast<float>(in[2 + j] >> 4) - 8.0f) * d;
    }
  }
}

void uniform_quantize(const float* x, size_t n, const float* zero, const float* scale, int levels, uint8_t* codes) {
  const float top = static_cast<float>(levels);
  for (size_t i = 0; i < n; ++i) {
    uint8_t c = 0;
    if (scale[i] != 0.0f) {
      const float v = std::floor((x[i] - zero[i]) / scale[i] + 0.5f);
      if (v > 0.0f) c = static_cast<uint8_t>(v >= top ? top : v);  // NaN fails v > 0
    }
    codes[i] = c;
  }
}

void uniform_dequantize(const uint8_t* codes, size_t n, const float* zero, const float* scale, float* out) {
  for (size_t i = 0; i < n; ++i) out[i] = zero[i] + static_cast<float>(codes[i]) * scale[i];
}

constexpr size_t kLanesF64 = 8;  // the canonical double reduction width

void dot_rows_f64(const double* q, const float* rows, size_t n, size_t d, double* out) {
  for (size_t j = 0; j < n; ++j) {
    const float* r = rows + j * d;
    double acc[kLanesF64] = {};
    for (size_t i = 0; i < d; ++i) acc[i % kLanesF64] += q[i] * static_cast<double>(r[i]);
    for (size_t w = kLanesF64 / 2; w > 0; w /= 2)
      for (size_t l = 0; l < w; ++l) acc[l] += acc[l + w];
    out[j] = acc[0];
  }
}

void axpy_rows_f64(double* o, const double* p, const float* rows, size_t n, size_t d) {
  for (size_t j = 0; j < n; ++j)
    for (size_t i = 0; i < d; ++i) o[i] += p[j] * static_cast<double>(rows[j * d + i]);
}

/// Four queries: the single-query kernel on each (the definition).
void dot_rows4_f64(const double* q, const float* rows, size_t n, size_t d, double* out, size_t ldo) {
  for (size_t g = 0; g < 4; ++g) dot_rows_f64(q + g * d, rows, n, d, out + g * ldo);
}

void axpy_rows4_f64(double* o, const double* p, size_t ldp, const float* rows, size_t n, size_t d) {
  for (size_t g = 0; g < 4; ++g) axpy_rows_f64(o + g * d, p + g * ldp, rows, n, d);
}

const Kernels& self();

void rht_encode_rows(const float* x, size_t n, const float* signs, size_t p, float fs, const float* bounds, int bits,
                     uint8_t* out, float* norms, const float* centroids, float* ips) {
  rht_encode_rows_composed(self(), x, n, signs, p, fs, bounds, bits, out, norms, centroids, ips);
}

void rht_decode_rows(const uint8_t* in, size_t n, const float* table, int bits, const float* signs, size_t p, float fs,
                     const float* sc, float* out, bool /*stream*/) {
  rht_decode_rows_composed(self(), in, n, table, bits, signs, p, fs, sc, out);
}

constexpr Kernels kTable{Level::Scalar, sum_squares, dot,         scale,       mul,         fwht,
                         matmul_rows,   quantize,    lookup,      pack,        unpack,      f32_to_f16,
                         f16_to_f32,    q8_0_encode, q8_0_decode, q4_0_encode, q4_0_decode, rht_encode_rows, rht_decode_rows, uniform_quantize, uniform_dequantize, dot_rows_f64, axpy_rows_f64, dot_rows4_f64, axpy_rows4_f64};

const Kernels& self() { return kTable; }

}  // namespace

const Kernels& scalar_kernels() { return kTable; }

}  // namespace tq::simd
