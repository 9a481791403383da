#include "tq/stats/layer_stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "tq/core/error.h"

namespace tq::stats {

RopeCheck rope_check(const Tensor3& rotated, const Tensor3& pre, const int32_t* positions, const RopeParams& p) {
  if (rotated.n0 != pre.n0 || rotated.n1 != pre.n1 || rotated.n2 != pre.n2)
    throw Error("RoPE check: rotated and pre-RoPE tensors differ in shape");
  std::vector<float> expect(pre.data);
  double max_err = 0.0, max_abs = 0.0;
  for (size_t h = 0; h < pre.n0; ++h) {
    float* e = expect.data() + h * pre.n1 * pre.n2;
    apply_rope(e, pre.n1, pre.n2, positions, p);
    const float* r = rotated.at(h);
    for (size_t i = 0; i < pre.n1 * pre.n2; ++i) {
      max_err = std::max(max_err, std::fabs(static_cast<double>(r[i]) - static_cast<double>(e[i])));
      max_abs = std::max(max_abs, std::fabs(static_cast<double>(r[i])));
    }
  }
  RopeCheck c;
  c.rel_err = max_abs > 0.0 ? max_err / max_abs : (max_err > 0.0 ? std::numeric_limits<double>::infinity() : 0.0);
  c.pass = c.rel_err <= kRopeTolerance;
  return c;
}

double EntropySums::mean() const {
  return n > 0 ? entropy / static_cast<double>(n) : std::numeric_limits<double>::quiet_NaN();
}
double EntropySums::uniform_mean() const {
  return n > 0 ? uniform / static_cast<double>(n) : std::numeric_limits<double>::quiet_NaN();
}

EntropySums attention_entropy_head(const float* q, const float* k, size_t T, size_t d,
                                   const metrics::AttnOptions& opt) {
  if (!(opt.scale > 0.0)) throw Error("attention entropy: the logit scale must be positive");
  const size_t stride = std::max<size_t>(opt.query_stride, 1);
  EntropySums sums;
  std::vector<double> logits(T);
  for (size_t t = opt.min_pos; t < T; ++t) {
    if (t % stride != 0) continue;
    const size_t first = (opt.sliding_window > 0 && t + 1 > opt.sliding_window) ? t + 1 - opt.sliding_window : 0;
    const float* qt = q + t * d;
    double lmax = -std::numeric_limits<double>::infinity();
    for (size_t s = first; s <= t; ++s) {
      const float* ks = k + s * d;
      double dot = 0.0;
      for (size_t c = 0; c < d; ++c) dot += static_cast<double>(qt[c]) * static_cast<double>(ks[c]);
      double l = opt.scale * dot;
      if (opt.softcap > 0.0) l = opt.softcap * std::tanh(l / opt.softcap);
      logits[s] = l;
      lmax = std::max(lmax, l);
    }
    // H = log Z − Σ p_s l_s with Z = Σ exp(l_s − lmax) shifted: H = log Z − Σ p_s (l_s − lmax).
    double z = 0.0, zl = 0.0;
    for (size_t s = first; s <= t; ++s) {
      const double u = logits[s] - lmax;
      const double e = std::exp(u);
      z += e;
      zl += e * u;
    }
    sums.entropy += std::log(z) - zl / z;
    sums.uniform += std::log(static_cast<double>(t + 1 - first));
    ++sums.n;
  }
  return sums;
}

}  // namespace tq::stats
