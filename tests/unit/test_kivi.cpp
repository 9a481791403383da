// Tests of KIVI (lib/tq/codec/kivi.cpp): bit accounting, per-group error bounds recomputed from
// the data, exact grids, full-precision sinks / window / K residual, edge cases, bad options.
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

using Options = std::vector<std::pair<std::string, std::string>>;

tq::CodecArgs kivi_args(int bits, Options options = {}) {
  tq::CodecArgs a;
  a.name = "kivi";
  a.bits = bits;
  a.options = std::move(options);
  a.spec = "kivi";
  if (bits >= 0) a.spec.append(":").append(std::to_string(bits));
  for (const auto& [k, v] : a.options) a.spec.append(",").append(k).append("=").append(v);
  return a;
}

std::unique_ptr<tq::Codec> kivi(int bits, const std::string& tensor, size_t d, Options options = {}) {
  tq::CodecContext ctx;
  ctx.dim = d;
  ctx.seed = 7;
  ctx.tensor = tensor;
  return tq::make_kivi(kivi_args(bits, std::move(options)), ctx);
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
  const tq::ByteCount bc = c.byte_count(n);
  REQUIRE(bc.payload == e.count.payload);
  REQUIRE(bc.side == e.count.side);
  REQUIRE(bc.window == e.count.window);
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

std::string usage_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const tq::UsageError& e) {
    return e.what();
  }
  return "";
}

/// Largest error the KIVI grid of a group with range [mn, mx] may leave, recomputed here:
/// nearest-point distance s16/2 on the decoder's grid z16 + q s16, plus how far fp16 rounding of
/// zero and scale moved the grid's ends away from [mn, mx].
float group_bound(float mn, float mx, int bits) {
  const float levels = static_cast<float>((1 << bits) - 1);
  const float s = (mx - mn) / levels;
  const float s16 = f16(s);
  return s16 / 2 + std::fabs(mn - f16(mn)) + levels * std::fabs(s - s16) + 1e-6f * (1 + std::fabs(mx) + std::fabs(mn));
}

}  // namespace

TEST_CASE("kivi: k2 with group 32 costs exactly 3.0 bits per element (K and V)") {
  for (const char* tensor : {"k", "v"}) {
    for (size_t t : {32u, 64u, 96u, 256u}) {
      const size_t d = 128;
      auto c = kivi(2, tensor, d);
      const auto x = gaussian(t * d, t);
      tq::Encoded e;
      round_trip(*c, x, &e);
      CAPTURE(tensor);
      CAPTURE(t);
      CHECK(e.count.payload == t * d * 2 / 8);
      CHECK(e.count.side == t * d * 4 / 32);  // one fp16 pair per 32 elements
      CHECK(e.count.window == 0);
      CHECK(static_cast<double>(e.count.total()) * 8.0 / static_cast<double>(t * d) == 3.0);
    }
  }
  CHECK(kivi(4, "k", 128)->byte_count(64).total() * 8 == 64 * 128 * 5);
  CHECK(kivi(2, "v", 128, {{"group", "128"}})->byte_count(64).total() * 8 == 64 * 128 * 9 / 4);  // 2.25 bits
  CHECK(kivi(2, "k", 128)->spec() == "kivi:2,group-k=32,group-v=32,window=0,sinks=0");
  CHECK(kivi(3, "v", 64, {{"group-k", "16"}, {"group-v", "8"}, {"window", "5"}, {"window-dtype", "fp32"}})->spec() ==
        "kivi:3,group-k=16,group-v=8,window=5,sinks=0,window-dtype=fp32");
}

