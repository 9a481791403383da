// Tests of the `outlier` channel-split codec: channel choice, bits, NMSE against uniform tq-mse on
// data with outlier channels, byte accounting, determinism and bad specs.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "codec_test_util.h"
#include "tq/codec/codec.h"
#include "tq/core/error.h"

namespace {

tq::CodecContext ctx_for(size_t d, uint64_t seed) {
  // Aggregate-initialised: GCC 12 at -O2 with ASan flags a false -Wrestrict on string assignment.
  return tq::CodecContext{d, seed, std::string("k"), {}};
}

/// N(0,1) rows with channels 3, 10, 17, ... (n_big of them) scaled by `scale`.
std::vector<float> outlier_rows(size_t n, size_t d, size_t n_big, float scale, uint64_t seed) {
  auto x = tq::testing::gaussian_rows(n, d, seed);
  for (size_t t = 0; t < n; ++t)
    for (size_t k = 0; k < n_big; ++k) x[t * d + 3 + 7 * k] *= scale;
  return x;
}

double nmse(const std::string& spec, size_t d, const std::vector<float>& x) {
  const auto codec = tq::make_codec(spec, ctx_for(d, 4));
  const size_t n = x.size() / d;
  const tq::Encoded e = codec->encode(x.data(), n, nullptr);
  std::vector<float> y(x.size());
  codec->decode(e, y.data());
  const auto s = tq::testing::err_sums(x.data(), y.data(), x.size());
  return s.err / s.energy;
}

}  // namespace

TEST_CASE("outlier: bitmap marks the high-RMS channels; bits per element as computed") {
  constexpr size_t d = 128, n = 300;
  const auto x = outlier_rows(n, d, 10, 10.0f, 1);
  const auto codec = tq::make_codec("outlier,n=32,hi=3,lo=2", ctx_for(d, 2));
  const tq::Encoded e = codec->encode(x.data(), n, nullptr);
  size_t marked = 0;
  for (size_t j = 0; j < d; ++j) marked += (e.bytes[j / 8] >> (j % 8)) & 1u;
  CHECK(marked == 32);
  for (size_t k = 0; k < 10; ++k) {
    const size_t j = 3 + 7 * k;
    CHECK(((e.bytes[j / 8] >> (j % 8)) & 1u) == 1u);
  }
  // payload 32*3 + 96*2 bits per row, side 2 fp16 norms per row + d/8 bitmap bytes.
  const tq::ByteCount bc = codec->byte_count(n);
  CHECK(bc.payload == (n * 32 * 3 + 7) / 8 + (n * 96 * 2 + 7) / 8);
  CHECK(bc.side == d / 8 + 2 * 2 * n);
  const size_t big = 1u << 16;
  const double bpe = static_cast<double>(codec->byte_count(big).total()) * 8.0 / static_cast<double>(big * d);
  CHECK(bpe == doctest::Approx(2.5).epsilon(1e-4));
  CHECK(e.bytes.size() == e.count.total());
}

TEST_CASE("outlier: lower NMSE than uniform lo-bit tq-mse on data with 10x outlier channels") {
  constexpr size_t d = 128, n = 800;
  const auto x = outlier_rows(n, d, 10, 10.0f, 3);
  const double split = nmse("outlier,n=32,hi=3,lo=2", d, x);
  const double lo = nmse("tq-mse:2", d, x);
  const double hi = nmse("tq-mse:3", d, x);
  MESSAGE("d=128, 10 channels x10: outlier,n=32,hi=3,lo=2 NMSE " << split << " vs tq-mse:2 " << lo << ", tq-mse:3 " << hi);
  CHECK(split < lo);
  CHECK(split > hi * 0.5);  // sanity: not better than free
  // On isotropic data the split is not worse than lo bits (and not better than hi bits).
  const auto g = tq::testing::gaussian_rows(n, d, 8);
  const double gs = nmse("outlier,n=32,hi=3,lo=2", d, g);
  CHECK(gs < nmse("tq-mse:2", d, g) * 1.02);
  CHECK(gs > nmse("tq-mse:3", d, g));
}

TEST_CASE("outlier: byte accounting exact and deterministic for several n, d (odd d included)") {
  for (const std::string spec : {"outlier,n=3,hi=4,lo=1", "hr,outlier,n=5", "outlier,n=2,hi=8,lo=3,rotation=id"}) {
    for (size_t d : {7u, 33u, 64u}) {
      for (size_t n : {0u, 1u, 4u, 19u}) {
        INFO(spec, " d=", d, " n=", n);
        const auto codec = tq::make_codec(spec, ctx_for(d, 6));
        const auto x = tq::testing::gaussian_rows(n, d, 50 + n + d);
        const tq::Encoded e = codec->encode(x.data(), n, nullptr);
        const tq::ByteCount bc = codec->byte_count(n);
        CHECK(e.bytes.size() == e.count.total());
        CHECK(bc.payload == e.count.payload);
        CHECK(bc.side == e.count.side);
        const auto again = tq::make_codec(codec->spec(), ctx_for(d, 6));
        CHECK(again->encode(x.data(), n, nullptr).bytes == e.bytes);
        std::vector<float> y1(n * d), y2(n * d);
        codec->decode(e, y1.data());
        again->decode(e, y2.data());
        CHECK(y1 == y2);
        if (n > 0) {
          tq::Encoded cut = e;
          cut.bytes.pop_back();
          CHECK_THROWS_AS(codec->decode(cut, y1.data()), tq::Error);
        }
      }
    }
  }
}

TEST_CASE("outlier: bad specs are usage errors naming the spec") {
  const std::string bad[] = {"outlier,n=1", "outlier,n=127", "outlier,hi=9", "outlier,lo=0", "outlier:3",
                             "outlier,n=x", "outlier,rotation=foo", "outlier,bogus=1"};
  for (const auto& spec : bad) {
    INFO(spec);
    try {
      tq::make_codec(spec, ctx_for(128, 1));
      FAIL("accepted");
    } catch (const tq::UsageError& err) {
      CHECK(std::string(err.what()).find(spec) != std::string::npos);
    }
  }
}
