// Tests of the full-precision token stages (lib/tq/codec/stage_sinks.cpp): wrap_with_sinks and
// wrap_with_window around any inner codec.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "tq/codec/codec.h"
#include "tq/codec/factories.h"
#include "tq/core/error.h"
#include "tq/core/half.h"
#include "tq/core/rng.h"

namespace {

/// A test inner codec: stores rows as raw fp32 (payload), plus one side byte and one window byte
/// per encoding so the stage's pass-through of every count is visible; records the positions it
/// was given.
class ProbeCodec final : public tq::Codec {
 public:
  explicit ProbeCodec(size_t d) : Codec(tq::CodecContext{d, 0, "k", ""}) {}
  std::string spec() const override { return "probe"; }
  tq::Encoded encode(const float* x, size_t n, const int32_t* positions) const override {
    seen_positions.assign(positions, positions ? positions + n : positions);
    ++calls;
    tq::Encoded e;
    e.n_tokens = n;
    e.dim = dim();
    e.count = byte_count(n);
    e.bytes.resize(e.count.total());
    std::memcpy(e.bytes.data(), x, n * dim() * sizeof(float));
    e.bytes[n * dim() * 4] = 0xA5;      // "side"
    e.bytes[n * dim() * 4 + 1] = 0x5A;  // "window"
    return e;
  }
  void decode(const tq::Encoded& e, float* out) const override {
    REQUIRE(e.bytes.size() == byte_count(e.n_tokens).total());
    REQUIRE(e.bytes[e.n_tokens * dim() * 4] == 0xA5);
    std::memcpy(out, e.bytes.data(), e.n_tokens * dim() * sizeof(float));
  }
  tq::ByteCount byte_count(size_t n) const override { return {n * dim() * 4, 1, 1}; }

  mutable std::vector<int32_t> seen_positions;
  mutable int calls = 0;
};

std::vector<float> gaussian(size_t n, uint64_t seed) {
  tq::Rng rng(seed);
  std::vector<float> x(n);
  for (auto& v : x) v = static_cast<float>(rng.gaussian());
  return x;
}

float f16(float v) { return tq::fp16_to_float(tq::float_to_fp16(v)); }

tq::CodecArgs q4_0_args() {
  tq::CodecArgs a;
  a.spec = "q4_0";
  a.name = "q4_0";
  return a;
}

tq::CodecContext ctx_of(size_t d) {
  // Aggregate-initialised: GCC 12 at -O2 with ASan flags a false -Wrestrict on string assignment.
  return tq::CodecContext{d, 0, std::string("k"), {}};
}

std::vector<float> decode_all(const tq::Codec& c, const tq::Encoded& e) {
  std::vector<float> y(e.n_tokens * e.dim, -12345.0f);
  c.decode(e, y.data());
  return y;
}

}  // namespace

TEST_CASE("sinks stage: first N rows fp16, the rest coded by the inner codec exactly as alone") {
  const size_t d = 32, t = 20, n_sinks = 3;
  const auto x = gaussian(t * d, 1);
  auto wrapped = tq::wrap_with_sinks(tq::make_q4_0(q4_0_args(), ctx_of(d)), static_cast<int>(n_sinks), false);
  auto alone = tq::make_q4_0(q4_0_args(), ctx_of(d));
  CHECK(wrapped->spec() == "q4_0,block=32,sinks=3");

  const tq::Encoded e = wrapped->encode(x.data(), t, nullptr);
  const tq::Encoded ea = alone->encode(x.data() + n_sinks * d, t - n_sinks, nullptr);
  CHECK(e.count.window == n_sinks * d * 2);
  CHECK(e.count.payload == ea.count.payload);
  CHECK(e.count.side == ea.count.side);
  CHECK(e.bytes.size() == e.count.total());
  const tq::ByteCount bc = wrapped->byte_count(t);
  CHECK(bc.payload == e.count.payload);
  CHECK(bc.side == e.count.side);
  CHECK(bc.window == e.count.window);

  const auto y = decode_all(*wrapped, e);
  const auto ya = decode_all(*alone, ea);
  for (size_t i = 0; i < n_sinks * d; ++i) REQUIRE(y[i] == f16(x[i]));
  for (size_t i = n_sinks * d; i < t * d; ++i) REQUIRE(y[i] == ya[i - n_sinks * d]);
}