TEST_CASE("kivi: per-group error bounds recomputed from the data (K per channel, V per token)") {
  const size_t d = 64, t = 96, g = 32;
  auto x = gaussian(t * d, 5);
  for (size_t i = 0; i < t; ++i) x[i * d + 3] = 20.0f + 3.0f * x[i * d + 3];  // an outlier channel
  for (int bits : {1, 2, 3, 4, 8}) {
    CAPTURE(bits);
    const auto yk = round_trip(*kivi(bits, "k", d), x);
    for (size_t t0 = 0; t0 < t; t0 += g)
      for (size_t c = 0; c < d; ++c) {
        float mn = INFINITY, mx = -INFINITY;
        for (size_t i = t0; i < t0 + g; ++i) {
          mn = std::min(mn, x[i * d + c]);
          mx = std::max(mx, x[i * d + c]);
        }
        const float bound = group_bound(mn, mx, bits);
        for (size_t i = t0; i < t0 + g; ++i) REQUIRE(std::fabs(x[i * d + c] - yk[i * d + c]) <= bound);
      }
    const auto yv = round_trip(*kivi(bits, "v", d), x);
    for (size_t i = 0; i < t; ++i)
      for (size_t c0 = 0; c0 < d; c0 += g) {
        float mn = INFINITY, mx = -INFINITY;
        for (size_t c = c0; c < c0 + g; ++c) {
          mn = std::min(mn, x[i * d + c]);
          mx = std::max(mx, x[i * d + c]);
        }
        const float bound = group_bound(mn, mx, bits);
        for (size_t c = c0; c < c0 + g; ++c) REQUIRE(std::fabs(x[i * d + c] - yv[i * d + c]) <= bound);
      }
  }
}

TEST_CASE("kivi: values on an fp16-exact grid round-trip exactly") {
  // Channel c of every token group spans z_c + {0, 1, 2, 3} * 0.25 with z_c = c/8 - 3: min and
  // scale are exact in fp16, every value is a grid point.
  const size_t d = 16, t = 64;
  tq::Rng rng(9);
  std::vector<float> x(t * d);
  for (size_t i = 0; i < t; ++i)
    for (size_t c = 0; c < d; ++c) {
      const int q = (i % 32 == 0) ? 0 : (i % 32 == 1) ? 3 : static_cast<int>(rng.below(4));
      x[i * d + c] = static_cast<float>(c) / 8.0f - 3.0f + 0.25f * static_cast<float>(q);
    }
  const auto y = round_trip(*kivi(2, "k", d), x);
  for (size_t i = 0; i < x.size(); ++i) REQUIRE(y[i] == x[i]);
}

TEST_CASE("kivi: sinks, recent window and the K residual stay fp16 and are counted") {
  const size_t d = 16, t = 100;
  const auto x = gaussian(t * d, 77);
  const Options opts = {{"window", "10"}, {"sinks", "4"}};

  SUBCASE("keys: 86 middle tokens -> 2 groups of 32 quantized, 22 residual + 4 sinks + 10 window exact") {
    tq::Encoded e;
    const auto y = round_trip(*kivi(2, "k", d, opts), x, &e);
    CHECK(e.count.window == 36 * d * 2);
    CHECK(e.count.side == 2 * d * 4);
    CHECK(e.count.payload == 64 * d * 2 / 8);
    size_t inexact = 0;
    for (size_t i = 0; i < t; ++i)
      for (size_t c = 0; c < d; ++c) {
        const bool kept = i < 4 || i >= 68;
        if (kept) REQUIRE(y[i * d + c] == f16(x[i * d + c]));
        else inexact += y[i * d + c] != f16(x[i * d + c]);
      }
    CHECK(inexact > 64 * d / 2);  // the quantized rows really are quantized
  }
  SUBCASE("values: 86 middle tokens all quantized, 4 sinks + 10 window exact") {
    tq::Encoded e;
    const auto y = round_trip(*kivi(2, "v", d, opts), x, &e);
    CHECK(e.count.window == 14 * d * 2);
    CHECK(e.count.side == 86 * 4);  // group-v = min(32, 16) = 16 channels: one pair per token
    CHECK(e.count.payload == 86 * d * 2 / 8);
    for (size_t i = 0; i < t; ++i)
      if (i < 4 || i >= 90)
        for (size_t c = 0; c < d; ++c) REQUIRE(y[i * d + c] == f16(x[i * d + c]));
  }
  SUBCASE("window-dtype=fp32 keeps those tokens bit-exact") {
    tq::Encoded e;
    const auto y = round_trip(*kivi(2, "k", d, {{"window", "10"}, {"sinks", "4"}, {"window-dtype", "fp32"}}), x, &e);
    CHECK(e.count.window == 36 * d * 4);
    for (size_t i = 0; i < t; ++i)
      if (i < 4 || i >= 68)
        for (size_t c = 0; c < d; ++c) REQUIRE(y[i * d + c] == x[i * d + c]);
  }
}

