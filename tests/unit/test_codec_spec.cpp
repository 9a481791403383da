// Tests of the codec spec grammar (spec.cpp), canonical specs, error messages and the exact
// byte accounting of every built-in codec.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "codec_test_util.h"
#include "tq/codec/codec.h"
#include "tq/core/error.h"
#include "tq/pack/bitpack.h"

namespace {

tq::CodecContext ctx_for(size_t d, uint64_t seed = 1) {
  // Aggregate-initialised: GCC 12 at -O2 with ASan flags a false -Wrestrict on string assignment.
  return tq::CodecContext{d, seed, std::string("k"), {}};
}

/// The UsageError message of make_codec(spec), or "" when it does not throw.
std::string usage_error(const std::string& spec, size_t d = 128) {
  try {
    tq::make_codec(spec, ctx_for(d));
  } catch (const tq::UsageError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("codec spec: canonical spec strings, and they rebuild the same codec") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"tq-mse:4", "haar,tq-mse:4,norm=fp16,law=beta"},
      {"hr,tq-mse:3", "hr,tq-mse:3,norm=fp16,law=beta"},
      {"id,tq-mse:3", "id,tq-mse:3,norm=fp16,law=beta"},
      {"tq-mse:4,norm=fp32", "haar,tq-mse:4,norm=fp32,law=beta"},
      {" tq-mse:2 , law=gaussian ", "haar,tq-mse:2,norm=fp16,law=gaussian"},
      {"tq-mse:3,rotation=hr", "hr,tq-mse:3,norm=fp16,law=beta"},
      {"eden:3", "haar,eden:3,norm=fp16,law=beta"},
      {"center,hr,tq-mse:2", "center,hr,tq-mse:2,norm=fp16,law=beta"},
      {"hr,center,tq-mse:2", "center,hr,tq-mse:2,norm=fp16,law=beta"},
      {"fp16", "fp16"},
      {"fp32", "fp32"},
      {"hr,fp16", "hr,fp16"},
      {"center,haar,fp32", "center,haar,fp32"},
  };
  const std::vector<float> x = tq::testing::gaussian_rows(10, 64, 3);
  for (const auto& [spec, canonical] : cases) {
    CAPTURE(spec);
    const auto c = tq::make_codec(spec, ctx_for(64, 9));
    CHECK(c->spec() == canonical);
    const auto again = tq::make_codec(c->spec(), ctx_for(64, 9));
    CHECK(again->spec() == canonical);
    CHECK(again->encode(x.data(), 10, nullptr).bytes == c->encode(x.data(), 10, nullptr).bytes);
  }
}

TEST_CASE("codec spec: bad specs throw UsageError naming the spec") {
  const std::vector<std::string> bad = {
      "",                          // empty
      "nope:3",                    // unknown codec
      "tq-mse:0",                  // bits out of range
      "tq-mse:9",
      "tq-mse",                    // bits missing
      "tq-mse:x",                  // not a number
      "tq-mse:4,foo=1",            // unknown option
      "tq-mse:4,norm=fp8",         // bad option value
      "tq-mse:4,law=laplace",
      "tq-mse:4,fp16",             // two codecs
      "eden:2,tq-mse:4",
      "hr",                        // a stage, no codec
      "norm=fp32",                 // options only
      "wobble,tq-mse:3",           // unknown stage
      "haar,hr,tq-mse:3",          // two rotations for a rotation-owning codec
      "hr,tq-mse:3,rotation=haar", // rotation twice
      "hr:2,tq-mse:3",             // stage parameter not taken
      "tq-mse:3,,norm=fp16",       // empty item
      "tq-mse:3,norm=fp16,norm=fp32",
      "tq-mse:3,=fp16",
      "fp16:8",                    // fp16 takes no bits
      "hr,fp16,norm=fp32",         // option nobody consumes
  };
  for (const auto& spec : bad) {
    CAPTURE(spec);
    const std::string msg = usage_error(spec);
    CHECK(!msg.empty());
    CHECK(msg.find("'" + spec + "'") != std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);
  }
  CHECK(usage_error("nope:3").find("unknown codec 'nope'") != std::string::npos);
  CHECK(usage_error("tq-mse:4,foo=1").find("unknown option 'foo'") != std::string::npos);
  CHECK(usage_error("tq-mse:4,fp16").find("two codecs") != std::string::npos);
  CHECK(!usage_error("tq-mse:3", 1).empty());  // d = 1 is not supported
}

