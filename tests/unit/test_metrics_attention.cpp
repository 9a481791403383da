// Tests of lib/tq/metrics/attention against a direct computation that materialises the full
// T×T attention matrices (plain max-shifted softmax, KL from probabilities, sorted top-k).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "tq/core/error.h"
#include "tq/core/rng.h"
#include "tq/metrics/attention.h"

using namespace tq::metrics;

namespace {

using Matrix = std::vector<std::vector<double>>;

std::vector<float> gaussian_array(uint64_t seed, size_t n, double sd = 1.0) {
  tq::Rng rng(seed);
  std::vector<float> a(n);
  for (auto& v : a) v = static_cast<float>(sd * rng.gaussian());
  return a;
}

std::vector<float> perturbed(const std::vector<float>& x, uint64_t seed, double sd) {
  tq::Rng rng(seed);
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = static_cast<float>(static_cast<double>(x[i]) + sd * rng.gaussian());
  return y;
}

/// Full probability matrix P[t][s] (0 outside the causal window).
Matrix attention_matrix(const std::vector<float>& q, const std::vector<float>& k, size_t T, size_t d,
                        double scale, size_t window, double cap) {
  Matrix P(T, std::vector<double>(T, 0.0));
  for (size_t t = 0; t < T; ++t) {
    std::vector<double> l(T, -INFINITY);
    for (size_t s = 0; s <= t; ++s) {
      if (window > 0 && s + window <= t) continue;  // outside (t − W, t]
      double x = 0;
      for (size_t i = 0; i < d; ++i) x += static_cast<double>(q[t * d + i]) * static_cast<double>(k[s * d + i]);
      x *= scale;
      if (cap > 0) x = cap * std::tanh(x / cap);
      l[s] = x;
    }
    const double m = *std::max_element(l.begin(), l.end());
    double z = 0;
    for (size_t s = 0; s < T; ++s) z += std::exp(l[s] - m);
    for (size_t s = 0; s < T; ++s) P[t][s] = std::exp(l[s] - m) / z;
  }
  return P;
}

/// Top-k keys of row p among the window [s0, t], ties to the lower index.
std::vector<size_t> topk_ref(const std::vector<double>& p, size_t k, size_t s0, size_t t) {
  std::vector<size_t> idx(t + 1 - s0);
  std::iota(idx.begin(), idx.end(), s0);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
  idx.resize(std::min(k, idx.size()));
  return idx;
}

struct Ref {
  double kl = 0, kl_nosink = 0, top1 = 0, topk = 0, out_err = 0, wv_err = 0, wv_nerr = 0;
  std::vector<double> kl_at;  ///< per position (0 where not counted)
};

Ref reference(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
              const std::vector<float>& kh, const std::vector<float>& vh, size_t T, size_t d,
              const AttnOptions& o) {
  const Matrix P = attention_matrix(q, k, T, d, o.scale, o.sliding_window, o.softcap);
  const Matrix Ph = attention_matrix(q, kh, T, d, o.scale, o.sliding_window, o.softcap);
  Ref r;
  r.kl_at.assign(T, 0.0);
  double n = 0, n1 = 0, e2 = 0, o2 = 0, wv = 0, wn = 0;
  for (size_t t = o.min_pos; t < T; ++t) {
    double kl = 0;
    for (size_t s = 0; s <= t; ++s) {
      if (P[t][s] > 0) kl += P[t][s] * std::log(P[t][s] / Ph[t][s]);
    }
    r.kl += kl;
    r.kl_at[t] = kl;
    n += 1;
    if (t >= 1) {  // renormalise without token 0 by direct division
      double kl1 = 0;
      for (size_t s = 1; s <= t; ++s) {
        const double a = P[t][s] / (1.0 - P[t][0]), b = Ph[t][s] / (1.0 - Ph[t][0]);
        if (a > 0) kl1 += a * std::log(a / b);
      }
      r.kl_nosink += kl1;
      n1 += 1;
    }
    const size_t s0 = (o.sliding_window > 0 && t + 1 > o.sliding_window) ? t + 1 - o.sliding_window : 0;
    const auto tk = topk_ref(P[t], o.top_k, s0, t), tkh = topk_ref(Ph[t], o.top_k, s0, t);
    r.top1 += tk[0] == tkh[0] ? 1.0 : 0.0;
    size_t common = 0;
    for (size_t a : tk) common += std::count(tkh.begin(), tkh.end(), a) > 0 ? 1 : 0;
    r.topk += static_cast<double>(common) / static_cast<double>(tk.size());
    for (size_t i = 0; i < d; ++i) {
      double oi = 0, ohi = 0;
      for (size_t s = 0; s <= t; ++s) {
        oi += P[t][s] * static_cast<double>(v[s * d + i]);
        ohi += Ph[t][s] * static_cast<double>(vh[s * d + i]);
      }
      e2 += (oi - ohi) * (oi - ohi);
      o2 += oi * oi;
    }
    for (size_t s = 0; s <= t; ++s) {
      for (size_t i = 0; i < d; ++i) {
        const double dv = static_cast<double>(v[s * d + i]) - static_cast<double>(vh[s * d + i]);
        wv += P[t][s] * dv * dv;
        wn += P[t][s] * static_cast<double>(v[s * d + i]) * static_cast<double>(v[s * d + i]);
      }
    }
  }
  r.kl /= n;
  r.kl_nosink /= n1;
  r.top1 /= n;
  r.topk /= n;
  r.out_err = std::sqrt(e2 / o2);
  r.wv_err = wv / n;
  r.wv_nerr = wv / wn;
  return r;
}

struct Case {
  size_t window;
  double cap;
  double scale;
  size_t min_pos;
};

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

}  // namespace

