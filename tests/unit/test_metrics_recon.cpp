// Tests of lib/tq/metrics/reconstruction: hand-computed cases, an independent recomputation,
// percentiles, centred-NMSE invariance and merge determinism.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "tq/core/error.h"
#include "tq/core/rng.h"
#include "tq/metrics/reconstruction.h"

using tq::metrics::ReconStats;

namespace {

std::vector<float> gaussian_array(uint64_t seed, size_t n, double mean = 0.0, double sd = 1.0) {
  tq::Rng rng(seed);
  std::vector<float> a(n);
  for (auto& v : a) v = static_cast<float>(mean + sd * rng.gaussian());
  return a;
}

/// x̂ = x + noise·sd
std::vector<float> perturbed(const std::vector<float>& x, uint64_t seed, double sd) {
  tq::Rng rng(seed);
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = static_cast<float>(static_cast<double>(x[i]) + sd * rng.gaussian());
  return y;
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

}  // namespace

TEST_CASE("recon metrics: hand-computed 2x2 case") {
  // x = [[3,4],[0,0]], x̂ = [[3,0],[0,1]] -> e = [[0,4],[0,-1]].
  const std::vector<float> x = {3, 4, 0, 0}, y = {3, 0, 0, 1};
  const auto s = ReconStats::of_head(x.data(), y.data(), 2, 2).summary();
  CHECK(s.n_vectors == 2);
  CHECK(s.n_elements == 4);
  CHECK(s.n_zero_vectors == 1);                        // second x is the zero vector
  CHECK(s.mse == doctest::Approx(17.0 / 4.0));
  CHECK(s.nmse_pooled == doctest::Approx(17.0 / 25.0));
  CHECK(s.nmse_mean == doctest::Approx(17.0 / 25.0));  // one head
  CHECK(s.max_abs_err == 4.0);
  // rel_err only of vector 0: ‖(0,4)‖/‖(3,4)‖ = 0.8 (stored as float).
  CHECK(s.rel_err_p50 == doctest::Approx(0.8).epsilon(1e-7));
  CHECK(s.rel_err_p99 == doctest::Approx(0.8).epsilon(1e-7));
  // cos: vector 0 = 9/(5·3) = 0.6; vector 1 has x = 0, x̂ ≠ 0 -> 0. Mean 0.3.
  CHECK(s.cosine_mean == doctest::Approx(0.3));
  // μ = (1.5, 2): Σ‖x−μ‖² = 2·(1.5² + 2²) = 12.5; centred NMSE = 17 / 12.5.
  CHECK(s.nmse_centred_pooled == doctest::Approx(17.0 / 12.5));
  CHECK(s.nmse_centred_mean == doctest::Approx(17.0 / 12.5));
  // ē = (0, 1.5): e − ē = (0, 2.5), (0, −2.5) -> 12.5 / 12.5.
  CHECK(s.nmse_shift_free_pooled == doctest::Approx(1.0));
}

TEST_CASE("recon metrics: zero vectors in both -> cosine 1, perfect reconstruction -> zeros") {
  const std::vector<float> x = {0, 0, 1, 2}, y = {0, 0, 1, 2};
  const auto s = ReconStats::of_head(x.data(), y.data(), 2, 2).summary();
  CHECK(s.cosine_mean == doctest::Approx(1.0));
  CHECK(s.mse == 0.0);
  CHECK(s.nmse_pooled == 0.0);
  CHECK(s.max_abs_err == 0.0);
  CHECK(s.rel_err_p95 == 0.0);
}

TEST_CASE("percentiles: linear interpolation between closest ranks (numpy default)") {
  using tq::metrics::percentile;
  const std::vector<double> v = {4, 1, 3, 2};
  CHECK(percentile(v, 0.0) == 1.0);
  CHECK(percentile(v, 1.0) == 4.0);
  CHECK(percentile(v, 0.5) == doctest::Approx(2.5));
  CHECK(percentile(v, 0.95) == doctest::Approx(3.85));  // numpy.percentile([1,2,3,4], 95)
  CHECK(percentile(v, 0.25) == doctest::Approx(1.75));
  CHECK(percentile({7.0}, 0.99) == 7.0);
  CHECK(percentile({}, 0.5) == 0.0);
  CHECK_THROWS_AS(percentile(v, 1.5), tq::Error);
  CHECK_THROWS_AS(percentile(v, std::nan("")), tq::Error);
  // 101 values 0..100: the p-th percentile is exactly p·100.
  std::vector<double> w;
  for (int i = 100; i >= 0; --i) w.push_back(i);
  CHECK(percentile(w, 0.99) == doctest::Approx(99.0));
  CHECK(percentile(w, 0.123) == doctest::Approx(12.3));
}

TEST_CASE("recon metrics: pooled values equal a direct recomputation over 3 heads") {
  const size_t H = 3, T = 37, d = 16;
  std::vector<std::vector<float>> xs, ys;
  for (size_t h = 0; h < H; ++h) {
    xs.push_back(gaussian_array(100 + h, T * d, 0.5 * static_cast<double>(h), 1.0 + static_cast<double>(h)));
    ys.push_back(perturbed(xs.back(), 200 + h, 0.1 * static_cast<double>(h + 1)));
  }
  ReconStats pooled;
  for (size_t h = 0; h < H; ++h) pooled.add_head(xs[h].data(), ys[h].data(), T, d);
  const auto s = pooled.summary();

  // Direct recomputation (different loop structure: element-wise, then per head).
  double sse = 0, energy = 0, energy_c = 0, head_nmse = 0, head_nmse_c = 0, maxe = 0, cos = 0;
  std::vector<double> rel;
  std::vector<double> tok_sse(T, 0.0);
  for (size_t h = 0; h < H; ++h) {
    const std::vector<double> xd(xs[h].begin(), xs[h].end()), yd(ys[h].begin(), ys[h].end());
    std::vector<double> mu(d, 0.0);
    for (size_t i = 0; i < T * d; ++i) mu[i % d] += xd[i] / static_cast<double>(T);
    double hs = 0, he = 0, hc = 0;
    for (size_t i = 0; i < T * d; ++i) {
      const double e = xd[i] - yd[i];
      hs += e * e;
      he += xd[i] * xd[i];
      hc += (xd[i] - mu[i % d]) * (xd[i] - mu[i % d]);
      maxe = std::max(maxe, std::fabs(e));
      tok_sse[i / d] += e * e;
    }
    for (size_t t = 0; t < T; ++t) {
      double e2 = 0, x2 = 0, y2 = 0, xy = 0;
      for (size_t i = 0; i < d; ++i) {
        const double a = xd[t * d + i], b = yd[t * d + i];
        e2 += (a - b) * (a - b);
        x2 += a * a;
        y2 += b * b;
        xy += a * b;
      }
      rel.push_back(std::sqrt(e2 / x2));
      cos += xy / std::sqrt(x2 * y2);
    }
    sse += hs;
    energy += he;
    energy_c += hc;
    head_nmse += hs / he;
    head_nmse_c += hs / hc;
  }
  CHECK(s.n_heads == H);
  CHECK(s.mse == doctest::Approx(sse / static_cast<double>(H * T * d)).epsilon(1e-12));
  CHECK(s.nmse_pooled == doctest::Approx(sse / energy).epsilon(1e-12));
  CHECK(s.nmse_mean == doctest::Approx(head_nmse / H).epsilon(1e-12));
  CHECK(s.nmse_centred_pooled == doctest::Approx(sse / energy_c).epsilon(1e-12));
  CHECK(s.nmse_centred_mean == doctest::Approx(head_nmse_c / H).epsilon(1e-12));
  CHECK(s.nmse_pooled != doctest::Approx(s.nmse_mean));  // heads differ, so the two poolings do
  CHECK(s.max_abs_err == doctest::Approx(maxe).epsilon(1e-12));
  CHECK(s.cosine_mean == doctest::Approx(cos / static_cast<double>(H * T)).epsilon(1e-12));
  CHECK(s.rel_err_p50 == doctest::Approx(tq::metrics::percentile(rel, 0.50)).epsilon(1e-6));
  CHECK(s.rel_err_p95 == doctest::Approx(tq::metrics::percentile(rel, 0.95)).epsilon(1e-6));
  CHECK(s.rel_err_p99 == doctest::Approx(tq::metrics::percentile(rel, 0.99)).epsilon(1e-6));
  REQUIRE(pooled.tok_sse.size() == T);
  for (size_t t = 0; t < T; ++t) CHECK(pooled.tok_sse[t] == doctest::Approx(tok_sse[t]).epsilon(1e-12));
}

TEST_CASE("recon metrics: centred NMSE is invariant to adding one constant vector to x and x̂") {
  const size_t T = 50, d = 8;
  // Values on a 1/64 grid and integer offsets keep every float sum exact.
  tq::Rng rng(5);
  std::vector<float> x(T * d), y(T * d), xs(T * d), ys(T * d);
  for (size_t i = 0; i < T * d; ++i) {
    x[i] = static_cast<float>(static_cast<int>(rng.below(257)) - 128) / 64.0f;
    y[i] = x[i] + static_cast<float>(static_cast<int>(rng.below(9)) - 4) / 64.0f;
  }
  for (size_t i = 0; i < T * d; ++i) {
    const float c = static_cast<float>(3 + static_cast<int>(i % d));  // c = (3, 4, ..., 10)
    xs[i] = x[i] + c;
    ys[i] = y[i] + c;
  }
  const auto a = ReconStats::of_head(x.data(), y.data(), T, d).summary();
  const auto b = ReconStats::of_head(xs.data(), ys.data(), T, d).summary();
  CHECK(b.nmse_centred_pooled == doctest::Approx(a.nmse_centred_pooled).epsilon(1e-12));
  CHECK(b.nmse_shift_free_pooled == doctest::Approx(a.nmse_shift_free_pooled).epsilon(1e-12));
  CHECK(b.mse == doctest::Approx(a.mse).epsilon(1e-12));
  CHECK(b.nmse_pooled < 0.2 * a.nmse_pooled);  // plain NMSE is flattered by the offset
}

TEST_CASE("recon metrics: shift-free NMSE ignores an error that is a constant shift") {
  const size_t T = 20, d = 4;
  auto x = gaussian_array(9, T * d);
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] + 0.25f;
  const auto s = ReconStats::of_head(x.data(), y.data(), T, d).summary();
  CHECK(s.nmse_centred_pooled > 0.01);
  CHECK(s.nmse_shift_free_pooled < 1e-12);
}

