// AVX2 kernels (AVX2 + FMA + F16C + BMI2; compiled with those flags and -ffp-contract=off; FMA is
// used only where a factor is exactly +-1, so that products round separately, as in the scalar
// code). Each function computes
// the same bits as its scalar counterpart in kernels_scalar.cpp. The canonical 16-lane reduction
// order is kept in two 8-lane accumulators (lanes 0-7 and 8-15). Only intrinsics and functions
// with internal linkage are used here.
#include <immintrin.h>

#include <cstring>

#include "tq/simd/bmi2_pack.h"
#include "tq/simd/half_internal.h"
#include "tq/simd/kernels.h"

namespace tq::simd {

namespace {

using detail::get_scale;
using detail::put_scale;

const Kernels& ref() { return scalar_kernels(); }

/// Lanes [0, r) set (r <= 8), as a maskload/maskstore mask.
__m256i tail_mask(size_t r) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(r)), lane);
}

float fold8(__m256 s8) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  const __m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
  return _mm_cvtss_f32(s1);
}

/// The 16-lane accumulation of a[i] * b[i] (b == a for squares): acc0 holds lanes 0-7, acc1 8-15.
float reduce16(const float* a, const float* b, size_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_add_ps(acc0, _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    acc1 = _mm256_add_ps(acc1, _mm256_mul_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8)));
  }
  // tail: missing terms are +0 products; adding +0 leaves a partial sum unchanged (it is never -0:
  // it starts at +0 and x + y rounds to -0 only when both are -0)
  const size_t r = n - i;
  if (r > 0) {
    const size_t r0 = r < 8 ? r : 8;
    const __m256i m0 = tail_mask(r0);
    acc0 = _mm256_add_ps(acc0, _mm256_mul_ps(_mm256_maskload_ps(a + i, m0), _mm256_maskload_ps(b + i, m0)));
    if (r > 8) {
      const __m256i m1 = tail_mask(r - 8);
      acc1 = _mm256_add_ps(acc1, _mm256_mul_ps(_mm256_maskload_ps(a + i + 8, m1), _mm256_maskload_ps(b + i + 8, m1)));
    }
  }
  return fold8(_mm256_add_ps(acc0, acc1));  // 16 -> 8: lane j + lane j + 8
}

float sum_squares(const float* x, size_t n) { return reduce16(x, x, n); }
float dot(const float* a, const float* b, size_t n) { return reduce16(a, b, n); }

void scale(const float* x, float s, float* out, size_t n) {
  const __m256 vs = _mm256_set1_ps(s);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vs));
  for (; i < n; ++i) out[i] = x[i] * s;
}

void mul(const float* a, const float* b, float* out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
  for (; i < n; ++i) out[i] = a[i] * b[i];
}

/// FWHT stages h = 1, 2, 4 inside one register (lower partner a + b, upper partner a - b). With
/// `sw` the register with partners swapped, both are fma(v, s, sw), s = +1 on lower and -1 on
/// upper lanes: v * (+-1) is exact, so the fused operation rounds exactly like a + b / a - b (the
/// one FMA in this file; every NaN a transform creates is the default NaN).
[[gnu::always_inline]] inline __m256 fwht8(__m256 v) {
  const __m256 s1 = _mm256_setr_ps(1, -1, 1, -1, 1, -1, 1, -1);
  const __m256 s2 = _mm256_setr_ps(1, 1, -1, -1, 1, 1, -1, -1);
  const __m256 s4 = _mm256_setr_ps(1, 1, 1, 1, -1, -1, -1, -1);
  v = _mm256_fmadd_ps(v, s1, _mm256_permute_ps(v, 0xB1));
  v = _mm256_fmadd_ps(v, s2, _mm256_permute_ps(v, 0x4E));
  v = _mm256_fmadd_ps(v, s4, _mm256_permute2f128_ps(v, v, 0x01));
  return v;
}

/// The whole transform of a row held in r[0 : NV], then the scale: shared by fwht and the fused rows.
template <size_t NV>
[[gnu::always_inline]] inline void fwht_rows_regs(__m256* r, __m256 vfs) {
  for (size_t q = 0; q < NV; ++q) r[q] = fwht8(r[q]);
#pragma GCC unroll 16
  for (size_t h8 = 1; h8 < NV; h8 *= 2)
#pragma GCC unroll 16
    for (size_t i = 0; i < NV; i += 2 * h8)
#pragma GCC unroll 16
      for (size_t q = i; q < i + h8; ++q) {
        const __m256 a = r[q], b = r[q + h8];
        r[q] = _mm256_add_ps(a, b);
        r[q + h8] = _mm256_sub_ps(a, b);
      }
  for (size_t q = 0; q < NV; ++q) r[q] = _mm256_mul_ps(r[q], vfs);
}

