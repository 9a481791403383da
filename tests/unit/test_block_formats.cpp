// Tests of the llama.cpp block formats (lib/tq/codec/block_formats.cpp): q8_0, q4_0, q4_1, iq4_nl.
// Hand-worked blocks, exact round trips, per-element error bounds recomputed independently from
// the data, exact byte counts, d < 32 behaviour and bad options.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "tq/codec/codec.h"
#include "tq/codec/factories.h"
#include "tq/core/error.h"
#include "tq/core/half.h"
#include "tq/core/rng.h"

namespace {

using Factory = std::function<std::unique_ptr<tq::Codec>(const tq::CodecArgs&, const tq::CodecContext&)>;

tq::CodecArgs args_of(const std::string& name, std::vector<std::pair<std::string, std::string>> options = {},
                      int bits = -1) {
  tq::CodecArgs a;
  a.name = name;
  a.bits = bits;
  a.options = std::move(options);
  a.spec = name;
  if (bits >= 0) a.spec.append(":").append(std::to_string(bits));
  for (const auto& [k, v] : a.options) a.spec.append(",").append(k).append("=").append(v);
  return a;
}

tq::CodecContext ctx_of(size_t d, const std::string& tensor = "k") {
  tq::CodecContext c;
  c.dim = d;
  c.seed = 1;
  c.tensor = tensor;
  return c;
}

std::vector<float> gaussian(size_t n, uint64_t seed) {
  tq::Rng rng(seed);
  std::vector<float> x(n);
  for (auto& v : x) v = static_cast<float>(rng.gaussian());
  return x;
}

std::vector<float> round_trip(const tq::Codec& c, const std::vector<float>& x, tq::Encoded* enc = nullptr) {
  const size_t n = x.size() / c.dim();
  tq::Encoded e = c.encode(x.data(), n, nullptr);
  REQUIRE(e.bytes.size() == e.count.total());
  std::vector<float> y(x.size(), -12345.0f);
  c.decode(e, y.data());
  if (enc) *enc = std::move(e);
  return y;
}

double nmse(const std::vector<float>& x, const std::vector<float>& y) {
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double e = static_cast<double>(x[i]) - static_cast<double>(y[i]);
    num += e * e;
    den += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  }
  return num / den;
}

float f16(float v) { return tq::fp16_to_float(tq::float_to_fp16(v)); }

/// The message of the UsageError thrown by f(), or "" when none.
std::string usage_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const tq::UsageError& e) {
    return e.what();
  }
  return "";
}

// The iq4_nl table, written out again here (from ggml's published kvalues_iq4nl).
constexpr float kTable[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

}  // namespace

TEST_CASE("q8_0: hand-worked block") {
  auto c = tq::make_q8_0(args_of("q8_0"), ctx_of(32));
  std::vector<float> x(32, 0.0f);
  x[0] = 1.0f;   // amax = 1 -> d = 1/127, fp16(d) = 0x2008 = 2^-7 (1 + 8/1024) = 0.00787353515625
  x[1] = -0.6f;  // -0.6 * 127 = -76.2 -> -76
  x[2] = 0.3f;   //  0.3 * 127 =  38.1 ->  38
  tq::Encoded e;
  const auto y = round_trip(*c, x, &e);
  REQUIRE(e.bytes.size() == 34);
  CHECK(e.bytes[0] == 0x08);
  CHECK(e.bytes[1] == 0x20);
  CHECK(static_cast<int8_t>(e.bytes[2]) == 127);
  CHECK(static_cast<int8_t>(e.bytes[3]) == -76);
  CHECK(static_cast<int8_t>(e.bytes[4]) == 38);
  CHECK(e.bytes[5] == 0);
  CHECK(y[0] == 0.99993896484375f);
  CHECK(y[1] == -0.598388671875f);
  CHECK(y[2] == 0.2991943359375f);
  CHECK(y[3] == 0.0f);
}

TEST_CASE("q8_0: integers times an fp16-exact scale round-trip exactly") {
  // d = 127/16 / 127 = 1/16 exactly; every x = q / 16 with |q| <= 127 decodes to itself.
  auto c = tq::make_q8_0(args_of("q8_0"), ctx_of(64));
  tq::Rng rng(3);
  std::vector<float> x(64 * 5);
  for (size_t i = 0; i < x.size(); ++i) {
    const int q = (i % 32 == 7) ? ((i / 32) % 2 ? 127 : -127) : static_cast<int>(rng.below(255)) - 127;
    x[i] = static_cast<float>(q) / 16.0f;
  }
  const auto y = round_trip(*c, x);
  for (size_t i = 0; i < x.size(); ++i) REQUIRE(y[i] == x[i]);
}

