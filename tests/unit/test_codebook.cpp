// Tests of lib/tq/codebook: Lloyd-Max codebooks against published values, exact special cases
// (d = 2 arcsine law, d = 3 uniform law) and an independent quadrature check.
#include <doctest/doctest.h>

#include <boost/math/quadrature/gauss_kronrod.hpp>
#include <chrono>
#include <cmath>
#include <numbers>
#include <thread>

#include "tq/codebook/scalar_codebook.h"
#include "tq/core/error.h"
#include "tq/core/rng.h"

namespace {
double rel(double a, double b) { return std::abs(a / b - 1.0); }
double dbl(float f) { return static_cast<double>(f); }
}  // namespace

TEST_CASE("lloyd-max sphere law d=128: published total distortions d*E[(x-Q(x))^2]") {
  const double expected[] = {0.360889, 0.116000, 0.033966, 0.009315};
  for (int b = 1; b <= 4; ++b) {
    CAPTURE(b);
    const double total = 128.0 * tq::lloyd_max_sphere(128, b).distortion;
    MESSAGE("d=128 b=" << b << " total distortion " << total);
    // The references are printed to 6 decimals: agree to half a unit of the last digit
    // (relative 1.4e-6 at 1 bit, 5.4e-5 at 4 bits where only 4 digits are significant).
    CHECK(std::abs(total - expected[b - 1]) <= 5e-7);
  }
  double prev = 1.0;  // E[x^2] d = 1 with no quantization
  for (int b = 1; b <= 8; ++b) {
    const double total = 128.0 * tq::lloyd_max_sphere(128, b).distortion;
    CHECK(total < prev);
    CHECK(total > 0.0);
    prev = total;
  }
}

TEST_CASE("lloyd-max sphere law: 1-bit centroid is E|x| = Gamma(d/2)/(sqrt(pi) Gamma((d+1)/2))") {
  for (size_t d : {2, 7, 64, 128, 256}) {
    const double c1 = std::exp(std::lgamma(d / 2.0) - std::lgamma((d + 1) / 2.0)) / std::sqrt(std::numbers::pi);
    const auto& cb = tq::lloyd_max_sphere(d, 1);
    CHECK(cb.centroids.size() == 2);
    CHECK(rel(cb.centroids[1], c1) < 1e-6);
    CHECK(cb.centroids[0] == -cb.centroids[1]);
    CHECK(rel(cb.distortion, 1.0 / d - c1 * c1) < 1e-9);  // D = E[x^2] - c1^2
  }
  CHECK(std::abs(dbl(tq::lloyd_max_sphere(128, 1).centroids[1]) - 0.0706616) < 5e-8);
}

TEST_CASE("lloyd-max sphere law d=3 is the uniform law on [-1,1]: uniform quantizer, D = (2/K)^2/12") {
  // Archimedes: one coordinate of a uniform point on S^2 is uniform on [-1, 1].
  for (int b = 1; b <= 8; ++b) {
    const auto& cb = tq::lloyd_max_sphere(3, b);
    const size_t k = size_t{1} << b;
    for (size_t i = 0; i < k; ++i) CHECK(std::abs(dbl(cb.centroids[i]) - ((2.0 * i + 1.0) / k - 1.0)) < 1e-6);
    CHECK(rel(cb.distortion, (2.0 / k) * (2.0 / k) / 12.0) < 1e-6);
  }
}

TEST_CASE("lloyd-max gaussian sigma=1: known distortions") {
  CHECK(rel(tq::lloyd_max_gaussian(1.0, 1).distortion, 1.0 - 2.0 / std::numbers::pi) < 1e-9);
  CHECK(rel(tq::lloyd_max_gaussian(1.0, 1).centroids[1], std::sqrt(2.0 / std::numbers::pi)) < 1e-6);
  CHECK(rel(tq::lloyd_max_gaussian(1.0, 2).distortion, 0.1175) < 1e-3);  // Max (1960)
  CHECK(rel(tq::lloyd_max_gaussian(1.0, 6).distortion, 6.44240e-4) < 1e-5);
  CHECK(rel(tq::lloyd_max_gaussian(1.0, 8).distortion, 4.11851e-5) < 1e-5);
  // Panter-Dite high-resolution limit: D 4^b -> sqrt(3) pi / 2 for N(0, 1).
  CHECK(rel(tq::lloyd_max_gaussian(1.0, 8).distortion * 65536.0, std::sqrt(3.0) * std::numbers::pi / 2.0) < 0.02);
  // Scaling: the codebook of N(0, s^2) is s times that of N(0, 1).
  const auto& a = tq::lloyd_max_gaussian(1.0, 4);
  const auto& b = tq::lloyd_max_gaussian(0.25, 4);
  for (size_t i = 0; i < 16; ++i) CHECK(std::abs(b.centroids[i] - 0.25f * a.centroids[i]) < 1e-6f);
  CHECK(rel(b.distortion, a.distortion / 16.0) < 1e-8);
}

