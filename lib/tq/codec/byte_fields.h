#pragma once
// Byte-level building blocks shared by the baseline codecs (kivi.cpp, block_formats.cpp,
// stage_sinks.cpp): little-endian fp16 / fp32 fields, rows kept at "full precision" (fp16 or
// fp32), and an LSB-first bit stream for codes of 1..8 bits.
//
// Every multi-byte field is little-endian regardless of the host, so an encoding's bytes are the
// same on every machine.
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>

#include "tq/core/half.h"

namespace tq::bytes {

inline void put_u16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v & 0xFFu);
  p[1] = static_cast<uint8_t>(v >> 8);
}
inline uint16_t get_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

inline void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>((v >> (8 * i)) & 0xFFu);
}
inline uint32_t get_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

/// fp32 -> fp16, saturating at +-65504 instead of overflowing to +-inf (NaN stays NaN). Scales,
/// zero points and full-precision rows are stored this way so that a finite input never decodes
/// to inf (and inf * 0 never makes a NaN).
inline uint16_t fp16_saturating(float v) {
  if (v > kFp16Max) v = kFp16Max;
  if (v < -kFp16Max) v = -kFp16Max;
  return float_to_fp16(v);
}

/// The value an fp16 field will decode to (fp32 -> saturating fp16 -> fp32).
inline float round_to_fp16(float v) { return fp16_to_float(fp16_saturating(v)); }

inline void put_fp16(uint8_t* p, float v) { put_u16(p, fp16_saturating(v)); }
inline float get_fp16(const uint8_t* p) { return fp16_to_float(get_u16(p)); }

/// Bytes per element of a full-precision row.
inline size_t full_precision_bytes(bool fp32) { return fp32 ? 4 : 2; }

/// Store n floats as fp16 (saturating) or fp32; writes n * full_precision_bytes(fp32) bytes.
inline void store_full_precision(const float* x, size_t n, bool fp32, uint8_t* out) {
  if (fp32) {
    for (size_t i = 0; i < n; ++i) put_u32(out + 4 * i, std::bit_cast<uint32_t>(x[i]));
  } else {
    for (size_t i = 0; i < n; ++i) put_fp16(out + 2 * i, x[i]);
  }
}

/// Inverse of store_full_precision.
inline void load_full_precision(const uint8_t* in, size_t n, bool fp32, float* out) {
  if (fp32) {
    for (size_t i = 0; i < n; ++i) out[i] = std::bit_cast<float>(get_u32(in + 4 * i));
  } else {
    for (size_t i = 0; i < n; ++i) out[i] = get_fp16(in + 2 * i);
  }
}

/// Bytes of a stream of `count` codes of `bits` bits each.
inline size_t packed_bytes(size_t count, int bits) { return (count * static_cast<size_t>(bits) + 7) / 8; }

/// LSB-first bit stream: code i occupies bits [i*b, (i+1)*b) of the stream, bit k of the stream
/// being bit (k mod 8) of byte k / 8. Codes have 1..8 bits.
class BitWriter {
 public:
  explicit BitWriter(uint8_t* out) : out_(out) {}
  void put(uint32_t code, int bits) {
    acc_ |= static_cast<uint64_t>(code) << filled_;
    filled_ += bits;
    while (filled_ >= 8) {
      *out_++ = static_cast<uint8_t>(acc_ & 0xFFu);
      acc_ >>= 8;
      filled_ -= 8;
    }
  }
  /// Write the last partial byte (zero-padded); call once at the end.
  void flush() {
    if (filled_ > 0) *out_++ = static_cast<uint8_t>(acc_ & 0xFFu);
    acc_ = 0;
    filled_ = 0;
  }

 private:
  uint8_t* out_;
  uint64_t acc_ = 0;
  int filled_ = 0;
};

class BitReader {
 public:
  explicit BitReader(const uint8_t* in) : in_(in) {}
  uint32_t get(int bits) {
    while (filled_ < bits) {
      acc_ |= static_cast<uint64_t>(*in_++) << filled_;
      filled_ += 8;
    }
    const uint32_t v = static_cast<uint32_t>(acc_ & ((uint64_t{1} << bits) - 1));
    acc_ >>= bits;
    filled_ -= bits;
    return v;
  }

 private:
  const uint8_t* in_;
  uint64_t acc_ = 0;
  int filled_ = 0;
};

}  // namespace tq::bytes