TEST_CASE("q4_0: hand-worked block (negative and positive largest element, clamp at 15)") {
  auto c = tq::make_q4_0(args_of("q4_0"), ctx_of(32));
  std::vector<float> x(32, 0.0f);
  // max = -2 -> d = -2 / -8 = 0.25, 1/d = 4; code = trunc(4x + 8.5), x^ = (code - 8) / 4
  x[0] = -2.0f;   // 0.5  -> 0  -> -2
  x[1] = 1.0f;    // 12.5 -> 12 ->  1
  x[2] = 0.3f;    // 9.7  -> 9  ->  0.25
  x[3] = -0.7f;   // 5.7  -> 5  -> -0.75
  x[4] = 0.2f;    // 9.3  -> 9  ->  0.25 (rounds up: plain truncation of 4x + 8 would give 8)
  x[16] = 1.9f;   // 16.1 -> 16 -> clamped to 15 -> 1.75
  tq::Encoded e;
  auto y = round_trip(*c, x, &e);
  REQUIRE(e.bytes.size() == 18);
  CHECK(e.bytes[0] == 0x00);  // fp16(0.25) = 0x3400
  CHECK(e.bytes[1] == 0x34);
  CHECK(e.bytes[2] == 0xF0);  // code 0 (element 0) | code 15 (element 16) << 4
  CHECK(e.bytes[3] == 0x8C);  // 12 | 8 << 4
  CHECK(e.bytes[4] == 0x89);
  CHECK(e.bytes[5] == 0x85);
  CHECK(e.bytes[6] == 0x89);
  CHECK(e.bytes[7] == 0x88);
  const std::vector<float> expect_head = {-2.0f, 1.0f, 0.25f, -0.75f, 0.25f, 0.0f};
  for (size_t j = 0; j < expect_head.size(); ++j) CHECK(y[j] == expect_head[j]);
  CHECK(y[16] == 1.75f);

  // Positive largest element: d = -0.25 and the largest element still lands on code 0 exactly.
  std::vector<float> z(32, 0.0f);
  z[5] = 2.0f;
  z[6] = -1.0f;  // -1 * -4 + 8.5 = 12.5 -> 12 -> (12 - 8) * -0.25 = -1
  y = round_trip(*c, z, &e);
  CHECK(e.bytes[1] == 0xB4);  // fp16(-0.25) = 0xB400
  CHECK(y[5] == 2.0f);
  CHECK(y[6] == -1.0f);
}

TEST_CASE("q4_1: hand-worked block") {
  auto c = tq::make_q4_1(args_of("q4_1"), ctx_of(32));
  std::vector<float> x(32, 0.0f);
  // min = -1, max = 2 -> d = 0.2 (fp16 0x3266 = 0.199951171875), m = -1 (0xBC00)
  // code = trunc(5 (x + 1) + 0.5), x^ = code * 0.199951171875 - 1
  x[0] = -1.0f;  // 0.5  -> 0
  x[1] = 2.0f;   // 15.5 -> 15
  x[2] = 0.45f;  // 7.75 -> 7
  x[3] = 0.15f;  // 6.25 -> 6
  // zeros: 5.5 -> 5
  tq::Encoded e;
  const auto y = round_trip(*c, x, &e);
  REQUIRE(e.bytes.size() == 20);
  CHECK(e.bytes[0] == 0x66);
  CHECK(e.bytes[1] == 0x32);
  CHECK(e.bytes[2] == 0x00);
  CHECK(e.bytes[3] == 0xBC);
  CHECK(e.bytes[4] == 0x50);  // code 0 | code 5 (element 16) << 4
  CHECK(e.bytes[5] == 0x5F);
  CHECK(e.bytes[6] == 0x57);
  CHECK(e.bytes[7] == 0x56);
  CHECK(y[0] == -1.0f);
  CHECK(y[1] == 1.999267578125f);
  CHECK(y[2] == 0.399658203125f);
  CHECK(y[3] == 0.19970703125f);
  CHECK(y[4] == -0.000244140625f);
}

