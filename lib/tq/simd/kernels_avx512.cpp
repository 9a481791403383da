// AVX-512 kernels (F/BW/DQ/VL + AVX2/FMA/F16C/BMI2; compiled with those flags and
// -ffp-contract=off). Each function computes the same bits as its scalar counterpart in
// kernels_scalar.cpp; the comments name the step that keeps them identical. Only intrinsics and
// functions with internal linkage are used here (no shared inline code compiled with AVX-512).
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

__mmask16 tail_mask(size_t r) { return static_cast<__mmask16>((1u << r) - 1u); }

/// Canonical fold 16 -> 8 -> 4 -> 2 -> 1 (upper half onto lower half).
float fold16(__m512 acc) {
  const __m256 lo = _mm512_castps512_ps256(acc);
  const __m256 hi = _mm512_extractf32x8_ps(acc, 1);
  const __m256 s8 = _mm256_add_ps(lo, hi);
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  const __m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
  return _mm_cvtss_f32(s1);
}

float sum_squares(const float* x, size_t n) {
  __m512 acc = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    acc = _mm512_add_ps(acc, _mm512_mul_ps(v, v));
  }
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    acc = _mm512_mask_add_ps(acc, m, acc, _mm512_mul_ps(v, v));
  }
  return fold16(acc);
}

float dot(const float* a, const float* b, size_t n) {
  __m512 acc = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= n; i += 16) acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 p = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
    acc = _mm512_mask_add_ps(acc, m, acc, p);
  }
  return fold16(acc);
}

void scale(const float* x, float s, float* out, size_t n) {
  const __m512 vs = _mm512_set1_ps(s);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), vs));
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vs));
  }
}

void mul(const float* a, const float* b, float* out, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i)));
  }
}

/// FWHT stages h = 1, 2, 4, 8 inside one register: lane j (lower partner) gets a + b, lane j + h
/// gets a - b. With `sw` the register with partners swapped, both are fma(v, s, sw) with s = +1 on
/// lower lanes and -1 on upper lanes: v * (+-1) is exact, so the single rounding of the fused
/// multiply-add is the rounding of a + b (or a - b), and a stage costs a shuffle and one FMA
/// instead of a shuffle, an add and a masked subtract. (Every NaN these transforms can create is
/// the default NaN, so propagation order cannot change bits either.)
[[gnu::always_inline]] inline __m512 fwht16(__m512 v) {
  const __m512 s1 = _mm512_castsi512_ps(_mm512_set1_epi64(static_cast<long long>(0xBF8000003F800000ull)));
  const __m512 s2 = _mm512_castsi512_ps(_mm512_set_epi32(
      static_cast<int>(0xBF800000), static_cast<int>(0xBF800000), 0x3F800000, 0x3F800000,
      static_cast<int>(0xBF800000), static_cast<int>(0xBF800000), 0x3F800000, 0x3F800000,
      static_cast<int>(0xBF800000), static_cast<int>(0xBF800000), 0x3F800000, 0x3F800000,
      static_cast<int>(0xBF800000), static_cast<int>(0xBF800000), 0x3F800000, 0x3F800000));
  const __m512 one = _mm512_set1_ps(1.0f), neg = _mm512_set1_ps(-1.0f);
  const __m512 s4 = _mm512_mask_mov_ps(one, 0xF0F0, neg);
  const __m512 s8 = _mm512_mask_mov_ps(one, 0xFF00, neg);
  v = _mm512_fmadd_ps(v, s1, _mm512_permute_ps(v, 0xB1));
  v = _mm512_fmadd_ps(v, s2, _mm512_permute_ps(v, 0x4E));
  v = _mm512_fmadd_ps(v, s4, _mm512_shuffle_f32x4(v, v, 0xB1));
  v = _mm512_fmadd_ps(v, s8, _mm512_shuffle_f32x4(v, v, 0x4E));
  return v;
}

/// Stages h = 16 H16, 32 H16, ... < 16 NV over registers held in r[0 : NV]; register q pairs with
/// q + H16. Compile-time strides so that the whole transform unrolls and r[] stays in registers.
template <size_t NV, size_t H16 = 1>
[[gnu::always_inline]] inline void fwht_regs(__m512* r) {
  if constexpr (H16 < NV) {
#pragma GCC unroll 16
    for (size_t i = 0; i < NV; i += 2 * H16)
#pragma GCC unroll 16
      for (size_t q = i; q < i + H16; ++q) {
        const __m512 a = r[q], b = r[q + H16];
        r[q] = _mm512_add_ps(a, b);
        r[q + H16] = _mm512_sub_ps(a, b);
      }
    fwht_regs<NV, 2 * H16>(r);
  }
}

/// The whole transform of a row held in r[0 : NV], then the scale: shared by fwht and the fused rows.
template <size_t NV>
[[gnu::always_inline]] inline void fwht_regs_all(__m512* r, __m512 vfs) {
  for (size_t q = 0; q < NV; ++q) r[q] = fwht16(r[q]);
  fwht_regs<NV>(r);
  for (size_t q = 0; q < NV; ++q) r[q] = _mm512_mul_ps(r[q], vfs);
}

template <size_t NV>
void fwht_small(float* x, float s) {  // p = 16 NV <= 256: everything in registers
  __m512 r[NV];
  for (size_t q = 0; q < NV; ++q) r[q] = _mm512_loadu_ps(x + 16 * q);
  fwht_regs_all<NV>(r, _mm512_set1_ps(s));
  for (size_t q = 0; q < NV; ++q) _mm512_storeu_ps(x + 16 * q, r[q]);
}

