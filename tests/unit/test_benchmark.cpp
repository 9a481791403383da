// tq benchmark's driver (lib/tq/bench): sweep expansion, pooling against an independent
// by-hand computation, determinism across thread counts and layer subsets, exceptions from
// parallel regions, and the rotation check on a synthetic model-like profile.
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <stdexcept>

#include "codec_test_util.h"
#include "tq/bench/bench.h"
#include "tq/bench/parallel.h"
#include "tq/bench/pool.h"
#include "tq/codebook/scalar_codebook.h"
#include "tq/core/error.h"
#include "tq/core/rng.h"
#include "tq/metrics/inner_product.h"
#include "tq/synth/generate.h"
#include "tq/synth/profile.h"

namespace {

using tq::Json;

/// Table `name` of a report as JSON rows (as the JSON renderer would write them).
Json table_json(const tq::Report& r, const std::string& name) {
  for (const auto& t : r.tables) {
    if (t.name != name) continue;
    Json rows = Json::array();
    for (const auto& row : t.rows) {
      Json o = Json::object();
      for (size_t i = 0; i < t.columns.size(); ++i) o[t.columns[i]] = tq::cell_to_json(row[i]);
      rows.push_back(o);
    }
    return rows;
  }
  FAIL("no table " << name);
  return Json::array();
}

std::string report_json(const tq::Report& r) { return tq::render_report(r, tq::OutputFormat::Json, Json::object()); }

tq::bench::BenchConfig synth_config(const std::string& profile, int64_t tokens) {
  tq::bench::BenchConfig c;
  c.synthetic = profile;
  c.n_vectors = tokens;
  c.bootstrap = 200;
  return c;
}

}  // namespace

TEST_CASE("benchmark: spec bits are filled in where a codec needs them") {
  using tq::bench::spec_has_bits;
  using tq::bench::spec_with_bits;
  CHECK(spec_has_bits("tq-mse:4"));
  CHECK(spec_has_bits("hr,tq-mse:3,norm=fp32"));
  CHECK_FALSE(spec_has_bits("hr,tq-mse,norm=fp32"));
  CHECK_FALSE(spec_has_bits("q4_0"));
  CHECK(spec_with_bits("hr,tq-mse,norm=fp32", 3) == "hr,tq-mse:3,norm=fp32");
  CHECK(spec_with_bits("tq-mse", 1) == "tq-mse:1");

  tq::bench::BenchConfig c;
  c.bits_k = {2, 3};
  c.bits_v = {4};
  c.codecs = {"tq-mse", "q4_0", "eden:1", "hr,tq-mse,norm=fp32"};
  const tq::bench::Sweep s = tq::bench::expand_sweep(c);
  CHECK(s.k == std::vector<std::string>{"tq-mse:2", "tq-mse:3", "q4_0", "eden:1", "hr,tq-mse:2,norm=fp32",
                                        "hr,tq-mse:3,norm=fp32"});
  CHECK(s.v == std::vector<std::string>{"tq-mse:4", "q4_0", "eden:1", "hr,tq-mse:4,norm=fp32"});
  CHECK(s.pairs.size() == 6 * 4);  // different lengths: every combination

  tq::bench::BenchConfig z;
  z.bits_k = {2, 4};
  z.keep_sinks = 4;
  const tq::bench::Sweep sz = tq::bench::expand_sweep(z);
  CHECK(sz.k == std::vector<std::string>{"tq-mse:2,sinks=4", "tq-mse:4,sinks=4"});
  CHECK(sz.v == sz.k);
  CHECK(sz.pairs == std::vector<std::pair<size_t, size_t>>{{0, 0}, {1, 1}});  // zip

  tq::bench::BenchConfig bad;
  bad.codecs = {"tq-msee"};
  CHECK_THROWS_AS(tq::bench::expand_sweep(bad), tq::UsageError);
  bad.codecs = {"tq-mse"};
  bad.bits_k = {12};
  CHECK_THROWS_AS(tq::bench::expand_sweep(bad), tq::UsageError);
  bad.bits_k = {4};
  bad.codecs = {"tq-mse:4,sinks=2"};
  bad.keep_sinks = 2;
  CHECK_THROWS_AS(tq::bench::expand_sweep(bad), tq::UsageError);
}

TEST_CASE("benchmark: mean/sd and the automatic bootstrap block") {
  const auto m = tq::bench::mean_sd({1.0, 2.0, 4.0});
  CHECK(m.mean == doctest::Approx(7.0 / 3.0));
  CHECK(m.sd == doctest::Approx(std::sqrt(((1 - 7.0 / 3) * (1 - 7.0 / 3) + (2 - 7.0 / 3) * (2 - 7.0 / 3) +
                                           (4 - 7.0 / 3) * (4 - 7.0 / 3)) / 2.0)));
  CHECK(std::isnan(tq::bench::mean_sd({3.0}).sd));
  CHECK(tq::bench::auto_block_len(1) == 1);
  CHECK(tq::bench::auto_block_len(130) == 12);
  CHECK(tq::bench::auto_block_len(100000) == 64);
}