TEST_CASE("window stage: last R rows kept, inner codes the first T - R; counts pass through") {
  const size_t d = 4, t = 9, r = 4;
  const auto x = gaussian(t * d, 2);
  std::vector<int32_t> pos(t);
  for (size_t i = 0; i < t; ++i) pos[i] = static_cast<int32_t>(100 + i);
  auto probe = std::make_unique<ProbeCodec>(d);
  ProbeCodec* p = probe.get();
  auto wrapped = tq::wrap_with_window(std::move(probe), static_cast<int>(r), true);
  CHECK(wrapped->spec() == "probe,window=4,window-dtype=fp32");
  const tq::Encoded e = wrapped->encode(x.data(), t, pos.data());
  CHECK(p->seen_positions == std::vector<int32_t>(pos.begin(), pos.begin() + (t - r)));
  CHECK(e.count.payload == (t - r) * d * 4);
  CHECK(e.count.side == 1);
  CHECK(e.count.window == 1 + r * d * 4);
  const auto y = decode_all(*wrapped, e);
  for (size_t i = 0; i < t * d; ++i) REQUIRE(y[i] == x[i]);  // fp32 everywhere: bit-exact
}

TEST_CASE("sinks stage: positions offset, T <= N skips the inner codec") {
  const size_t d = 4;
  auto probe = std::make_unique<ProbeCodec>(d);
  ProbeCodec* p = probe.get();
  auto wrapped = tq::wrap_with_sinks(std::move(probe), 5, false);
  const auto x = gaussian(8 * d, 3);
  std::vector<int32_t> pos = {7, 8, 9, 10, 11, 12, 13, 14};
  wrapped->encode(x.data(), 8, pos.data());
  CHECK(p->seen_positions == std::vector<int32_t>{12, 13, 14});
  for (size_t t : {0u, 1u, 5u}) {
    const int before = p->calls;
    const tq::Encoded e = wrapped->encode(x.data(), t, nullptr);
    CHECK(p->calls == before);  // nothing left for the inner codec: not called, zero bytes
    CHECK(e.count.payload == 0);
    CHECK(e.count.side == 0);
    CHECK(e.count.window == t * d * 2);
    CHECK(wrapped->byte_count(t).total() == t * d * 2);
    const auto y = decode_all(*wrapped, e);
    for (size_t i = 0; i < t * d; ++i) REQUIRE(y[i] == f16(x[i]));
  }
}

TEST_CASE("sinks + window nested around a block format, every T") {
  const size_t d = 32;
  auto c = tq::wrap_with_sinks(tq::wrap_with_window(tq::make_q4_0(q4_0_args(), ctx_of(d)), 4, false), 2, false);
  CHECK(c->spec() == "q4_0,block=32,window=4,sinks=2");
  for (size_t t = 0; t < 12; ++t) {
    const auto x = gaussian(t * d, 10 + t);
    const tq::Encoded e = c->encode(x.data(), t, nullptr);
    const size_t kept = std::min<size_t>(t, 6);
    CAPTURE(t);
    CHECK(e.count.window == kept * d * 2);
    CHECK(e.count.payload == (t - kept) * 16);
    CHECK(e.count.side == (t - kept) * 2);
    CHECK(e.bytes.size() == e.count.total());
    CHECK(c->byte_count(t).total() == e.count.total());
    const auto y = decode_all(*c, e);
    for (size_t i = 0; i < t; ++i) {
      const bool exact = i < 2 || i + 4 >= t;
      for (size_t j = 0; j < d; ++j)
        if (exact) REQUIRE(y[i * d + j] == f16(x[i * d + j]));
        else REQUIRE(std::isfinite(y[i * d + j]));
    }
  }
}

TEST_CASE("stages: n = 0 is the inner codec itself, n < 0 and bad encodings are errors") {
  auto inner = std::make_unique<ProbeCodec>(4);
  tq::Codec* raw = inner.get();
  auto same = tq::wrap_with_sinks(std::move(inner), 0, false);
  CHECK(same.get() == raw);
  bool threw = false;
  try {
    tq::wrap_with_window(std::make_unique<ProbeCodec>(4), -2, false);
  } catch (const tq::UsageError& e) {
    threw = std::string(e.what()).find("window=-2") != std::string::npos &&
            std::string(e.what()).find("probe") != std::string::npos;
  }
  CHECK(threw);
  auto c = tq::wrap_with_sinks(std::make_unique<ProbeCodec>(4), 2, false);
  const auto x = gaussian(5 * 4, 1);
  tq::Encoded e = c->encode(x.data(), 5, nullptr);
  e.bytes.pop_back();
  std::vector<float> y(20);
  CHECK_THROWS_AS(c->decode(e, y.data()), tq::Error);
}