template <size_t NV>
void fwht_small(float* x, float s) {  // p = 8 NV: everything in registers
  __m256 r[NV];
  for (size_t q = 0; q < NV; ++q) r[q] = _mm256_loadu_ps(x + 8 * q);
  fwht_rows_regs<NV>(r, _mm256_set1_ps(s));
  for (size_t q = 0; q < NV; ++q) _mm256_storeu_ps(x + 8 * q, r[q]);
}

void fwht(float* x, size_t p, float s) {
  switch (p) {
    case 8: fwht_small<1>(x, s); return;
    case 16: fwht_small<2>(x, s); return;
    case 32: fwht_small<4>(x, s); return;
    case 64: fwht_small<8>(x, s); return;
    default: break;
  }
  if (p < 8) {
    ref().fwht(x, p, s);
    return;
  }
  for (size_t i = 0; i < p; i += 8) _mm256_storeu_ps(x + i, fwht8(_mm256_loadu_ps(x + i)));
  const __m256 vs = _mm256_set1_ps(s);
  for (size_t h = 8; h < p; h *= 2) {
    const bool last = 2 * h == p;
    for (size_t i = 0; i < p; i += 2 * h)
      for (size_t j = i; j < i + h; j += 8) {
        const __m256 a = _mm256_loadu_ps(x + j), b = _mm256_loadu_ps(x + j + h);
        __m256 u = _mm256_add_ps(a, b), w = _mm256_sub_ps(a, b);
        if (last) {
          u = _mm256_mul_ps(u, vs);
          w = _mm256_mul_ps(w, vs);
        }
        _mm256_storeu_ps(x + j, u);
        _mm256_storeu_ps(x + j + h, w);
      }
  }
}

/// ROWS rows of `buf` (stride d) times m, columns [j0, j0 + 32) (masks cut at d).
template <size_t ROWS>
void matmul_tile(const float* buf, float* out, const float* m, size_t d, size_t j0) {
  __m256i mk[4];
  for (size_t q = 0; q < 4; ++q) {
    const size_t j = j0 + 8 * q;
    mk[q] = tail_mask(j >= d ? 0 : (d - j >= 8 ? 8 : d - j));
  }
  __m256 acc[ROWS][4];
  for (size_t r = 0; r < ROWS; ++r)
    for (size_t q = 0; q < 4; ++q) acc[r][q] = _mm256_setzero_ps();
  for (size_t k = 0; k < d; ++k) {
    const float* mrow = m + k * d + j0;
    __m256 mv[4];
    for (size_t q = 0; q < 4; ++q) mv[q] = _mm256_maskload_ps(mrow + 8 * q, mk[q]);
    for (size_t r = 0; r < ROWS; ++r) {
      const __m256 bx = _mm256_broadcast_ss(buf + r * d + k);
      for (size_t q = 0; q < 4; ++q) acc[r][q] = _mm256_add_ps(acc[r][q], _mm256_mul_ps(bx, mv[q]));
    }
  }
  for (size_t r = 0; r < ROWS; ++r)
    for (size_t q = 0; q < 4; ++q) _mm256_maskstore_ps(out + r * d + j0 + 8 * q, mk[q], acc[r][q]);
}

void matmul_rows(const float* in, float* out, size_t n, const float* m, size_t d) {
  constexpr size_t kRows = 3;
  constexpr size_t kMaxD = 1024;
  if (d > kMaxD) {
    ref().matmul_rows(in, out, n, m, d);
    return;
  }
  alignas(32) float buf[kRows * kMaxD];
  size_t t0 = 0;
  for (; t0 + kRows <= n; t0 += kRows) {
    std::memcpy(buf, in + t0 * d, kRows * d * sizeof(float));  // in == out is safe
    for (size_t j0 = 0; j0 < d; j0 += 32) matmul_tile<kRows>(buf, out + t0 * d, m, d, j0);
  }
  for (; t0 < n; ++t0) {
    std::memcpy(buf, in + t0 * d, d * sizeof(float));
    for (size_t j0 = 0; j0 < d; j0 += 32) matmul_tile<1>(buf, out + t0 * d, m, d, j0);
  }
}

