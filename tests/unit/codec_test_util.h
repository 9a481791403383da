#pragma once
// Helpers shared by the codec, rotation and codebook unit tests.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "tq/core/rng.h"

namespace tq::testing {

/// n x d i.i.d. N(0, 1) matrix, row-major.
inline std::vector<float> gaussian_rows(size_t n, size_t d, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> x(n * d);
  for (auto& v : x) v = static_cast<float>(rng.gaussian());
  return x;
}

/// Rows scaled to unit norm.
inline void normalise_rows(std::vector<float>& x, size_t d) {
  for (size_t t = 0; t < x.size() / d; ++t) {
    double ss = 0;
    for (size_t i = 0; i < d; ++i) ss += static_cast<double>(x[t * d + i]) * static_cast<double>(x[t * d + i]);
    const double inv = 1.0 / std::sqrt(ss);
    for (size_t i = 0; i < d; ++i) x[t * d + i] = static_cast<float>(static_cast<double>(x[t * d + i]) * inv);
  }
}

/// Sum of squared errors and sum of squares.
struct ErrSums {
  double err = 0, energy = 0;
};
inline ErrSums err_sums(const float* x, const float* y, size_t m) {
  ErrSums s;
  for (size_t i = 0; i < m; ++i) {
    const double e = static_cast<double>(x[i]) - static_cast<double>(y[i]);
    s.err += e * e;
    s.energy += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  }
  return s;
}

/// Mean and standard error of a list of independent estimates.
struct MeanSe {
  double mean = 0, se = 0;
};
inline MeanSe mean_se(const std::vector<double>& v) {
  double s = 0, s2 = 0;
  for (double a : v) s += a;
  const double m = s / static_cast<double>(v.size());
  for (double a : v) s2 += (a - m) * (a - m);
  const double var = s2 / static_cast<double>(v.size() - 1);
  return {m, std::sqrt(var / static_cast<double>(v.size()))};
}

}  // namespace tq::testing
