// LSB-first bit packing (see bitpack.h). The work runs in simd::kernels() (scalar reference in
// lib/tq/simd/kernels_scalar.cpp, BMI2 pext/pdep in the AVX2 / AVX-512 tables; same bytes).
#include "tq/pack/bitpack.h"

#include <fmt/format.h>

#include "tq/core/error.h"
#include "tq/simd/kernels.h"

namespace tq {

namespace {

void check_bits(int bits) {
  if (bits < 1 || bits > 8) throw Error(fmt::format("bit packing: width must be 1..8 bits, not {}", bits));
}

}  // namespace

void pack_bits(const uint8_t* codes, size_t n, int bits, uint8_t* out) {
  check_bits(bits);
  if (n == 0) return;
  simd::kernels().pack(codes, n, bits, out);
}

void unpack_bits(const uint8_t* in, size_t n, int bits, uint8_t* codes) {
  check_bits(bits);
  if (n == 0) return;
  simd::kernels().unpack(in, n, bits, codes);
}

}  // namespace tq
