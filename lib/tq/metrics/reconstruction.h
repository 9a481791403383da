#pragma once
// Reconstruction metrics of one tensor (K or V) against its codec reconstruction.
//
// The unit of work is one head: x, x̂ are [T, d] row-major fp32 arrays (one row per token).
// `ReconStats::add_head` measures one head; per-head stats are pooled with `merge`, which the
// caller must apply in a fixed (canonical: layer, then head) order so that results are
// byte-identical at any thread count. All sums are double; every loop runs in index order.
//
// Definitions (e = x − x̂ per vector, sums over all vectors of all pooled heads):
//   mse             Σ‖e‖² / (number of elements)
//   nmse_pooled     Σ‖e‖² / Σ‖x‖²
//   nmse_mean       mean over heads of the per-head NMSE (heads with Σ‖x‖² = 0 are skipped)
//   nmse_centred    NMSE after subtracting the per-head mean μ of the ORIGINAL rows from both x
//                   and x̂. The error is unchanged by this (x−μ − (x̂−μ) = e), so it equals
//                   Σ‖e‖² / Σ‖x−μ‖²: the error relative to the spread of the rows about their
//                   mean rather than to their raw energy. Keys often share a large common offset
//                   that softmax ignores (q·(k_s + c) shifts every logit of a query equally), so
//                   plain NMSE flatters K; the centred form does not. Invariant to adding one
//                   constant vector to both x and x̂. Pooled and per-head-mean forms exist.
//   nmse_shift_free Σ‖e − ē‖² / Σ‖x−μ‖², ē the per-head mean error: additionally ignores an error
//                   that is itself a constant shift (which attention over keys cannot see).
//   max_abs_err     max |x_i − x̂_i| over all elements
//   rel_err pNN     percentiles of per-vector ‖e‖/‖x‖. Vectors with ‖x‖ = 0 are left out (their
//                   ratio is undefined) and counted in n_zero_vectors. Percentile method: linear
//                   interpolation between closest ranks (Hyndman & Fan type 7, numpy's default):
//                   for sorted v[0..n−1], h = (n−1)·p, value = v[⌊h⌋] + (h−⌊h⌋)(v[⌊h⌋+1] − v[⌊h⌋]).
//                   Values are stored as float (7 significant digits) to bound memory.
//   cosine_mean     mean over vectors of x·x̂/(‖x‖‖x̂‖), with cos = 1 when both are zero vectors
//                   and cos = 0 when exactly one is.
//
// Per-token arrays (tok_sse[t] = Σ_heads ‖e_t‖², tok_energy[t] = Σ_heads ‖x_t‖²) are kept so the
// caller can block-bootstrap nmse_pooled over tokens (see pareto.h, block_bootstrap_ratio).
#include <cstddef>
#include <cstdint>
#include <vector>

namespace tq::metrics {

/// Final values of a ReconStats (computed once; the percentiles need one sort).
struct ReconSummary {
  uint64_t n_heads = 0, n_vectors = 0, n_elements = 0, n_zero_vectors = 0;
  double mse = 0, nmse_pooled = 0, nmse_mean = 0;
  double nmse_centred_pooled = 0, nmse_centred_mean = 0;
  double nmse_shift_free_pooled = 0;
  double max_abs_err = 0;
  double rel_err_p50 = 0, rel_err_p95 = 0, rel_err_p99 = 0, rel_err_max = 0;
  double cosine_mean = 0;
};

/// Poolable accumulator of reconstruction error over heads (see the file comment).
struct ReconStats {
  uint64_t n_heads = 0;          ///< heads added
  uint64_t n_heads_nmse = 0;     ///< heads with Σ‖x‖² > 0 (those in nmse_mean)
  uint64_t n_heads_centred = 0;  ///< heads with Σ‖x−μ‖² > 0 (those in nmse_centred_mean)
  uint64_t n_vectors = 0;
  uint64_t n_elements = 0;
  uint64_t n_zero_vectors = 0;   ///< vectors with ‖x‖ = 0 (no relative error)
  double sse = 0;                ///< Σ‖x − x̂‖²
  double energy = 0;             ///< Σ‖x‖²
  double energy_centred = 0;     ///< Σ‖x − μ_head‖²
  double sse_shift_free = 0;     ///< Σ‖e − ē_head‖²
  double sum_head_nmse = 0;      ///< Σ over heads of (head sse / head energy)
  double sum_head_nmse_centred = 0;
  double max_abs_err = 0;
  double sum_cosine = 0;         ///< Σ over vectors of cos(x, x̂)
  std::vector<float> rel_err;    ///< per-vector ‖e‖/‖x‖ (vectors with ‖x‖ > 0), in add order
  std::vector<double> tok_sse;     ///< per token: Σ over pooled heads of ‖e_t‖²
  std::vector<double> tok_energy;  ///< per token: Σ over pooled heads of ‖x_t‖²

  /// Measure one head: x, xhat are [T, d] row-major. Pools into this accumulator exactly as
  /// merge(ReconStats::of_head(...)) would.
  void add_head(const float* x, const float* xhat, size_t T, size_t d);

  /// Stats of a single head (the caller's per-head values: worst head, per-head rows).
  static ReconStats of_head(const float* x, const float* xhat, size_t T, size_t d);

  /// Pool another accumulator in. Sums are added, rel_err appended, per-token arrays added
  /// element-wise (the shorter one is zero-padded). Merge in a fixed order for reproducibility.
  void merge(const ReconStats& other);

  double mse() const;
  double nmse_pooled() const;
  double nmse_mean() const;
  double nmse_centred_pooled() const;
  double nmse_centred_mean() const;
  double nmse_shift_free_pooled() const;
  double cosine_mean() const;

  /// Everything at once (sorts a copy of rel_err).
  ReconSummary summary() const;
};

/// Percentile of `values` (any order) by linear interpolation between closest ranks (type 7, see
/// above); p in [0, 1]. Empty input gives 0; p outside [0, 1] or NaN throws tq::Error.
double percentile(std::vector<double> values, double p);

/// The same on values already sorted ascending (no copy).
double percentile_of_sorted(const double* sorted, size_t n, double p);
double percentile_of_sorted(const float* sorted, size_t n, double p);

}  // namespace tq::metrics
