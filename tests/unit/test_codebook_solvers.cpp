// Tests of lib/tq/codebook/solvers.h and the law objectives: sample Lloyd-Max against the exact
// law solution, CMA-ES never worse than its start, fuzzy C-means -> hard Lloyd as T -> 0.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "tq/codebook/design.h"
#include "tq/codebook/scalar_codebook.h"
#include "tq/codebook/solvers.h"
#include "tq/core/error.h"
#include "tq/core/rng.h"

namespace cb = tq::codebook;

namespace {

/// n independent draws of the first coordinate of a uniform unit vector in R^d (one vector each).
std::vector<double> sphere_coordinate_samples(size_t n, size_t d, uint64_t seed) {
  tq::Rng rng(seed);
  std::vector<double> x(n);
  for (auto& v : x) {
    double first = 0, ss = 0;
    for (size_t i = 0; i < d; ++i) {
      const double g = rng.gaussian();
      if (i == 0) first = g;
      ss += g * g;
    }
    v = first / std::sqrt(ss);
  }
  return x;
}

/// One Lloyd iteration by brute force: nearest centroid (ties low), then cell means.
std::vector<double> brute_lloyd_step(const std::vector<double>& x, const std::vector<double>& c) {
  std::vector<double> sum(c.size(), 0.0), cnt(c.size(), 0.0);
  for (double v : x) {
    size_t best = 0;
    for (size_t k = 1; k < c.size(); ++k)
      if (std::abs(v - c[k]) < std::abs(v - c[best])) best = k;
    sum[best] += v;
    cnt[best] += 1;
  }
  std::vector<double> out(c);
  for (size_t k = 0; k < c.size(); ++k)
    if (cnt[k] > 0) out[k] = sum[k] / cnt[k];
  return out;
}

}  // namespace

TEST_CASE("law distortion closed forms agree with the Lloyd-Max solver's own distortion") {
  for (int b = 1; b <= 8; ++b) {
    const auto& s = tq::lloyd_max_sphere(128, b);
    CHECK(std::abs(tq::sphere_law_distortion(128, s) / s.distortion - 1.0) < 1e-9);
    const auto& g = tq::lloyd_max_gaussian(1.0, b);
    CHECK(std::abs(tq::gaussian_law_distortion(1.0, g) / g.distortion - 1.0) < 1e-9);
  }
  // an asymmetric codebook: compare with brute-force Monte Carlo of the law
  const tq::ScalarCodebook asym = cb::make_codebook({-0.2, -0.05, 0.01, 0.15}, 2);
  const auto x = sphere_coordinate_samples(200000, 64, 11);
  const cb::SortedSamples s(x);
  const double exact = tq::sphere_law_distortion(64, asym), mc = s.mse(asym);
  CHECK(std::abs(mc / exact - 1.0) < 0.02);
}

TEST_CASE("SortedSamples::mse equals a brute-force nearest-centroid MSE") {
  tq::Rng rng(5);
  std::vector<double> x(5000);
  for (auto& v : x) v = rng.gaussian();
  const cb::SortedSamples s(x);
  const tq::ScalarCodebook book = cb::make_codebook({-1.3, -0.4, 0.1, 0.9, 1.0, 1.7, 2.2, 3.0}, 3);
  double brute = 0;
  for (double v : x) {
    const double q = static_cast<double>(book.decode(book.encode(static_cast<float>(v))));
    brute += (v - q) * (v - q);
  }
  brute /= static_cast<double>(x.size());
  CHECK(std::abs(s.mse(book) / brute - 1.0) < 1e-6);
  CHECK_THROWS_AS(cb::SortedSamples({}), tq::Error);
  CHECK_THROWS_AS(cb::SortedSamples({1.0, std::nan("")}), tq::Error);
}