TEST_CASE("iq4_nl: hand-worked blocks") {
  auto c = tq::make_iq4_nl(args_of("iq4_nl"), ctx_of(32));
  SUBCASE("one non-zero element") {
    // w = x^2 is zero except at x0 = 1. Start d0 = 1/127: 127 -> T[15] = 113, least-squares
    // d = 113/113^2 = 1/113, error 0. The tries map x0 onto T[0] = -127 (same zero error, not
    // strictly better), so d = 1/113 -> fp16 0x2088 = 0.00885009765625. Zeros -> nearest of 0
    // is T[8] = 1 (|0 - 1| < |0 + 10|) and decode to d.
    std::vector<float> x(32, 0.0f);
    x[0] = 1.0f;
    tq::Encoded e;
    const auto y = round_trip(*c, x, &e);
    REQUIRE(e.bytes.size() == 18);
    CHECK(e.bytes[0] == 0x88);
    CHECK(e.bytes[1] == 0x20);
    CHECK(e.bytes[2] == 0x8F);  // code 15 | code 8 << 4
    CHECK(e.bytes[3] == 0x88);
    CHECK(y[0] == 113.0f * 0.00885009765625f);
    CHECK(y[1] == 0.00885009765625f);
  }
  SUBCASE("table values times 1/16 round-trip exactly") {
    // x_j = T[j mod 16] / 16: the try t = 0 maps the largest element -127/16 onto T[0] with zero
    // error, so d = 1/16 (fp16 0x2C00) and codes j mod 16.
    std::vector<float> x(32);
    for (size_t j = 0; j < 32; ++j) x[j] = kTable[j % 16] / 16.0f;
    tq::Encoded e;
    const auto y = round_trip(*c, x, &e);
    CHECK(e.bytes[0] == 0x00);
    CHECK(e.bytes[1] == 0x2C);
    for (size_t j = 0; j < 16; ++j) CHECK(e.bytes[2 + j] == static_cast<uint8_t>(j | (j << 4)));
    for (size_t j = 0; j < 32; ++j) CHECK(y[j] == x[j]);
  }
}

TEST_CASE("block formats: per-element error bounds recomputed from the data") {
  const size_t d = 128, n = 64;
  auto x = gaussian(n * d, 11);
  for (size_t i = 0; i < x.size(); i += 37) x[i] *= 8.0f;  // some outliers
  const float eps = 1e-6f;

  SUBCASE("q8_0: |x - x^| <= d/2 + 127 |d - fp16(d)|") {
    const auto y = round_trip(*tq::make_q8_0(args_of("q8_0"), ctx_of(d)), x);
    for (size_t b = 0; b < x.size() / 32; ++b) {
      float amax = 0;
      for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
      const float s = amax / 127.0f;
      const float bound = s / 2 + 127.0f * std::fabs(s - f16(s)) + eps;
      for (size_t j = 0; j < 32; ++j) REQUIRE(std::fabs(x[b * 32 + j] - y[b * 32 + j]) <= bound);
    }
  }
  SUBCASE("q4_0: |x - x^| <= |d|/2 (|d| where x/d > 7.5, the clamped code) + 8 |d - fp16(d)|") {
    const auto y = round_trip(*tq::make_q4_0(args_of("q4_0"), ctx_of(d)), x);
    for (size_t b = 0; b < x.size() / 32; ++b) {
      float amax = 0, mx = 0;
      for (size_t j = 0; j < 32; ++j)
        if (std::fabs(x[b * 32 + j]) > amax) {
          amax = std::fabs(x[b * 32 + j]);
          mx = x[b * 32 + j];
        }
      const float s = mx / -8.0f;
      for (size_t j = 0; j < 32; ++j) {
        const float v = x[b * 32 + j];
        const float step = (v / s > 7.5f) ? std::fabs(s) : std::fabs(s) / 2;
        REQUIRE(std::fabs(v - y[b * 32 + j]) <= step + 8.0f * std::fabs(s - f16(s)) + eps);
      }
    }
  }
  SUBCASE("q4_1: |x - x^| <= d/2 + 15 |d - fp16(d)| + |m - fp16(m)|") {
    const auto y = round_trip(*tq::make_q4_1(args_of("q4_1"), ctx_of(d)), x);
    for (size_t b = 0; b < x.size() / 32; ++b) {
      float mn = x[b * 32], mx = x[b * 32];
      for (size_t j = 0; j < 32; ++j) {
        mn = std::min(mn, x[b * 32 + j]);
        mx = std::max(mx, x[b * 32 + j]);
      }
      const float s = (mx - mn) / 15.0f;
      const float bound = s / 2 + 15.0f * std::fabs(s - f16(s)) + std::fabs(mn - f16(mn)) + eps;
      for (size_t j = 0; j < 32; ++j) REQUIRE(std::fabs(x[b * 32 + j] - y[b * 32 + j]) <= bound);
    }
  }
  SUBCASE("iq4_nl: every element decodes to the table entry nearest to it for the stored scale") {
    tq::Encoded e;
    const auto y = round_trip(*tq::make_iq4_nl(args_of("iq4_nl"), ctx_of(d)), x, &e);
    for (size_t b = 0; b < x.size() / 32; ++b) {
      const float s = tq::fp16_to_float(static_cast<uint16_t>(e.bytes[b * 18] | (e.bytes[b * 18 + 1] << 8)));
      REQUIRE(s != 0.0f);
      for (size_t j = 0; j < 32; ++j) {
        float best = INFINITY;
        for (float t : kTable) best = std::min(best, std::fabs(x[b * 32 + j] - s * t));
        REQUIRE(std::fabs(x[b * 32 + j] - y[b * 32 + j]) <= best + eps);
      }
    }
  }
}