void fwht(float* x, size_t p, float s) {
  switch (p) {
    case 16: fwht_small<1>(x, s); return;
    case 32: fwht_small<2>(x, s); return;
    case 64: fwht_small<4>(x, s); return;
    case 128: fwht_small<8>(x, s); return;
    case 256: fwht_small<16>(x, s); return;
    default: break;
  }
  if (p < 16) {
    ref().fwht(x, p, s);
    return;
  }
  for (size_t i = 0; i < p; i += 16) _mm512_storeu_ps(x + i, fwht16(_mm512_loadu_ps(x + i)));
  const __m512 vs = _mm512_set1_ps(s);
  for (size_t h = 16; h < p; h *= 2) {
    const bool last = 2 * h == p;
    for (size_t i = 0; i < p; i += 2 * h)
      for (size_t j = i; j < i + h; j += 16) {
        const __m512 a = _mm512_loadu_ps(x + j), b = _mm512_loadu_ps(x + j + h);
        __m512 u = _mm512_add_ps(a, b), w = _mm512_sub_ps(a, b);
        if (last) {
          u = _mm512_mul_ps(u, vs);
          w = _mm512_mul_ps(w, vs);
        }
        _mm512_storeu_ps(x + j, u);
        _mm512_storeu_ps(x + j + h, w);
      }
  }
}

/// ROWS rows of `buf` (stride d) times m, columns [j0, j0 + 64) (masks cut at d).
template <size_t ROWS>
void matmul_tile(const float* buf, float* out, const float* m, size_t d, size_t j0) {
  __mmask16 mk[4];
  for (size_t q = 0; q < 4; ++q) {
    const size_t j = j0 + 16 * q;
    mk[q] = j >= d ? 0 : (d - j >= 16 ? static_cast<__mmask16>(0xFFFF) : tail_mask(d - j));
  }
  __m512 acc[ROWS][4];
  for (size_t r = 0; r < ROWS; ++r)
    for (size_t q = 0; q < 4; ++q) acc[r][q] = _mm512_setzero_ps();
  for (size_t k = 0; k < d; ++k) {
    const float* mrow = m + k * d + j0;
    __m512 mv[4];
    for (size_t q = 0; q < 4; ++q) mv[q] = _mm512_maskz_loadu_ps(mk[q], mrow + 16 * q);
    for (size_t r = 0; r < ROWS; ++r) {
      const __m512 bx = _mm512_set1_ps(buf[r * d + k]);
      for (size_t q = 0; q < 4; ++q) acc[r][q] = _mm512_add_ps(acc[r][q], _mm512_mul_ps(bx, mv[q]));
    }
  }
  for (size_t r = 0; r < ROWS; ++r)
    for (size_t q = 0; q < 4; ++q) _mm512_mask_storeu_ps(out + r * d + j0 + 16 * q, mk[q], acc[r][q]);
}

void matmul_rows(const float* in, float* out, size_t n, const float* m, size_t d) {
  constexpr size_t kRows = 4;
  constexpr size_t kMaxD = 1024;
  if (d > kMaxD) {
    ref().matmul_rows(in, out, n, m, d);
    return;
  }
  alignas(64) float buf[kRows * kMaxD];
  size_t t0 = 0;
  for (; t0 + kRows <= n; t0 += kRows) {
    std::memcpy(buf, in + t0 * d, kRows * d * sizeof(float));  // in == out is safe
    for (size_t j0 = 0; j0 < d; j0 += 64) matmul_tile<kRows>(buf, out + t0 * d, m, d, j0);
  }
  for (; t0 < n; ++t0) {
    std::memcpy(buf, in + t0 * d, d * sizeof(float));
    for (size_t j0 = 0; j0 < d; j0 += 64) matmul_tile<1>(buf, out + t0 * d, m, d, j0);
  }
}

/// Branchless binary search with the probe fetched by `probe(idx)`: same probes as the scalar
/// loop, so the same integer result.
template <class Probe>
[[gnu::always_inline]] inline __m512i search(__m512 v, int bits, const float* b, Probe probe) {
  const int k = 1 << bits;
  // first step: the probe is the same boundary for every lane
  const __mmask16 gt0 = _mm512_cmp_ps_mask(v, _mm512_set1_ps(b[k / 2 - 1]), _CMP_GT_OQ);
  __m512i idx = _mm512_maskz_mov_epi32(gt0, _mm512_set1_epi32(k / 2));
  for (int step = k / 4; step > 0; step /= 2) {
    const __m512 pr = probe(_mm512_add_epi32(idx, _mm512_set1_epi32(step - 1)));
    const __mmask16 gt = _mm512_cmp_ps_mask(v, pr, _CMP_GT_OQ);
    idx = _mm512_mask_add_epi32(idx, gt, idx, _mm512_set1_epi32(step));
  }
  return idx;
}

/// Binary search for bits <= 4 (at most 15 boundaries, one register) with the probe tables
/// pre-shifted per step: st.t[s][i] = b[i + 2^s - 1], so the probe of step 2^s is one permute of
/// idx (no index add). Same probes as search(), so the same result.
struct ShiftedBounds {
  __m512 first;    // b[k/2 - 1] in every lane
  __m512 t[3];     // steps 1, 2, 4
};

