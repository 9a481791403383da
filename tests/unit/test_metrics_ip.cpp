// Tests of lib/tq/metrics/inner_product: a direct O(T²) double loop, the shrink identity
// ip_bias = a − 1 for x̂ = a·x, GQA head mapping and random stand-in queries.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "tq/core/error.h"
#include "tq/core/rng.h"
#include "tq/metrics/inner_product.h"

using namespace tq::metrics;

namespace {

std::vector<float> gaussian_array(uint64_t seed, size_t n, double sd = 1.0) {
  tq::Rng rng(seed);
  std::vector<float> a(n);
  for (auto& v : a) v = static_cast<float>(sd * rng.gaussian());
  return a;
}

std::vector<float> perturbed(const std::vector<float>& x, uint64_t seed, double sd, double gain = 1.0) {
  tq::Rng rng(seed);
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    y[i] = static_cast<float>(gain * static_cast<double>(x[i]) + sd * rng.gaussian());
  }
  return y;
}

struct Direct {
  double bias, rms;
  size_t pairs;
};

/// Independent reference: materialise every causal inner product, then the two ratios.
Direct direct_ip(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& kh,
                 size_t T, size_t d, size_t stride = 1) {
  std::vector<double> a, ah;
  for (size_t t = 0; t < T; t += stride) {
    for (size_t s = 0; s <= t; ++s) {
      double x = 0, y = 0;
      for (size_t i = 0; i < d; ++i) {
        x += static_cast<double>(q[t * d + i]) * static_cast<double>(k[s * d + i]);
        y += static_cast<double>(q[t * d + i]) * static_cast<double>(kh[s * d + i]);
      }
      a.push_back(x);
      ah.push_back(y);
    }
  }
  double num = 0, den = 0, err = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += ah[i] * a[i];
    den += a[i] * a[i];
    err += (ah[i] - a[i]) * (ah[i] - a[i]);
  }
  const double n = static_cast<double>(a.size());
  return {num / den - 1.0, std::sqrt(err / n) / std::sqrt(den / n), a.size()};
}

}  // namespace

TEST_CASE("ip metrics: agree with a direct O(T^2) computation") {
  const size_t T = 45, d = 16;
  const auto q = gaussian_array(1, T * d), k = gaussian_array(2, T * d, 2.0);
  const auto kh = perturbed(k, 3, 0.4, 0.9);
  for (size_t stride : {1, 4}) {
    const auto st = ip_stats_head(q.data(), k.data(), kh.data(), T, d, stride);
    const auto ref = direct_ip(q, k, kh, T, d, stride);
    CHECK(st.n_pairs == ref.pairs);
    CHECK(st.bias() == doctest::Approx(ref.bias).epsilon(1e-12));
    CHECK(st.rms() == doctest::Approx(ref.rms).epsilon(1e-12));
  }
  const auto st = ip_stats_head(q.data(), k.data(), kh.data(), T, d);
  CHECK(st.n_pairs == T * (T + 1) / 2);
  CHECK(st.bias() < -0.05);  // gain 0.9 -> about −0.1
  CHECK(st.bias() > -0.15);
  CHECK_THROWS_AS(ip_stats_head(q.data(), k.data(), kh.data(), T, d, 0), tq::Error);
}

TEST_CASE("ip metrics: x̂ = a·x gives ip_bias = a − 1 and ip_rms = |a − 1|") {
  const size_t T = 30, d = 8;
  const auto q = gaussian_array(11, T * d), k = gaussian_array(12, T * d);
  // a = 0.5 is a power of two: k̂ and every product are exact, so the identity holds bit for bit.
  std::vector<float> half(k.size());
  for (size_t i = 0; i < k.size(); ++i) half[i] = 0.5f * k[i];
  const auto st = ip_stats_head(q.data(), k.data(), half.data(), T, d);
  CHECK(st.bias() == -0.5);
  CHECK(st.rms() == 0.5);
  // a = 0.8 is not: the only error is fp32 rounding of k̂.
  std::vector<float> shrunk(k.size());
  for (size_t i = 0; i < k.size(); ++i) shrunk[i] = 0.8f * k[i];
  const auto s2 = ip_stats_head(q.data(), k.data(), shrunk.data(), T, d);
  CHECK(s2.bias() == doctest::Approx(-0.2).epsilon(1e-6));
  CHECK(s2.rms() == doctest::Approx(0.2).epsilon(1e-6));
  // Identity reconstruction.
  const auto s3 = ip_stats_head(q.data(), k.data(), k.data(), T, d);
  CHECK(s3.bias() == 0.0);
  CHECK(s3.rms() == 0.0);
}