TEST_CASE("block formats: exact byte counts, byte_count(n) == encode().count") {
  struct Fmt {
    Factory make;
    const char* name;
    size_t side, code_num, code_den;  // per block of B: side bytes, code bytes = B * num / den
  };
  const std::vector<Fmt> fmts = {{tq::make_q8_0, "q8_0", 2, 1, 1},
                                 {tq::make_q4_0, "q4_0", 2, 1, 2},
                                 {tq::make_q4_1, "q4_1", 4, 1, 2},
                                 {tq::make_iq4_nl, "iq4_nl", 2, 1, 2}};
  for (const auto& f : fmts) {
    for (size_t d : {8u, 16u, 32u, 64u, 96u, 128u, 256u}) {
      auto c = f.make(args_of(f.name), ctx_of(d));
      const size_t block = std::min<size_t>(32, d);
      CHECK(c->spec() == std::string(f.name) + ",block=" + std::to_string(block));
      for (size_t n : {0u, 1u, 3u, 17u, 64u}) {
        const auto x = gaussian(n * d, 100 + n);
        const tq::Encoded e = c->encode(x.data(), n, nullptr);
        const size_t blocks = n * d / block;
        CAPTURE(f.name);
        CAPTURE(d);
        CAPTURE(n);
        CHECK(e.count.side == blocks * f.side);
        CHECK(e.count.payload == blocks * block * f.code_num / f.code_den);
        CHECK(e.count.window == 0);
        CHECK(e.bytes.size() == e.count.total());
        const tq::ByteCount bc = c->byte_count(n);
        CHECK(bc.payload == e.count.payload);
        CHECK(bc.side == e.count.side);
        CHECK(bc.window == e.count.window);
      }
    }
  }
  // Bits per element at B = 32: 8.5, 4.5, 5.0, 4.5.
  CHECK(tq::make_q8_0(args_of("q8_0"), ctx_of(128))->byte_count(10).total() * 8 == 10 * 128 * 17 / 2);
  CHECK(tq::make_q4_0(args_of("q4_0"), ctx_of(128))->byte_count(10).total() * 8 == 10 * 128 * 9 / 2);
  CHECK(tq::make_q4_1(args_of("q4_1"), ctx_of(128))->byte_count(10).total() * 8 == 10 * 128 * 5);
  CHECK(tq::make_iq4_nl(args_of("iq4_nl"), ctx_of(128))->byte_count(10).total() * 8 == 10 * 128 * 9 / 2);
}

TEST_CASE("block formats: head_dim 8 uses one 8-element block per row, counted honestly") {
  // q4_0 on d = 8: 2 bytes of scale + 4 bytes of nibbles per row = 6 bits per element.
  auto c = tq::make_q4_0(args_of("q4_0"), ctx_of(8));
  CHECK(c->spec() == "q4_0,block=8");
  CHECK(c->byte_count(4).total() == 4 * 6);
  const auto x = gaussian(8 * 50, 5);
  const auto y = round_trip(*c, x);
  CHECK(nmse(x, y) < 0.02);
  // An explicit smaller block works too.
  auto c16 = tq::make_q8_0(args_of("q8_0", {{"block", "16"}}), ctx_of(80));
  CHECK(c16->byte_count(1).total() == 5 * 18);
  const auto x80 = gaussian(80 * 7, 6);
  CHECK(nmse(x80, round_trip(*c16, x80)) < 1e-4);
}

