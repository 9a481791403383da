// Tests of lib/tq/pack: LSB-first bit packing against a bit-by-bit reference.
#include <doctest/doctest.h>

#include <vector>

#include "tq/core/rng.h"
#include "tq/pack/bitpack.h"

namespace {

// Reference packer: writes stream bit k to byte k/8, bit k%8, one bit at a time.
std::vector<uint8_t> reference_pack(const std::vector<uint8_t>& codes, int bits) {
  std::vector<uint8_t> out(tq::packed_bytes(codes.size(), bits), 0);
  size_t k = 0;
  for (uint8_t c : codes)
    for (int j = 0; j < bits; ++j, ++k)
      if ((c >> j) & 1) out[k / 8] = static_cast<uint8_t>(out[k / 8] | (1u << (k % 8)));
  return out;
}

}  // namespace

TEST_CASE("bitpack: round trip and exact layout for every width and odd lengths") {
  tq::Rng rng(11);
  for (int bits = 1; bits <= 8; ++bits) {
    for (size_t n : {0, 1, 2, 3, 5, 7, 8, 9, 13, 31, 33, 64, 127, 1000, 4097}) {
      std::vector<uint8_t> codes(n);
      for (auto& c : codes) c = static_cast<uint8_t>(rng.below(1u << bits));
      std::vector<uint8_t> packed(tq::packed_bytes(n, bits) + 1, 0xAB);  // guard byte
      tq::pack_bits(codes.data(), n, bits, packed.data());
      CHECK(packed.back() == 0xAB);  // nothing written past the end
      packed.pop_back();
      CHECK(packed == reference_pack(codes, bits));
      std::vector<uint8_t> back(n, 0xFF);
      tq::unpack_bits(packed.data(), n, bits, back.data());
      CHECK(back == codes);
    }
  }
}

TEST_CASE("bitpack: sizes and a hand-checked example") {
  CHECK(tq::packed_bytes(0, 3) == 0);
  CHECK(tq::packed_bytes(1, 3) == 1);
  CHECK(tq::packed_bytes(3, 3) == 2);
  CHECK(tq::packed_bytes(128, 3) == 48);
  CHECK(tq::packed_bytes(7, 1) == 1);
  // 3-bit codes 1, 2, 3: stream bits 100 010 110 (LSB first) -> byte0 = 0b11010001, byte1 = 0b0
  const uint8_t codes[3] = {1, 2, 3};
  uint8_t out[2] = {0xFF, 0xFF};
  tq::pack_bits(codes, 3, 3, out);
  CHECK(out[0] == 0xD1);
  CHECK(out[1] == 0x00);
  // high bits beyond the width are dropped
  const uint8_t wide[2] = {0xFF, 0x00};
  uint8_t o2 = 0xFF;
  tq::pack_bits(wide, 2, 4, &o2);
  CHECK(o2 == 0x0F);
}