/// Branchless binary search (same probes as the scalar loop).
template <class Probe>
__m256i search(__m256 v, int bits, const float* b, Probe probe) {
  const int k = 1 << bits;
  const __m256 gt0 = _mm256_cmp_ps(v, _mm256_set1_ps(b[k / 2 - 1]), _CMP_GT_OQ);
  __m256i idx = _mm256_and_si256(_mm256_castps_si256(gt0), _mm256_set1_epi32(k / 2));
  for (int step = k / 4; step > 0; step /= 2) {
    const __m256 pr = probe(_mm256_add_epi32(idx, _mm256_set1_epi32(step - 1)));
    const __m256 gt = _mm256_cmp_ps(v, pr, _CMP_GT_OQ);
    idx = _mm256_add_epi32(idx, _mm256_and_si256(_mm256_castps_si256(gt), _mm256_set1_epi32(step)));
  }
  return idx;
}

/// Low bytes of 8 int32 lanes (each < 256) as 8 consecutive bytes.
void store_bytes8(uint8_t* out, __m256i v) {
  const __m256i sh = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,  //
                                      0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m256i b = _mm256_shuffle_epi8(v, sh);
  const uint32_t lo = static_cast<uint32_t>(_mm_cvtsi128_si32(_mm256_castsi256_si128(b)));
  const uint32_t hi = static_cast<uint32_t>(_mm_cvtsi128_si32(_mm256_extracti128_si256(b, 1)));
  const uint64_t w = static_cast<uint64_t>(lo) | (static_cast<uint64_t>(hi) << 32);
  std::memcpy(out, &w, 8);
}

__m256i load_bytes8(const uint8_t* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  return _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(w)));
}

/// Entry idx of a 16-entry table held in two registers (idx < 16).
__m256 table16(__m256 t0, __m256 t1, __m256i idx) {
  const __m256 a = _mm256_permutevar8x32_ps(t0, idx), b = _mm256_permutevar8x32_ps(t1, idx);
  return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));  // bit 3 selects
}

void quantize(const float* x, size_t n, const float* b, int bits, uint8_t* codes) {
  const size_t nb = (size_t{1} << bits) - 1;
  size_t i = 0;
  if (bits <= 4) {
    alignas(32) float t[16] = {};
    std::memcpy(t, b, nb * sizeof(float));
    const __m256 t0 = _mm256_load_ps(t), t1 = _mm256_load_ps(t + 8);
    for (; i + 8 <= n; i += 8) {
      const __m256 v = _mm256_loadu_ps(x + i);
      const __m256i idx = bits <= 3 ? search(v, bits, b, [&](__m256i j) { return _mm256_permutevar8x32_ps(t0, j); })
                                    : search(v, bits, b, [&](__m256i j) { return table16(t0, t1, j); });
      store_bytes8(codes + i, idx);
    }
  } else {
    for (; i + 8 <= n; i += 8) {
      const __m256 v = _mm256_loadu_ps(x + i);
      store_bytes8(codes + i, search(v, bits, b, [&](__m256i j) { return _mm256_i32gather_ps(b, j, 4); }));
    }
  }
  if (i < n) ref().quantize(x + i, n - i, b, bits, codes + i);
}

void lookup(const uint8_t* codes, size_t n, const float* table, int bits, float* out) {
  const size_t k = size_t{1} << bits;
  size_t i = 0;
  if (bits <= 4) {
    alignas(32) float t[16] = {};
    std::memcpy(t, table, k * sizeof(float));
    const __m256 t0 = _mm256_load_ps(t), t1 = _mm256_load_ps(t + 8);
    for (; i + 8 <= n; i += 8) {
      const __m256i idx = load_bytes8(codes + i);
      _mm256_storeu_ps(out + i, bits <= 3 ? _mm256_permutevar8x32_ps(t0, idx) : table16(t0, t1, idx));
    }
  } else {
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_i32gather_ps(table, load_bytes8(codes + i), 4));
  }
  if (i < n) ref().lookup(codes + i, n - i, table, bits, out + i);
}

void pack(const uint8_t* codes, size_t n, int bits, uint8_t* out) { detail::pack_bmi2(codes, n, bits, out); }
void unpack(const uint8_t* in, size_t n, int bits, uint8_t* codes) { detail::unpack_bmi2(in, n, bits, codes); }

