#pragma once
// fp16 <-> fp32 for single values inside the per-ISA kernel files, with internal linkage so that
// no inline function compiled with AVX flags can be picked by the linker for baseline code (an
// ODR hazard of shared inline functions). Same bits as tq::fp16_to_float / tq::float_to_fp16
// (tq/core/half.h); tests/unit/test_simd.cpp checks the kernels that use them.
#include <cstdint>
#include <cstring>

namespace tq::simd::detail {

static inline uint32_t f2u(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
static inline float u2f(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

static inline float h2f(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t man = h & 0x3FFu;
  if (exp == 0) {
    if (man == 0) return u2f(sign);
    return u2f(f2u(static_cast<float>(man) * 0x1.0p-24f) | sign);
  }
  if (exp == 0x1F) return u2f(sign | 0x7F800000u | (man << 13));
  return u2f(sign | ((exp + 112u) << 23) | (man << 13));
}

static inline uint16_t f2h(float f) {
  const uint32_t x = f2u(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t absx = x & 0x7FFFFFFFu;
  if (absx >= 0x7F800000u) return static_cast<uint16_t>(sign | 0x7C00u | (absx > 0x7F800000u ? 0x200u : 0u));
  if (absx >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);
  if (absx < 0x38800000u) {
    const float a = u2f(absx) * 0x1.0p24f;
    const float r = (a + 8388608.0f) - 8388608.0f;
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(r));
  }
  uint32_t m = absx + 0xC8000000u;
  m += 0x0FFFu + ((m >> 13) & 1u);
  return static_cast<uint16_t>(sign | static_cast<uint16_t>(m >> 13));
}

/// fp32 -> fp16 saturating at +-65504, stored little endian (bytes::put_fp16).
static inline void put_scale(uint8_t* p, float v) {
  if (v > 65504.0f) v = 65504.0f;
  if (v < -65504.0f) v = -65504.0f;
  const uint16_t h = f2h(v);
  p[0] = static_cast<uint8_t>(h & 0xFFu);
  p[1] = static_cast<uint8_t>(h >> 8);
}
static inline float get_scale(const uint8_t* p) { return h2f(static_cast<uint16_t>(p[0] | (p[1] << 8))); }

/// Masks for pext/pdep bit packing: the low `bits` bits of each of 8 bytes.
static inline uint64_t byte_field_mask(int bits) { return 0x0101010101010101ull * ((1ull << bits) - 1ull); }

}  // namespace tq::simd::detail
