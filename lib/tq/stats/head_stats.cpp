#include "tq/stats/head_stats.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "tq/core/error.h"
#include "tq/rotation/rotation.h"
#include "tq/stats/sphere_law.h"

namespace tq::stats {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

/// Coordinates of y_t = x_t/‖x_t‖ for the non-zero rows of x [T, d] (x already rotated or not).
std::vector<double> normalised_coordinates(const float* x, size_t T, size_t d) {
  std::vector<double> y;
  y.reserve(T * d);
  for (size_t t = 0; t < T; ++t) {
    const float* row = x + t * d;
    double sq = 0.0;
    for (size_t c = 0; c < d; ++c) sq += static_cast<double>(row[c]) * static_cast<double>(row[c]);
    if (sq <= 0.0) continue;
    const double inv = 1.0 / std::sqrt(sq);
    for (size_t c = 0; c < d; ++c) y.push_back(static_cast<double>(row[c]) * inv);
  }
  return y;
}

}  // namespace

double median(std::vector<double> v) {
  if (v.empty()) return kNaN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double excess_kurtosis(const float* x, size_t n, size_t stride) {
  if (n == 0) return 0.0;
  double mean = 0.0;
  for (size_t i = 0; i < n; ++i) mean += static_cast<double>(x[i * stride]);
  mean /= static_cast<double>(n);
  double m2 = 0.0, m4 = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double z = static_cast<double>(x[i * stride]) - mean;
    const double z2 = z * z;
    m2 += z2;
    m4 += z2 * z2;
  }
  m2 /= static_cast<double>(n);
  m4 /= static_cast<double>(n);
  return m2 > 0.0 ? m4 / (m2 * m2) - 3.0 : 0.0;
}

HeadStats head_stats(const float* x, size_t T, size_t d, const HeadStatsOptions& opt) {
  if (T < 2 || d < 1) throw Error(fmt::format("head statistics need at least 2 tokens and 1 channel (got {}x{})", T, d));
  HeadStats s;
  s.tokens = T;
  s.dim = d;
  const double Td = static_cast<double>(T);

  // Row norms.
  double norm_sum = 0.0;
  s.norm_min = std::numeric_limits<double>::infinity();
  s.norm_max = 0.0;
  for (size_t t = 0; t < T; ++t) {
    const float* row = x + t * d;
    double sq = 0.0;
    for (size_t c = 0; c < d; ++c) sq += static_cast<double>(row[c]) * static_cast<double>(row[c]);
    const double n = std::sqrt(sq);
    norm_sum += n;
    s.norm_min = std::min(s.norm_min, n);
    s.norm_max = std::max(s.norm_max, n);
  }
  s.norm_mean = norm_sum / Td;

  // Per-channel moments, range, kurtosis and lag-1 autocorrelation.
  s.channel_mean.assign(d, 0.0);
  s.channel_std.assign(d, 0.0);
  s.channel_absmax.assign(d, 0.0);
  for (size_t t = 0; t < T; ++t) {
    const float* row = x + t * d;
    for (size_t c = 0; c < d; ++c) {
      s.channel_mean[c] += static_cast<double>(row[c]);
      s.channel_absmax[c] = std::max(s.channel_absmax[c], std::fabs(static_cast<double>(row[c])));
    }
  }
  for (double& m : s.channel_mean) m /= Td;
  double ac_sum = 0.0;
  size_t ac_n = 0;
  s.kurtosis_channel_max = -std::numeric_limits<double>::infinity();
  for (size_t c = 0; c < d; ++c) {
    const double m = s.channel_mean[c];
    double m2 = 0.0, lag = 0.0;
    double prev = static_cast<double>(x[c]) - m;
    m2 += prev * prev;
    for (size_t t = 1; t < T; ++t) {
      const double z = static_cast<double>(x[t * d + c]) - m;
      m2 += z * z;
      lag += prev * z;
      prev = z;
    }
    s.channel_std[c] = std::sqrt(m2 / Td);
    if (m2 > 0.0) {
      ac_sum += lag / m2;
      ++ac_n;
    }
    s.kurtosis_channel_max = std::max(s.kurtosis_channel_max, excess_kurtosis(x + c, T, d));
  }
  s.lag1_autocorr = ac_n > 0 ? ac_sum / static_cast<double>(ac_n) : 0.0;

  const double med = median(s.channel_absmax);
  const double mx = *std::max_element(s.channel_absmax.begin(), s.channel_absmax.end());
  s.outlier_ratio = med > 0.0 ? mx / med : (mx > 0.0 ? std::numeric_limits<double>::infinity() : 1.0);

  s.kurtosis_pooled = excess_kurtosis(x, T * d);

  double mean_of_means = 0.0, mean_std = 0.0;
  for (size_t c = 0; c < d; ++c) {
    mean_of_means += s.channel_mean[c];
    mean_std += s.channel_std[c];
  }
  mean_of_means /= static_cast<double>(d);
  mean_std /= static_cast<double>(d);
  double var_means = 0.0;
  for (size_t c = 0; c < d; ++c) var_means += (s.channel_mean[c] - mean_of_means) * (s.channel_mean[c] - mean_of_means);
  var_means /= static_cast<double>(d);
  s.channel_mean_spread = mean_std > 0.0 ? std::sqrt(var_means) / mean_std : (var_means > 0.0 ? std::numeric_limits<double>::infinity() : 0.0);

  if (opt.ks && d >= 2) {
    std::vector<double> raw = normalised_coordinates(x, T, d);
    s.ks_raw = ks_distance_sphere(raw, d);
    std::vector<float> rotated(T * d);
    make_haar_rotation(d, opt.rotation_seed)->forward(x, rotated.data(), T);
    std::vector<double> rot = normalised_coordinates(rotated.data(), T, d);
    s.ks_rotated = ks_distance_sphere(rot, d);
  } else {
    s.ks_raw = s.ks_rotated = kNaN;
  }
  return s;
}

}  // namespace tq::stats