void f32_to_f16(const float* in, uint16_t* out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(in + i);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    int nan = _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));  // patch NaN lanes to the scalar bits
    while (nan) {
      const int l = __builtin_ctz(static_cast<unsigned>(nan));
      nan &= nan - 1;
      out[i + static_cast<size_t>(l)] = detail::f2h(in[i + static_cast<size_t>(l)]);
    }
  }
  if (i < n) ref().f32_to_f16(in + i, out + i, n - i);
}

void f16_to_f32(const uint16_t* in, float* out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
    const __m128i nanm = _mm_cmpgt_epi16(_mm_and_si128(h, _mm_set1_epi16(0x7FFF)), _mm_set1_epi16(0x7C00));
    int nan = _mm_movemask_epi8(nanm);
    while (nan) {
      const int l = __builtin_ctz(static_cast<unsigned>(nan)) / 2;
      nan &= ~(3 << (2 * l));
      out[i + static_cast<size_t>(l)] = detail::h2f(in[i + static_cast<size_t>(l)]);
    }
  }
  if (i < n) ref().f16_to_f32(in + i, out + i, n - i);
}

__m256 abs_no_nan(__m256 v) {
  const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
  return _mm256_and_ps(a, _mm256_cmp_ps(a, a, _CMP_ORD_Q));
}

float hmax8(__m256 v) {  // maximum of non-NaN lanes >= 0: order does not matter
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

/// Four int32 registers (values in int8 / uint8 range) to 32 bytes in lane order.
void store_bytes32(uint8_t* out, const __m256i* c, bool is_signed) {
  const __m256i ab = is_signed ? _mm256_packs_epi32(c[0], c[1]) : _mm256_packus_epi32(c[0], c[1]);
  const __m256i cd = is_signed ? _mm256_packs_epi32(c[2], c[3]) : _mm256_packus_epi32(c[2], c[3]);
  __m256i bytes = is_signed ? _mm256_packs_epi16(ab, cd) : _mm256_packus_epi16(ab, cd);
  // packs interleave 128-bit lanes: order is a0 b0 c0 d0 a1 b1 c1 d1 (4-byte groups)
  bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), bytes);
}

void q8_0_encode(const float* x, size_t n_blocks, uint8_t* out) {
  const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), sgn = _mm256_set1_ps(-0.0f);
  const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  for (size_t blk = 0; blk < n_blocks; ++blk, x += kQBlock, out += kQ8_0BlockBytes) {
    __m256 v[4];
    __m256 am = _mm256_setzero_ps();
    for (size_t q = 0; q < 4; ++q) {
      v[q] = _mm256_loadu_ps(x + 8 * q);
      am = _mm256_max_ps(am, abs_no_nan(v[q]));
    }
    const float amax = hmax8(am);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    put_scale(out, d);
    const __m256 vid = _mm256_set1_ps(id);
    __m256i c[4];
    for (size_t q = 0; q < 4; ++q) {
      const __m256 y = _mm256_mul_ps(v[q], vid);
      const __m256 t = _mm256_round_ps(y, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
      const __m256 frac = _mm256_andnot_ps(sgn, _mm256_sub_ps(y, t));
      const __m256 up = _mm256_cmp_ps(frac, half, _CMP_GE_OQ);
      const __m256 step = _mm256_and_ps(up, _mm256_or_ps(one, _mm256_and_ps(y, sgn)));
      __m256 r = _mm256_add_ps(t, step);  // t + (+-0) = t except t = -0 -> +0: same integer
      r = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
      c[q] = _mm256_cvttps_epi32(r);
    }
    store_bytes32(out + 2, c, true);
  }
}

/// Store 8 floats, non-temporally when `stream` (the caller checked 32-byte alignment).
[[gnu::always_inline]] inline void store8(float* out, __m256 v, bool stream) {
  if (stream) {
    _mm256_stream_ps(out, v);
  } else {
    _mm256_storeu_ps(out, v);
  }
}

void q8_0_decode(const uint8_t* in, size_t n_blocks, float* out, bool stream) {
  stream = stream && (reinterpret_cast<uintptr_t>(out) % 32) == 0;  // blocks are 128 B: all aligned
  for (size_t blk = 0; blk < n_blocks; ++blk, in += kQ8_0BlockBytes, out += kQBlock) {
    const __m256 d = _mm256_set1_ps(get_scale(in));
    for (size_t q = 0; q < 4; ++q) {
      uint64_t w;
      std::memcpy(&w, in + 2 + 8 * q, 8);
      const __m256i c = _mm256_cvtepi8_epi32(_mm_cvtsi64_si128(static_cast<long long>(w)));
      store8(out + 8 * q, _mm256_mul_ps(_mm256_cvtepi32_ps(c), d), stream);
    }
  }
  if (stream) _mm_sfence();
}

