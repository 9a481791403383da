// lib/tq/stats against analytic values and hand-worked cases.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "tq/core/error.h"
#include "tq/core/rng.h"
#include "tq/stats/head_stats.h"
#include "tq/stats/layer_stats.h"
#include "tq/stats/rope.h"
#include "tq/stats/sphere_law.h"

using namespace tq::stats;

namespace {

/// n unit vectors uniform on S^(d−1) (normalised Gaussians), one coordinate each taken from
/// independent vectors so the sample is iid from the coordinate law.
std::vector<double> sphere_coordinates(size_t n, size_t d, uint64_t seed) {
  tq::Rng rng(seed);
  std::vector<double> out(n), g(d);
  for (size_t i = 0; i < n; ++i) {
    double sq = 0.0;
    for (auto& v : g) {
      v = rng.gaussian();
      sq += v * v;
    }
    out[i] = g[0] / std::sqrt(sq);
  }
  return out;
}

}  // namespace

TEST_CASE("stats: sphere coordinate CDF matches closed forms") {
  for (double x : {-0.9, -0.3, 0.0, 0.2, 0.75}) {
    CAPTURE(x);
    // d = 3: Archimedes — the coordinate is uniform on [−1, 1].
    CHECK(sphere_coordinate_cdf(x, 3) == doctest::Approx((1.0 + x) / 2.0).epsilon(1e-12));
    // d = 2: arcsine law, F(x) = 1/2 + asin(x)/π.
    CHECK(sphere_coordinate_cdf(x, 2) == doctest::Approx(0.5 + std::asin(x) / std::numbers::pi).epsilon(1e-12));
    // d = 5: density (3/4)(1 − y²), F(x) = 1/2 + (3/4)(x − x³/3).
    CHECK(sphere_coordinate_cdf(x, 5) == doctest::Approx(0.5 + 0.75 * (x - x * x * x / 3.0)).epsilon(1e-12));
  }
  CHECK(sphere_coordinate_cdf(-1.5, 8) == 0.0);
  CHECK(sphere_coordinate_cdf(1.0, 8) == 1.0);
}

TEST_CASE("stats: KS distance, hand-worked cases") {
  std::vector<double> one{0.0};  // d = 3: F(0) = 1/2, the ECDF jumps 0 -> 1 at 0
  CHECK(ks_distance_sphere(one, 3) == doctest::Approx(0.5));
  std::vector<double> two{0.5, -0.5};  // F = 0.25, 0.75; ECDF 0.5 then 1 -> sup 0.25
  CHECK(ks_distance_sphere(two, 3) == doctest::Approx(0.25));
  std::vector<double> empty;
  CHECK(std::isnan(ks_distance_sphere(empty, 8)));
  std::vector<double> d1{0.3};
  CHECK(std::isnan(ks_distance_sphere(d1, 1)));
}

TEST_CASE("stats: KS of samples from the exact law is ~1/sqrt(n); a wrong law is far") {
  for (size_t d : {size_t{3}, size_t{8}, size_t{64}}) {
    CAPTURE(d);
    const size_t n = 4000;
    std::vector<double> y = sphere_coordinates(n, d, 11 + d);
    const double ks = ks_distance_sphere(y, d);
    MESSAGE("d=" << d << " n=" << n << " KS=" << ks << " (1/sqrt(n)=" << 1.0 / std::sqrt(static_cast<double>(n)) << ")");
    // sqrt(n)·KS follows Kolmogorov's law: P(> 1.95) ≈ 0.001.
    CHECK(ks * std::sqrt(static_cast<double>(n)) < 1.95);
    CHECK(ks * std::sqrt(static_cast<double>(n)) > 0.2);  // P(< 0.2) is ~1e-17: not degenerate
    // The same samples judged against the law of another dimension are clearly rejected.
    std::vector<double> y2 = sphere_coordinates(n, d, 11 + d);
    CHECK(ks_distance_sphere(y2, d == 3 ? 64 : 3) > 0.1);
  }
}

