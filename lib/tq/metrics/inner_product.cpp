// Inner-product fidelity over causal pairs: see inner_product.h.
#include "tq/metrics/inner_product.h"

#include <cmath>
#include <string>

#include "tq/core/error.h"
#include "tq/core/rng.h"
#include "tq/simd/kernels.h"

namespace tq::metrics {

void IpStats::merge(const IpStats& o) {
  n_pairs += o.n_pairs;
  sum_cross += o.sum_cross;
  sum_sq += o.sum_sq;
  sum_sq_err += o.sum_sq_err;
  sum_err += o.sum_err;
}

double IpStats::bias() const { return sum_sq > 0.0 ? sum_cross / sum_sq - 1.0 : 0.0; }

double IpStats::rms() const { return sum_sq > 0.0 ? std::sqrt(sum_sq_err / sum_sq) : 0.0; }

int kv_head_for(int h, int n_heads, int n_kv_heads) {
  if (n_heads <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads != 0) {
    throw Error("metrics: n_heads=" + std::to_string(n_heads) + " is not a positive multiple of n_kv_heads=" +
                std::to_string(n_kv_heads));
  }
  if (h < 0 || h >= n_heads) {
    throw Error("metrics: query head " + std::to_string(h) + " outside [0, " + std::to_string(n_heads) + ")");
  }
  // ⌊h · n_kv / n_heads⌋ in 64-bit so large head counts cannot overflow.
  return static_cast<int>(static_cast<int64_t>(h) * n_kv_heads / n_heads);
}

IpStats ip_stats_head(const float* q, const float* k, const float* khat, size_t T, size_t d,
                      size_t query_stride) {
  if (query_stride == 0) throw Error("metrics: query_stride must be >= 1");
  IpStats st;
  const simd::Kernels& kern = simd::kernels();
  // Query positions in groups of four: <q_t, k_s> and <q_t, k^_s> for s <= t of all four from one
  // dot_rows4_f64 call per tensor (rows loaded once; each pair's double dot product is the
  // canonical one of dot_rows_f64, so grouping changes no bit). Row g of l / lh holds query g.
  constexpr size_t kGroup = 4;
  std::vector<double> q4(kGroup * d), l(kGroup * T), lh(kGroup * T);
  for (size_t tg = 0; tg < T; tg += kGroup * query_stride) {
    size_t tq[kGroup] = {};
    size_t ng = 0;
    for (size_t t = tg; t < T && ng < kGroup; t += query_stride) tq[ng++] = t;
    for (size_t g = 0; g < kGroup; ++g)
      for (size_t i = 0; i < d; ++i) q4[g * d + i] = g < ng ? static_cast<double>(q[tq[g] * d + i]) : 0.0;
    kern.dot_rows4_f64(q4.data(), k, tq[ng - 1] + 1, d, l.data(), T);
    kern.dot_rows4_f64(q4.data(), khat, tq[ng - 1] + 1, d, lh.data(), T);
    for (size_t g = 0; g < ng; ++g) {
      const size_t t = tq[g];
      for (size_t s = 0; s <= t; ++s) {
        const double a = l[g * T + s], ah = lh[g * T + s];
        const double e = ah - a;
        st.sum_cross += ah * a;
        st.sum_sq += a * a;
        st.sum_sq_err += e * e;
        st.sum_err += e;
      }
      st.n_pairs += t + 1;
    }
  }
  return st;
}

std::vector<IpStats> ip_stats_layer(const float* q, int n_heads, const float* k, const float* khat,
                                    int n_kv_heads, size_t T, size_t d, size_t query_stride) {
  std::vector<IpStats> out;
  out.reserve(static_cast<size_t>(n_heads > 0 ? n_heads : 0));
  const size_t head_size = T * d;
  for (int h = 0; h < n_heads; ++h) {
    const size_t g = static_cast<size_t>(kv_head_for(h, n_heads, n_kv_heads));
    out.push_back(ip_stats_head(q + static_cast<size_t>(h) * head_size, k + g * head_size,
                                khat + g * head_size, T, d, query_stride));
  }
  return out;
}

Tensor3 random_queries(uint64_t seed, int layer, int n_heads, size_t T, size_t d) {
  if (n_heads < 0) throw Error("metrics: negative n_heads for random queries");
  Tensor3 q;
  q.n0 = static_cast<size_t>(n_heads);
  q.n1 = T;
  q.n2 = d;
  q.data.resize(q.size());
  for (int h = 0; h < n_heads; ++h) {
    Rng rng(seed_for(seed, layer, h, "q_random"));
    float* p = q.at(static_cast<size_t>(h));
    for (size_t i = 0; i < T * d; ++i) p[i] = static_cast<float>(rng.gaussian());
  }
  return q;
}

}  // namespace tq::metrics