void q4_0_encode(const float* x, size_t n_blocks, uint8_t* out) {
  const __m256 off = _mm256_set1_ps(8.5f), zero = _mm256_setzero_ps(), top = _mm256_set1_ps(15.0f);
  for (size_t blk = 0; blk < n_blocks; ++blk, x += kQBlock, out += kQ4_0BlockBytes) {
    __m256 v[4], a[4];
    __m256 am = _mm256_setzero_ps();
    for (size_t q = 0; q < 4; ++q) {
      v[q] = _mm256_loadu_ps(x + 8 * q);
      a[q] = abs_no_nan(v[q]);
      am = _mm256_max_ps(am, a[q]);
    }
    const float amax = hmax8(am);
    float max = 0.0f;
    if (amax > 0.0f) {
      const __m256 va = _mm256_set1_ps(amax);
      uint32_t hit = 0;
      for (size_t q = 0; q < 4; ++q)
        hit |= static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(a[q], va, _CMP_EQ_OQ))) << (8 * q);
      max = x[__builtin_ctz(hit)];
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    put_scale(out, d);
    const __m256 vid = _mm256_set1_ps(id);
    __m256i c[4];
    for (size_t q = 0; q < 4; ++q) {
      __m256 y = _mm256_add_ps(_mm256_mul_ps(v[q], vid), off);
      y = _mm256_min_ps(_mm256_max_ps(y, zero), top);
      c[q] = _mm256_cvttps_epi32(y);
    }
    alignas(32) uint8_t codes[32];
    store_bytes32(codes, c, false);
    const __m128i lo = _mm_load_si128(reinterpret_cast<const __m128i*>(codes));
    const __m128i hi = _mm_load_si128(reinterpret_cast<const __m128i*>(codes + 16));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2), _mm_or_si128(lo, _mm_slli_epi16(hi, 4)));
  }
}

void q4_0_decode(const uint8_t* in, size_t n_blocks, float* out, bool stream) {
  stream = stream && (reinterpret_cast<uintptr_t>(out) % 32) == 0;
  const __m256 eight = _mm256_set1_ps(8.0f);
  const __m256i low = _mm256_set1_epi32(0x0F);
  for (size_t blk = 0; blk < n_blocks; ++blk, in += kQ4_0BlockBytes, out += kQBlock) {
    const __m256 d = _mm256_set1_ps(get_scale(in));
    for (size_t q = 0; q < 2; ++q) {
      const __m256i b = load_bytes8(in + 2 + 8 * q);
      const __m256i lo = _mm256_and_si256(b, low), hi = _mm256_srli_epi32(b, 4);
      store8(out + 8 * q, _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(lo), eight), d), stream);
      store8(out + 16 + 8 * q, _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(hi), eight), d), stream);
    }
  }
  if (stream) _mm_sfence();
}

void uniform_quantize(const float* x, size_t n, const float* zero, const float* scale, int levels, uint8_t* codes) {
  const __m256 half = _mm256_set1_ps(0.5f), top = _mm256_set1_ps(static_cast<float>(levels));
  const __m256 vzero = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 s = _mm256_loadu_ps(scale + i);
    const __m256 y = _mm256_add_ps(_mm256_div_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(zero + i)), s), half);
    const __m256 v = _mm256_round_ps(y, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    // keep lanes with scale != 0 and v > 0 (false for NaN); clamp to levels
    const __m256 keep = _mm256_and_ps(_mm256_cmp_ps(s, vzero, _CMP_NEQ_UQ), _mm256_cmp_ps(v, vzero, _CMP_GT_OQ));
    const __m256 c = _mm256_and_ps(keep, _mm256_min_ps(v, top));
    const __m256i ci = _mm256_cvttps_epi32(c);
    const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(ci), _mm256_extracti128_si256(ci, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + i), _mm_packus_epi16(w, w));
  }
  if (i < n) ref().uniform_quantize(x + i, n - i, zero + i, scale + i, levels, codes + i);
}

