#pragma once
// Statistics of one head's [T, d] matrix x (rows = tokens, columns = channels), as tq inspect
// reports them and tq synth fits them. All sums run in double in a fixed order.
//
//   norm_mean/min/max     of the row norms ‖x_t‖₂.
//   channel_mean/std      per channel c: mean_c = (1/T) Σ_t x_tc, std_c = population std.
//   outlier_ratio         max_c absmax_c / median_c absmax_c, absmax_c = max_t |x_tc|
//                         (median of the d values; the mean of the middle two when d is even).
//                         1 when every channel has the same range; ~10 for Llama keys' outliers.
//   kurtosis_pooled       excess kurtosis m4/m2² − 3 of all T·d elements about their common mean:
//                         heavy tails of the element distribution, including those produced by a
//                         few channels with a much larger offset or scale.
//   kurtosis_channel_max  max over channels of the excess kurtosis of x_·c about mean_c.
//   channel_mean_spread   std_c(mean_c) / mean_c(std_c): how large the per-channel offsets are
//                         relative to the within-channel variation (0 for centred data; >1 when
//                         fixed offsets dominate, as in pre-RoPE keys).
//   lag1_autocorr         mean over channels with std_c > 0 of the lag-1 sample autocorrelation
//                         r_c = Σ_{t<T−1} z_tc z_{t+1,c} / Σ_t z_tc², z = x − mean_c.
//   ks_rotated            KS distance (sphere_law.h) of the T·d coordinates of y_t = R x_t/‖x_t‖
//                         from the exact coordinate law, R Haar-random from `rotation_seed`
//                         (rows with ‖x_t‖ = 0 skipped; NaN when d < 2 or no row is non-zero).
//   ks_raw                the same without rotation (R = I): what the rotation buys.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace tq::stats {

struct HeadStats {
  size_t tokens = 0, dim = 0;
  double norm_mean = 0, norm_min = 0, norm_max = 0;
  std::vector<double> channel_mean, channel_std, channel_absmax;
  double outlier_ratio = 0;
  double kurtosis_pooled = 0, kurtosis_channel_max = 0;
  double channel_mean_spread = 0;
  double lag1_autocorr = 0;
  double ks_rotated = 0, ks_raw = 0;
};

struct HeadStatsOptions {
  uint64_t rotation_seed = 0;  ///< seed of the Haar rotation (tq::seed_for(run, layer, head, tensor))
  bool ks = true;              ///< compute ks_rotated / ks_raw (O(T·d²) + a sort)
};

/// Statistics of x [T, d] (T ≥ 2, d ≥ 1; tq::Error otherwise).
HeadStats head_stats(const float* x, size_t T, size_t d, const HeadStatsOptions& opt = {});

/// Excess kurtosis m4/m2² − 3 of n values spaced `stride` apart, about their mean (0 when m2 = 0).
double excess_kurtosis(const float* x, size_t n, size_t stride = 1);

/// Median of a copy of v (mean of the middle two for even sizes); NaN when empty.
double median(std::vector<double> v);

}  // namespace tq::stats
