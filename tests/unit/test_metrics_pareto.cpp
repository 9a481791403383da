// Tests of lib/tq/metrics/pareto: the noise-aware front on a hand-made set and the circular
// block bootstrap.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "tq/core/error.h"
#include "tq/core/rng.h"
#include "tq/metrics/metrics.h"  // the umbrella header must compile on its own
#include "tq/metrics/pareto.h"

using namespace tq::metrics;

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}

TEST_CASE("pareto: noise-aware front on a hand-made set") {
  const std::vector<ParetoPoint> pts = {
      {"A", 2, 1.00, 0.05, 0.90, 1.10},  // fewest bits: always on the front
      {"B", 3, 0.50, 0.05, 0.45, 0.55},
      {"C", 4, 0.52, 0.05, 0.47, 0.57},  // worse than B only within noise -> stays
      {"D", 4, 0.90, 0.05, 0.85, 0.95},  // clearly beaten by B, C, G, I
      {"E", 5, 0.20, 0.30, kNaN, kNaN},  // no interval: sd rule only
      {"F", 6, 0.45, 0.01, 0.44, 0.46},  // E is lower by 0.25 < max sd 0.3 -> stays
      {"G", 3, 0.70, 0.05, 0.60, 0.80},  // same bits as B, clearly worse -> dominated by B
      {"H", 4, 0.70, 0.25, 0.60, 0.80},  // 0.2 below B but sd 0.25 -> stays
      {"I", 4, 0.60, 0.01, 0.50, 0.70},  // 0.1 > sd, but intervals overlap with B -> stays
  };
  const auto front = pareto_front(pts);
  REQUIRE(front.size() == pts.size());
  const bool on[] = {true, true, true, false, true, true, false, true, true};
  for (size_t i = 0; i < pts.size(); ++i) {
    CAPTURE(pts[i].label);
    CHECK(front[i].on_front == on[i]);
    CHECK(front[i].on_front == front[i].dominated_by.empty());
  }
  CHECK(front[3].dominated_by == std::vector<size_t>{1, 2, 6, 8});
  CHECK(front[6].dominated_by == std::vector<size_t>{1});
  // Classic point front: A (2 bits), B (3 bits, 0.5), E (5 bits, 0.2) only.
  const bool point_on[] = {true, true, false, false, true, false, false, false, false};
  for (size_t i = 0; i < pts.size(); ++i) {
    CAPTURE(pts[i].label);
    CHECK(front[i].on_front_point == point_on[i]);
  }
}

TEST_CASE("pareto: dominance rule details") {
  const ParetoPoint a{"a", 4, 1.0, 0.1, 0.9, 1.1};
  const ParetoPoint b{"b", 4, 0.5, 0.1, 0.4, 0.6};
  CHECK(pareto_dominates(b, a));
  CHECK_FALSE(pareto_dominates(a, b));
  CHECK_FALSE(pareto_dominates(b, b));  // a point never dominates itself
  ParetoPoint more_bits = b;
  more_bits.bits = 4.5;
  CHECK_FALSE(pareto_dominates(more_bits, a));
  ParetoPoint noisy = b;
  noisy.sd = kNaN;  // NaN sd counts as 0
  CHECK(pareto_dominates(noisy, a));
  noisy.sd = 0.6;   // gap 0.5 is not more than 0.6
  CHECK_FALSE(pareto_dominates(noisy, a));
  ParetoPoint touching = b;
  touching.ci_hi = 0.9;  // touching intervals overlap
  CHECK_FALSE(pareto_dominates(touching, a));
  CHECK_THROWS_AS(pareto_front({{"bad", kNaN, 1.0, 0, kNaN, kNaN}}), tq::Error);
}

TEST_CASE("bootstrap: deterministic by seed; interval holds the mean of iid data") {
  const size_t n = 2000;
  tq::Rng rng(18);
  std::vector<double> x(n);
  for (auto& v : x) v = 1.0 + rng.gaussian();
  BootstrapOptions o;
  o.block_len = 1;
  o.n_resamples = 2000;
  o.seed = 3;
  const auto a = block_bootstrap_ratio(x.data(), nullptr, n, o);
  const auto b = block_bootstrap_ratio(x.data(), nullptr, n, o);
  o.seed = 4;
  const auto c = block_bootstrap_ratio(x.data(), nullptr, n, o);
  CHECK(a.lo == b.lo);
  CHECK(a.hi == b.hi);
  CHECK((a.lo != c.lo || a.hi != c.hi));
  CHECK(a.n_resamples == 2000);
  double mean = 0;
  for (double v : x) mean += v;
  mean /= static_cast<double>(n);
  CHECK(a.estimate == doctest::Approx(mean).epsilon(1e-14));
  CHECK(a.lo < 1.0);
  CHECK(a.hi > 1.0);
  CHECK(a.lo < a.estimate);
  CHECK(a.hi > a.estimate);
  // Width ≈ 2 · 1.96 · sd / sqrt(n) = 0.0877 for sd = 1.
  const double width = a.hi - a.lo;
  CHECK(width > 0.07);
  CHECK(width < 0.105);
}