TEST_CASE("kivi: T smaller than the window -> everything full precision") {
  const size_t d = 32;
  for (size_t t : {0u, 1u, 5u, 8u}) {
    for (const char* tensor : {"k", "v"}) {
      const auto x = gaussian(t * d, 3 + t);
      tq::Encoded e;
      const auto y = round_trip(*kivi(2, tensor, d, {{"window", "8"}, {"sinks", "2"}}), x, &e);
      CHECK(e.count.payload == 0);
      CHECK(e.count.side == 0);
      CHECK(e.count.window == t * d * 2);
      for (size_t i = 0; i < x.size(); ++i) REQUIRE(y[i] == f16(x[i]));
    }
  }
}

TEST_CASE("kivi: T not a multiple of the K group") {
  const size_t d = 24, t = 40;
  const auto x = gaussian(t * d, 8);
  tq::Encoded ek, ev;
  const auto yk = round_trip(*kivi(3, "k", d, {{"group", "32"}, {"group-v", "8"}}), x, &ek);
  CHECK(ek.count.side == d * 4);                     // one token group
  CHECK(ek.count.payload == (32 * d * 3 + 7) / 8);   // 3-bit stream, byte-padded
  CHECK(ek.count.window == 8 * d * 2);               // residual 8 tokens at fp16
  for (size_t i = 32 * d; i < x.size(); ++i) REQUIRE(yk[i] == f16(x[i]));
  const auto yv = round_trip(*kivi(3, "v", d, {{"group", "32"}, {"group-v", "8"}}), x, &ev);
  CHECK(ev.count.side == t * 3 * 4);  // 3 channel groups of 8 per token
  CHECK(ev.count.payload == (t * d * 3 + 7) / 8);
  CHECK(ev.count.window == 0);
  // byte_count agrees with encode for every n (odd bit widths, windows, sinks).
  for (int bits : {1, 3, 5, 7}) {
    auto c = kivi(bits, "k", d, {{"group", "5"}, {"group-v", "12"}, {"window", "3"}, {"sinks", "2"}});
    auto cv = kivi(bits, "v", d, {{"group", "5"}, {"group-v", "12"}, {"window", "3"}, {"sinks", "2"}});
    for (size_t n = 0; n < 30; ++n) {
      const auto xn = gaussian(n * d, n);
      round_trip(*c, xn);  // REQUIREs byte_count(n) == encode().count inside
      round_trip(*cv, xn);
    }
  }
}

TEST_CASE("kivi: constant channels, zero input, extremes never give NaN") {
  const size_t d = 16, t = 64;
  auto x = gaussian(t * d, 4);
  auto xv = x;
  for (size_t i = 0; i < t; ++i) x[i * d + 5] = 0.3f;     // constant channel (K: max == min)
  for (size_t c = 0; c < d; ++c) xv[10 * d + c] = -1.7f;  // constant token (V: max == min)
  const auto yk = round_trip(*kivi(2, "k", d), x);
  for (size_t i = 0; i < t; ++i) CHECK(yk[i * d + 5] == f16(0.3f));
  const auto yv = round_trip(*kivi(2, "v", d), xv);
  for (size_t c = 0; c < d; ++c) CHECK(yv[10 * d + c] == f16(-1.7f));

  const std::vector<float> zero(t * d, 0.0f);
  for (const char* tensor : {"k", "v"})
    for (float v : round_trip(*kivi(2, tensor, d), zero)) CHECK(v == 0.0f);

  std::vector<float> extreme(t * d);
  for (size_t i = 0; i < extreme.size(); ++i)
    extreme[i] = (i % 7 == 0) ? 1e7f : (i % 5 == 0) ? -3e6f : (i % 3 == 0) ? 1e-39f : 1e-30f * static_cast<float>(i);
  for (const char* tensor : {"k", "v"})
    for (float v : round_trip(*kivi(2, tensor, d, {{"window", "3"}}), extreme)) CHECK(std::isfinite(v));
}

