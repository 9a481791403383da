#pragma once
// Rate-distortion fronts with noise-aware dominance, and the block bootstrap that supplies the
// confidence intervals.
//
// Pareto rule (lower bits and lower metric are better). Point A is DOMINATED by another point B
// when all of these hold:
//   1. B.bits <= A.bits;
//   2. A.mean − B.mean > max(A.sd, B.sd)        (B lower by more than the seed spread; an sd that
//                                                is NaN or negative counts as 0);
//   3. B.ci_hi < A.ci_lo                        (bootstrap intervals do not overlap; skipped when
//                                                either point's interval is absent, i.e. a bound
//                                                is NaN).
// The front is the set of points no other point dominates. It is conservative: two points whose
// difference is within noise both stay, even when one has fewer bits. `on_front_point` gives
// the classic noise-free front for reference (B dominates A when B.bits <= A.bits,
// B.mean <= A.mean and at least one is strict).
//
// Block bootstrap (circular block bootstrap, Politis & Romano 1992): per-token values are
// serially correlated, so tokens are resampled in contiguous blocks of length L. One resample
// draws ⌈n / L⌉ block starts uniformly in [0, n) with tq::Rng, takes tokens start, start+1, ...
// wrapping modulo n, and truncates to n tokens. The statistic is the ratio Σ num / Σ den over
// the resampled tokens (den = nullptr means den = 1: the mean). The interval is the
// (alpha/2, 1 − alpha/2) percentile interval of the B replicate statistics, percentiles by linear
// interpolation (type 7, as in reconstruction.h). Replicates whose Σ den is 0 are dropped.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace tq::metrics {

struct ParetoPoint {
  std::string label;
  double bits = 0;   ///< bits per element
  double mean = 0;   ///< metric mean over seeds (lower is better)
  double sd = 0;     ///< metric sd over seeds (NaN or 0 when one seed)
  double ci_lo = std::numeric_limits<double>::quiet_NaN();  ///< bootstrap interval (NaN = none)
  double ci_hi = std::numeric_limits<double>::quiet_NaN();
};

struct ParetoEntry {
  bool on_front = false;               ///< not dominated under the noise-aware rule
  bool on_front_point = false;         ///< not dominated under the classic point rule
  std::vector<size_t> dominated_by;    ///< indices of the points dominating it (noise-aware)
};

/// True when `b` dominates `a` under the noise-aware rule above.
bool pareto_dominates(const ParetoPoint& b, const ParetoPoint& a);

/// One entry per input point, same order. Throws tq::Error if a bits or mean value is not finite.
std::vector<ParetoEntry> pareto_front(const std::vector<ParetoPoint>& points);

struct BootstrapInterval {
  double estimate = 0;  ///< the statistic on the original tokens
  double lo = 0, hi = 0;
  size_t n_resamples = 0;  ///< replicates used (those with Σ den > 0)
};

struct BootstrapOptions {
  size_t block_len = 64;    ///< L, tokens per block (>= 1; clipped to n)
  size_t n_resamples = 1000;
  double alpha = 0.05;      ///< interval (alpha/2, 1 − alpha/2): 2.5 % and 97.5 % by default
  uint64_t seed = 0;
};

/// Circular block bootstrap of Σ num / Σ den over n tokens (den may be nullptr: the mean).
/// Throws tq::Error when n = 0, Σ den = 0 on the original tokens, or options are invalid.
BootstrapInterval block_bootstrap_ratio(const double* num, const double* den, size_t n,
                                        const BootstrapOptions& opt);

/// Convenience: keep only tokens with den > 0 (e.g. positions an attention stats counted), then
/// bootstrap. For AttnStats: (pos_kl, pos_n) gives attn_kl; (pos_out_err_sq, pos_out_sq) gives
/// attn_out_err² (take square roots of the bounds). For ReconStats: (tok_sse, tok_energy).
BootstrapInterval block_bootstrap_ratio(const std::vector<double>& num, const std::vector<double>& den,
                                        const BootstrapOptions& opt);

}  // namespace tq::metrics