TEST_CASE("attention metrics agree with full-matrix attention (causal, window, softcap)") {
  const size_t T = 40, d = 8;
  const auto q = gaussian_array(1, T * d), k = gaussian_array(2, T * d), v = gaussian_array(3, T * d);
  const auto kh = perturbed(k, 4, 0.3), vh = perturbed(v, 5, 0.2);
  const Case cases[] = {{0, 0.0, 0.35, 16}, {0, 0.0, 0.35, 0}, {5, 0.0, 0.35, 3},
                        {0, 2.0, 1.5, 2},  {7, 3.0, 1.0, 1}, {1, 0.0, 0.35, 4}};
  for (const auto& c : cases) {
    CAPTURE(c.window);
    CAPTURE(c.cap);
    CAPTURE(c.min_pos);
    AttnOptions o;
    o.scale = c.scale;
    o.sliding_window = c.window;
    o.softcap = c.cap;
    o.min_pos = c.min_pos;
    o.top_k = 5;
    const auto st = attention_head(q.data(), k.data(), v.data(), kh.data(), vh.data(), T, d, o);
    const auto s = st.summary();
    const auto r = reference(q, k, v, kh, vh, T, d, o);
    CHECK(s.n_pos == T - c.min_pos);
    CHECK(s.has_values);
    if (c.window == 1) {
      CHECK(s.kl == 0.0);  // each token sees only itself: both distributions are a point mass
    } else {
      CHECK(s.kl > 1e-4);
    }
    CHECK(s.kl == doctest::Approx(r.kl).epsilon(1e-10));
    CHECK(s.kl_nosink == doctest::Approx(r.kl_nosink).epsilon(1e-10));
    CHECK(s.top1 == doctest::Approx(r.top1).epsilon(1e-15));
    CHECK(s.topk == doctest::Approx(r.topk).epsilon(1e-13));
    CHECK(s.out_err == doctest::Approx(r.out_err).epsilon(1e-10));
    CHECK(s.wv_err == doctest::Approx(r.wv_err).epsilon(1e-10));
    CHECK(s.wv_nerr == doctest::Approx(r.wv_nerr).epsilon(1e-10));
    for (size_t t = 0; t < T; ++t) CHECK(st.pos_kl[t] == doctest::Approx(r.kl_at[t]).epsilon(1e-10));
  }
}

TEST_CASE("attention metrics: the window and the softcap change the result") {
  const size_t T = 40, d = 8;
  const auto q = gaussian_array(31, T * d, 2.0), k = gaussian_array(32, T * d, 2.0);
  const auto kh = perturbed(k, 33, 0.3);
  AttnOptions o;
  o.scale = 1.0;
  const double base = attention_head(q.data(), k.data(), nullptr, kh.data(), nullptr, T, d, o).summary().kl;
  o.sliding_window = 4;
  const double win = attention_head(q.data(), k.data(), nullptr, kh.data(), nullptr, T, d, o).summary().kl;
  o.sliding_window = 0;
  o.softcap = 1.0;
  const double cap = attention_head(q.data(), k.data(), nullptr, kh.data(), nullptr, T, d, o).summary().kl;
  CHECK(std::abs(win - base) > 1e-3 * base);
  CHECK(cap < 0.5 * base);  // a cap of 1 squeezes the logits, so the KL shrinks a lot
}