TEST_CASE("kivi: head_dim 8 (value group falls back to the whole row)") {
  auto cv = kivi(2, "v", 8);
  CHECK(cv->spec() == "kivi:2,group-k=32,group-v=8,window=0,sinks=0");
  CHECK(cv->byte_count(10).total() == 10 * (8 * 2 / 8 + 4));  // 6 bytes per token = 6 bits/element
  auto ck = kivi(2, "k", 8);
  CHECK(ck->byte_count(64).total() * 8 == 64 * 8 * 3);  // K groups run over tokens: still 3 bits
  const auto x = gaussian(64 * 8, 12);
  CHECK(nmse(x, round_trip(*cv, x)) < 0.2);
  CHECK(nmse(x, round_trip(*ck, x)) < 0.2);
}

TEST_CASE("kivi: bad options are UsageErrors naming the spec") {
  auto err = [](int bits, const std::string& tensor, size_t d, Options o) {
    return usage_error_of([&] { kivi(bits, tensor, d, o); });
  };
  CHECK(err(2, "k", 64, {{"group", "0"}}).find("'kivi:2,group=0'") != std::string::npos);
  CHECK(err(9, "k", 64, {}).find("'kivi:9'") != std::string::npos);
  CHECK(err(0, "k", 64, {}).find("'kivi:0'") != std::string::npos);
  CHECK(err(-1, "k", 64, {}).find("'kivi'") != std::string::npos);  // bit width missing
  CHECK(err(2, "v", 64, {{"group-v", "24"}}).find("head_dim 64") != std::string::npos);
  CHECK(err(2, "v", 64, {{"group-v", "24"}}).find("'kivi:2,group-v=24'") != std::string::npos);
  CHECK(err(2, "q", 64, {}).find("'kivi:2'") != std::string::npos);
  CHECK(err(2, "k", 64, {{"window", "-1"}}).find("window=-1") != std::string::npos);
  CHECK(err(2, "k", 64, {{"sinks", "abc"}}).find("'kivi:2,sinks=abc'") != std::string::npos);
  CHECK(err(2, "k", 64, {{"window-dtype", "bf16"}}).find("'kivi:2,window-dtype=bf16'") != std::string::npos);
  CHECK(err(2, "k", 64, {{"group-k", "-3"}}).find("group-k=-3") != std::string::npos);
  CHECK(err(2, "k", 64, {{"group-v", "24"}}).find("head_dim 64") != std::string::npos);  // checked for K too
  CHECK(err(8, "v", 64, {{"group", "64"}, {"window", "128"}, {"sinks", "4"}}).empty());
}

TEST_CASE("kivi: N(0,1) NMSE at d = 128") {
  const size_t d = 128, t = 2048;
  const auto x = gaussian(t * d, 2024);
  const double k2 = nmse(x, round_trip(*kivi(2, "k", d), x));
  const double v2 = nmse(x, round_trip(*kivi(2, "v", d), x));
  const double k4 = nmse(x, round_trip(*kivi(4, "k", d), x));
  const double v4 = nmse(x, round_trip(*kivi(4, "v", d), x));
  MESSAGE("N(0,1) d=128 T=2048 NMSE: kivi:2 K " << k2 << " V " << v2 << ", kivi:4 K " << k4 << " V " << v4);
  // Uniform-noise model: error variance step^2/12 with step = range / (2^b - 1). For 4 bits it
  // holds closely; recompute it independently for V (per-token groups of 32 channels).
  double model = 0, energy = 0;
  for (size_t g = 0; g < x.size() / 32; ++g) {
    float mn = INFINITY, mx = -INFINITY;
    for (size_t j = 0; j < 32; ++j) {
      mn = std::min(mn, x[g * 32 + j]);
      mx = std::max(mx, x[g * 32 + j]);
    }
    const double step = static_cast<double>(mx - mn) / 15.0;
    model += 30.0 * step * step / 12.0;  // the min and max elements land on grid points (no error)
  }
  for (float v : x) energy += static_cast<double>(v) * static_cast<double>(v);
  CHECK(v4 == doctest::Approx(model / energy).epsilon(0.08));
  CHECK(k4 < k2 / 8);
  CHECK(v4 < v2 / 8);
}