void uniform_dequantize(const uint8_t* codes, size_t n, const float* zero, const float* scale, float* out) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 c = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i))));
    _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_loadu_ps(zero + i), _mm256_mul_ps(c, _mm256_loadu_ps(scale + i))));
  }
  if (i < n) ref().uniform_dequantize(codes + i, n - i, zero + i, scale + i, out + i);
}

/// Canonical 8-lane double fold of lanes 0-3 (lo) and 4-7 (hi): 8 -> 4 -> 2 -> 1.
double fold8d(__m256d lo, __m256d hi) {
  const __m256d s4 = _mm256_add_pd(lo, hi);
  const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
}

/// One row's canonical double dot product; lanes past d get no term (masked add).
double dot_row_f64(const double* q, const float* r, size_t d) {
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  size_t i = 0;
  for (; i + 8 <= d; i += 8) {
    lo = _mm256_add_pd(lo, _mm256_mul_pd(_mm256_loadu_pd(q + i), _mm256_cvtps_pd(_mm_loadu_ps(r + i))));
    hi = _mm256_add_pd(hi, _mm256_mul_pd(_mm256_loadu_pd(q + i + 4), _mm256_cvtps_pd(_mm_loadu_ps(r + i + 4))));
  }
  if (i < d) {  // the tail in scalar, into the same lanes and order
    alignas(32) double a[8];
    _mm256_store_pd(a, lo);
    _mm256_store_pd(a + 4, hi);
    for (size_t l = 0; i + l < d; ++l) a[l] += q[i + l] * static_cast<double>(r[i + l]);
    lo = _mm256_load_pd(a);
    hi = _mm256_load_pd(a + 4);
  }
  return fold8d(lo, hi);
}

void dot_rows_f64(const double* q, const float* rows, size_t n, size_t d, double* out) {
  for (size_t j = 0; j < n; ++j) out[j] = dot_row_f64(q, rows + j * d, d);
}

void axpy_rows_f64(double* o, const double* p, const float* rows, size_t n, size_t d) {
  size_t i = 0;
  for (; i + 16 <= d; i += 16) {  // 16 outputs in four registers across all rows
    __m256d a[4];
    for (size_t c = 0; c < 4; ++c) a[c] = _mm256_loadu_pd(o + i + 4 * c);
    for (size_t j = 0; j < n; ++j) {
      const __m256d vp = _mm256_set1_pd(p[j]);
      const float* r = rows + j * d + i;
      for (size_t c = 0; c < 4; ++c) a[c] = _mm256_add_pd(a[c], _mm256_mul_pd(vp, _mm256_cvtps_pd(_mm_loadu_ps(r + 4 * c))));
    }
    for (size_t c = 0; c < 4; ++c) _mm256_storeu_pd(o + i + 4 * c, a[c]);
  }
  for (; i < d; ++i)
    for (size_t j = 0; j < n; ++j) o[i] += p[j] * static_cast<double>(rows[j * d + i]);
}

/// Four queries: the single-query kernel on each (the definition).
void dot_rows4_f64(const double* q, const float* rows, size_t n, size_t d, double* out, size_t ldo) {
  for (size_t g = 0; g < 4; ++g) dot_rows_f64(q + g * d, rows, n, d, out + g * ldo);
}

void axpy_rows4_f64(double* o, const double* p, size_t ldp, const float* rows, size_t n, size_t d) {
  for (size_t g = 0; g < 4; ++g) axpy_rows_f64(o + g * d, p + g * ldp, rows, n, d);
}

const Kernels& self();

// ---- fused one-round RHT rows (p = 8 NV <= 128 in registers) ---------------------------------

/// Rows ahead that the encoder prefetches (as in the AVX-512 file).
constexpr size_t kPrefetchRows = 8;

