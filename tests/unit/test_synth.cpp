// lib/tq/synth: determinism, RoPE consistency, layer subsets, profiles, the gaussian null model.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>

#include <fmt/format.h>

#include "tq/core/error.h"
#include "tq/io/dump.h"
#include "tq/stats/dump_stats.h"
#include "tq/stats/head_stats.h"
#include "tq/synth/fit.h"
#include "tq/synth/generate.h"
#include "tq/synth/profile.h"

namespace fs = std::filesystem;

namespace {

std::string temp_path(const std::string& tag) {
  return (fs::temp_directory_path() / fmt::format("tq-synth-test-{}-{}.h5", ::getpid(), tag)).string();
}

std::string write(const std::string& profile, size_t T, uint64_t seed, const std::string& tag,
                  std::vector<int> layers = {}, tq::DType dtype = tq::DType::F32, int head_dim = 128) {
  const std::string path = temp_path(tag);
  tq::synth::SynthOptions o;
  o.tokens = T;
  o.seed = seed;
  o.layers = std::move(layers);
  o.dtype = dtype;
  tq::synth::write_synth_dump(path, tq::synth::make_profile(profile, head_dim), o);
  return path;
}

}  // namespace

TEST_CASE("synth: same seed gives identical tensors, another seed differs") {
  const std::string a = write("stories-like", 100, 5, "a"), b = write("stories-like", 100, 5, "b"),
                    c = write("stories-like", 100, 6, "c");
  const tq::DumpReader ra(a), rb(b), rc(c);
  for (const auto& li : ra.info().layers)
    for (const char* t : {"k", "v", "q", "k_pre", "q_pre"}) {
      CAPTURE(li.index);
      CAPTURE(t);
      const auto x = ra.read(li.index, t), y = rb.read(li.index, t), z = rc.read(li.index, t);
      CHECK(x.data == y.data);  // bit-identical floats
      CHECK(x.data != z.data);
    }
  for (const auto& p : {a, b, c}) fs::remove(p);
}

TEST_CASE("synth: a --layers subset reproduces the full dump's layers") {
  const std::string full = write("stories-like", 64, 9, "full"), part = write("stories-like", 64, 9, "part", {1, 3});
  const tq::DumpReader rf(full), rp(part);
  REQUIRE(rp.info().layers.size() == 2);
  CHECK(rp.info().n_layers == 5);
  for (int l : {1, 3}) CHECK(rf.read(l, "k").data == rp.read(l, "k").data);
  fs::remove(full);
  fs::remove(part);
  CHECK_THROWS_AS(write("stories-like", 64, 9, "bad", {5}), tq::UsageError);
}

TEST_CASE("synth: k == RoPE(k_pre) and q == RoPE(q_pre) in every profile") {
  for (const std::string name : {"stories-like", "smollm2-like", "llama3-8b-like", "gaussian"}) {
    CAPTURE(name);
    const std::string path = write(name, 48, 1, "rope-" + name, {0});
    const tq::DumpReader r(path);
    tq::stats::DumpStatsOptions o;
    o.tensors = {"k"};
    o.ks = false;
    const auto ds = tq::stats::dump_stats(r, o);
    REQUIRE(ds.layers.size() == 1);
    REQUIRE(ds.layers[0].rope_k.has_value());
    CHECK(ds.layers[0].rope_k->pass);
    CHECK(ds.layers[0].rope_k->rel_err < 1e-6);
    REQUIRE(ds.layers[0].rope_q.has_value());
    CHECK(ds.layers[0].rope_q->pass);
    const auto& li = r.info().layer(0);
    const auto p = tq::synth::make_profile(name);
    CHECK(li.n_heads == p.n_heads);
    CHECK(li.n_kv_heads == p.n_kv_heads);
    CHECK(li.head_dim == p.head_dim);
    CHECK(li.rope_theta == p.rope_theta);
    CHECK(li.rope_pairing == p.rope_pairing);
    fs::remove(path);
  }
}