TEST_CASE("stats: head statistics of a hand-made matrix") {
  // T = 4, d = 2. Channel 0: 1, 3, 1, 3 (mean 2, std 1, absmax 3); channel 1: 0, 0, 0, 4
  // (mean 1, std sqrt(3), absmax 4).
  const std::vector<float> x{1, 0, 3, 0, 1, 0, 3, 4};
  HeadStatsOptions o;
  o.ks = false;
  const HeadStats s = head_stats(x.data(), 4, 2, o);
  CHECK(s.channel_mean[0] == doctest::Approx(2.0));
  CHECK(s.channel_mean[1] == doctest::Approx(1.0));
  CHECK(s.channel_std[0] == doctest::Approx(1.0));
  CHECK(s.channel_std[1] == doctest::Approx(std::sqrt(3.0)));
  CHECK(s.norm_min == doctest::Approx(1.0));
  CHECK(s.norm_max == doctest::Approx(5.0));
  CHECK(s.norm_mean == doctest::Approx((1.0 + 3.0 + 1.0 + 5.0) / 4.0));
  // median of {3, 4} = 3.5 -> ratio 4/3.5
  CHECK(s.outlier_ratio == doctest::Approx(4.0 / 3.5));
  // spread: std of {2, 1} = 0.5 over mean std (1 + sqrt 3)/2
  CHECK(s.channel_mean_spread == doctest::Approx(0.5 / ((1.0 + std::sqrt(3.0)) / 2.0)));
  // lag-1: channel 0 z = −1, 1, −1, 1: Σ z_t z_{t+1} = −3, Σ z² = 4 -> −0.75;
  // channel 1 z = −1, −1, −1, 3: (1 + 1 − 3)/12 = −1/12.
  CHECK(s.lag1_autocorr == doctest::Approx((-0.75 - 1.0 / 12.0) / 2.0));
  // channel 0 is two-point symmetric: kurtosis 1 − 3 = −2; channel 1: m2 = 3, m4 = (3·1 + 81)/4 = 21 -> 21/9 − 3.
  CHECK(s.kurtosis_channel_max == doctest::Approx(21.0 / 9.0 - 3.0));
  CHECK(excess_kurtosis(x.data(), 4, 2) == doctest::Approx(-2.0));
  CHECK(std::isnan(s.ks_raw));
  CHECK_THROWS_AS(head_stats(x.data(), 1, 2, o), tq::Error);
}

TEST_CASE("stats: kurtosis and lag-1 autocorrelation of known processes") {
  const size_t T = 20000, d = 4;
  tq::Rng rng(5);
  std::vector<float> gauss(T * d), laplace(T * d), ar(T * d);
  const double rho = 0.7;
  std::vector<double> z(d, 0.0);
  for (size_t t = 0; t < T; ++t)
    for (size_t c = 0; c < d; ++c) {
      gauss[t * d + c] = static_cast<float>(rng.gaussian());
      const double u = rng.uniform();
      laplace[t * d + c] = static_cast<float>((u < 0.5 ? 1.0 : -1.0) * -std::log(1.0 - rng.uniform()));
      z[c] = rho * z[c] + std::sqrt(1 - rho * rho) * rng.gaussian();
      ar[t * d + c] = static_cast<float>(z[c]);
    }
  HeadStatsOptions o;
  o.ks = false;
  const HeadStats g = head_stats(gauss.data(), T, d, o);
  CHECK(std::fabs(g.kurtosis_pooled) < 0.15);     // Gaussian: 0 (se ≈ sqrt(24/n) ≈ 0.017)
  CHECK(std::fabs(g.lag1_autocorr) < 0.03);
  CHECK(g.outlier_ratio < 1.3);
  CHECK(g.channel_mean_spread < 0.05);
  CHECK(head_stats(laplace.data(), T, d, o).kurtosis_pooled == doctest::Approx(3.0).epsilon(0.15));  // Laplace: 3
  CHECK(head_stats(ar.data(), T, d, o).lag1_autocorr == doctest::Approx(rho).epsilon(0.03));
}