/// B = the bit width when known at compile time (2..4), 0 = take `bits_rt`. Row t is the
/// composition documented in kernels.h; the next row's norm is computed before this row's
/// transform so that its latency overlaps (software pipelining).
template <size_t NV, int B>
void rht_encode_rows_regs(const float* x, size_t n, const float* signs, float fs, const float* bounds, int bits_rt,
                          uint8_t* out, float* norms, const float* centroids, float* ips) {
  constexpr size_t p = 8 * NV;
  const int bits = B != 0 ? B : bits_rt;
  const size_t row_bytes = NV * static_cast<size_t>(bits);  // p codes of `bits` bits
  const __m256 vfs = _mm256_set1_ps(fs);
  alignas(32) float t[16] = {};
  if (bits <= 4) std::memcpy(t, bounds, ((size_t{1} << bits) - 1) * sizeof(float));
  const __m256 t0 = _mm256_load_ps(t), t1 = _mm256_load_ps(t + 8);
  alignas(32) float ct[16] = {};  // EDEN's centroid table
  if (ips != nullptr && bits <= 4) std::memcpy(ct, centroids, (size_t{1} << bits) * sizeof(float));
  const __m256 c0 = _mm256_load_ps(ct), c1 = _mm256_load_ps(ct + 8);
  float ss_next = n > 0 ? sum_squares(x, p) : 0.0f;
  for (size_t row = 0; row < n; ++row, x += p, out += row_bytes) {
    const float m = rht_row_multiplier(ss_next, norms + row);
    if (row + 1 < n) ss_next = sum_squares(x + p, p);
    for (size_t q = 0; q < NV; q += 2) _mm_prefetch(reinterpret_cast<const char*>(x + kPrefetchRows * p + 8 * q), _MM_HINT_T0);
    __m256 r[NV];
    const __m256 vm = _mm256_set1_ps(m);
    for (size_t q = 0; q < NV; ++q)  // scale, then mul by the signs: the composition's two roundings
      r[q] = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * q), vm), _mm256_loadu_ps(signs + 8 * q));
    fwht_rows_regs<NV>(r, vfs);
    alignas(32) uint8_t codes[p];
    // EDEN's <y, c> in the canonical 16-lane order: register q holds i = 8q + lane, so even
    // registers feed lanes 0-7 (acc0) and odd ones lanes 8-15 (acc1)
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (size_t q = 0; q < NV; ++q) {
      const __m256i idx =
          bits <= 3   ? search(r[q], bits, bounds, [&](__m256i j) { return _mm256_permutevar8x32_ps(t0, j); })
          : bits == 4 ? search(r[q], bits, bounds, [&](__m256i j) { return table16(t0, t1, j); })
                      : search(r[q], bits, bounds, [&](__m256i j) { return _mm256_i32gather_ps(bounds, j, 4); });
      store_bytes8(codes + 8 * q, idx);
      if (ips != nullptr) {
        const __m256 c = bits <= 3   ? _mm256_permutevar8x32_ps(c0, idx)
                         : bits == 4 ? table16(c0, c1, idx)
                                     : _mm256_i32gather_ps(centroids, idx, 4);
        __m256& acc = q % 2 == 0 ? acc0 : acc1;
        acc = _mm256_add_ps(acc, _mm256_mul_ps(r[q], c));
      }
    }
    if (ips != nullptr) ips[row] = fold8(_mm256_add_ps(acc0, acc1));
    detail::pack_bmi2(codes, p, bits, out);
  }
}

template <size_t NV, int B>
void rht_decode_rows_regs(const uint8_t* in, size_t n, const float* table, int bits_rt, const float* signs, float fs,
                          const float* sc, float* out, bool stream) {
  constexpr size_t p = 8 * NV;
  const int bits = B != 0 ? B : bits_rt;
  const size_t row_bytes = NV * static_cast<size_t>(bits);
  const __m256 vfs = _mm256_set1_ps(fs);
  alignas(32) float t[16] = {};
  if (bits <= 4) std::memcpy(t, table, (size_t{1} << bits) * sizeof(float));
  const __m256 t0 = _mm256_load_ps(t), t1 = _mm256_load_ps(t + 8);
  for (size_t row = 0; row < n; ++row, in += row_bytes, out += p) {
    alignas(32) uint8_t codes[p];
    detail::unpack_bmi2(in, p, bits, codes);
    __m256 r[NV];
    for (size_t q = 0; q < NV; ++q) {
      const __m256i idx = load_bytes8(codes + 8 * q);
      r[q] = bits <= 3   ? _mm256_permutevar8x32_ps(t0, idx)
             : bits == 4 ? table16(t0, t1, idx)
                         : _mm256_i32gather_ps(table, idx, 4);
    }
    fwht_rows_regs<NV>(r, vfs);
    const __m256 vsc = _mm256_set1_ps(sc[row]);
    for (size_t q = 0; q < NV; ++q) r[q] = _mm256_mul_ps(_mm256_mul_ps(r[q], _mm256_loadu_ps(signs + 8 * q)), vsc);
    if (stream) {  // whole lines straight to memory: no read-for-ownership of `out`
      for (size_t q = 0; q < NV; ++q) _mm256_stream_ps(out + 8 * q, r[q]);
    } else {
      for (size_t q = 0; q < NV; ++q) _mm256_storeu_ps(out + 8 * q, r[q]);
    }
  }
  if (stream) _mm_sfence();
}