TEST_CASE("ip metrics: GQA head mapping") {
  CHECK(kv_head_for(0, 4, 2) == 0);
  CHECK(kv_head_for(1, 4, 2) == 0);
  CHECK(kv_head_for(2, 4, 2) == 1);
  CHECK(kv_head_for(3, 4, 2) == 1);
  for (int h = 0; h < 32; ++h) CHECK(kv_head_for(h, 32, 8) == h / 4);
  for (int h = 0; h < 8; ++h) CHECK(kv_head_for(h, 8, 8) == h);
  for (int h = 0; h < 8; ++h) CHECK(kv_head_for(h, 8, 1) == 0);
  CHECK_THROWS_AS(kv_head_for(0, 6, 4), tq::Error);
  CHECK_THROWS_AS(kv_head_for(4, 4, 2), tq::Error);
  CHECK_THROWS_AS(kv_head_for(0, 4, 0), tq::Error);
}

TEST_CASE("ip metrics: with 4 query / 2 KV heads, a wrong KV head 1 changes only query heads 2, 3") {
  const size_t T = 20, d = 8, H = 4, G = 2;
  const auto q = gaussian_array(21, H * T * d), k = gaussian_array(22, G * T * d);
  auto kh = k;
  const auto bad = perturbed(std::vector<float>(k.begin() + T * d, k.end()), 23, 0.5);
  std::copy(bad.begin(), bad.end(), kh.begin() + static_cast<long>(T * d));
  const auto per_head = ip_stats_layer(q.data(), static_cast<int>(H), k.data(), kh.data(), static_cast<int>(G), T, d);
  REQUIRE(per_head.size() == H);
  CHECK(per_head[0].rms() == 0.0);
  CHECK(per_head[1].rms() == 0.0);
  CHECK(per_head[2].rms() > 0.05);
  CHECK(per_head[3].rms() > 0.05);
  // Each query head is its own measurement: heads 2 and 3 differ (different queries).
  CHECK(per_head[2].rms() != per_head[3].rms());
  // And equals the single-head call on the right slices.
  const auto h3 = ip_stats_head(q.data() + 3 * T * d, k.data() + T * d, kh.data() + T * d, T, d);
  CHECK(h3.sum_sq_err == per_head[3].sum_sq_err);
  // Pooled = ratio of summed sums.
  IpStats pooled;
  for (const auto& s : per_head) pooled.merge(s);
  double cross = 0, sq = 0;
  for (const auto& s : per_head) {
    cross += s.sum_cross;
    sq += s.sum_sq;
  }
  CHECK(pooled.bias() == doctest::Approx(cross / sq - 1.0).epsilon(1e-14));
  CHECK(pooled.n_pairs == H * T * (T + 1) / 2);
}

TEST_CASE("ip metrics: random queries are seeded N(0, I) per (layer, head)") {
  const auto a = random_queries(7, 3, 4, 50, 16);
  const auto b = random_queries(7, 3, 4, 50, 16);
  const auto c = random_queries(8, 3, 4, 50, 16);
  CHECK(a.n0 == 4);
  CHECK(a.n1 == 50);
  CHECK(a.n2 == 16);
  CHECK(a.data == b.data);
  CHECK(a.data != c.data);
  // Head 2 of layer 3 is the stream seed_for(7, 3, 2, "q_random") regardless of n_heads.
  tq::Rng rng(tq::seed_for(7, 3, 2, "q_random"));
  CHECK(a.at(2)[0] == static_cast<float>(rng.gaussian()));
  const auto wide = random_queries(7, 3, 8, 50, 16);
  CHECK(std::equal(a.data.begin(), a.data.end(), wide.data.begin()));
  // Moments: mean ~ 0, variance ~ 1 over 3200 draws.
  double s1 = 0, s2 = 0;
  for (float v : a.data) {
    s1 += static_cast<double>(v);
    s2 += static_cast<double>(v) * static_cast<double>(v);
  }
  const double n = static_cast<double>(a.data.size());
  CHECK(std::abs(s1 / n) < 5.0 / std::sqrt(n));
  CHECK(std::abs(s2 / n - 1.0) < 5.0 * std::sqrt(2.0 / n));
}