TEST_CASE("stats: KS after a Haar rotation is small for isotropic data, not for an offset direction") {
  const size_t T = 1000, d = 16;
  tq::Rng rng(9);
  std::vector<float> iso(T * d), offset(T * d);
  for (size_t i = 0; i < T * d; ++i) {
    iso[i] = static_cast<float>(rng.gaussian());
    offset[i] = iso[i] + (i % d == 3 ? 20.0f : 0.0f);  // all vectors point near e_3
  }
  HeadStatsOptions o;
  o.rotation_seed = 1;
  const HeadStats a = head_stats(iso.data(), T, d, o);
  const HeadStats b = head_stats(offset.data(), T, d, o);
  MESSAGE("isotropic: ks_haar=" << a.ks_rotated << " ks_raw=" << a.ks_raw << "; offset: ks_haar=" << b.ks_rotated
                                << " ks_raw=" << b.ks_raw);
  CHECK(a.ks_rotated < 0.03);
  CHECK(a.ks_raw < 0.03);
  CHECK(b.ks_raw > 0.3);      // raw: one coordinate ≈ 1, the others ≈ 0
  CHECK(b.ks_rotated > 0.1);  // a rotation cannot spread a single direction
}

TEST_CASE("stats: RoPE by hand, inverse, and the check") {
  // One row at position 1, interleaved, r = 2: θ_0 = 1 rad.
  RopeParams p;
  p.theta = 10000.0;
  p.rotary_dim = 2;
  std::vector<float> x{1.0f, 0.0f, 5.0f};  // d = 3: the last dimension is not rotated
  const int32_t pos1 = 1;
  apply_rope(x.data(), 1, 3, &pos1, p);
  CHECK(x[0] == doctest::Approx(std::cos(1.0)));
  CHECK(x[1] == doctest::Approx(std::sin(1.0)));
  CHECK(x[2] == 5.0f);

  // half pairing, r = 4: pairs (0, 2) at θ_0 = 1 and (1, 3) at θ_1 = theta^(−1/2) = 0.01.
  p.rotary_dim = 4;
  p.half_pairing = true;
  std::vector<float> y{1.0f, 1.0f, 0.0f, 0.0f};
  const int32_t pos100 = 100;
  apply_rope(y.data(), 1, 4, &pos100, p);
  CHECK(y[0] == doctest::Approx(std::cos(100.0)));
  CHECK(y[2] == doctest::Approx(std::sin(100.0)));
  CHECK(y[1] == doctest::Approx(std::cos(1.0)));
  CHECK(y[3] == doctest::Approx(std::sin(1.0)));

  // RoPE then RoPE⁻¹ returns the input; rope_check passes for the right pairing only.
  const size_t T = 64, d = 8;
  tq::Tensor3 pre{2, T, d, std::vector<float>(2 * T * d)};
  tq::Rng rng(3);
  for (auto& v : pre.data) v = static_cast<float>(rng.gaussian());
  std::vector<int32_t> pos(T);
  for (size_t t = 0; t < T; ++t) pos[t] = static_cast<int32_t>(t + 7);
  RopeParams q;
  q.rotary_dim = 8;
  tq::Tensor3 rot = pre;
  for (size_t h = 0; h < 2; ++h) apply_rope(rot.at(h), T, d, pos.data(), q);
  const RopeCheck ok = rope_check(rot, pre, pos.data(), q);
  CHECK(ok.pass);
  CHECK(ok.rel_err < 1e-6);
  RopeParams wrong = q;
  wrong.half_pairing = true;
  CHECK_FALSE(rope_check(rot, pre, pos.data(), wrong).pass);
  RopeParams wrong_theta = q;
  wrong_theta.theta = 500000.0;
  CHECK_FALSE(rope_check(rot, pre, pos.data(), wrong_theta).pass);
  tq::Tensor3 back = rot;
  for (size_t h = 0; h < 2; ++h) apply_rope(back.at(h), T, d, pos.data(), q, true);
  for (size_t i = 0; i < back.data.size(); ++i) CHECK(back.data[i] == doctest::Approx(pre.data[i]).epsilon(1e-5));

  tq::LayerInfo li;
  li.head_dim = 8;
  li.rotary_dim = 7;
  CHECK_THROWS_AS(RopeParams::from_layer(li), tq::Error);
  li.rotary_dim = 8;
  li.rope_pairing = "sideways";
  CHECK_THROWS_AS(RopeParams::from_layer(li), tq::Error);
}

