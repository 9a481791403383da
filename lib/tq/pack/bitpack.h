#pragma once
// Bit packing of small unsigned codes into a contiguous LSB-first bit stream.
//
// n codes of b bits (1 <= b <= 8) occupy ceil(n b / 8) bytes. Code i fills stream bits
// [i b, (i+1) b), least significant bit first; stream bit k is bit (k mod 8) of byte k / 8.
// Unused high bits of the last byte are zero. Codes must be < 2^b (higher bits are dropped).
#include <cstddef>
#include <cstdint>

namespace tq {

/// Bytes needed for n codes of `bits` bits.
constexpr size_t packed_bytes(size_t n, int bits) { return (n * static_cast<size_t>(bits) + 7) / 8; }

/// Pack n codes into out[0 : packed_bytes(n, bits)].
void pack_bits(const uint8_t* codes, size_t n, int bits, uint8_t* out);

/// Unpack n codes from in[0 : packed_bytes(n, bits)].
void unpack_bits(const uint8_t* in, size_t n, int bits, uint8_t* codes);

}  // namespace tq