template <size_t NV>
void rht_encode_nv(const float* x, size_t n, const float* signs, float fs, const float* bounds, int bits, uint8_t* out,
                   float* norms, const float* cent, float* ips) {
  switch (bits) {
    case 2: rht_encode_rows_regs<NV, 2>(x, n, signs, fs, bounds, bits, out, norms, cent, ips); return;
    case 3: rht_encode_rows_regs<NV, 3>(x, n, signs, fs, bounds, bits, out, norms, cent, ips); return;
    case 4: rht_encode_rows_regs<NV, 4>(x, n, signs, fs, bounds, bits, out, norms, cent, ips); return;
    default: rht_encode_rows_regs<NV, 0>(x, n, signs, fs, bounds, bits, out, norms, cent, ips); return;
  }
}

template <size_t NV>
void rht_decode_nv(const uint8_t* in, size_t n, const float* table, int bits, const float* signs, float fs,
                   const float* sc, float* out, bool stream) {
  switch (bits) {
    case 2: rht_decode_rows_regs<NV, 2>(in, n, table, bits, signs, fs, sc, out, stream); return;
    case 3: rht_decode_rows_regs<NV, 3>(in, n, table, bits, signs, fs, sc, out, stream); return;
    case 4: rht_decode_rows_regs<NV, 4>(in, n, table, bits, signs, fs, sc, out, stream); return;
    default: rht_decode_rows_regs<NV, 0>(in, n, table, bits, signs, fs, sc, out, stream); return;
  }
}

void rht_encode_rows(const float* x, size_t n, const float* signs, size_t p, float fs, const float* bounds, int bits,
                     uint8_t* out, float* norms, const float* cent, float* ips) {
  switch (p) {
    case 8: rht_encode_nv<1>(x, n, signs, fs, bounds, bits, out, norms, cent, ips); return;
    case 16: rht_encode_nv<2>(x, n, signs, fs, bounds, bits, out, norms, cent, ips); return;
    case 32: rht_encode_nv<4>(x, n, signs, fs, bounds, bits, out, norms, cent, ips); return;
    case 64: rht_encode_nv<8>(x, n, signs, fs, bounds, bits, out, norms, cent, ips); return;
    case 128: rht_encode_nv<16>(x, n, signs, fs, bounds, bits, out, norms, cent, ips); return;
    default: rht_encode_rows_composed(self(), x, n, signs, p, fs, bounds, bits, out, norms, cent, ips); return;
  }
}

void rht_decode_rows(const uint8_t* in, size_t n, const float* table, int bits, const float* signs, size_t p, float fs,
                     const float* sc, float* out, bool stream) {
  stream = stream && (reinterpret_cast<uintptr_t>(out) % 32) == 0;  // vmovntps ymm needs 32-byte alignment
  switch (p) {
    case 8: rht_decode_nv<1>(in, n, table, bits, signs, fs, sc, out, stream); return;
    case 16: rht_decode_nv<2>(in, n, table, bits, signs, fs, sc, out, stream); return;
    case 32: rht_decode_nv<4>(in, n, table, bits, signs, fs, sc, out, stream); return;
    case 64: rht_decode_nv<8>(in, n, table, bits, signs, fs, sc, out, stream); return;
    case 128: rht_decode_nv<16>(in, n, table, bits, signs, fs, sc, out, stream); return;
    default: rht_decode_rows_composed(self(), in, n, table, bits, signs, p, fs, sc, out); return;
  }
}

constexpr Kernels kTable{Level::Avx2, sum_squares, dot,         scale,       mul,         fwht,
                         matmul_rows, quantize,    lookup,      pack,        unpack,      f32_to_f16,
                         f16_to_f32,  q8_0_encode, q8_0_decode, q4_0_encode, q4_0_decode, rht_encode_rows, rht_decode_rows, uniform_quantize, uniform_dequantize, dot_rows_f64, axpy_rows_f64, dot_rows4_f64, axpy_rows4_f64};

const Kernels& self() { return kTable; }

}  // namespace

const Kernels& avx2_kernels() { return kTable; }

}  // namespace tq::simd
