// DumpWriter -> DumpReader round trips: metadata, every dtype's exact stored values, streaming
// one head at a time.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "test_io_util.h"

using namespace tq;
using namespace tq::test;

namespace {

/// Bit-exact comparison (distinguishes -0 from +0).
bool same_bits(float a, float b) {
  uint32_t x, y;
  std::memcpy(&x, &a, 4);
  std::memcpy(&y, &b, 4);
  return x == y;
}

void check_values(const DumpReader& r, int layer, const std::string& name, const Tensor3& want,
                  DType dtype) {
  const Tensor3 got = r.read(layer, name);
  REQUIRE(got.n0 == want.n0);
  REQUIRE(got.n1 == want.n1);
  REQUIRE(got.n2 == want.n2);
  REQUIRE(got.data.size() == want.data.size());
  size_t mismatches = 0;
  for (size_t i = 0; i < got.data.size(); ++i) {
    if (!same_bits(got.data[i], stored_value(want.data[i], dtype))) ++mismatches;
  }
  INFO("layer ", layer, " dataset ", name, " dtype ", dtype_name(dtype));
  CHECK(mismatches == 0);
  // read_head returns exactly the head's slice of read().
  for (size_t h = 0; h < got.n0; ++h) {
    const std::vector<float> head = r.read_head(layer, name, static_cast<int>(h));
    REQUIRE(head.size() == got.n1 * got.n2);
    CHECK(std::memcmp(head.data(), got.at(h), head.size() * sizeof(float)) == 0);
  }
}

void round_trip(DType dtype, int deflate) {
  TempDir dir;
  const std::string path = dir.file("dump.h5");
  const RefDump ref;
  ref.write(path, dtype, deflate);
  CHECK(dir.entries() == 1);  // no temporary left behind

  const DumpReader r(path);
  const DumpInfo& info = r.info();
  CHECK(info.path == path);
  CHECK(info.format_version == kDumpFormatVersion);
  CHECK(info.model_name == "toy");
  CHECK(info.model_source == "unit-test");
  CHECK(info.weight_precision == "bf16");
  CHECK(info.creator == "tq");
  CHECK(info.created == "2024-01-02T03:04:05Z");
  CHECK(info.n_layers == 3);
  CHECK(info.n_tokens == static_cast<int>(RefDump::kTokens));
  CHECK(info.token_ids == ref.meta.token_ids);
  CHECK(info.positions == ref.meta.positions);
  CHECK(info.attributes.at("format") == "tq-kv-dump");
  CHECK(info.attributes.at("format_version") == "1");
  CHECK(info.attributes.at("n_tokens") == "7");
  CHECK(info.attributes.at("prompt_source") == "unit test");
  REQUIRE(info.layers.size() == 2);

  const LayerInfo& a = info.layer(0);
  CHECK(a.n_heads == 4);
  CHECK(a.n_kv_heads == 2);
  CHECK(a.head_dim == 8);
  CHECK(a.attn_scale == doctest::Approx(1.0 / std::sqrt(8.0)).epsilon(1e-15));
  CHECK(a.rope_theta == 500000.0);
  CHECK(a.rope_pairing == "half");
  CHECK(a.rotary_dim == 8);
  CHECK(a.rope_scaling == "none");
  CHECK(!a.sliding_window);
  CHECK(!a.logit_softcap);
  CHECK(a.datasets.size() == 6);
  CHECK(!a.has("q_pre"));
  for (const auto& [name, dt] : a.datasets) CHECK(dt == dtype);

  const LayerInfo& b = info.layer(2);
  CHECK(b.head_dim == 16);
  CHECK(b.attn_scale == 0.125);
  CHECK(b.rope_pairing == "interleaved");
  CHECK(b.sliding_window == 4096);
  CHECK(b.logit_softcap == 50.0);
  CHECK(b.datasets.size() == 2);

  for (const auto& [name, t] : ref.t0) check_values(r, 0, name, t, dtype);
  for (const auto& [name, t] : ref.t2) check_values(r, 2, name, t, dtype);
}

}  // namespace

TEST_CASE("io round trip: fp32 values are exact") { round_trip(DType::F32, 0); }
TEST_CASE("io round trip: fp16 values are exactly the nearest-even fp16") {
  round_trip(DType::F16, 0);
}
TEST_CASE("io round trip: bf16 values are exactly the nearest-even bf16") {
  round_trip(DType::BF16, 0);
}
TEST_CASE("io round trip: deflate-compressed fp32 and fp16") {
  round_trip(DType::F32, 4);
  round_trip(DType::F16, 1);
}

TEST_CASE("io round trip: the reference values really change under fp16/bf16 storage") {
  // Guards the round-trip tests against a writer that silently stores fp32 for every dtype.
  const RefDump ref;
  const Tensor3& k = ref.t0.at("k");
  CHECK(stored_value(k.data[5], DType::F16) != k.data[5]);
  CHECK(stored_value(k.data[3], DType::F16) == 1.0f);
  CHECK(stored_value(k.data[4], DType::BF16) == 1.0f);
  size_t changed = 0;
  for (float x : k.data) changed += stored_value(x, DType::BF16) != x;
  CHECK(changed > k.data.size() / 2);
}

TEST_CASE("io: absent layers and datasets are reported, not invented") {
  TempDir dir;
  const std::string path = dir.file("dump.h5");
  RefDump().write(path, DType::F32);
  const DumpReader r(path);
  std::string msg = error_of([&] { (void)r.info().layer(1); });
  CHECK(contains(msg, path));
  CHECK(contains(msg, "layer 1"));
  msg = error_of([&] { (void)r.read(2, "q"); });
  CHECK(contains(msg, path + ": /layers/2/q: no such dataset"));
  msg = error_of([&] { (void)r.read_head(0, "k", 2); });
  CHECK(contains(msg, "/layers/0/k: head 2 out of range"));
  msg = error_of([&] { (void)r.read_head(0, "q", -1); });
  CHECK(contains(msg, "/layers/0/q: head -1 out of range"));
}

TEST_CASE("io: reader is movable and stays valid after a move") {
  TempDir dir;
  const std::string path = dir.file("dump.h5");
  RefDump().write(path, DType::F16);
  DumpReader a(path);
  DumpReader b(std::move(a));
  CHECK(b.info().n_tokens == 7);
  CHECK(b.read(2, "v").size() == 2 * 7 * 16);
}

TEST_CASE("io: positions default to 0..T-1 and writer fills attn_scale / rotary_dim") {
  TempDir dir;
  const std::string path = dir.file("d.h5");
  DumpMeta meta;
  meta.token_ids = {5, 6, 7};
  LayerInfo L;
  L.index = 0;
  L.n_heads = 1;
  L.n_kv_heads = 1;
  L.head_dim = 4;
  const Tensor3 k = random_tensor(1, 3, 4, 1), v = random_tensor(1, 3, 4, 2);
  {
    DumpWriter w(path, meta);
    w.write_layer(L, {{"k", &k}, {"v", &v}});
    w.close();
    w.close();  // second close is a no-op
  }
  const DumpReader r(path);
  CHECK(r.info().positions == std::vector<int32_t>{0, 1, 2});
  CHECK(r.info().n_layers == 1);  // deduced from the highest layer written
  CHECK(r.info().layer(0).attn_scale == 0.5);
  CHECK(r.info().layer(0).rotary_dim == 4);
  CHECK(!r.info().created.empty());
}