TEST_CASE("lloyd-max: symmetric, sorted, midpoint boundaries, encode = nearest centroid") {
  tq::Rng rng(3);
  for (int b = 1; b <= 8; ++b) {
    for (const tq::ScalarCodebook* cb : {&tq::lloyd_max_sphere(128, b), &tq::lloyd_max_sphere(13, b), &tq::lloyd_max_gaussian(1.0, b)}) {
      const size_t k = cb->size();
      REQUIRE(k == (size_t{1} << b));
      REQUIRE(cb->boundaries.size() == k - 1);
      for (size_t i = 0; i < k; ++i) CHECK(cb->centroids[i] == -cb->centroids[k - 1 - i]);
      for (size_t i = 0; i + 1 < k; ++i) {
        CHECK(cb->centroids[i] < cb->centroids[i + 1]);
        CHECK(cb->boundaries[i] == 0.5f * (cb->centroids[i] + cb->centroids[i + 1]));
      }
      const float scale = cb->centroids.back() * 1.3f;
      for (int t = 0; t < 2000; ++t) {
        const float x = static_cast<float>((2.0 * rng.uniform() - 1.0) * dbl(scale));
        size_t best = 0;
        for (size_t i = 1; i < k; ++i)
          if (std::abs(x - cb->centroids[i]) < std::abs(x - cb->centroids[best])) best = i;
        const uint8_t code = cb->encode(x);
        // ties (x exactly on a boundary) may go either way
        CHECK(std::abs(std::abs(x - cb->centroids[code]) - std::abs(x - cb->centroids[best])) < 1e-7f);
      }
    }
  }
}

TEST_CASE("lloyd-max sphere d=128, 8 bits: fixed point and distortion confirmed by quadrature") {
  // Independent of the incomplete-beta closed forms: Gauss-Kronrod quadrature of the density.
  const double d = 128;
  const double log_c = std::lgamma(d / 2) - std::lgamma((d - 1) / 2) - 0.5 * std::log(std::numbers::pi);
  auto pdf = [&](double x) { return std::exp(log_c + (d - 3) / 2 * std::log1p(-x * x)); };
  using GK = boost::math::quadrature::gauss_kronrod<double, 61>;
  for (int b : {3, 8}) {
    const auto& cb = tq::lloyd_max_sphere(128, b);
    const size_t k = cb.size();
    double dist = 0, max_move = 0;
    for (size_t i = 0; i < k; ++i) {
      const double lo = i == 0 ? -1.0 : dbl(cb.boundaries[i - 1]);
      const double hi = i + 1 == k ? 1.0 : dbl(cb.boundaries[i]);
      const double c = dbl(cb.centroids[i]);
      const double p = GK::integrate(pdf, lo, hi, 0, 1e-14);
      const double m1 = GK::integrate([&](double x) { return x * pdf(x); }, lo, hi, 0, 1e-14);
      dist += GK::integrate([&](double x) { return (x - c) * (x - c) * pdf(x); }, lo, hi, 0, 1e-14);
      // allowed: the solver tolerance plus the float rounding of the stored centroid/boundaries
      max_move = std::max(max_move, std::abs(m1 / p - c) / (1e-9 / std::sqrt(d) + 2.4e-7 * std::abs(c)));
    }
    CAPTURE(b);
    // every centroid is the conditional mean of its cell, to solver tolerance + float rounding
    CHECK(max_move < 1.0);
    CHECK(rel(dist, cb.distortion) < 1e-8);
  }
}

TEST_CASE("lloyd-max: 8 bits at d=128 converges fast, by Newton steps") {
  tq::LloydMaxStats st;
  const auto t0 = std::chrono::steady_clock::now();
  const tq::ScalarCodebook cb = tq::solve_lloyd_max_sphere(128, 8, &st);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("Lloyd-Max sphere d=128 8 bits: " << secs * 1e3 << " ms, " << st.newton_steps << " Newton + "
                                            << st.lloyd_steps << " Lloyd steps, final move " << st.final_move);
  CHECK(secs < 1.0);
  CHECK(st.final_move < 1e-9 / std::sqrt(128.0));
  CHECK(rel(128.0 * cb.distortion, 128.0 * tq::lloyd_max_sphere(128, 8).distortion) < 1e-12);
}

TEST_CASE("lloyd-max: memo returns one object per key, safely across threads; bad input throws") {
  std::vector<const tq::ScalarCodebook*> got(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < got.size(); ++i) threads.emplace_back([&, i] { got[i] = &tq::lloyd_max_sphere(97, 5); });
  for (auto& t : threads) t.join();
  for (auto* p : got) CHECK(p == got[0]);
  CHECK(&tq::lloyd_max_sphere(97, 5) != &tq::lloyd_max_sphere(97, 4));
  CHECK_THROWS_AS(tq::lloyd_max_sphere(128, 0), tq::UsageError);
  CHECK_THROWS_AS(tq::lloyd_max_sphere(128, 9), tq::UsageError);
  CHECK_THROWS_AS(tq::lloyd_max_sphere(1, 2), tq::UsageError);
  CHECK_THROWS_AS(tq::lloyd_max_gaussian(0.0, 2), tq::UsageError);
}