TEST_CASE("attention metrics: x̂ = x gives KL 0, top-1 1, output error 0") {
  const size_t T = 33, d = 8;
  const auto q = gaussian_array(6, T * d), k = gaussian_array(7, T * d), v = gaussian_array(8, T * d);
  AttnOptions o;
  o.scale = 0.4;
  o.sliding_window = 9;
  o.softcap = 4.0;
  const auto s = attention_head(q.data(), k.data(), v.data(), k.data(), v.data(), T, d, o).summary();
  CHECK(s.n_pos == T - 16);
  CHECK(s.kl == 0.0);
  CHECK(s.kl_nosink == 0.0);
  CHECK(s.top1 == 1.0);
  CHECK(s.topk == 1.0);
  CHECK(s.out_err == 0.0);
  CHECK(s.out_err_mean_ratio == 0.0);
  CHECK(s.wv_err == 0.0);
  CHECK(s.wv_nerr == 0.0);
}

TEST_CASE("attention metrics: sink-excluded KL ignores a change of the sink key only") {
  // Only key 0 differs: full KL moves, sink-excluded KL stays 0 (renormalised over s >= 1).
  const size_t T = 30, d = 4;
  const auto q = gaussian_array(41, T * d), k = gaussian_array(42, T * d);
  auto kh = k;
  for (size_t i = 0; i < d; ++i) kh[i] += 1.0f;
  AttnOptions o;
  o.scale = 0.5;
  const auto s = attention_head(q.data(), k.data(), nullptr, kh.data(), nullptr, T, d, o).summary();
  CHECK(s.kl > 1e-4);
  CHECK(s.kl_nosink == 0.0);
  CHECK_FALSE(s.has_values);
}

TEST_CASE("attention metrics: sink-excluded KL stays exact when the sink takes (almost) all mass") {
  // d = 2, q_t = (1, 0): key 0 gets logit `sink`, the others small logits. With sink = 30 the
  // normaliser over s >= 1 is reused from the row (mass e^-30); with sink = 800 that mass
  // underflows and the code must recompute. Reference: softmax over keys 1..t only.
  const size_t T = 24, d = 2;
  for (double sink : {30.0, 800.0}) {
    CAPTURE(sink);
    tq::Rng rng(91);
    std::vector<float> q(T * d, 0.0f), k(T * d), kh(T * d);
    for (size_t t = 0; t < T; ++t) {
      q[t * d] = 1.0f;
      k[t * d] = static_cast<float>(t == 0 ? sink : rng.gaussian());
      k[t * d + 1] = static_cast<float>(rng.gaussian());
      kh[t * d] = static_cast<float>(t == 0 ? sink : static_cast<double>(k[t * d]) + 0.3 * rng.gaussian());
      kh[t * d + 1] = k[t * d + 1];
    }
    AttnOptions o;
    o.scale = 1.0;
    o.min_pos = 2;
    const auto s = attention_head(q.data(), k.data(), nullptr, kh.data(), nullptr, T, d, o).summary();
    double ref = 0;
    for (size_t t = o.min_pos; t < T; ++t) {
      std::vector<double> a(t), b(t);  // logits of keys 1..t
      double ma = -INFINITY, mb = -INFINITY, za = 0, zb = 0;
      for (size_t j = 0; j < t; ++j) {
        a[j] = static_cast<double>(k[(j + 1) * d]);
        b[j] = static_cast<double>(kh[(j + 1) * d]);
        ma = std::max(ma, a[j]);
        mb = std::max(mb, b[j]);
      }
      for (size_t j = 0; j < a.size(); ++j) {
        za += std::exp(a[j] - ma);
        zb += std::exp(b[j] - mb);
      }
      for (size_t j = 0; j < a.size(); ++j) {
        const double pa = std::exp(a[j] - ma) / za, pb = std::exp(b[j] - mb) / zb;
        ref += pa * std::log(pa / pb);
      }
    }
    ref /= static_cast<double>(T - o.min_pos);
    CHECK(ref > 1e-3);
    CHECK(s.kl_nosink == doctest::Approx(ref).epsilon(1e-9));
    CHECK(s.kl < 1e-9);  // the sink dominates both rows identically
  }
}

