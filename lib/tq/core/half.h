#pragma once
// IEEE binary16 (fp16) and bfloat16 <-> fp32 conversions, bit-exact and portable.
// fp32 -> fp16 rounds to nearest-even, overflows to +-inf, keeps NaN a NaN, handles subnormals.
// fp32 -> bf16 rounds to nearest-even (NaN kept quiet).
#include <bit>
#include <cstddef>
#include <cstdint>

namespace tq {

inline float fp16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t man = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: value = man * 2^-24
      const float f = static_cast<float>(man) * 0x1.0p-24f;
      bits = std::bit_cast<uint32_t>(f) | sign;
    }
  } else if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (man << 13);
  } else {
    bits = sign | ((exp + 112u) << 23) | (man << 13);
  }
  return std::bit_cast<float>(bits);
}

inline uint16_t float_to_fp16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t absx = x & 0x7FFFFFFFu;
  if (absx >= 0x7F800000u) {  // inf or NaN
    return static_cast<uint16_t>(sign | 0x7C00u | (absx > 0x7F800000u ? 0x200u : 0u));
  }
  if (absx >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // rounds to >= 65520: inf
  if (absx < 0x38800000u) {  // below 2^-14: subnormal or zero in fp16
    // value / 2^-24 rounded to nearest-even integer
    const float a = std::bit_cast<float>(absx) * 0x1.0p24f;
    // nearest-even rounding of a float in [0, 1024]: add and subtract 2^23
    const float r = (a + 8388608.0f) - 8388608.0f;
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(r));
  }
  // normal: rebias exponent, round mantissa from 23 to 10 bits (nearest-even)
  uint32_t m = absx + 0xC8000000u;  // exponent - 112 in place (127 - 15 = 112 -> -112<<23)
  m += 0x0FFFu + ((m >> 13) & 1u);
  return static_cast<uint16_t>(sign | static_cast<uint16_t>(m >> 13));
}

inline float bf16_to_float(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

inline uint16_t float_to_bf16(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  x += 0x7FFFu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

/// Largest finite fp16 value.
inline constexpr float kFp16Max = 65504.0f;

void fp16_to_float(const uint16_t* in, float* out, size_t n);
void float_to_fp16(const float* in, uint16_t* out, size_t n);
void bf16_to_float(const uint16_t* in, float* out, size_t n);

}  // namespace tq