TEST_CASE("sample Lloyd-Max: one iteration equals brute force; many Beta samples approach the law solution") {
  const auto x = sphere_coordinate_samples(1 << 18, 64, 3);
  const cb::SortedSamples s(x);
  const std::vector<double> init = cb::quantile_init(s, 3);
  cb::SolveStats one;
  const auto step = cb::lloyd_samples(s, init, &one, 1);
  const auto brute = brute_lloyd_step(x, init);
  for (size_t i = 0; i < step.size(); ++i) CHECK(std::abs(step[i] - brute[i]) < 1e-12);

  for (int bits : {2, 3, 4}) {
    CAPTURE(bits);
    cb::SolveStats st;
    const auto c = cb::lloyd_samples(s, cb::quantile_init(s, bits), &st);
    CHECK(st.converged);
    const auto& law = tq::lloyd_max_sphere(64, bits);
    const double spacing = static_cast<double>(law.centroids[1] - law.centroids[0]);
    double worst = 0;
    for (size_t i = 0; i < c.size(); ++i) worst = std::max(worst, std::abs(c[i] - static_cast<double>(law.centroids[i])));
    MESSAGE("bits " << bits << ": max |c_sample - c_law| = " << worst << " (spacing " << spacing << "), " << st.iterations
                    << " iterations");
    CHECK(worst < 0.02 * spacing + 5e-4);
    // the sample optimum is at least as good as the law codebook on the samples, and its exact
    // law distortion is within 0.5% of the optimum
    CHECK(s.mse(c) <= s.mse(law) * (1 + 1e-12));
    CHECK(tq::sphere_law_distortion(64, cb::make_codebook(c, bits)) < law.distortion * 1.005);
    // trajectory is non-increasing (Lloyd never increases the MSE)
    for (size_t i = 1; i < st.trajectory.size(); ++i) CHECK(st.trajectory[i] <= st.trajectory[i - 1] * (1 + 1e-12));
  }
}

TEST_CASE("cma-es: never worse than its start, improves a poor start, deterministic") {
  // (a) started at the exact Lloyd-Max optimum of the law: must return something no worse.
  const auto f = [](const std::vector<double>& c) { return tq::sphere_law_distortion(64, cb::make_codebook(c, 3)); };
  const auto& law = tq::lloyd_max_sphere(64, 3);
  cb::CmaOptions o;
  o.seed = 7;
  o.max_generations = 30;
  cb::SolveStats st;
  const auto best = cb::cma_es(f, cb::centroids_of(law), o, &st);
  CHECK(f(best) <= f(cb::centroids_of(law)));
  CHECK(st.evaluations > 30);
  CHECK(st.trajectory.size() == static_cast<size_t>(st.iterations) + 1);
  for (size_t i = 1; i < st.trajectory.size(); ++i) CHECK(st.trajectory[i] <= st.trajectory[i - 1]);
  // (b) a poor start (uniform grid on [-0.3, 0.3]) is improved towards the optimum.
  std::vector<double> poor(8);
  for (size_t i = 0; i < 8; ++i) poor[i] = -0.3 + 0.6 * static_cast<double>(i) / 7.0;
  o.max_generations = 300;
  const auto better = cb::cma_es(f, poor, o, &st);
  MESSAGE("cma-es from a uniform grid: " << f(poor) * 64 << " -> " << f(better) * 64 << " (optimum " << law.distortion * 64
                                         << "), " << st.evaluations << " evaluations");
  CHECK(f(better) < f(poor));
  CHECK(f(better) < law.distortion * 1.01);
  // (c) same seed, same result
  const auto again = cb::cma_es(f, poor, o, nullptr);
  CHECK(again == better);
}