ShiftedBounds shifted_bounds(const float* b, int bits) {
  ShiftedBounds st;
  const int k = 1 << bits;
  const __m512 t0 = _mm512_maskz_loadu_ps(tail_mask(static_cast<size_t>(k - 1)), b);
  st.first = _mm512_set1_ps(b[k / 2 - 1]);
  const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  for (int s = 0; s < 3; ++s) st.t[s] = _mm512_permutexvar_ps(_mm512_add_epi32(iota, _mm512_set1_epi32((1 << s) - 1)), t0);
  return st;
}

[[gnu::always_inline]] inline __m512i search16(__m512 v, const ShiftedBounds& st, int bits) {
  const int k = 1 << bits;
  __m512i idx = _mm512_maskz_mov_epi32(_mm512_cmp_ps_mask(v, st.first, _CMP_GT_OQ), _mm512_set1_epi32(k / 2));
  int s = bits - 2;
  for (int step = k / 4; step > 0; step /= 2, --s) {
    const __mmask16 gt = _mm512_cmp_ps_mask(v, _mm512_permutexvar_ps(idx, st.t[s]), _CMP_GT_OQ);
    idx = _mm512_mask_add_epi32(idx, gt, idx, _mm512_set1_epi32(step));
  }
  return idx;
}

void quantize(const float* x, size_t n, const float* b, int bits, uint8_t* codes) {
  const size_t nb = (size_t{1} << bits) - 1;
  size_t i = 0;
  if (bits <= 5) {
    alignas(64) float t[32] = {};
    std::memcpy(t, b, nb * sizeof(float));
    const __m512 t0 = _mm512_load_ps(t), t1 = _mm512_load_ps(t + 16);
    const ShiftedBounds st = shifted_bounds(b, bits <= 4 ? bits : 1);
    for (; i + 16 <= n; i += 16) {
      const __m512 v = _mm512_loadu_ps(x + i);
      const __m512i idx = bits <= 4 ? search16(v, st, bits)
                                    : search(v, bits, b, [&](__m512i j) { return _mm512_permutex2var_ps(t0, j, t1); });
      _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + i), _mm512_cvtepi32_epi8(idx));
    }
  } else {
    for (; i + 16 <= n; i += 16) {
      const __m512 v = _mm512_loadu_ps(x + i);
      const __m512i idx = search(v, bits, b, [&](__m512i j) { return _mm512_i32gather_ps(j, b, 4); });
      _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + i), _mm512_cvtepi32_epi8(idx));
    }
  }
  if (i < n) ref().quantize(x + i, n - i, b, bits, codes + i);
}

void lookup(const uint8_t* codes, size_t n, const float* table, int bits, float* out) {
  const size_t k = size_t{1} << bits;
  size_t i = 0;
  if (bits <= 5) {
    alignas(64) float t[32] = {};
    std::memcpy(t, table, k * sizeof(float));
    const __m512 t0 = _mm512_load_ps(t), t1 = _mm512_load_ps(t + 16);
    for (; i + 16 <= n; i += 16) {
      const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i)));
      _mm512_storeu_ps(out + i, bits <= 4 ? _mm512_permutexvar_ps(idx, t0) : _mm512_permutex2var_ps(t0, idx, t1));
    }
  } else {
    for (; i + 16 <= n; i += 16) {
      const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i)));
      _mm512_storeu_ps(out + i, _mm512_i32gather_ps(idx, table, 4));
    }
  }
  if (i < n) ref().lookup(codes + i, n - i, table, bits, out + i);
}

void pack(const uint8_t* codes, size_t n, int bits, uint8_t* out) { detail::pack_bmi2(codes, n, bits, out); }
void unpack(const uint8_t* in, size_t n, int bits, uint8_t* codes) { detail::unpack_bmi2(in, n, bits, codes); }

void f32_to_f16(const float* in, uint16_t* out, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(in + i);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    // the hardware keeps NaN payload bits; the scalar conversion writes sign | 0x7E00
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    while (nan) {
      const int l = __builtin_ctz(nan);
      nan = static_cast<__mmask16>(nan & (nan - 1));
      out[i + static_cast<size_t>(l)] = detail::f2h(in[i + static_cast<size_t>(l)]);
    }
  }
  if (i < n) ref().f32_to_f16(in + i, out + i, n - i);
}

void f16_to_f32(const uint16_t* in, float* out, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i));
    _mm512_storeu_ps(out + i, _mm512_cvtph_ps(h));
    // the hardware quiets signalling NaNs; the scalar conversion keeps the payload as is
    __mmask16 nan = _mm256_cmpgt_epi16_mask(_mm256_and_si256(h, _mm256_set1_epi16(0x7FFF)), _mm256_set1_epi16(0x7C00));
    while (nan) {
      const int l = __builtin_ctz(nan);
      nan = static_cast<__mmask16>(nan & (nan - 1));
      out[i + static_cast<size_t>(l)] = detail::h2f(in[i + static_cast<size_t>(l)]);
    }
  }
  if (i < n) ref().f16_to_f32(in + i, out + i, n - i);
}

/// |v| with NaN lanes set to 0 (the scalar loops skip NaN when taking the maximum).
__m512 abs_no_nan(__m512 v) {
  const __m512 a = _mm512_abs_ps(v);
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, a, _CMP_ORD_Q), a);
}