TEST_CASE("benchmark: parallel_tasks rethrows the lowest failing task's exception, after all tasks") {
  omp_set_num_threads(2);
  std::vector<int> done(50, 0);
  try {
    tq::bench::parallel_tasks(done.size(), [&](size_t i) {
      done[i] = 1;
      if (i == 7 || i == 31) throw tq::Error("task " + std::to_string(i));
    });
    FAIL("no exception");
  } catch (const tq::Error& e) {
    CHECK(std::string(e.what()) == "task 7");
  }
  int sum = 0;
  for (int x : done) sum += x;
  CHECK(sum == 50);
}

TEST_CASE("benchmark: pooled figures equal an independent by-hand computation (stories-like)") {
  // Everything recomputed here from the generator, the codec and plain double sums.
  tq::bench::BenchConfig c = synth_config("stories-like", 48);
  c.seed = 11;
  c.codecs = {"tq-mse:2", "fp16"};
  c.metrics = tq::bench::MetricSet::Ip;
  const tq::Report r = tq::bench::run_benchmark(c);
  const Json summary = table_json(r, "summary");
  const Json rows = table_json(r, "rows");

  const tq::synth::Profile p = tq::synth::make_profile("stories-like");
  const size_t T = 48, d = static_cast<size_t>(p.head_dim);
  for (const std::string label : {"tq-mse:2", "fp16"}) {
    for (const std::string tensor : {"k", "v"}) {
      double err = 0, energy = 0, cross = 0, sq = 0;
      size_t bytes = 0, elements = 0;
      for (int l = 0; l < static_cast<int>(p.layers.size()); ++l) {
        const auto lt = tq::synth::generate_layer(p, p.layers[static_cast<size_t>(l)], l, T, c.seed);
        const tq::Tensor3& x = tensor == "k" ? lt.k : lt.v;
        for (int h = 0; h < p.n_kv_heads; ++h) {
          tq::CodecContext ctx;
          ctx.dim = d;
          ctx.seed = tq::seed_for(c.seed, l, h, tensor);
          ctx.tensor = tensor;
          const auto codec = tq::make_codec(label, ctx);
          const float* xs = x.at(static_cast<size_t>(h));
          const tq::Encoded e = codec->encode(xs, T, nullptr);
          std::vector<float> xh(T * d);
          codec->decode(e, xh.data());
          const auto s = tq::testing::err_sums(xs, xh.data(), T * d);
          err += s.err;
          energy += s.energy;
          bytes += e.bytes.size();
          elements += T * d;
          if (tensor == "k") {  // <q, k^> vs <q, k> over causal pairs of the query heads reading h
            for (int qh = 0; qh < p.n_heads; ++qh) {
              if (qh * p.n_kv_heads / p.n_heads != h) continue;
              const float* q = lt.q.at(static_cast<size_t>(qh));
              for (size_t t = 0; t < T; ++t)
                for (size_t s2 = 0; s2 <= t; ++s2) {
                  double a = 0, ah = 0;
                  for (size_t i = 0; i < d; ++i) {
                    a += static_cast<double>(q[t * d + i]) * static_cast<double>(xs[s2 * d + i]);
                    ah += static_cast<double>(q[t * d + i]) * static_cast<double>(xh[s2 * d + i]);
                  }
                  cross += ah * a;
                  sq += a * a;
                }
            }
          }
        }
      }
      CAPTURE(label);
      CAPTURE(tensor);
      const Json* row = nullptr;
      for (const auto& s : summary)
        if (s["codec"] == label && s["tensor"] == tensor) row = &s;
      REQUIRE(row != nullptr);
      CHECK((*row)["nmse"].get<double>() == doctest::Approx(err / energy).epsilon(1e-12));
      CHECK((*row)["bits_per_element"].get<double>() ==
            doctest::Approx(static_cast<double>(bytes) * 8.0 / static_cast<double>(elements)).epsilon(1e-15));
      CHECK((*row)["n_heads"].get<int64_t>() == static_cast<int64_t>(p.layers.size()) * p.n_kv_heads);
      // the bootstrap interval brackets the estimate
      CHECK((*row)["nmse_ci_lo"].get<double>() <= (*row)["nmse"].get<double>());
      CHECK((*row)["nmse_ci_hi"].get<double>() >= (*row)["nmse"].get<double>());
      if (tensor == "k") CHECK((*row)["ip_bias"].get<double>() == doctest::Approx(cross / sq - 1.0).epsilon(1e-9));
      if (label == "fp16") CHECK((*row)["bits_per_element"].get<double>() == 16.0);
    }
  }
  // one row per (layer, kv head, tensor, codec)
  CHECK(rows.size() == p.layers.size() * static_cast<size_t>(p.n_kv_heads) * 2 * 2);
}

