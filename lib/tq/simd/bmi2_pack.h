#pragma once
// Bit packing with BMI2 pext/pdep, shared by kernels_avx2.cpp and kernels_avx512.cpp (include
// only from files compiled with -mbmi2; internal linkage, see half_internal.h). Eight codes of b
// bits fill exactly b bytes of the LSB-first stream: pext of the 8 code bytes with the mask
// "low b bits of every byte" yields them in stream order, pdep reverses it.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "tq/simd/half_internal.h"
#include "tq/simd/kernels.h"

namespace tq::simd::detail {

/// Groups g < safe_groups(...) may load/store 8 bytes at g * bits without passing the stream end.
static inline size_t safe_groups(size_t groups, int bits) {
  const size_t b = static_cast<size_t>(bits);
  return groups * b >= 8 ? (groups * b - 8) / b + 1 : 0;
}

static inline void pack_bmi2(const uint8_t* codes, size_t n, int bits, uint8_t* out) {
  if (bits == 8) {
    if (n > 0) std::memcpy(out, codes, n);
    return;
  }
  const uint64_t mask = byte_field_mask(bits);
  const size_t b = static_cast<size_t>(bits);
  const size_t groups = n / 8;
  const size_t safe = safe_groups(groups, bits);
  size_t g = 0;
  for (; g < safe; ++g) {
    uint64_t c;
    std::memcpy(&c, codes + 8 * g, 8);
    const uint64_t v = _pext_u64(c, mask);
    std::memcpy(out + g * b, &v, 8);  // the bytes past g*b + b are rewritten by the next groups
  }
  for (; g < groups; ++g) {
    uint64_t c;
    std::memcpy(&c, codes + 8 * g, 8);
    const uint64_t v = _pext_u64(c, mask);
    std::memcpy(out + g * b, &v, b);
  }
  if (groups * 8 < n) scalar_kernels().pack(codes + groups * 8, n - groups * 8, bits, out + groups * b);
}

static inline void unpack_bmi2(const uint8_t* in, size_t n, int bits, uint8_t* codes) {
  if (bits == 8) {
    if (n > 0) std::memcpy(codes, in, n);
    return;
  }
  const uint64_t mask = byte_field_mask(bits);
  const size_t b = static_cast<size_t>(bits);
  const size_t groups = n / 8;
  const size_t safe = safe_groups(groups, bits);
  size_t g = 0;
  for (; g < safe; ++g) {
    uint64_t v;
    std::memcpy(&v, in + g * b, 8);
    const uint64_t c = _pdep_u64(v, mask);
    std::memcpy(codes + 8 * g, &c, 8);
  }
  for (; g < groups; ++g) {
    uint64_t v = 0;
    std::memcpy(&v, in + g * b, b);
    const uint64_t c = _pdep_u64(v, mask);
    std::memcpy(codes + 8 * g, &c, 8);
  }
  if (groups * 8 < n) scalar_kernels().unpack(in + groups * b, n - groups * 8, bits, codes + groups * 8);
}

}  // namespace tq::simd::detail