void q8_0_encode(const float* x, size_t n_blocks, uint8_t* out) {
  const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
  const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
  for (size_t blk = 0; blk < n_blocks; ++blk, x += kQBlock, out += kQ8_0BlockBytes) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(abs_no_nan(v0), abs_no_nan(v1)));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    put_scale(out, d);
    const __m512 vid = _mm512_set1_ps(id);
    const __m512 in[2] = {v0, v1};
    for (size_t q = 0; q < 2; ++q) {
      const __m512 y = _mm512_mul_ps(in[q], vid);
      // round half away from zero (roundf): truncate, then step away when the dropped part >= 0.5
      const __m512 t = _mm512_roundscale_ps(y, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
      const __m512 frac = _mm512_abs_ps(_mm512_sub_ps(y, t));
      const __mmask16 up = _mm512_cmp_ps_mask(frac, half, _CMP_GE_OQ);
      const __m512 step = _mm512_or_ps(one, _mm512_and_ps(y, _mm512_set1_ps(-0.0f)));  // copysign(1, y)
      __m512 r = _mm512_mask_add_ps(t, up, t, step);
      r = _mm512_min_ps(_mm512_max_ps(r, lo), hi);  // NaN -> -127 (max returns its 2nd operand)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 + 16 * q), _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(r)));
    }
  }
}

/// Store 16 floats, non-temporally when `stream` (the caller checked 64-byte alignment).
[[gnu::always_inline]] inline void store16(float* out, __m512 v, bool stream) {
  if (stream) {
    _mm512_stream_ps(out, v);
  } else {
    _mm512_storeu_ps(out, v);
  }
}

void q8_0_decode(const uint8_t* in, size_t n_blocks, float* out, bool stream) {
  stream = stream && (reinterpret_cast<uintptr_t>(out) % 64) == 0;  // blocks are 128 B: all aligned
  for (size_t blk = 0; blk < n_blocks; ++blk, in += kQ8_0BlockBytes, out += kQBlock) {
    const __m512 d = _mm512_set1_ps(get_scale(in));
    for (size_t q = 0; q < 2; ++q) {
      const __m512i c = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 2 + 16 * q)));
      store16(out + 16 * q, _mm512_mul_ps(_mm512_cvtepi32_ps(c), d), stream);
    }
  }
  if (stream) _mm_sfence();
}

void q4_0_encode(const float* x, size_t n_blocks, uint8_t* out) {
  const __m512 off = _mm512_set1_ps(8.5f), zero = _mm512_setzero_ps(), top = _mm512_set1_ps(15.0f);
  for (size_t blk = 0; blk < n_blocks; ++blk, x += kQBlock, out += kQ4_0BlockBytes) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const __m512 a0 = abs_no_nan(v0), a1 = abs_no_nan(v1);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
    float max = 0.0f;  // the first element of largest magnitude, as the scalar loop finds it
    if (amax > 0.0f) {
      const __m512 va = _mm512_set1_ps(amax);
      const uint32_t hit = static_cast<uint32_t>(_mm512_cmp_ps_mask(a0, va, _CMP_EQ_OQ)) |
                           (static_cast<uint32_t>(_mm512_cmp_ps_mask(a1, va, _CMP_EQ_OQ)) << 16);
      max = x[__builtin_ctz(hit)];
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    put_scale(out, d);
    const __m512 vid = _mm512_set1_ps(id);
    __m128i c[2];
    const __m512 in[2] = {v0, v1};
    for (size_t q = 0; q < 2; ++q) {
      __m512 y = _mm512_add_ps(_mm512_mul_ps(in[q], vid), off);
      y = _mm512_min_ps(_mm512_max_ps(y, zero), top);  // NaN -> 0
      c[q] = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(y));
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2), _mm_or_si128(c[0], _mm_slli_epi16(c[1], 4)));
  }
}

void q4_0_decode(const uint8_t* in, size_t n_blocks, float* out, bool stream) {
  stream = stream && (reinterpret_cast<uintptr_t>(out) % 64) == 0;
  const __m512 eight = _mm512_set1_ps(8.0f);
  for (size_t blk = 0; blk < n_blocks; ++blk, in += kQ4_0BlockBytes, out += kQBlock) {
    const __m512 d = _mm512_set1_ps(get_scale(in));
    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 2)));
    const __m512i lo = _mm512_and_si512(b, _mm512_set1_epi32(0x0F));
    const __m512i hi = _mm512_srli_epi32(b, 4);
    store16(out, _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(lo), eight), d), stream);
    store16(out + 16, _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(hi), eight), d), stream);
  }
  if (stream) _mm_sfence();
}

// ---- fused one-round RHT rows (p = 16 NV <= 256 in registers) --------------------------------

const Kernels& self();

/// The first K = 2^bits entries of `t` in two registers (masked loads: nothing past the end).
void load_table(const float* t, size_t count, __m512& t0, __m512& t1) {
  t0 = _mm512_maskz_loadu_ps(count >= 16 ? static_cast<__mmask16>(0xFFFF) : tail_mask(count), t);
  t1 = count > 16 ? _mm512_maskz_loadu_ps(count >= 32 ? static_cast<__mmask16>(0xFFFF) : tail_mask(count - 16), t + 16)
                  : _mm512_setzero_ps();
}