TEST_CASE("benchmark: byte-identical at any thread count; a --layers subset reproduces the full rows") {
  tq::bench::BenchConfig c = synth_config("stories-like", 40);
  c.codecs = {"tq-mse:3", "hr,q4_0,block=8"};
  c.seeds = 2;
  omp_set_num_threads(1);
  const std::string one = report_json(tq::bench::run_benchmark(c));
  omp_set_num_threads(2);
  const tq::Report full = tq::bench::run_benchmark(c);
  CHECK(report_json(full) == one);

  tq::bench::BenchConfig sub = c;
  sub.layers = {1, 3};
  const tq::Report part = tq::bench::run_benchmark(sub);
  for (const char* table : {"rows", "attention"}) {
    CAPTURE(table);
    Json want = Json::array();
    for (const auto& row : table_json(full, table))
      if (row["layer"] == 1 || row["layer"] == 3) want.push_back(row);
    CHECK(want.size() > 0);
    CHECK(table_json(part, table).dump() == want.dump());
  }
}

TEST_CASE("benchmark: Haar matches the exact distortion on the smollm2-like profile; RHT reported; identity worse") {
  // The smollm2-like profile has outlier channels and large channel offsets: a rotation must
  // make its coordinates look like those of a random unit vector. Haar does, whatever the data
  // (averaged over heads and seeds); identity does not.
  tq::bench::BenchConfig c = synth_config("smollm2-like", 64);
  c.metrics = tq::bench::MetricSet::Recon;
  c.bootstrap = 0;
  c.seeds = 4;
  c.codecs = {"haar,tq-mse:3", "hr,tq-mse:3", "id,tq-mse:3"};
  const tq::Report r = tq::bench::run_benchmark(c);
  const double exact = 64.0 * tq::lloyd_max_sphere(64, 3).distortion;
  double haar = 0, hr = 0, id = 0;
  for (const auto& row : table_json(r, "summary")) {
    if (row["tensor"] != "k") continue;
    const double v = row["nmse"].get<double>();
    if (row["codec"] == "haar,tq-mse:3") haar = v;
    if (row["codec"] == "hr,tq-mse:3") hr = v;
    if (row["codec"] == "id,tq-mse:3") id = v;
  }
  MESSAGE("smollm2-like K, d=64, 3 bits: exact " << exact << "  haar " << haar << " (" << haar / exact << ")  hr "
                                                  << hr << " (" << hr / exact << ")  id " << id << " ("
                                                  << id / exact << ")");
  CHECK(std::abs(haar / exact - 1.0) < 0.005);
  CHECK(id > 1.5 * exact);
}

TEST_CASE("benchmark: errors are one line and come before any work") {
  tq::bench::BenchConfig c;
  c.inputs = {"/nonexistent/dir/x.h5"};
  CHECK_THROWS_AS(tq::bench::run_benchmark(c), tq::Error);
  c.inputs = {"/nonexistent/*.h5"};
  CHECK_THROWS_AS(tq::bench::run_benchmark(c), tq::Error);
  tq::bench::BenchConfig s = synth_config("stories-like", 20);
  s.layers = {17};
  CHECK_THROWS_AS(tq::bench::run_benchmark(s), tq::UsageError);
  s.layers = {};
  s.codecs = {"outlier"};  // 32 outlier channels need d >= 34: refused for head_dim 8 before any work
  bool thrown = false;
  try {
    (void)tq::bench::run_benchmark(s);
  } catch (const tq::Error& e) {
    thrown = true;
    const std::string m = e.what();
    MESSAGE(m);
    CHECK(m.find('\n') == std::string::npos);
    CHECK(m.find("outlier") != std::string::npos);
    CHECK(m.find("head_dim 8") != std::string::npos);
  }
  CHECK(thrown);
  s.codecs = {};
  s.seeds = 0;
  CHECK_THROWS_AS(tq::bench::run_benchmark(s), tq::UsageError);
}

TEST_CASE("benchmark: iid Gaussian source is one head of seeded N(0,1) data") {
  const auto src = tq::bench::gaussian_source(16, 100, 5);
  const auto a = src->read_layer(0, true);
  const auto b = tq::bench::gaussian_source(16, 100, 5)->read_layer(0, true);
  CHECK(a.k.n0 == 1);
  CHECK(a.k.n1 == 100);
  CHECK(a.q.size() == 0);
  CHECK(a.k.data == b.k.data);
  double s = 0, s2 = 0;
  for (float x : a.k.data) {
    s += static_cast<double>(x);
    s2 += static_cast<double>(x) * static_cast<double>(x);
  }
  CHECK(std::abs(s / 1600) < 0.1);
  CHECK(std::abs(s2 / 1600 - 1.0) < 0.1);
}