TEST_CASE("synth: gaussian profile is iid N(0,1) at any --head-dim") {
  for (int d : {5, 32}) {
    CAPTURE(d);
    const std::string path = write("gaussian", 4000, 3, fmt::format("gauss{}", d), {}, tq::DType::F32, d);
    const tq::DumpReader r(path);
    for (const char* t : {"k_pre", "v", "q_pre", "k"}) {
      CAPTURE(t);
      const auto x = r.read(0, t);
      double m = 0, m2 = 0;
      for (float v : x.data) m += static_cast<double>(v);
      m /= static_cast<double>(x.data.size());
      for (float v : x.data) m2 += (static_cast<double>(v) - m) * (static_cast<double>(v) - m);
      m2 /= static_cast<double>(x.data.size());
      CHECK(std::fabs(m) < 0.02);
      CHECK(m2 == doctest::Approx(1.0).epsilon(0.03));
      CHECK(std::fabs(tq::stats::excess_kurtosis(x.data.data(), x.data.size())) < 0.1);
      tq::stats::HeadStatsOptions ho;
      ho.ks = false;
      CHECK(std::fabs(tq::stats::head_stats(x.at(0), x.n1, x.n2, ho).lag1_autocorr) < 0.05);
    }
    fs::remove(path);
  }
  CHECK_THROWS_AS(tq::synth::make_profile("gaussian", 0), tq::UsageError);
}

TEST_CASE("synth: llama3-8b-like keys have ~10x outlier channels, values none") {
  const auto p = tq::synth::make_profile("llama3-8b-like");
  CHECK(p.layers.size() == 32);
  CHECK(p.n_heads == 32);
  CHECK(p.n_kv_heads == 8);
  CHECK(p.head_dim == 128);
  CHECK(p.rope_theta == 500000.0);
  const auto lt = tq::synth::generate_layer(p, p.layers[0], 0, 1024, 0);
  tq::stats::HeadStatsOptions ho;
  ho.ks = false;
  double k_ratio = 0, v_ratio = 0;
  for (size_t g = 0; g < 8; ++g) {
    k_ratio += tq::stats::head_stats(lt.k_pre.at(g), 1024, 128, ho).outlier_ratio / 8.0;
    v_ratio += tq::stats::head_stats(lt.v.at(g), 1024, 128, ho).outlier_ratio / 8.0;
  }
  MESSAGE("llama3-8b-like layer 0: k_pre outlier_ratio " << k_ratio << ", v " << v_ratio);
  CHECK(k_ratio > 7.0);
  CHECK(k_ratio < 14.0);
  CHECK(v_ratio < 2.0);
}

TEST_CASE("synth: profiles, dtypes and errors") {
  CHECK(tq::synth::profile_names().size() == 4);
  CHECK_THROWS_AS(tq::synth::make_profile("llama9-like"), tq::UsageError);
  CHECK(tq::synth::make_profile("smollm2-like").layers.size() == 30);
  CHECK(tq::synth::make_profile("stories-like").layers.size() == 5);
  for (auto dt : {tq::DType::F16, tq::DType::BF16}) {
    const std::string path = write("stories-like", 32, 1, "dt", {0}, dt);
    const tq::DumpReader r(path);
    CHECK(r.info().layer(0).datasets.at("k") == dt);
    fs::remove(path);
  }
}

TEST_CASE("synth: fitting a synthetic dump recovers its generating parameters") {
  // Fit the stories-like profile to a long synthetic stories-like dump: the channel-model
  // parameters come back close to those used (a self-consistency check of fit.cpp).
  const auto p = tq::synth::make_profile("stories-like");
  const auto lt = tq::synth::generate_layer(p, p.layers[2], 2, 8000, 4);
  const tq::synth::ChannelModel v = tq::synth::fit_channel_model(lt.v);
  const tq::synth::ChannelModel k = tq::synth::fit_channel_model(lt.k_pre);
  const auto& tv = p.layers[2].v;
  const auto& tk = p.layers[2].k;
  CHECK(v.rho == doctest::Approx(tv.rho).epsilon(0.5));
  CHECK(v.n_outliers == 0);
  CHECK(k.n_outliers == tk.n_outliers);
  CHECK(k.outlier_offset == doctest::Approx(tk.outlier_offset).epsilon(0.3));
  CHECK(v.tail == doctest::Approx(tv.tail).epsilon(0.5));
}