/// 4-bit packing of 8 registers of int32 codes (128 codes, each < 16) into 64 bytes, LSB-first
/// (byte j = c[2j] | c[2j+1] << 4). In-lane packs keep 128-bit lane l of every register together:
/// after packus 32->16 and 16->8, lane l of Q0 holds the bytes of elements 4l..4l+3 of R0..R3;
/// maddubs with (1, 16) joins neighbours into c0 + 16 c1; the last pack leaves, in lane l, word q
/// = the two output bytes of R_q's elements 4l..4l+3, which belong at output word 4q + l. One
/// word permutation puts them there: 11 uops instead of 5 per register.
[[gnu::always_inline]] inline void pack4_regs8(const __m512i* r, uint8_t* out) {
  const __m512i q0 = _mm512_packus_epi16(_mm512_packus_epi32(r[0], r[1]), _mm512_packus_epi32(r[2], r[3]));
  const __m512i q1 = _mm512_packus_epi16(_mm512_packus_epi32(r[4], r[5]), _mm512_packus_epi32(r[6], r[7]));
  const __m512i k = _mm512_set1_epi16(0x1001);  // bytes (1, 16)
  const __m512i b = _mm512_packus_epi16(_mm512_maddubs_epi16(q0, k), _mm512_maddubs_epi16(q1, k));
  // output word w = 4 q + l comes from lane l, word q: source index 8 l + q
  const __m512i perm = _mm512_set_epi16(31, 23, 15, 7, 30, 22, 14, 6, 29, 21, 13, 5, 28, 20, 12, 4,  //
                                        27, 19, 11, 3, 26, 18, 10, 2, 25, 17, 9, 1, 24, 16, 8, 0);
  _mm512_storeu_si512(out, _mm512_permutexvar_epi16(perm, b));
}

/// The same for 4 registers (64 codes) into 32 bytes: lane l, word q (q < 4) -> output word 4 q + l.
[[gnu::always_inline]] inline void pack4_regs4(const __m512i* r, uint8_t* out) {
  const __m512i q0 = _mm512_packus_epi16(_mm512_packus_epi32(r[0], r[1]), _mm512_packus_epi32(r[2], r[3]));
  const __m512i k = _mm512_set1_epi16(0x1001);
  const __m512i m0 = _mm512_maddubs_epi16(q0, k);
  const __m512i b = _mm512_packus_epi16(m0, m0);  // lane l: words 0..3 = R0..R3 (then a copy)
  const __m512i perm = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  //
                                        27, 19, 11, 3, 26, 18, 10, 2, 25, 17, 9, 1, 24, 16, 8, 0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm512_castsi512_si256(_mm512_permutexvar_epi16(perm, b)));
}

/// Rows ahead that the encoder prefetches (8 rows of d = 128 are 4 KiB: far enough to cover the
/// DRAM latency at one row per ~30 ns, near enough to stay in L1).
constexpr size_t kPrefetchRows = 8;

/// sum_squares of one row held in memory, in the canonical order (lane j accumulates the terms
/// i = j mod 16 in ascending i, then fold16), inlined so the next row's norm can be interleaved.
template <size_t NV>
[[gnu::always_inline]] inline float row_sum_squares(const float* x) {
  __m512 acc = _mm512_setzero_ps();
  for (size_t q = 0; q < NV; ++q) {
    const __m512 v = _mm512_loadu_ps(x + 16 * q);
    acc = _mm512_add_ps(acc, _mm512_mul_ps(v, v));
  }
  return fold16(acc);
}

/// B = the bit width when known at compile time (2..4: fully unrolled), 0 = take `bits_rt`.
template <size_t NV, int B>
void rht_encode_rows_regs(const float* x, size_t n, const float* signs, float fs, const float* bounds, int bits_rt,
                          uint8_t* out, float* norms, const float* centroids, float* ips) {
  const int bits = B != 0 ? B : bits_rt;
  const size_t row_bytes = 2 * NV * static_cast<size_t>(bits);  // 16 NV codes of `bits` bits
  const __m512 vfs = _mm512_set1_ps(fs);
  __m512 t0, t1;
  load_table(bounds, (size_t{1} << bits) - 1, t0, t1);
  const ShiftedBounds st = shifted_bounds(bounds, bits <= 4 ? bits : 1);
  __m512 c0 = _mm512_setzero_ps(), c1 = _mm512_setzero_ps();  // EDEN's centroid table
  if (ips != nullptr && bits <= 5) load_table(centroids, size_t{1} << bits, c0, c1);
  // software pipeline: row t + 1's norm (a latency-bound chain: adds, fold, sqrt, divide) is
  // issued before row t's transform, so the two overlap
  float ss_next = n > 0 ? row_sum_squares<NV>(x) : 0.0f;
  for (size_t t = 0; t < n; ++t, x += 16 * NV, out += row_bytes) {
    const float m = rht_row_multiplier(ss_next, norms + t);
    if (t + 1 < n) ss_next = row_sum_squares<NV>(x + 16 * NV);
    for (size_t q = 0; q < NV; ++q)
      _mm_prefetch(reinterpret_cast<const char*>(x + kPrefetchRows * 16 * NV + 16 * q), _MM_HINT_T0);
    __m512 r[NV];
    const __m512 vm = _mm512_set1_ps(m);
    for (size_t q = 0; q < NV; ++q)  // scale, then mul by the signs: the composition's two roundings
      r[q] = _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * q), vm), _mm512_loadu_ps(signs + 16 * q));
    fwht_regs_all<NV>(r, vfs);
    __m512i idx[NV];
    if (bits <= 4) {
      for (size_t q = 0; q < NV; ++q) idx[q] = search16(r[q], st, bits);
    } else if (bits == 5) {
      for (size_t q = 0; q < NV; ++q)
        idx[q] = search(r[q], bits, bounds, [&](__m512i j) { return _mm512_permutex2var_ps(t0, j, t1); });
    } else {
      for (size_t q = 0; q < NV; ++q)
        idx[q] = search(r[q], bits, bounds, [&](__m512i j) { return _mm512_i32gather_ps(j, bounds, 4); });
    }
    if (ips != nullptr) {  // EDEN: <y, c> in the canonical order (register q holds i = 16q + lane)
      __m512 acc = _mm512_setzero_ps();
      for (size_t q = 0; q < NV; ++q) {
        const __m512 c = bits <= 4   ? _mm512_permutexvar_ps(idx[q], c0)
                         : bits == 5 ? _mm512_permutex2var_ps(c0, idx[q], c1)
                                     : _mm512_i32gather_ps(idx[q], centroids, 4);
        acc = _mm512_add_ps(acc, _mm512_mul_ps(r[q], c));
      }
      ips[t] = fold16(acc);
    }
    if (bits == 4 && NV % 4 == 0) {
      for (size_t q = 0; q < NV; q += 8) {
        if (q + 8 <= NV) {
          pack4_regs8(idx + q, out + 8 * q);
        } else {
          pack4_regs4(idx + q, out + 8 * q);
        }
      }
      continue;
    }
    if (bits == 4) {  // two codes per byte: (c0 | c1 << 4) in the low byte of every qword, then vpmovqb
      for (size_t q = 0; q < NV; ++q) {
        const __m512i v = _mm512_or_si512(idx[q], _mm512_srli_epi64(idx[q], 28));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(out + 8 * q), _mm512_cvtepi64_epi8(v));
      }
      continue;
    }
    alignas(64) uint8_t codes[16 * NV];
    for (size_t q = 0; q < NV; ++q)
      _mm_store_si128(reinterpret_cast<__m128i*>(codes + 16 * q), _mm512_cvtepi32_epi8(idx[q]));
    detail::pack_bmi2(codes, 16 * NV, bits, out);
  }
}

