// LSB-first bit packing (see bitpack.h). Widths dividing 8 (1, 2, 4, 8) pack whole bytes at a
// time; other widths stream through a 64-bit accumulator.
#include "tq/pack/bitpack.h"

#include <cstring>

#include <fmt/format.h>

#include "tq/core/error.h"

namespace tq {

namespace {

void check_bits(int bits) {
  if (bits < 1 || bits > 8) throw Error(fmt::format("bit packing: width must be 1..8 bits, not {}", bits));
}

/// Widths 1, 2, 4: per = 8 / bits codes per byte.
void pack_divisor(const uint8_t* codes, size_t n, int bits, uint8_t* out) {
  const size_t per = static_cast<size_t>(8 / bits);
  const auto mask = static_cast<unsigned>((1u << bits) - 1u);
  const size_t full = n / per;
  for (size_t byte = 0; byte < full; ++byte) {
    unsigned v = 0;
    const uint8_t* c = codes + byte * per;
    for (size_t j = 0; j < per; ++j) v |= (c[j] & mask) << (j * static_cast<size_t>(bits));
    out[byte] = static_cast<uint8_t>(v);
  }
  if (const size_t rest = n - full * per; rest > 0) {
    unsigned v = 0;
    const uint8_t* c = codes + full * per;
    for (size_t j = 0; j < rest; ++j) v |= (c[j] & mask) << (j * static_cast<size_t>(bits));
    out[full] = static_cast<uint8_t>(v);
  }
}

void unpack_divisor(const uint8_t* in, size_t n, int bits, uint8_t* codes) {
  const size_t per = static_cast<size_t>(8 / bits);
  const auto mask = static_cast<unsigned>((1u << bits) - 1u);
  for (size_t i = 0; i < n; ++i) {
    const unsigned byte = in[i / per];
    codes[i] = static_cast<uint8_t>((byte >> ((i % per) * static_cast<size_t>(bits))) & mask);
  }
}

}  // namespace

void pack_bits(const uint8_t* codes, size_t n, int bits, uint8_t* out) {
  check_bits(bits);
  if (n == 0) return;
  if (bits == 8) {
    std::memcpy(out, codes, n);
    return;
  }
  if (8 % bits == 0) {
    pack_divisor(codes, n, bits, out);
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

void unpack_bits(const uint8_t* in, size_t n, int bits, uint8_t* codes) {
  check_bits(bits);
  if (n == 0) return;
  if (bits == 8) {
    std::memcpy(codes, in, n);
    return;
  }
  if (8 % bits == 0) {
    unpack_divisor(in, n, bits, codes);
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

}  // namespace tq