TEST_CASE("attention metrics: position bins are powers of two") {
  CHECK(attn_pos_bin(0) == 0);
  CHECK(attn_pos_bin(1) == 0);
  CHECK(attn_pos_bin(2) == 1);
  CHECK(attn_pos_bin(3) == 1);
  CHECK(attn_pos_bin(16) == 4);
  CHECK(attn_pos_bin(31) == 4);
  CHECK(attn_pos_bin(32) == 5);
  const size_t T = 70, d = 6;
  const auto q = gaussian_array(51, T * d), k = gaussian_array(52, T * d);
  const auto kh = perturbed(k, 53, 0.3);
  AttnOptions o;
  o.scale = 0.5;
  o.min_pos = 5;
  const auto st = attention_head(q.data(), k.data(), nullptr, kh.data(), nullptr, T, d, o);
  const auto s = st.summary();
  REQUIRE(s.bins.size() == 5);  // [4,8) [8,16) [16,32) [32,64) [64,128)
  const size_t lo[] = {4, 8, 16, 32, 64}, n[] = {3, 8, 16, 32, 6};
  for (size_t b = 0; b < 5; ++b) {
    CHECK(s.bins[b].lo == lo[b]);
    CHECK(s.bins[b].hi == 2 * lo[b]);
    CHECK(s.bins[b].n == n[b]);
    double sum = 0;
    for (size_t t = std::max(lo[b], o.min_pos); t < std::min(2 * lo[b], T); ++t) sum += st.pos_kl[t];
    CHECK(s.bins[b].kl == doctest::Approx(sum / static_cast<double>(n[b])).epsilon(1e-14));
  }
}

TEST_CASE("attention metrics: query_stride keeps every stride-th position") {
  const size_t T = 50, d = 6;
  const auto q = gaussian_array(61, T * d), k = gaussian_array(62, T * d);
  const auto kh = perturbed(k, 63, 0.3);
  AttnOptions o;
  o.scale = 0.5;
  const auto full = attention_head(q.data(), k.data(), nullptr, kh.data(), nullptr, T, d, o);
  o.query_stride = 7;
  const auto sub = attention_head(q.data(), k.data(), nullptr, kh.data(), nullptr, T, d, o);
  double sum = 0;
  size_t n = 0;
  for (size_t t = 21; t < T; t += 7) {  // 21 = first multiple of 7 that is >= 16
    sum += full.pos_kl[t];
    ++n;
  }
  CHECK(sub.n_pos == n);
  CHECK(sub.summary().kl == doctest::Approx(sum / static_cast<double>(n)).epsilon(1e-14));
}

TEST_CASE("attention metrics: GQA, 4 query / 2 KV heads, a wrong KV head 1 changes heads 2, 3 only") {
  const size_t T = 24, d = 8, H = 4, G = 2;
  const auto q = gaussian_array(71, H * T * d), k = gaussian_array(72, G * T * d), v = gaussian_array(73, G * T * d);
  auto kh = k, vh = v;
  for (size_t i = T * d; i < G * T * d; ++i) {
    kh[i] += 0.3f * static_cast<float>((i * 7919) % 13) / 13.0f;
    vh[i] -= 0.2f;
  }
  AttnOptions o;
  o.scale = 0.35;
  o.min_pos = 4;
  const auto per_head = attention_layer(q.data(), static_cast<int>(H), k.data(), v.data(), kh.data(), vh.data(),
                                        static_cast<int>(G), T, d, o);
  REQUIRE(per_head.size() == H);
  for (size_t h = 0; h < 2; ++h) {
    const auto s = per_head[h].summary();
    CHECK(s.kl == 0.0);
    CHECK(s.out_err == 0.0);
    CHECK(s.top1 == 1.0);
  }
  for (size_t h = 2; h < 4; ++h) {
    const auto s = per_head[h].summary();
    CHECK(s.kl > 1e-5);
    CHECK(s.out_err > 1e-3);
    CHECK(s.wv_err == doctest::Approx(d * 0.04).epsilon(1e-5));  // ‖v − v̂‖² = d·0.2² everywhere
  }
  // Heads 2 and 3 have their own queries: each matches the single-head call, and they differ.
  const auto h2 = attention_head(q.data() + 2 * T * d, k.data() + T * d, v.data() + T * d, kh.data() + T * d,
                                 vh.data() + T * d, T, d, o);
  CHECK(same_bits(h2.sum_kl, per_head[2].sum_kl));
  CHECK(per_head[2].sum_kl != per_head[3].sum_kl);
}