template <size_t NV, int B>
void rht_decode_rows_regs(const uint8_t* in, size_t n, const float* table, int bits_rt, const float* signs, float fs,
                          const float* sc, float* out, bool stream) {
  const int bits = B != 0 ? B : bits_rt;
  const size_t row_bytes = 2 * NV * static_cast<size_t>(bits);
  const __m512 vfs = _mm512_set1_ps(fs);
  __m512 t0, t1;
  if (bits <= 5) load_table(table, size_t{1} << bits, t0, t1);
  // 4 bits: every byte into two int32 lanes, the odd one shifted right by 4; vpermps reads only
  // the low 4 bits of each index, so the even lane needs no mask
  const __m512i shifts = _mm512_set1_epi64(0x0000000400000000ll);
  for (size_t t = 0; t < n; ++t, in += row_bytes, out += 16 * NV) {
    __m512 r[NV];
    if (bits == 4) {
      for (size_t q = 0; q < NV; ++q) {
        const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(in + 8 * q));
        r[q] = _mm512_permutexvar_ps(_mm512_srlv_epi32(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(b, b)), shifts), t0);
      }
    } else {
      alignas(64) uint8_t codes[16 * NV];
      detail::unpack_bmi2(in, 16 * NV, bits, codes);
      for (size_t q = 0; q < NV; ++q) {
        const __m512i idx = _mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(codes + 16 * q)));
        r[q] = bits <= 4   ? _mm512_permutexvar_ps(idx, t0)
               : bits == 5 ? _mm512_permutex2var_ps(t0, idx, t1)
                           : _mm512_i32gather_ps(idx, table, 4);
      }
    }
    fwht_regs_all<NV>(r, vfs);
    const __m512 vsc = _mm512_set1_ps(sc[t]);
    for (size_t q = 0; q < NV; ++q) r[q] = _mm512_mul_ps(_mm512_mul_ps(r[q], _mm512_loadu_ps(signs + 16 * q)), vsc);
    if (stream) {  // whole 64-byte lines straight to memory: no read-for-ownership of `out`
      for (size_t q = 0; q < NV; ++q) _mm512_stream_ps(out + 16 * q, r[q]);
    } else {
      for (size_t q = 0; q < NV; ++q) _mm512_storeu_ps(out + 16 * q, r[q]);
    }
  }
  if (stream) _mm_sfence();  // order the weakly-ordered stores before whatever the caller does next
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
    case 16: rht_encode_nv<1>(x, n, signs, fs, bounds, bits, out, norms, cent, ips); return;
    case 32: rht_encode_nv<2>(x, n, signs, fs, bounds, bits, out, norms, cent, ips); return;
    case 64: rht_encode_nv<4>(x, n, signs, fs, bounds, bits, out, norms, cent, ips); return;
    case 128: rht_encode_nv<8>(x, n, signs, fs, bounds, bits, out, norms, cent, ips); return;
    case 256: rht_encode_nv<16>(x, n, signs, fs, bounds, bits, out, norms, cent, ips); return;
    default: rht_encode_rows_composed(self(), x, n, signs, p, fs, bounds, bits, out, norms, cent, ips); return;
  }
}

