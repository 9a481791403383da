// Noise-aware Pareto fronts and the circular block bootstrap: see pareto.h.
#include "tq/metrics/pareto.h"

#include <algorithm>
#include <cmath>

#include "tq/core/error.h"
#include "tq/core/rng.h"
#include "tq/metrics/reconstruction.h"

namespace tq::metrics {

namespace {

double spread(double sd) { return (std::isnan(sd) || sd < 0.0) ? 0.0 : sd; }

bool has_interval(const ParetoPoint& p) { return !std::isnan(p.ci_lo) && !std::isnan(p.ci_hi); }

bool point_dominates(const ParetoPoint& b, const ParetoPoint& a) {
  return b.bits <= a.bits && b.mean <= a.mean && (b.bits < a.bits || b.mean < a.mean);
}

}  // namespace

bool pareto_dominates(const ParetoPoint& b, const ParetoPoint& a) {
  if (!(b.bits <= a.bits)) return false;
  if (!(a.mean - b.mean > std::max(spread(a.sd), spread(b.sd)))) return false;
  if (has_interval(a) && has_interval(b) && !(b.ci_hi < a.ci_lo)) return false;
  return true;
}

std::vector<ParetoEntry> pareto_front(const std::vector<ParetoPoint>& points) {
  for (const auto& p : points) {
    if (!std::isfinite(p.bits) || !std::isfinite(p.mean)) {
      throw Error("pareto: point '" + p.label + "' has a non-finite bits or metric value");
    }
  }
  std::vector<ParetoEntry> out(points.size());
  for (size_t a = 0; a < points.size(); ++a) {
    bool point_dominated = false;
    for (size_t b = 0; b < points.size(); ++b) {
      if (a == b) continue;
      if (pareto_dominates(points[b], points[a])) out[a].dominated_by.push_back(b);
      if (point_dominates(points[b], points[a])) point_dominated = true;
    }
    out[a].on_front = out[a].dominated_by.empty();
    out[a].on_front_point = !point_dominated;
  }
  return out;
}

BootstrapInterval block_bootstrap_ratio(const double* num, const double* den, size_t n,
                                        const BootstrapOptions& opt) {
  if (n == 0) throw Error("bootstrap: no tokens to resample");
  if (opt.block_len == 0) throw Error("bootstrap: block length must be >= 1");
  if (opt.n_resamples == 0) throw Error("bootstrap: number of resamples must be >= 1");
  if (!(opt.alpha > 0.0 && opt.alpha < 1.0)) throw Error("bootstrap: alpha must be in (0, 1)");
  auto den_at = [den](size_t i) { return den ? den[i] : 1.0; };

  double sn = 0, sd = 0;
  for (size_t i = 0; i < n; ++i) {
    sn += num[i];
    sd += den_at(i);
  }
  if (!(sd > 0.0)) throw Error("bootstrap: the denominator sums to zero");

  BootstrapInterval r;
  r.estimate = sn / sd;
  const size_t L = std::min(opt.block_len, n);
  const size_t n_blocks = (n + L - 1) / L;
  Rng rng(opt.seed);
  std::vector<double> reps;
  reps.reserve(opt.n_resamples);
  for (size_t b = 0; b < opt.n_resamples; ++b) {
    double rn = 0, rd = 0;
    size_t taken = 0;
    for (size_t blk = 0; blk < n_blocks; ++blk) {
      size_t i = static_cast<size_t>(rng.below(n));
      for (size_t j = 0; j < L && taken < n; ++j, ++taken) {
        rn += num[i];
        rd += den_at(i);
        if (++i == n) i = 0;
      }
    }
    if (rd > 0.0) reps.push_back(rn / rd);
  }
  std::sort(reps.begin(), reps.end());
  r.n_resamples = reps.size();
  r.lo = percentile_of_sorted(reps.data(), reps.size(), opt.alpha / 2.0);
  r.hi = percentile_of_sorted(reps.data(), reps.size(), 1.0 - opt.alpha / 2.0);
  return r;
}

BootstrapInterval block_bootstrap_ratio(const std::vector<double>& num, const std::vector<double>& den,
                                        const BootstrapOptions& opt) {
  if (num.size() != den.size()) {
    throw Error("bootstrap: numerator and denominator have different lengths (" +
                std::to_string(num.size()) + " vs " + std::to_string(den.size()) + ")");
  }
  std::vector<double> kn, kd;
  for (size_t i = 0; i < num.size(); ++i) {
    if (den[i] > 0.0) {
      kn.push_back(num[i]);
      kd.push_back(den[i]);
    }
  }
  return block_bootstrap_ratio(kn.data(), kd.data(), kn.size(), opt);
}

}  // namespace tq::metrics