TEST_CASE("attention metrics: per-head stats merged in canonical order are bitwise reproducible") {
  const size_t T = 40, d = 8, H = 4, G = 2;
  const auto q = gaussian_array(81, H * T * d), k = gaussian_array(82, G * T * d), v = gaussian_array(83, G * T * d);
  const auto kh = perturbed(k, 84, 0.3), vh = perturbed(v, 85, 0.3);
  AttnOptions o;
  o.scale = 0.35;
  const auto canonical = attention_layer(q.data(), 4, k.data(), v.data(), kh.data(), vh.data(), 2, T, d, o);
  // Compute heads in reverse order (as parallel workers might finish), store by head index.
  std::vector<AttnStats> by_index(H);
  for (size_t h = H; h-- > 0;) {
    const size_t g = h / 2;
    by_index[h] = attention_head(q.data() + h * T * d, k.data() + g * T * d, v.data() + g * T * d,
                                 kh.data() + g * T * d, vh.data() + g * T * d, T, d, o);
  }
  AttnStats a, b;
  for (const auto& s : canonical) a.merge(s);
  for (const auto& s : by_index) b.merge(s);
  const auto sa = a.summary(), sb = b.summary();
  CHECK(same_bits(sa.kl, sb.kl));
  CHECK(same_bits(sa.kl_nosink, sb.kl_nosink));
  CHECK(same_bits(sa.out_err, sb.out_err));
  CHECK(same_bits(sa.wv_nerr, sb.wv_nerr));
  CHECK(a.pos_kl == b.pos_kl);
  // The pooled KL is the mean over (head, position) rows, also from the per-position arrays.
  double num = 0, den = 0;
  for (size_t t = 0; t < T; ++t) {
    num += a.pos_kl[t];
    den += a.pos_n[t];
  }
  CHECK(den == static_cast<double>(H * (T - 16)));
  CHECK(sa.kl == doctest::Approx(num / den).epsilon(1e-14));
}

TEST_CASE("attention metrics: bad options throw tq::Error") {
  const std::vector<float> x(16, 1.0f);
  AttnOptions o;  // scale 0
  CHECK_THROWS_AS(attention_head(x.data(), x.data(), nullptr, x.data(), nullptr, 4, 4, o), tq::Error);
  o.scale = 1.0;
  o.top_k = 0;
  CHECK_THROWS_AS(attention_head(x.data(), x.data(), nullptr, x.data(), nullptr, 4, 4, o), tq::Error);
  o.top_k = 5;
  o.softcap = -1.0;
  CHECK_THROWS_AS(attention_head(x.data(), x.data(), nullptr, x.data(), nullptr, 4, 4, o), tq::Error);
  o.softcap = 0.0;
  CHECK_THROWS_AS(attention_head(x.data(), x.data(), x.data(), x.data(), nullptr, 4, 4, o), tq::Error);
}

TEST_CASE("attention metrics: options from a dump layer's attributes") {
  tq::LayerInfo L;
  L.index = 3;
  L.attn_scale = 0.125;
  auto o = attn_options_for(L);
  CHECK(o.scale == 0.125);
  CHECK(o.sliding_window == 0);
  CHECK(o.softcap == 0.0);
  CHECK(o.min_pos == 16);
  L.sliding_window = 4096;
  L.logit_softcap = 50.0;
  o = attn_options_for(L);
  CHECK(o.sliding_window == 4096);
  CHECK(o.softcap == 50.0);
  L.sliding_window = -1;
  CHECK_THROWS_AS(attn_options_for(L), tq::Error);
  L.sliding_window.reset();
  L.attn_scale = 0.0;
  CHECK_THROWS_AS(attn_options_for(L), tq::Error);
}
