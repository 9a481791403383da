// Reconstruction metrics: see reconstruction.h for every definition.
#include "tq/metrics/reconstruction.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "tq/core/error.h"

namespace tq::metrics {

namespace {

/// Type-7 percentile on sorted data of any floating type (see reconstruction.h).
template <typename T>
double percentile_type7(const T* sorted, size_t n, double p) {
  if (!(p >= 0.0 && p <= 1.0)) {
    throw Error("metrics: percentile level " + std::to_string(p) + " is outside [0, 1]");
  }
  if (n == 0) return 0.0;
  const double h = static_cast<double>(n - 1) * p;
  const size_t lo = static_cast<size_t>(std::floor(h));
  if (lo + 1 >= n) return static_cast<double>(sorted[n - 1]);
  const double frac = h - static_cast<double>(lo);
  const double a = static_cast<double>(sorted[lo]);
  const double b = static_cast<double>(sorted[lo + 1]);
  return a + frac * (b - a);
}

double safe_ratio(double num, double den) { return den > 0.0 ? num / den : 0.0; }

/// a[i] += b[i], zero-padding a to b's length first.
void add_padded(std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() < b.size()) a.resize(b.size(), 0.0);
  for (size_t i = 0; i < b.size(); ++i) a[i] += b[i];
}

}  // namespace

double percentile_of_sorted(const double* sorted, size_t n, double p) {
  return percentile_type7(sorted, n, p);
}

double percentile_of_sorted(const float* sorted, size_t n, double p) {
  return percentile_type7(sorted, n, p);
}

double percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  return percentile_type7(values.data(), values.size(), p);
}

ReconStats ReconStats::of_head(const float* x, const float* xhat, size_t T, size_t d) {
  ReconStats s;
  s.add_head(x, xhat, T, d);
  return s;
}

void ReconStats::add_head(const float* x, const float* xhat, size_t T, size_t d) {
  // Pass 1: per-head means of the original rows (μ) and of the error (ē).
  std::vector<double> mu(d, 0.0), mean_err(d, 0.0);
  for (size_t t = 0; t < T; ++t) {
    const float* xr = x + t * d;
    const float* yr = xhat + t * d;
    for (size_t i = 0; i < d; ++i) {
      mu[i] += static_cast<double>(xr[i]);
      mean_err[i] += static_cast<double>(xr[i]) - static_cast<double>(yr[i]);
    }
  }
  if (T > 0) {
    const double inv_t = 1.0 / static_cast<double>(T);
    for (size_t i = 0; i < d; ++i) {
      mu[i] *= inv_t;
      mean_err[i] *= inv_t;
    }
  }

  // Pass 2: every per-vector quantity.
  if (tok_sse.size() < T) {
    tok_sse.resize(T, 0.0);
    tok_energy.resize(T, 0.0);
  }
  rel_err.reserve(rel_err.size() + T);
  double h_sse = 0, h_energy = 0, h_energy_c = 0, h_sse_sf = 0, h_cos = 0, h_max = max_abs_err;
  uint64_t h_zero = 0;
  for (size_t t = 0; t < T; ++t) {
    const float* xr = x + t * d;
    const float* yr = xhat + t * d;
    double e2 = 0, x2 = 0, y2 = 0, xy = 0, xc2 = 0, esf2 = 0;
    for (size_t i = 0; i < d; ++i) {
      const double a = static_cast<double>(xr[i]);
      const double b = static_cast<double>(yr[i]);
      const double e = a - b;
      e2 += e * e;
      x2 += a * a;
      y2 += b * b;
      xy += a * b;
      const double ac = a - mu[i];
      xc2 += ac * ac;
      const double es = e - mean_err[i];
      esf2 += es * es;
      h_max = std::max(h_max, std::abs(e));
    }
    h_sse += e2;
    h_energy += x2;
    h_energy_c += xc2;
    h_sse_sf += esf2;
    tok_sse[t] += e2;
    tok_energy[t] += x2;
    // Cosine with the zero-vector conventions of reconstruction.h.
    if (x2 > 0.0 && y2 > 0.0) {
      h_cos += xy / (std::sqrt(x2) * std::sqrt(y2));
    } else if (x2 == 0.0 && y2 == 0.0) {
      h_cos += 1.0;
    }
    if (x2 > 0.0) {
      rel_err.push_back(static_cast<float>(std::sqrt(e2 / x2)));
    } else {
      ++h_zero;
    }
  }

  n_heads += 1;
  n_vectors += T;
  n_elements += T * d;
  n_zero_vectors += h_zero;
  sse += h_sse;
  energy += h_energy;
  energy_centred += h_energy_c;
  sse_shift_free += h_sse_sf;
  sum_cosine += h_cos;
  max_abs_err = h_max;
  if (h_energy > 0.0) {
    sum_head_nmse += h_sse / h_energy;
    n_heads_nmse += 1;
  }
  if (h_energy_c > 0.0) {
    sum_head_nmse_centred += h_sse / h_energy_c;
    n_heads_centred += 1;
  }
}