TEST_CASE("block formats: all-zero and constant blocks, never NaN") {
  for (const auto& make : std::vector<Factory>{tq::make_q8_0, tq::make_q4_0, tq::make_q4_1, tq::make_iq4_nl}) {
    auto c = make(args_of("f"), ctx_of(32));
    std::vector<float> zero(64, 0.0f);
    for (float v : round_trip(*c, zero)) CHECK(v == 0.0f);
    std::vector<float> constant(32, 0.75f);
    const auto y = round_trip(*c, constant);
    for (float v : y) CHECK(std::fabs(v - 0.75f) <= 0.75f / 64);  // every format holds a constant closely
    // Extreme but finite inputs: tiny (subnormal-scale) blocks and values beyond the fp16 range.
    std::vector<float> extreme(32 * 4, 0.0f);
    for (size_t j = 0; j < 32; ++j) {
      extreme[j] = (j % 2 ? 1e-38f : -3e-39f) * static_cast<float>(j);
      extreme[32 + j] = (j % 3 ? 1e7f : -2e6f);
      extreme[64 + j] = 1e-30f * static_cast<float>(j);
      extreme[96 + j] = j == 0 ? 1e-38f : 0.0f;  // q4_0: d = 1.25e-39, 1/d overflows to inf
    }
    for (float v : round_trip(*c, extreme)) CHECK(std::isfinite(v));
  }
}

TEST_CASE("block formats: bad options are UsageErrors naming the spec") {
  CHECK(usage_error_of([] { tq::make_q4_0(args_of("q4_0"), ctx_of(80)); }).find("'q4_0'") != std::string::npos);
  CHECK(usage_error_of([] { tq::make_q4_0(args_of("q4_0"), ctx_of(80)); }).find("80") != std::string::npos);
  CHECK(usage_error_of([] { tq::make_q4_0(args_of("q4_0"), ctx_of(80)); }).find("block=16") != std::string::npos);
  CHECK(usage_error_of([] { tq::make_q8_0(args_of("q8_0", {{"block", "0"}}), ctx_of(32)); })
            .find("'q8_0,block=0'") != std::string::npos);
  CHECK(usage_error_of([] { tq::make_q4_1(args_of("q4_1", {{"block", "3"}}), ctx_of(96)); })
            .find("'q4_1,block=3'") != std::string::npos);
  CHECK(usage_error_of([] { tq::make_iq4_nl(args_of("iq4_nl", {{"block", "x"}}), ctx_of(32)); })
            .find("'iq4_nl,block=x'") != std::string::npos);
  CHECK(usage_error_of([] { tq::make_q8_0(args_of("q8_0", {}, 9), ctx_of(32)); }).find("'q8_0:9'") !=
        std::string::npos);
  CHECK(usage_error_of([] { tq::make_q4_0(args_of("q4_0", {}, 4), ctx_of(32)); }).empty());  // nominal bits ok
  CHECK(usage_error_of([] { tq::make_q4_0(args_of("q4_0"), ctx_of(0)); }).find("head_dim") != std::string::npos);
  CHECK(usage_error_of([] { tq::make_q4_0(args_of("q4_0", {{"block", "64"}}), ctx_of(96)); })
            .find("head_dim 96") != std::string::npos);
}

TEST_CASE("block formats: N(0,1) NMSE at d = 128") {
  const size_t d = 128, n = 2048;
  const auto x = gaussian(n * d, 2024);
  const double q8 = nmse(x, round_trip(*tq::make_q8_0(args_of("q8_0"), ctx_of(d)), x));
  const double q40 = nmse(x, round_trip(*tq::make_q4_0(args_of("q4_0"), ctx_of(d)), x));
  const double q41 = nmse(x, round_trip(*tq::make_q4_1(args_of("q4_1"), ctx_of(d)), x));
  const double iq4 = nmse(x, round_trip(*tq::make_iq4_nl(args_of("iq4_nl"), ctx_of(d)), x));
  MESSAGE("N(0,1) d=128 NMSE: q8_0 " << q8 << ", q4_0 " << q40 << ", q4_1 " << q41 << ", iq4_nl " << iq4);
  // Uniform-noise model for q8_0: error variance step^2 / 12 per element, step = amax/127 of the
  // block; computed independently here, it must match the measurement within 5%.
  double model = 0, energy = 0;
  for (size_t b = 0; b < x.size() / 32; ++b) {
    float amax = 0;
    for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    const double step = static_cast<double>(amax) / 127.0;
    model += 32.0 * step * step / 12.0;
  }
  for (float v : x) energy += static_cast<double>(v) * static_cast<double>(v);
  CHECK(q8 == doctest::Approx(model / energy).epsilon(0.05));
  // Ordering known from ggml: q8_0 << 4-bit formats; q4_1 (min + scale) and iq4_nl (non-uniform
  // grid + scale search) beat q4_0 on Gaussian data.
  CHECK(q8 < q40 / 50);
  CHECK(q41 < q40);
  CHECK(iq4 < q40);
}