TEST_CASE("fuzzy C-means tends to hard Lloyd-Max as the temperature goes to 0") {
  const auto x = sphere_coordinate_samples(20000, 64, 9);
  const cb::SortedSamples s(x);
  const auto init = cb::quantile_init(s, 3);
  // One soft step at T -> 0 is one Lloyd step.
  const auto soft = cb::fuzzy_step(x, init, 1e-14);
  const auto hard = brute_lloyd_step(x, init);
  for (size_t i = 0; i < soft.size(); ++i) CHECK(std::abs(soft[i] - hard[i]) < 1e-12);
  // Annealed to ever smaller final temperatures, the result becomes a fixed point of hard Lloyd
  // (residual = largest move of one hard Lloyd step), and it is a k-means solution at least as
  // good as Lloyd from the quantile start (annealing may settle in a slightly better fixed point).
  const auto lloyd = cb::lloyd_samples(s, init);
  const auto residual = [&](const std::vector<double>& c) {
    const auto next = brute_lloyd_step(x, c);
    double r = 0;
    for (size_t i = 0; i < c.size(); ++i) r = std::max(r, std::abs(next[i] - c[i]));
    return r;
  };
  std::vector<double> res;
  std::vector<double> last;
  for (double tmin : {0.3, 0.03, 1e-3, 1e-8}) {
    cb::FuzzyOptions fo;
    fo.t0 = 1.0;
    fo.t_min = tmin;
    fo.inner = 200;
    last = cb::fuzzy_cmeans(x, init, fo);
    res.push_back(residual(last));
    MESSAGE("fuzzy t_min " << tmin << ": hard-Lloyd residual " << res.back() << ", MSE " << s.mse(last) << " (Lloyd "
                           << s.mse(lloyd) << ")");
  }
  CHECK(res[1] < res[0]);
  CHECK(res[2] < res[1]);
  CHECK(res[3] < 1e-9);
  CHECK(res[0] > 1e-4);  // a warm temperature is not hard Lloyd (the test is not vacuous)
  CHECK(s.mse(last) <= s.mse(lloyd) * (1 + 1e-9));
  // and hard Lloyd started from the annealed result does not move it
  cb::SolveStats st;
  const auto polished = cb::lloyd_samples(s, last, &st);
  for (size_t i = 0; i < last.size(); ++i) CHECK(std::abs(polished[i] - last[i]) < 1e-9);
}

TEST_CASE("design: law problems reproduce the published values; solve reports train and held-out") {
  cb::ProblemSpec ps;
  ps.source = std::string("beta:128");
  ps.law_samples = 1 << 16;
  const auto p = cb::make_problem(ps);
  const double expected[] = {0.360889, 0.116000, 0.033966, 0.009315};
  for (int b = 1; b <= 4; ++b) {
    cb::SolveSpec ss;
    ss.bits = b;
    const auto r = cb::solve(*p, ps, ss);
    CHECK(std::abs(r.train.value - expected[b - 1]) <= 5e-7);
    CHECK(std::abs(r.heldout.value / r.train.value - 1.0) < 0.02);  // fresh samples of the law
    CHECK(r.file.scope == "analytic");
  }
  cb::ProblemSpec pg;
  pg.source = std::string("gaussian");
  pg.law_samples = 1 << 16;
  const auto g = cb::make_problem(pg);
  cb::SolveSpec s6;
  s6.bits = 6;
  CHECK(std::abs(cb::solve(*g, pg, s6).train.value / 6.44240e-4 - 1.0) < 1e-5);
  s6.bits = 8;
  CHECK(std::abs(cb::solve(*g, pg, s6).train.value / 4.11851e-5 - 1.0) < 1e-5);
  // fuzzy on the law's quantile grid lands on the law optimum
  cb::SolveSpec sf;
  sf.bits = 3;
  sf.solver = std::string("fuzzy");
  sf.fuzzy.t_min = 1e-8;
  sf.fuzzy_max_samples = 1 << 15;
  const auto rf = cb::solve(*p, ps, sf);
  CHECK(rf.train.value < tq::lloyd_max_sphere(128, 3).distortion * 128 * 1.0005);
  // cma-es from the exact optimum: never worse
  cb::SolveSpec sc;
  sc.bits = 2;
  sc.solver = std::string("cma-es");
  sc.cma.max_generations = 20;
  const auto rc = cb::solve(*p, ps, sc);
  CHECK(rc.train.value <= rc.start_train.value);
  const auto spec = [](const char* source, cb::ObjectiveKind obj) {
    cb::ProblemSpec q;
    q.source = std::string(source);
    q.objective = obj;
    q.law_samples = 4096;
    return q;
  };
  CHECK_THROWS_AS(cb::make_problem(spec("beta:1", cb::ObjectiveKind::Mse)), tq::UsageError);
  CHECK_THROWS_AS(cb::make_problem(spec("laplace", cb::ObjectiveKind::Mse)), tq::UsageError);
  CHECK_THROWS_AS(cb::make_problem(spec("beta:64", cb::ObjectiveKind::Attention)), tq::UsageError);
}