void ReconStats::merge(const ReconStats& o) {
  n_heads += o.n_heads;
  n_heads_nmse += o.n_heads_nmse;
  n_heads_centred += o.n_heads_centred;
  n_vectors += o.n_vectors;
  n_elements += o.n_elements;
  n_zero_vectors += o.n_zero_vectors;
  sse += o.sse;
  energy += o.energy;
  energy_centred += o.energy_centred;
  sse_shift_free += o.sse_shift_free;
  sum_head_nmse += o.sum_head_nmse;
  sum_head_nmse_centred += o.sum_head_nmse_centred;
  max_abs_err = std::max(max_abs_err, o.max_abs_err);
  sum_cosine += o.sum_cosine;
  rel_err.insert(rel_err.end(), o.rel_err.begin(), o.rel_err.end());
  add_padded(tok_sse, o.tok_sse);
  add_padded(tok_energy, o.tok_energy);
}

double ReconStats::mse() const { return safe_ratio(sse, static_cast<double>(n_elements)); }
double ReconStats::nmse_pooled() const { return safe_ratio(sse, energy); }
double ReconStats::nmse_mean() const {
  return safe_ratio(sum_head_nmse, static_cast<double>(n_heads_nmse));
}
double ReconStats::nmse_centred_pooled() const { return safe_ratio(sse, energy_centred); }
double ReconStats::nmse_centred_mean() const {
  return safe_ratio(sum_head_nmse_centred, static_cast<double>(n_heads_centred));
}
double ReconStats::nmse_shift_free_pooled() const { return safe_ratio(sse_shift_free, energy_centred); }
double ReconStats::cosine_mean() const {
  return safe_ratio(sum_cosine, static_cast<double>(n_vectors));
}

ReconSummary ReconStats::summary() const {
  ReconSummary r;
  r.n_heads = n_heads;
  r.n_vectors = n_vectors;
  r.n_elements = n_elements;
  r.n_zero_vectors = n_zero_vectors;
  r.mse = mse();
  r.nmse_pooled = nmse_pooled();
  r.nmse_mean = nmse_mean();
  r.nmse_centred_pooled = nmse_centred_pooled();
  r.nmse_centred_mean = nmse_centred_mean();
  r.nmse_shift_free_pooled = nmse_shift_free_pooled();
  r.max_abs_err = max_abs_err;
  r.cosine_mean = cosine_mean();
  std::vector<float> sorted = rel_err;
  std::sort(sorted.begin(), sorted.end());
  constexpr double kP50 = 0.50, kP95 = 0.95, kP99 = 0.99;
  r.rel_err_p50 = percentile_of_sorted(sorted.data(), sorted.size(), kP50);
  r.rel_err_p95 = percentile_of_sorted(sorted.data(), sorted.size(), kP95);
  r.rel_err_p99 = percentile_of_sorted(sorted.data(), sorted.size(), kP99);
  r.rel_err_max = sorted.empty() ? 0.0 : static_cast<double>(sorted.back());
  return r;
}

}  // namespace tq::metrics