TEST_CASE("recon metrics: per-head stats merged in canonical order are bitwise reproducible") {
  const size_t H = 6, T = 29, d = 12;
  std::vector<std::vector<float>> xs, ys;
  for (size_t h = 0; h < H; ++h) {
    xs.push_back(gaussian_array(300 + h, T * d, 0.0, 1.0 + static_cast<double>(h)));
    ys.push_back(perturbed(xs.back(), 400 + h, 0.3));
  }
  ReconStats sequential;
  for (size_t h = 0; h < H; ++h) sequential.add_head(xs[h].data(), ys[h].data(), T, d);

  // Per-head results computed in another order (as parallel workers would), merged canonically.
  std::vector<ReconStats> per_head(H);
  for (size_t i = H; i-- > 0;) per_head[i] = ReconStats::of_head(xs[i].data(), ys[i].data(), T, d);
  ReconStats merged;
  for (const auto& s : per_head) merged.merge(s);

  const auto a = sequential.summary(), b = merged.summary();
  CHECK(same_bits(a.mse, b.mse));
  CHECK(same_bits(a.nmse_pooled, b.nmse_pooled));
  CHECK(same_bits(a.nmse_mean, b.nmse_mean));
  CHECK(same_bits(a.nmse_centred_pooled, b.nmse_centred_pooled));
  CHECK(same_bits(a.cosine_mean, b.cosine_mean));
  CHECK(same_bits(a.rel_err_p95, b.rel_err_p95));
  CHECK(same_bits(a.max_abs_err, b.max_abs_err));
  CHECK(sequential.tok_sse == merged.tok_sse);
  CHECK(sequential.rel_err == merged.rel_err);

  // Merging pairs in a tree gives the same value up to rounding (sanity, not bitwise).
  ReconStats left, right;
  for (size_t h = 0; h < H / 2; ++h) left.merge(per_head[h]);
  for (size_t h = H / 2; h < H; ++h) right.merge(per_head[h]);
  left.merge(right);
  CHECK(left.summary().nmse_pooled == doctest::Approx(a.nmse_pooled).epsilon(1e-13));
}

TEST_CASE("recon metrics: per-token arrays of heads with different T are zero-padded") {
  const std::vector<float> x1 = {1, 0, 0, 1}, y1 = {0, 0, 0, 1};  // T = 2, d = 2
  const std::vector<float> x2 = {2, 0}, y2 = {0, 0};              // T = 1
  ReconStats s = ReconStats::of_head(x2.data(), y2.data(), 1, 2);
  s.merge(ReconStats::of_head(x1.data(), y1.data(), 2, 2));
  REQUIRE(s.tok_sse.size() == 2);
  CHECK(s.tok_sse[0] == 5.0);
  CHECK(s.tok_sse[1] == 0.0);
  CHECK(s.tok_energy[0] == 5.0);
  CHECK(s.tok_energy[1] == 1.0);
}
