// Tests of lib/tq/core: fp16/bf16 conversion and deterministic random numbers.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "tq/core/half.h"
#include "tq/core/rng.h"

TEST_CASE("fp16 conversion is exact on every 16-bit pattern round trip") {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = tq::fp16_to_float(static_cast<uint16_t>(h));
    const uint16_t back = tq::float_to_fp16(f);
    if (std::isnan(f)) {
      CHECK(std::isnan(tq::fp16_to_float(back)));
    } else {
      CHECK(back == h);
    }
  }
}

TEST_CASE("fp16 rounding: nearest-even, overflow to inf, known values") {
  CHECK(tq::float_to_fp16(1.0f) == 0x3C00);
  CHECK(tq::float_to_fp16(-2.0f) == 0xC000);
  CHECK(tq::float_to_fp16(65504.0f) == 0x7BFF);
  CHECK(tq::float_to_fp16(65520.0f) == 0x7C00);           // rounds up to inf
  CHECK(tq::float_to_fp16(65519.0f) == 0x7BFF);
  CHECK(tq::float_to_fp16(1.0f + 0x1.0p-11f) == 0x3C00);  // tie -> even
  CHECK(tq::float_to_fp16(1.0f + 3 * 0x1.0p-11f) == 0x3C02);
  CHECK(tq::float_to_fp16(0x1.0p-24f) == 0x0001);          // smallest subnormal
  CHECK(tq::float_to_fp16(0x1.0p-26f) == 0x0000);
  CHECK(tq::fp16_to_float(0x0001) == 0x1.0p-24f);
}

TEST_CASE("bf16 conversion") {
  CHECK(tq::bf16_to_float(tq::float_to_bf16(1.5f)) == 1.5f);
  CHECK(tq::float_to_bf16(1.0f + 0x1.0p-8f) == 0x3F80);  // tie -> even
  CHECK(std::isnan(tq::bf16_to_float(tq::float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_CASE("rng: deterministic streams, seed_for separates (layer, head, tensor)") {
  tq::Rng a(42), b(42);
  for (int i = 0; i < 100; ++i) CHECK(a.next_u64() == b.next_u64());
  CHECK(tq::seed_for(1, 0, 0, "k") != tq::seed_for(1, 0, 0, "v"));
  CHECK(tq::seed_for(1, 0, 1, "k") != tq::seed_for(1, 1, 0, "k"));
  // Gaussian moments over 200k draws: mean ~ 0, var ~ 1, kurtosis ~ 3 (5 standard errors).
  tq::Rng g(7);
  const int n = 200000;
  double s1 = 0, s2 = 0, s4 = 0;
  for (int i = 0; i < n; ++i) {
    const double x = g.gaussian();
    s1 += x;
    s2 += x * x;
    s4 += x * x * x * x;
  }
  CHECK(std::abs(s1 / n) < 5.0 / std::sqrt(n));
  CHECK(std::abs(s2 / n - 1.0) < 5.0 * std::sqrt(2.0 / n));
  CHECK(std::abs(s4 / n - 3.0) < 5.0 * std::sqrt(96.0 / n));
}