TEST_CASE("codec spec: help and list name every codec and stage") {
  const std::string help = tq::codec_spec_help();
  for (const auto& [name, text] : tq::codec_list()) {
    CHECK(!text.empty());
    CHECK(help.find(name) != std::string::npos);
  }
  for (const auto& [name, text] : tq::codec_stage_list()) CHECK(help.find(name) != std::string::npos);
  std::vector<std::string> names;
  for (const auto& [name, text] : tq::codec_list()) names.push_back(name);
  for (const char* n : {"tq-mse", "eden", "fp32", "fp16"}) CHECK(std::find(names.begin(), names.end(), n) != names.end());
}

TEST_CASE("byte accounting: exact for every codec, several n, and decode reads all of it") {
  const std::vector<std::string> specs = {"tq-mse:1", "tq-mse:3", "tq-mse:4,norm=fp32", "hr,tq-mse:5", "eden:2",
                                          "eden:8",   "fp32",     "fp16",               "center,tq-mse:3", "center,hr,fp16",
                                          "id,tq-mse:7"};
  for (size_t d : {13, 64, 128}) {
    for (const auto& spec : specs) {
      const auto codec = tq::make_codec(spec, ctx_for(d, 4));
      for (size_t n : {0, 1, 2, 3, 7, 64, 129}) {
        CAPTURE(spec);
        CAPTURE(d);
        CAPTURE(n);
        const std::vector<float> x = tq::testing::gaussian_rows(n, d, 100 + n);
        const tq::Encoded e = codec->encode(x.data(), n, nullptr);
        CHECK(e.n_tokens == n);
        CHECK(e.dim == d);
        CHECK(e.bytes.size() == e.count.total());
        const tq::ByteCount bc = codec->byte_count(n);
        CHECK(bc.payload == e.count.payload);
        CHECK(bc.side == e.count.side);
        CHECK(bc.window == e.count.window);
        std::vector<float> y(n * d);
        codec->decode(e, y.data());
        // A truncated or padded encoding is rejected, never read out of bounds.
        if (!e.bytes.empty()) {
          tq::Encoded cut = e;
          cut.bytes.pop_back();
          CHECK_THROWS_AS(codec->decode(cut, y.data()), tq::Error);
        }
        tq::Encoded longer = e;
        longer.bytes.push_back(0);
        CHECK_THROWS_AS(codec->decode(longer, y.data()), tq::Error);
      }
    }
  }
  // The layouts in docs/codec-spec.md.
  const auto mse = tq::make_codec("tq-mse:3", ctx_for(128));
  CHECK(mse->byte_count(5).payload == (5 * 128 * 3 + 7) / 8);
  CHECK(mse->byte_count(5).side == 5 * 2);
  CHECK(tq::make_codec("tq-mse:3", ctx_for(13))->byte_count(3).payload == 15);  // ceil(117 / 8)
  CHECK(tq::make_codec("tq-mse:3,norm=fp32", ctx_for(128))->byte_count(5).side == 5 * 4);
  CHECK(tq::make_codec("center,tq-mse:3", ctx_for(128))->byte_count(5).side == 5 * 2 + 128 * 4);
  CHECK(tq::make_codec("fp16", ctx_for(128))->byte_count(5).payload == 5 * 128 * 2);
  CHECK(tq::make_codec("fp32", ctx_for(128))->byte_count(5).payload == 5 * 128 * 4);
  // bits per element -> b + 16/d as T -> infinity
  const size_t big = 1 << 20;
  for (int b = 1; b <= 8; ++b) {
    const auto c = tq::make_codec("tq-mse:" + std::to_string(b), ctx_for(128));
    const double bpe = static_cast<double>(c->byte_count(big).total()) * 8.0 / (static_cast<double>(big) * 128.0);
    CHECK(bpe == doctest::Approx(b + 16.0 / 128.0).epsilon(1e-9));
  }
}