void rht_decode_rows(const uint8_t* in, size_t n, const float* table, int bits, const float* signs, size_t p, float fs,
                     const float* sc, float* out, bool stream) {
  stream = stream && (reinterpret_cast<uintptr_t>(out) % 64) == 0;  // vmovntps needs aligned lines
  switch (p) {
    case 16: rht_decode_nv<1>(in, n, table, bits, signs, fs, sc, out, stream); return;
    case 32: rht_decode_nv<2>(in, n, table, bits, signs, fs, sc, out, stream); return;
    case 64: rht_decode_nv<4>(in, n, table, bits, signs, fs, sc, out, stream); return;
    case 128: rht_decode_nv<8>(in, n, table, bits, signs, fs, sc, out, stream); return;
    case 256: rht_decode_nv<16>(in, n, table, bits, signs, fs, sc, out, stream); return;
    default: rht_decode_rows_composed(self(), in, n, table, bits, signs, p, fs, sc, out); return;
  }
}

// ---- uniform (KIVI) grids ----------------------------------------------------------------------

void uniform_quantize(const float* x, size_t n, const float* zero, const float* scale, int levels, uint8_t* codes) {
  const __m512 half = _mm512_set1_ps(0.5f), top = _mm512_set1_ps(static_cast<float>(levels));
  const __m512 vzero = _mm512_setzero_ps();
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : tail_mask(n - i);
    const __m512 s = _mm512_maskz_loadu_ps(m, scale + i);
    const __m512 y =
        _mm512_add_ps(_mm512_div_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, zero + i)), s), half);
    const __m512 v = _mm512_roundscale_ps(y, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    // keep lanes with scale != 0 and v > 0 (false for NaN); clamp to levels
    const __mmask16 keep = _mm512_cmp_ps_mask(s, vzero, _CMP_NEQ_UQ) & _mm512_cmp_ps_mask(v, vzero, _CMP_GT_OQ);
    const __m512i c = _mm512_cvttps_epi32(_mm512_maskz_mov_ps(keep, _mm512_min_ps(v, top)));
    _mm_mask_storeu_epi8(codes + i, m, _mm512_cvtepi32_epi8(c));
  }
}

void uniform_dequantize(const uint8_t* codes, size_t n, const float* zero, const float* scale, float* out) {
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : tail_mask(n - i);
    const __m512 c = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, codes + i)));
    _mm512_mask_storeu_ps(out + i, m,
                          _mm512_add_ps(_mm512_maskz_loadu_ps(m, zero + i), _mm512_mul_ps(c, _mm512_maskz_loadu_ps(m, scale + i))));
  }
}

// ---- double-precision metric loops ----------------------------------------------------------

/// Canonical 8-lane double fold: 8 -> 4 -> 2 -> 1, upper half onto lower half.
[[gnu::always_inline]] inline double fold8d(__m512d acc) {
  const __m256d s4 = _mm256_add_pd(_mm512_castpd512_pd256(acc), _mm512_extractf64x4_pd(acc, 1));
  const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
}

/// R rows at once (independent accumulators hide the add latency); lanes past d get no term.
template <size_t R>
[[gnu::always_inline]] inline void dot_rows_block(const double* q, const float* rows, size_t d, double* out) {
  __m512d acc[R];
  for (size_t r = 0; r < R; ++r) acc[r] = _mm512_setzero_pd();
  size_t i = 0;
  for (; i + 8 <= d; i += 8) {
    const __m512d qv = _mm512_loadu_pd(q + i);
    for (size_t r = 0; r < R; ++r)
      acc[r] = _mm512_add_pd(acc[r], _mm512_mul_pd(qv, _mm512_cvtps_pd(_mm256_loadu_ps(rows + r * d + i))));
  }
  if (i < d) {
    const __mmask8 m = static_cast<__mmask8>((1u << (d - i)) - 1u);
    const __m512d qv = _mm512_maskz_loadu_pd(m, q + i);
    for (size_t r = 0; r < R; ++r) {
      const __m512d p = _mm512_mul_pd(qv, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, rows + r * d + i)));
      acc[r] = _mm512_mask_add_pd(acc[r], m, acc[r], p);
    }
  }
  for (size_t r = 0; r < R; ++r) out[r] = fold8d(acc[r]);
}

void dot_rows_f64(const double* q, const float* rows, size_t n, size_t d, double* out) {
  size_t j = 0;
  for (; j + 4 <= n; j += 4) dot_rows_block<4>(q, rows + j * d, d, out + j);
  for (; j < n; ++j) dot_rows_block<1>(q, rows + j * d, d, out + j);
}

/// C registers of 8 outputs held across all n rows (the sums per output stay in row order).
template <size_t C>
[[gnu::always_inline]] inline void axpy_rows_tile(double* o, const double* p, const float* rows, size_t n, size_t d,
                                                  size_t i, __mmask8 last) {
  __m512d a[C];
  for (size_t c = 0; c < C; ++c) a[c] = _mm512_maskz_loadu_pd(c + 1 == C ? last : 0xFF, o + i + 8 * c);
  for (size_t j = 0; j < n; ++j) {
    const __m512d vp = _mm512_set1_pd(p[j]);
    const float* r = rows + j * d + i;
    for (size_t c = 0; c < C; ++c) {
      const __m256 v = _mm256_maskz_loadu_ps(c + 1 == C ? last : 0xFF, r + 8 * c);
      a[c] = _mm512_add_pd(a[c], _mm512_mul_pd(vp, _mm512_cvtps_pd(v)));
    }
  }
  for (size_t c = 0; c < C; ++c) _mm512_mask_storeu_pd(o + i + 8 * c, c + 1 == C ? last : 0xFF, a[c]);
}

