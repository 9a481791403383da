// Codecs with codebook files: codebook=FILE and CodecContext::codebook_dir on tq-mse / eden.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "codec_test_util.h"
#include "tq/codebook/codebook_file.h"
#include "tq/codebook/solvers.h"
#include "tq/codec/codec.h"
#include "tq/codec/rotated_scalar.h"
#include "tq/core/error.h"

namespace cb = tq::codebook;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / fs::path(std::string("tq_cbcodec_") + std::to_string(::getpid()) + std::string("_") + std::to_string(counter()++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  static int& counter() {
    static int c = 0;
    return c;
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

cb::CodebookFile analytic_file(size_t d, int bits) {
  cb::CodebookFile f;
  f.cb = tq::lloyd_max_sphere(d, bits);
  f.dim = static_cast<int>(d);
  f.source = std::string("beta:") + std::to_string(d);
  f.scope = std::string("analytic");
  f.tq_version = std::string("test");
  return f;
}

cb::CodebookFile data_file(size_t d, int bits, const std::string& scope) {
  cb::CodebookFile f = analytic_file(d, bits);
  std::vector<double> c = cb::centroids_of(f.cb);
  for (size_t i = 0; i < c.size(); ++i) c[i] *= 1.1 + 0.01 * static_cast<double>(i);  // some other codebook
  f.cb = cb::make_codebook(c, bits);
  f.source = std::string("dump:somewhere.h5");
  f.scope = scope;
  f.layers = std::string("2");
  f.heads = std::string("1");
  return f;
}

tq::CodecContext ctx_for(size_t d) {
  // Aggregate-initialised: GCC 12 flags a false -Wrestrict on string assignment.
  return tq::CodecContext{d, tq::seed_for(3, 2, 1, "k"), std::string("k"), {}};
}

}  // namespace

TEST_CASE("codebook=FILE holding the analytic codebook: byte-identical encodings for tq-mse and eden") {
  TempDir dir;
  const size_t d = 64, n = 50;
  const auto x = tq::testing::gaussian_rows(n, d, 17);
  for (int bits : {1, 2, 4, 8}) {
    const std::string path = dir.file(std::string("a") + std::to_string(bits) + ".toml");
    cb::save_codebook_file(path, analytic_file(d, bits), false);
    for (const std::string name : {"tq-mse", "eden"}) {
      CAPTURE(bits);
      CAPTURE(name);
      const auto ref = tq::make_codec(name + std::string(":") + std::to_string(bits), ctx_for(d));
      const auto fil = tq::make_codec(name + std::string(":") + std::to_string(bits) + std::string(",codebook=") + path, ctx_for(d));
      const tq::Encoded a = ref->encode(x.data(), n, nullptr);
      const tq::Encoded b = fil->encode(x.data(), n, nullptr);
      CHECK(a.bytes == b.bytes);
      CHECK(a.count.side == b.count.side);
      CHECK(a.count.payload == b.count.payload);
      CHECK(fil->spec().find(std::string("codebook=") + path) != std::string::npos);
    }
  }
  // hr rotation too, and through the ctx (codebook_dir = the file)
  tq::CodecContext c = ctx_for(d);
  c.codebook_dir = dir.file("a2.toml");
  cb::CodebookFile hr = analytic_file(d, 2);
  hr.rotation = std::string("hr");
  cb::save_codebook_file(dir.file("hr2.toml"), hr, false);
  CHECK(tq::make_codec(std::string("hr,tq-mse:2,codebook=") + dir.file("hr2.toml"), ctx_for(d))->encode(x.data(), n, nullptr).bytes ==
        tq::make_codec("hr,tq-mse:2", ctx_for(d))->encode(x.data(), n, nullptr).bytes);
  CHECK(tq::make_codec("tq-mse:2", c)->encode(x.data(), n, nullptr).bytes ==
        tq::make_codec("tq-mse:2", ctx_for(d))->encode(x.data(), n, nullptr).bytes);
}

TEST_CASE("per-tensor data codebook: centroids travel as fp32 side bytes and the decoder uses them") {
  TempDir dir;
  const size_t d = 64, n = 40;
  const int bits = 3;
  const auto x = tq::testing::gaussian_rows(n, d, 23);
  const std::string tensor_path = dir.file("t.toml"), shared_path = dir.file("s.toml");
  cb::save_codebook_file(tensor_path, data_file(d, bits, "tensor"), false);
  cb::save_codebook_file(shared_path, data_file(d, bits, "shared"), false);
  const auto analytic = tq::make_codec("tq-mse:3", ctx_for(d));
  const auto per_tensor = tq::make_codec(std::string("tq-mse:3,codebook=") + tensor_path, ctx_for(d));
  const auto shared = tq::make_codec(std::string("tq-mse:3,codebook=") + shared_path, ctx_for(d));
  const tq::Encoded ea = analytic->encode(x.data(), n, nullptr);
  const tq::Encoded et = per_tensor->encode(x.data(), n, nullptr);
  const tq::Encoded es = shared->encode(x.data(), n, nullptr);
  CHECK(et.count.side == ea.count.side + 4 * 8);  // 2^3 fp32 centroids
  CHECK(et.count.payload == ea.count.payload);
  CHECK(es.count.side == ea.count.side);  // a shared codebook is a model constant
  CHECK(et.bytes.size() == et.count.total());
  CHECK(per_tensor->byte_count(n).total() == et.count.total());
  const auto* rs = dynamic_cast<const tq::RotatedScalarCodec*>(per_tensor.get());
  REQUIRE(rs != nullptr);
  CHECK(rs->codebook_in_stream());
  CHECK(rs->encoding_size(et.bytes.data(), et.bytes.size(), n) == et.bytes.size());
  // same codes and scales after the header; decodes agree between shared and per-tensor
  CHECK(std::equal(et.bytes.begin() + 32, et.bytes.end(), es.bytes.begin()));
  std::vector<float> yt(n * d), ys(n * d);
  per_tensor->decode(et, yt.data());
  shared->decode(es, ys.data());
  CHECK(yt == ys);
  // the decoder reads the centroids from the stream: change one, the output changes
  tq::Encoded bad = et;
  float c0;
  std::memcpy(&c0, bad.bytes.data(), 4);
  c0 *= 2.0f;
  std::memcpy(bad.bytes.data(), &c0, 4);
  std::vector<float> yb(n * d);
  per_tensor->decode(bad, yb.data());
  CHECK(yb != yt);
}

TEST_CASE("codebook_dir: per layer/head/tensor lookup with default fallbacks; mismatches rejected") {
  TempDir dir;
  const size_t d = 64;
  cb::save_codebook_file(dir.file("L2_H1_k.toml"), data_file(d, 2, "tensor"), false);
  cb::save_codebook_file(dir.file("L2_H1_k_b3.toml"), data_file(d, 3, "tensor"), false);
  cb::save_codebook_file(dir.file("default.toml"), analytic_file(d, 2), false);
  tq::CodecContext c = ctx_for(d);
  c.codebook_dir = dir.path.string();
  c.layer = 2;
  c.head = 1;
  CHECK(tq::resolve_codebook_path(c, 2) == dir.file("L2_H1_k.toml"));
  CHECK(tq::resolve_codebook_path(c, 3) == dir.file("L2_H1_k_b3.toml"));
  c.tensor = std::string("v");
  CHECK(tq::resolve_codebook_path(c, 2) == dir.file("default.toml"));
  c.head = -1;  // unknown head: only the defaults apply
  c.tensor = std::string("k");
  CHECK(tq::resolve_codebook_path(c, 2) == dir.file("default.toml"));
  CHECK(tq::resolve_codebook_path(c, 4) == dir.file("default.toml"));  // bits are checked by the codec
  TempDir empty;
  tq::CodecContext e = c;
  e.codebook_dir = empty.path.string();
  CHECK_THROWS_WITH_AS(tq::resolve_codebook_path(e, 2), doctest::Contains("default.toml"), tq::UsageError);
  c.head = 1;
  const auto codec = tq::make_codec("tq-mse:2", c);
  CHECK(dynamic_cast<const tq::RotatedScalarCodec&>(*codec).codebook_in_stream());
  CHECK_THROWS_AS(tq::make_codec("tq-mse:4", c), tq::UsageError);
  // a file whose bits / dim / rotation do not match the codec
  CHECK_THROWS_AS(tq::make_codec(std::string("tq-mse:3,codebook=") + dir.file("default.toml"), ctx_for(d)), tq::UsageError);
  CHECK_THROWS_AS(tq::make_codec(std::string("tq-mse:2,codebook=") + dir.file("default.toml"), ctx_for(32)), tq::UsageError);
  CHECK_THROWS_AS(tq::make_codec(std::string("hr,tq-mse:2,codebook=") + dir.file("default.toml"), ctx_for(d)), tq::UsageError);
  CHECK_THROWS_AS(tq::make_codec(std::string("tq-mse:2,law=beta,codebook=") + dir.file("default.toml"), ctx_for(d)), tq::UsageError);
  CHECK_THROWS_AS(tq::make_codec(std::string("tq-mse:2,codebook=") + dir.file("missing.toml"), ctx_for(d)), tq::Error);
}