TEST_CASE("bootstrap: the 95 % interval covers the true mean in about 95 % of data sets") {
  const size_t n = 200, n_sets = 300;
  BootstrapOptions o;
  o.block_len = 1;
  o.n_resamples = 400;
  size_t covered = 0;
  for (size_t k = 0; k < n_sets; ++k) {
    tq::Rng rng(1000 + k);
    std::vector<double> x(n);
    for (auto& v : x) v = 2.0 + 0.5 * rng.gaussian();
    o.seed = k;
    const auto r = block_bootstrap_ratio(x.data(), nullptr, n, o);
    if (r.lo < 2.0 && 2.0 < r.hi) ++covered;
  }
  const double coverage = static_cast<double>(covered) / static_cast<double>(n_sets);
  // Binomial sd at p = 0.95 over 300 sets is 0.013; the percentile bootstrap undercovers a little.
  CHECK(coverage > 0.89);
  CHECK(coverage < 0.99);
}

TEST_CASE("bootstrap: blocks widen the interval of serially correlated data") {
  // AR(1) with φ = 0.9: the variance of the mean is (1+φ)/(1−φ) = 19 times the iid value, so
  // the block bootstrap (L = 100) must give an interval about sqrt(19) ≈ 4.4 times wider than
  // resampling single tokens, which ignores the correlation.
  const size_t n = 5000;
  tq::Rng rng(23);
  std::vector<double> x(n);
  double prev = 0;
  for (auto& v : x) {
    prev = 0.9 * prev + rng.gaussian();
    v = prev;
  }
  BootstrapOptions o;
  o.n_resamples = 1000;
  o.seed = 1;
  o.block_len = 1;
  const auto iid = block_bootstrap_ratio(x.data(), nullptr, n, o);
  o.block_len = 100;
  const auto blk = block_bootstrap_ratio(x.data(), nullptr, n, o);
  const double ratio = (blk.hi - blk.lo) / (iid.hi - iid.lo);
  CHECK(ratio > 2.5);
  CHECK(ratio < 6.0);
  CHECK(blk.lo < 0.0);  // true mean 0
  CHECK(blk.hi > 0.0);
}

TEST_CASE("bootstrap: blocks wrap around (circular), so L = n resamples are rotations") {
  // Every replicate is a rotation of the whole sequence: its mean equals the sample mean
  // exactly (integer values), so the interval collapses onto the estimate.
  const std::vector<double> x = {5, -1, 7, 3, 0, 2, 9};
  BootstrapOptions o;
  o.block_len = x.size();
  o.n_resamples = 200;
  o.seed = 12;
  const auto r = block_bootstrap_ratio(x.data(), nullptr, x.size(), o);
  CHECK(r.estimate == doctest::Approx(25.0 / 7.0));
  CHECK(r.lo == r.estimate);
  CHECK(r.hi == r.estimate);
  o.block_len = 3;  // shorter blocks do vary
  const auto v = block_bootstrap_ratio(x.data(), nullptr, x.size(), o);
  CHECK(v.hi - v.lo > 1.0);
}

TEST_CASE("bootstrap: ratio statistic, filtering and errors") {
  // num = 2·den exactly: every replicate is 2, so the interval collapses.
  std::vector<double> den = {1, 3, 0, 2, 5, 0, 4}, num(den.size());
  for (size_t i = 0; i < den.size(); ++i) num[i] = 2.0 * den[i];
  BootstrapOptions o;
  o.block_len = 2;
  o.n_resamples = 50;
  const auto r = block_bootstrap_ratio(num, den, o);
  CHECK(r.estimate == 2.0);
  CHECK(r.lo == 2.0);
  CHECK(r.hi == 2.0);
  // The vector form drops den = 0 tokens: it equals the pointer form on the kept tokens.
  const std::vector<double> kn = {2, 6, 4, 10, 8}, kd = {1, 3, 2, 5, 4};
  std::vector<double> vn = {1, 0, 5, 0, 3}, vd = {1, 0, 2, 0, 1};
  const auto f = block_bootstrap_ratio(vn, vd, o);
  const std::vector<double> cn = {1, 5, 3}, cd = {1, 2, 1};
  const auto g = block_bootstrap_ratio(cn.data(), cd.data(), 3, o);
  CHECK(f.lo == g.lo);
  CHECK(f.hi == g.hi);
  CHECK(f.estimate == doctest::Approx(9.0 / 4.0));
  CHECK_THROWS_AS(block_bootstrap_ratio(num.data(), nullptr, 0, o), tq::Error);
  const std::vector<double> zeros(4, 0.0);
  CHECK_THROWS_AS(block_bootstrap_ratio(zeros.data(), zeros.data(), 4, o), tq::Error);
  CHECK_THROWS_AS(block_bootstrap_ratio(num, std::vector<double>{1.0}, o), tq::Error);
  o.block_len = 0;
  CHECK_THROWS_AS(block_bootstrap_ratio(num.data(), nullptr, 3, o), tq::Error);
}