TEST_CASE("stats: attention entropy against a direct softmax") {
  const size_t T = 40, d = 4;
  tq::Rng rng(17);
  std::vector<float> q(T * d), k(T * d);
  for (auto& v : q) v = static_cast<float>(rng.gaussian());
  for (auto& v : k) v = static_cast<float>(rng.gaussian());
  tq::metrics::AttnOptions o;
  o.scale = 0.8;
  o.min_pos = 5;
  const EntropySums e = attention_entropy_head(q.data(), k.data(), T, d, o);
  double expect = 0.0, uniform = 0.0;
  for (size_t t = 5; t < T; ++t) {
    std::vector<double> p(t + 1);
    double z = 0.0;
    for (size_t s = 0; s <= t; ++s) {
      double dot = 0.0;
      for (size_t c = 0; c < d; ++c) dot += static_cast<double>(q[t * d + c]) * static_cast<double>(k[s * d + c]);
      p[s] = std::exp(0.8 * dot);
      z += p[s];
    }
    for (double& v : p) {
      v /= z;
      if (v > 0) expect -= v * std::log(v);
    }
    uniform += std::log(static_cast<double>(t + 1));
  }
  CHECK(e.n == T - 5);
  CHECK(e.entropy == doctest::Approx(expect).epsilon(1e-10));
  CHECK(e.uniform == doctest::Approx(uniform).epsilon(1e-12));

  // Zero queries: uniform attention, entropy = log(t+1); window W: log(min(t+1, W)).
  std::vector<float> zero(T * d, 0.0f);
  const EntropySums u = attention_entropy_head(zero.data(), k.data(), T, d, o);
  CHECK(u.mean() == doctest::Approx(u.uniform_mean()).epsilon(1e-12));
  o.sliding_window = 8;
  o.min_pos = 7;  // from t = 7 on every window holds 8 keys
  const EntropySums w = attention_entropy_head(zero.data(), k.data(), T, d, o);
  CHECK(w.mean() == doctest::Approx(std::log(8.0)).epsilon(1e-12));
}

TEST_CASE("stats: tabulated KS for large samples equals the direct ibeta evaluation") {
  // 70000 samples use the interpolated table; the direct sup over the same sorted sample with
  // boost::math::ibeta at every point must agree to ~1e-6.
  for (size_t d : {size_t{8}, size_t{128}}) {
    CAPTURE(d);
    std::vector<double> y = sphere_coordinates(70000, d, 21);
    std::vector<double> copy = y;
    const double tabulated = ks_distance_sphere(y, d);
    std::sort(copy.begin(), copy.end());
    double direct = 0.0;
    const double n = static_cast<double>(copy.size());
    for (size_t i = 0; i < copy.size(); ++i) {
      const double f = sphere_coordinate_cdf(copy[i], d);
      direct = std::max(direct, std::max(static_cast<double>(i + 1) / n - f, f - static_cast<double>(i) / n));
    }
    CHECK(std::fabs(tabulated - direct) < 1e-6);
  }
}
