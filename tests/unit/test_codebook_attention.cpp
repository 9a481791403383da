// Data-driven codebook objectives on the bundled SmolLM2 dumps: the attention objective is not
// degenerate (unlike N(0, I/d) queries/keys), equals the metrics of the real codec, and dump
// solves produce valid codebooks.
#include <doctest/doctest.h>

#include <cmath>

#include "tq/codebook/design.h"
#include "tq/codec/codec.h"
#include "tq/core/error.h"
#include "tq/core/rng.h"
#include "tq/io/dump.h"
#include "tq/metrics/attention.h"
#include "tq/metrics/inner_product.h"

#ifndef TQ_SOURCE_DIR
#define TQ_SOURCE_DIR "."
#endif

namespace cb = tq::codebook;

namespace {
const std::string kA = std::string(TQ_SOURCE_DIR) + "/data/smollm2_a.h5";
const std::string kB = std::string(TQ_SOURCE_DIR) + "/data/smollm2_b.h5";
}  // namespace

TEST_CASE("attention objective on SmolLM2 (all layers, real Q/K): 2 bits >= 1e-4 nats and >= 2x the 3-bit value") {
  cb::ProblemSpec ps;
  ps.source = std::string("dump:") + kA;
  ps.heldout = std::string("dump:") + kB;
  ps.objective = cb::ObjectiveKind::Attention;
  const auto p = cb::make_problem(ps);
  CHECK(p->dim() == 64);
  const auto t2 = p->train(p->analytic(2)), t3 = p->train(p->analytic(3));
  const auto h2 = p->heldout(p->analytic(2)), h3 = p->heldout(p->analytic(3));
  MESSAGE("attn_kl tq-mse analytic: prompt a 2 bits " << t2.value << ", 3 bits " << t3.value << "; prompt b 2 bits " << h2.value
                                                      << ", 3 bits " << h3.value);
  for (const auto& [two, three] : {std::pair{t2, t3}, std::pair{h2, h3}}) {
    CHECK(two.value >= 1e-4);
    CHECK(two.value >= 2.0 * three.value);
    CHECK(three.value > 0.0);
    CHECK(two.out_err > three.out_err);
  }
}

TEST_CASE("attention / ip objectives equal the metrics of the real tq-mse codec on one layer") {
  const int layer = 5;
  const uint64_t seed = 9;
  tq::DumpReader r(kA);
  const tq::LayerInfo& L = r.info().layer(layer);
  const auto T = static_cast<size_t>(r.info().n_tokens);
  const size_t d = static_cast<size_t>(L.head_dim);
  const tq::Tensor3 q = r.read(layer, "q"), k = r.read(layer, "k"), v = r.read(layer, "v");
  tq::Tensor3 khat = k;
  for (int h = 0; h < L.n_kv_heads; ++h) {
    tq::CodecContext ctx;
    ctx.dim = d;
    ctx.seed = tq::seed_for(seed, layer, h, "k");
    ctx.tensor = std::string("k");
    const auto codec = tq::make_codec("tq-mse:2", ctx);
    codec->decode(codec->encode(k.at(static_cast<size_t>(h)), T, nullptr), khat.at(static_cast<size_t>(h)));
  }
  const tq::metrics::AttnOptions opt = tq::metrics::attn_options_for(L);
  const auto per_head = tq::metrics::attention_layer(q.data.data(), L.n_heads, k.data.data(), v.data.data(), khat.data.data(),
                                                     v.data.data(), L.n_kv_heads, T, d, opt);
  tq::metrics::AttnStats total;
  for (const auto& s : per_head) total.merge(s);
  const auto ip_heads = tq::metrics::ip_stats_layer(q.data.data(), L.n_heads, k.data.data(), khat.data.data(), L.n_kv_heads, T, d);
  tq::metrics::IpStats ip;
  for (const auto& s : ip_heads) ip.merge(s);

  cb::ProblemSpec ps;
  ps.source = std::string("dump:") + kA;
  ps.heldout = std::string("dump:") + kB;
  ps.layers = {layer};
  ps.seed = seed;
  ps.objective = cb::ObjectiveKind::Attention;
  const auto pa = cb::make_problem(ps);
  const auto va = pa->train(pa->analytic(2));
  CHECK(std::abs(va.value / total.summary().kl - 1.0) < 1e-9);
  CHECK(std::abs(va.out_err / total.summary().out_err - 1.0) < 1e-9);
  ps.objective = cb::ObjectiveKind::Ip;
  const auto pi = cb::make_problem(ps);
  CHECK(std::abs(pi->train(pi->analytic(2)).value / ip.rms() - 1.0) < 1e-9);
}

TEST_CASE("dump solves: sample Lloyd-Max beats the analytic codebook on train; token split; per-tensor scope; errors") {
  cb::ProblemSpec ps;
  ps.source = std::string("dump:") + kA;
  ps.layers = {0, 1};
  ps.heads = {};
  const auto p = cb::make_problem(ps);
  CHECK(p->heldout_name() == "tokens");
  cb::SolveSpec ss;
  ss.bits = 3;
  const auto r = cb::solve(*p, ps, ss);
  CHECK(r.train.value <= r.start_train.value);
  CHECK(r.file.scope == "shared");
  CHECK(std::isfinite(r.heldout.value));
  // one layer, one head -> a per-tensor codebook; cma-es on the attention objective never worse
  cb::ProblemSpec one;
  one.source = std::string("dump:") + kA;
  one.heldout = std::string("dump:") + kB;
  one.layers = {3};
  one.heads = {1};
  one.objective = cb::ObjectiveKind::Attention;
  const auto po = cb::make_problem(one);
  cb::SolveSpec sc;
  sc.bits = 2;
  sc.solver = std::string("cma-es");
  sc.cma.max_generations = 8;
  const auto rc = cb::solve(*po, one, sc);
  CHECK(rc.file.scope == "tensor");
  CHECK(rc.train.value <= rc.start_train.value);
  CHECK(rc.stats.evaluations > 8);
  cb::ProblemSpec bad = one;
  bad.heads = {7};
  CHECK_THROWS_AS(cb::make_problem(bad), tq::UsageError);
  bad = one;
  bad.layers = {99};
  CHECK_THROWS_AS(cb::make_problem(bad), tq::UsageError);
  bad = one;
  bad.tensor = std::string("v");
  CHECK_THROWS_AS(cb::make_problem(bad), tq::UsageError);
  // stories260K has q too; head_dim 8
  cb::ProblemSpec st;
  st.source = std::string("dump:") + TQ_SOURCE_DIR + "/data/stories260K.h5";
  st.objective = cb::ObjectiveKind::Attention;
  const auto ps8 = cb::make_problem(st);
  CHECK(ps8->dim() == 8);
  CHECK(ps8->train(ps8->analytic(2)).value > 0.0);
}