void axpy_rows_f64(double* o, const double* p, const float* rows, size_t n, size_t d) {
  size_t i = 0;
  for (; i + 32 <= d; i += 32) axpy_rows_tile<4>(o, p, rows, n, d, i, 0xFF);
  for (; i + 8 <= d; i += 8) axpy_rows_tile<1>(o, p, rows, n, d, i, 0xFF);
  if (i < d) axpy_rows_tile<1>(o, p, rows, n, d, i, static_cast<__mmask8>((1u << (d - i)) - 1u));
}

/// 4 queries x R keys of canonical double dot products (8 accumulators for R = 2).
template <size_t R>
[[gnu::always_inline]] inline void dot_rows4_block(const double* q, const float* rows, size_t d, double* out,
                                                   size_t ldo) {
  __m512d acc[4][R];
  for (size_t g = 0; g < 4; ++g)
    for (size_t r = 0; r < R; ++r) acc[g][r] = _mm512_setzero_pd();
  size_t i = 0;
  for (; i + 8 <= d; i += 8) {
    __m512d kv[R];
    for (size_t r = 0; r < R; ++r) kv[r] = _mm512_cvtps_pd(_mm256_loadu_ps(rows + r * d + i));
    for (size_t g = 0; g < 4; ++g) {
      const __m512d qv = _mm512_loadu_pd(q + g * d + i);
      for (size_t r = 0; r < R; ++r) acc[g][r] = _mm512_add_pd(acc[g][r], _mm512_mul_pd(qv, kv[r]));
    }
  }
  if (i < d) {
    const __mmask8 m = static_cast<__mmask8>((1u << (d - i)) - 1u);
    __m512d kv[R];
    for (size_t r = 0; r < R; ++r) kv[r] = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, rows + r * d + i));
    for (size_t g = 0; g < 4; ++g) {
      const __m512d qv = _mm512_maskz_loadu_pd(m, q + g * d + i);
      for (size_t r = 0; r < R; ++r) acc[g][r] = _mm512_mask_add_pd(acc[g][r], m, acc[g][r], _mm512_mul_pd(qv, kv[r]));
    }
  }
  for (size_t g = 0; g < 4; ++g)
    for (size_t r = 0; r < R; ++r) out[g * ldo + r] = fold8d(acc[g][r]);
}

void dot_rows4_f64(const double* q, const float* rows, size_t n, size_t d, double* out, size_t ldo) {
  size_t j = 0;
  for (; j + 2 <= n; j += 2) dot_rows4_block<2>(q, rows + j * d, d, out + j, ldo);
  for (; j < n; ++j) dot_rows4_block<1>(q, rows + j * d, d, out + j, ldo);
}

/// 4 outputs x C registers of 8 doubles, held across all n rows (row order kept per element).
template <size_t C>
[[gnu::always_inline]] inline void axpy_rows4_tile(double* o, const double* p, size_t ldp, const float* rows, size_t n,
                                                   size_t d, size_t i, __mmask8 last) {
  __m512d a[4][C];
  for (size_t g = 0; g < 4; ++g)
    for (size_t c = 0; c < C; ++c) a[g][c] = _mm512_maskz_loadu_pd(c + 1 == C ? last : 0xFF, o + g * d + i + 8 * c);
  for (size_t j = 0; j < n; ++j) {
    __m512d v[C];
    for (size_t c = 0; c < C; ++c)
      v[c] = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(c + 1 == C ? last : 0xFF, rows + j * d + i + 8 * c));
    for (size_t g = 0; g < 4; ++g) {
      const __m512d vp = _mm512_set1_pd(p[g * ldp + j]);
      for (size_t c = 0; c < C; ++c) a[g][c] = _mm512_add_pd(a[g][c], _mm512_mul_pd(vp, v[c]));
    }
  }
  for (size_t g = 0; g < 4; ++g)
    for (size_t c = 0; c < C; ++c) _mm512_mask_storeu_pd(o + g * d + i + 8 * c, c + 1 == C ? last : 0xFF, a[g][c]);
}

void axpy_rows4_f64(double* o, const double* p, size_t ldp, const float* rows, size_t n, size_t d) {
  size_t i = 0;
  for (; i + 16 <= d; i += 16) axpy_rows4_tile<2>(o, p, ldp, rows, n, d, i, 0xFF);
  for (; i + 8 <= d; i += 8) axpy_rows4_tile<1>(o, p, ldp, rows, n, d, i, 0xFF);
  if (i < d) axpy_rows4_tile<1>(o, p, ldp, rows, n, d, i, static_cast<__mmask8>((1u << (d - i)) - 1u));
}

constexpr Kernels kTable{Level::Avx512, sum_squares, dot,         scale,       mul,         fwht,
                         matmul_rows,   quantize,    lookup,      pack,        unpack,      f32_to_f16,
                         f16_to_f32,    q8_0_encode, q8_0_decode, q4_0_encode, q4_0_decode, rht_encode_rows, rht_decode_rows, uniform_quantize, uniform_dequantize, dot_rows_f64, axpy_rows_f64, dot_rows4_f64, axpy_rows4_f64};

const Kernels& self() { return kTable; }

}  // namespace

const Kernels& avx512_kernels() { return kTable; }

}  // namespace tq::simd
