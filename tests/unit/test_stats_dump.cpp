// lib/tq/stats on the bundled real dump data/stories260K.h5 (what tq inspect reports).
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "tq/core/error.h"
#include "tq/io/dump.h"
#include "tq/stats/dump_stats.h"

namespace {
std::string stories() { return std::string(TQ_SOURCE_DIR) + "/data/stories260K.h5"; }
}  // namespace

TEST_CASE("stats dump: RoPE check passes on stories260K and KS after Haar rotation is small for V") {
  if (!std::filesystem::exists(stories())) {
    MESSAGE("data/stories260K.h5 missing: skipped");
    return;
  }
  const tq::DumpReader r(stories());
  tq::stats::DumpStatsOptions o;
  o.tensors = {"k", "v"};
  const auto ds = tq::stats::dump_stats(r, o);
  REQUIRE(ds.layers.size() == 5);
  for (const auto& l : ds.layers) {
    CAPTURE(l.layer);
    REQUIRE(l.rope_k.has_value());
    REQUIRE(l.rope_q.has_value());
    CHECK(l.rope_k->pass);
    CHECK(l.rope_q->pass);
    REQUIRE(l.entropy.has_value());
    CHECK(l.entropy->mean() > 0.5);
    CHECK(l.entropy->mean() < l.entropy->uniform_mean());  // real attention is peaked
  }
  const auto v = ds.summary("v"), k = ds.summary("k");
  const double n = 426.0 * 8.0;
  MESSAGE("stories260K KS (n=" << n << ", 1/sqrt(n)=" << 1.0 / std::sqrt(n) << "): V ks_haar=" << v.ks_rotated
                               << " ks_raw=" << v.ks_raw << "; K ks_haar=" << k.ks_rotated << " ks_raw=" << k.ks_raw);
  CHECK(v.ks_rotated < 0.08);
  CHECK(k.ks_rotated > v.ks_rotated);  // keys carry large channel offsets: far from isotropic
  CHECK(k.ks_raw > v.ks_raw);
  for (const auto& h : ds.heads) {
    CHECK(h.stats.tokens == 426);
    CHECK(h.stats.dim == 8);
  }
}

TEST_CASE("stats dump: same result at any thread count; selections; bad selections") {
  if (!std::filesystem::exists(stories())) return;
  const tq::DumpReader r(stories());
  tq::stats::DumpStatsOptions o;
  o.layers = {1, 3};
  o.heads = {0, 5};
  o.tensors = {"q", "k"};
  o.seed = 42;
  const int before = omp_get_max_threads();
  omp_set_num_threads(1);
  const auto a = tq::stats::dump_stats(r, o);
  omp_set_num_threads(2);
  const auto b = tq::stats::dump_stats(r, o);
  omp_set_num_threads(before);
  // q has heads 0 and 5, k (4 heads) only head 0: 2 layers × 3 rows.
  REQUIRE(a.heads.size() == 6);
  REQUIRE(b.heads.size() == 6);
  for (size_t i = 0; i < a.heads.size(); ++i) {
    CHECK(a.heads[i].stats.ks_rotated == b.heads[i].stats.ks_rotated);
    CHECK(a.heads[i].stats.kurtosis_pooled == b.heads[i].stats.kurtosis_pooled);
    CHECK(a.heads[i].tensor == b.heads[i].tensor);
  }
  CHECK(a.heads[0].layer == 1);
  CHECK(a.heads[0].tensor == "q");
  CHECK(std::isfinite(a.heads[0].attn_entropy));
  CHECK(std::isnan(a.heads[2].attn_entropy));  // k rows carry no entropy

  o.seed = 43;  // another rotation seed changes ks_haar but nothing else
  const auto c = tq::stats::dump_stats(r, o);
  CHECK(c.heads[0].stats.ks_rotated != a.heads[0].stats.ks_rotated);
  CHECK(c.heads[0].stats.ks_raw == a.heads[0].stats.ks_raw);

  tq::stats::DumpStatsOptions bad;
  bad.layers = {9};
  CHECK_THROWS_AS(tq::stats::dump_stats(r, bad), tq::UsageError);
  bad.layers = {};
  bad.tensors = {"nope"};
  CHECK_THROWS_AS(tq::stats::dump_stats(r, bad), tq::UsageError);
  bad.tensors = {"k"};
  bad.heads = {8};
  CHECK_THROWS_AS(tq::stats::dump_stats(r, bad), tq::UsageError);
}
