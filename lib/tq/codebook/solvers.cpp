// Sample Lloyd-Max, fuzzy C-means with annealing and CMA-ES (see solvers.h).
//
// Why our own CMA-ES rather than pagmo's (libpagmo-dev): the problem has at most 256 variables,
// the whole algorithm is ~100 lines over Eigen (already a dependency), and we need its random
// numbers to come from tq::Rng seeded by the run seed so a solve is byte-identical on every
// machine and standard library; pagmo draws from std::mt19937 through std::normal_distribution,
// whose output is implementation-defined, and would add a large shared library (plus TBB and
// Boost.Serialization) to a toolkit that otherwise links only header libraries for numerics.
#include "tq/codebook/solvers.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>

#include <Eigen/Dense>
#include <fmt/format.h>

#include "tq/core/error.h"
#include "tq/core/rng.h"

namespace tq::codebook {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<double> midpoints(const std::vector<double>& c) {
  std::vector<double> b(c.size() > 0 ? c.size() - 1 : 0);
  for (size_t i = 0; i + 1 < c.size(); ++i) b[i] = 0.5 * (c[i] + c[i + 1]);
  return b;
}


}  // namespace

ScalarCodebook make_codebook(std::vector<double> centroids, int bits) {
  if (bits < 1 || bits > 8) throw Error(fmt::format("codebook: bits must be in 1..8, not {}", bits));
  if (centroids.size() != (size_t{1} << bits))
    throw Error(fmt::format("codebook: {} centroids for {} bits (need {})", centroids.size(), bits, size_t{1} << bits));
  for (double v : centroids)
    if (!std::isfinite(v)) throw Error("codebook: a centroid is not finite");
  std::sort(centroids.begin(), centroids.end());
  ScalarCodebook cb;
  cb.bits = bits;
  std::vector<float> c(centroids.size());
  for (size_t i = 0; i < centroids.size(); ++i) c[i] = static_cast<float>(centroids[i]);
  cb.centroids = std::move(c);
  cb.set_midpoint_boundaries();
  return cb;
}

std::vector<double> centroids_of(const ScalarCodebook& cb) {
  std::vector<double> c(cb.centroids.size());
  for (size_t i = 0; i < c.size(); ++i) c[i] = static_cast<double>(cb.centroids[i]);
  return c;
}

// ---- SortedSamples ----------------------------------------------------------------------------

SortedSamples::SortedSamples(std::vector<double> x) : x_(std::move(x)) {
  if (x_.empty()) throw Error("codebook: no samples");
  for (double v : x_)
    if (!std::isfinite(v)) throw Error("codebook: a sample is not finite");
  std::sort(x_.begin(), x_.end());
  s1_.assign(x_.size() + 1, 0.0L);
  s2_.assign(x_.size() + 1, 0.0L);
  for (size_t i = 0; i < x_.size(); ++i) {
    const auto v = static_cast<long double>(x_[i]);
    s1_[i + 1] = s1_[i] + v;
    s2_[i + 1] = s2_[i] + v * v;
  }
}

size_t SortedSamples::rank(double t) const {
  return static_cast<size_t>(std::upper_bound(x_.begin(), x_.end(), t) - x_.begin());
}

double SortedSamples::cells_mse(const std::vector<double>& c, const std::vector<double>& b) const {
  long double total = 0.0L;
  size_t lo = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    const size_t hi = i + 1 < c.size() ? std::max(lo, rank(b[i])) : x_.size();
    const auto n = static_cast<long double>(hi - lo);
    const auto ci = static_cast<long double>(c[i]);
    total += (s2_[hi] - s2_[lo]) - 2.0L * ci * (s1_[hi] - s1_[lo]) + ci * ci * n;
    lo = hi;
  }
  return std::max(0.0, static_cast<double>(total / static_cast<long double>(x_.size())));
}

double SortedSamples::mse(const ScalarCodebook& cb) const {
  std::vector<double> c(cb.centroids.size()), b(cb.boundaries.size());
  for (size_t i = 0; i < c.size(); ++i) c[i] = static_cast<double>(cb.centroids[i]);
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<double>(cb.boundaries[i]);
  return cells_mse(c, b);
}

double SortedSamples::mse(const std::vector<double>& centroids) const { return cells_mse(centroids, midpoints(centroids)); }

std::vector<double> SortedSamples::thin(size_t m) const {
  if (x_.size() <= m || m == 0) return x_;
  std::vector<double> out(m);
  for (size_t i = 0; i < m; ++i) out[i] = x_[(2 * i + 1) * x_.size() / (2 * m)];
  return out;
}

std::vector<double> quantile_init(const SortedSamples& s, int bits) {
  const size_t k = size_t{1} << bits;
  std::vector<double> c(k);
  const auto& x = s.values();
  for (size_t i = 0; i < k; ++i) c[i] = x[std::min(x.size() - 1, (2 * i + 1) * x.size() / (2 * k))];
  return c;
}

// ---- Lloyd-Max on samples ---------------------------------------------------------------------

std::vector<double> lloyd_samples(const SortedSamples& s, std::vector<double> c, SolveStats* stats, long max_iterations,
                                  int record_every) {
  const auto t0 = std::chrono::steady_clock::now();
  std::sort(c.begin(), c.end());
  const size_t k = c.size();
  SolveStats st;
  std::vector<size_t> ranks(k), prev(k, static_cast<size_t>(-1));
  for (long it = 0; it < max_iterations; ++it) {
    const std::vector<double> b = midpoints(c);
    size_t lo = 0;
    for (size_t i = 0; i < k; ++i) {
      ranks[i] = i + 1 < k ? std::max(lo, s.rank(b[i])) : s.size();
      lo = ranks[i];
    }
    if (ranks == prev) {
      st.converged = true;
      break;
    }
    prev = ranks;
    lo = 0;
    for (size_t i = 0; i < k; ++i) {
      const size_t hi = ranks[i];
      if (hi > lo) c[i] = s.sum(lo, hi) / static_cast<double>(hi - lo);
      lo = hi;
    }
    std::sort(c.begin(), c.end());
    ++st.iterations;
    if (record_every > 0 && st.iterations % record_every == 0) st.trajectory.push_back(s.mse(c));
  }
  if (st.trajectory.empty() || record_every <= 0 || st.iterations % record_every != 0) st.trajectory.push_back(s.mse(c));
  st.seconds = seconds_since(t0);
  if (stats) *stats = st;
  return c;
}

// ---- fuzzy C-means ----------------------------------------------------------------------------

namespace {

/// One soft update on sorted samples. With b_i the midpoint of c_i and c_{i+1},
/// (x - c_{i+1})^2 - (x - c_i)^2 = 2 (c_{i+1} - c_i)(b_i - x), so a neighbour's weight is below
/// e^-40 of the nearest centroid's unless |x - b_i| < 20 T / (c_{i+1} - c_i). Samples outside those
/// bands are assigned hard through the prefix sums (O(K log n)); only the samples inside a band are
/// weighted one by one (over every centroid within 40 T of their nearest).
std::vector<double> fuzzy_step_sorted(const SortedSamples& s, const std::vector<double>& c, double temperature) {
  const size_t k = c.size();
  const std::vector<double> b = midpoints(c);
  const auto& x = s.values();
  std::vector<long double> num(k, 0.0L), den(k, 0.0L);
  // hard part over all samples
  size_t lo = 0;
  for (size_t i = 0; i < k; ++i) {
    const size_t hi = i + 1 < k ? std::max(lo, s.rank(b[i])) : x.size();
    num[i] += static_cast<long double>(s.sum(lo, hi));
    den[i] += static_cast<long double>(hi - lo);
    lo = hi;
  }
  if (temperature > 0.0 && k > 1) {
    std::vector<std::pair<size_t, size_t>> bands;
    for (size_t i = 0; i + 1 < k; ++i) {
      const double dc = c[i + 1] - c[i];
      const double w = dc > 0.0 ? 20.0 * temperature / dc : std::numeric_limits<double>::infinity();
      const size_t a = static_cast<size_t>(std::lower_bound(x.begin(), x.end(), b[i] - w) - x.begin());
      const size_t e = static_cast<size_t>(std::upper_bound(x.begin(), x.end(), b[i] + w) - x.begin());
      if (e > a) bands.emplace_back(a, e);
    }
    std::sort(bands.begin(), bands.end());
    std::vector<std::pair<size_t, size_t>> merged;
    for (const auto& r : bands) {
      if (!merged.empty() && r.first <= merged.back().second) {
        merged.back().second = std::max(merged.back().second, r.second);
      } else {
        merged.push_back(r);
      }
    }
    const double cut = 40.0 * temperature;
    std::vector<double> w(k);
    for (const auto& [a, e] : merged) {
      for (size_t i = a; i < e; ++i) {
        const double xi = x[i];
        // the hard cell of xi (x on a boundary goes to the lower cell, as in the hard part)
        const size_t j = static_cast<size_t>(std::lower_bound(b.begin(), b.end(), xi) - b.begin());
        num[j] -= static_cast<long double>(xi);
        den[j] -= 1.0L;
        const double d0 = (xi - c[j]) * (xi - c[j]);
        size_t l = j, h = j;
        while (l > 0 && (xi - c[l - 1]) * (xi - c[l - 1]) - d0 < cut) --l;
        while (h + 1 < k && (xi - c[h + 1]) * (xi - c[h + 1]) - d0 < cut) ++h;
        double z = 0.0;
        for (size_t m = l; m <= h; ++m) {
          w[m] = std::exp(-((xi - c[m]) * (xi - c[m]) - d0) / temperature);
          z += w[m];
        }
        for (size_t m = l; m <= h; ++m) {
          num[m] += static_cast<long double>(w[m] / z * xi);
          den[m] += static_cast<long double>(w[m] / z);
        }
      }
    }
  }
  std::vector<double> out(c);
  for (size_t m = 0; m < k; ++m)
    if (den[m] > 1e-300L) out[m] = static_cast<double>(num[m] / den[m]);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::vector<double> fuzzy_step(const std::vector<double>& x, const std::vector<double>& c, double temperature) {
  return fuzzy_step_sorted(SortedSamples(x), c, temperature);
}

std::vector<double> fuzzy_cmeans(const std::vector<double>& x, std::vector<double> c, const FuzzyOptions& opt,
                                 SolveStats* stats) {
  const auto t0 = std::chrono::steady_clock::now();
  if (!(opt.cooling > 0.0 && opt.cooling < 1.0)) throw UsageError(fmt::format("fuzzy: cooling must be in (0, 1), not {}", opt.cooling));
  if (!(opt.t0 > 0.0) || !(opt.t_min > 0.0) || opt.t_min > opt.t0)
    throw UsageError(fmt::format("fuzzy: need 0 < t_min <= t0 (got t0={}, t_min={})", opt.t0, opt.t_min));
  std::sort(c.begin(), c.end());
  const SortedSamples sorted(x);
  const double rms = std::sqrt(sorted.mean_sq());
  const double spacing = c.size() > 1 ? (c.back() - c.front()) / static_cast<double>(c.size() - 1) : rms;
  const double scale = spacing * spacing;
  const int n_stages = 1 + static_cast<int>(std::ceil(std::log(opt.t_min / opt.t0) / std::log(opt.cooling) - 1e-9));
  SolveStats st;
  double t = opt.t0;
  for (int stage = 0; stage < n_stages; ++stage, t *= opt.cooling) {
    if (opt.progress) opt.progress(stage, n_stages, t);
    const double temperature = std::max(t, opt.t_min) * scale;
    for (int it = 0; it < opt.inner; ++it) {
      std::vector<double> nc = fuzzy_step_sorted(sorted, c, temperature);
      double move = 0.0;
      for (size_t i = 0; i < c.size(); ++i) move = std::max(move, std::abs(nc[i] - c[i]));
      c.swap(nc);
      ++st.iterations;
      if (move < opt.tol * rms) break;
    }
    st.trajectory.push_back(sorted.mse(c));
  }
  st.converged = true;
  st.seconds = seconds_since(t0);
  if (stats) *stats = st;
  return c;
}

// ---- CMA-ES -----------------------------------------------------------------------------------

std::vector<double> cma_es(const std::function<double(const std::vector<double>&)>& f, const std::vector<double>& x0,
                           const CmaOptions& opt, SolveStats* stats) {
  using Eigen::MatrixXd;
  using Eigen::VectorXd;
  const auto t0 = std::chrono::steady_clock::now();
  const int n = static_cast<int>(x0.size());
  if (n < 1) throw Error("cma-es: empty start point");
  const double nd = static_cast<double>(n);
  const int lambda = opt.lambda > 0 ? opt.lambda : 4 + static_cast<int>(std::floor(3.0 * std::log(nd)));
  if (lambda < 2) throw UsageError(fmt::format("cma-es: population must be >= 2, not {}", lambda));
  const int mu = lambda / 2;
  VectorXd w(mu);
  for (int i = 0; i < mu; ++i) w[i] = std::log((static_cast<double>(lambda) + 1.0) / 2.0) - std::log(static_cast<double>(i + 1));
  w /= w.sum();
  const double mueff = 1.0 / w.squaredNorm();
  const double cc = (4.0 + mueff / nd) / (nd + 4.0 + 2.0 * mueff / nd);
  const double cs = (mueff + 2.0) / (nd + mueff + 5.0);
  const double c1 = 2.0 / ((nd + 1.3) * (nd + 1.3) + mueff);
  const double cmu = std::min(1.0 - c1, 2.0 * (mueff - 2.0 + 1.0 / mueff) / ((nd + 2.0) * (nd + 2.0) + mueff));
  const double damps = 1.0 + 2.0 * std::max(0.0, std::sqrt((mueff - 1.0) / (nd + 1.0)) - 1.0) + cs;
  const double chin = std::sqrt(nd) * (1.0 - 1.0 / (4.0 * nd) + 1.0 / (21.0 * nd * nd));

  std::vector<double> start(x0);
  std::sort(start.begin(), start.end());
  double spacing = n > 1 ? (start.back() - start.front()) / (nd - 1.0) : std::abs(start[0]);
  if (!(spacing > 0.0)) spacing = 1.0;
  double sigma = opt.sigma0 * spacing;

  VectorXd mean = Eigen::Map<const VectorXd>(start.data(), n);
  VectorXd pc = VectorXd::Zero(n), ps = VectorXd::Zero(n), diag = VectorXd::Ones(n);
  MatrixXd C = MatrixXd::Identity(n, n), B = MatrixXd::Identity(n, n), invsqrtC = MatrixXd::Identity(n, n);
  Rng rng(seed_combine(opt.seed, hash_tag("cma-es")));

  SolveStats st;
  std::vector<double> best = start;
  double fbest = f(start);
  st.evaluations = 1;
  st.trajectory.push_back(fbest);
  long eigen_at = 0;
  std::vector<VectorXd> xs(static_cast<size_t>(lambda));
  std::vector<double> fit(static_cast<size_t>(lambda));
  std::vector<int> order(static_cast<size_t>(lambda));
  std::vector<double> cand(static_cast<size_t>(n));
  for (int g = 1; g <= opt.max_generations; ++g) {
    if (opt.max_evaluations > 0 && st.evaluations + lambda > opt.max_evaluations) break;
    for (int k = 0; k < lambda; ++k) {
      VectorXd z(n);
      for (int i = 0; i < n; ++i) z[i] = rng.gaussian();
      VectorXd x = mean + sigma * (B * diag.cwiseProduct(z));
      for (int i = 0; i < n; ++i) cand[static_cast<size_t>(i)] = x[i];
      std::sort(cand.begin(), cand.end());  // repair: the objective depends on the sorted set only
      for (int i = 0; i < n; ++i) x[i] = cand[static_cast<size_t>(i)];
      xs[static_cast<size_t>(k)] = x;
      const double fk = f(cand);
      fit[static_cast<size_t>(k)] = std::isfinite(fk) ? fk : std::numeric_limits<double>::infinity();
      ++st.evaluations;
      if (fit[static_cast<size_t>(k)] < fbest) {
        fbest = fit[static_cast<size_t>(k)];
        best = cand;
      }
    }
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return fit[static_cast<size_t>(a)] < fit[static_cast<size_t>(b)]; });
    const VectorXd old = mean;
    mean = VectorXd::Zero(n);
    for (int i = 0; i < mu; ++i) mean += w[i] * xs[static_cast<size_t>(order[static_cast<size_t>(i)])];
    const VectorXd yw = (mean - old) / sigma;
    ps = (1.0 - cs) * ps + std::sqrt(cs * (2.0 - cs) * mueff) * (invsqrtC * yw);
    const double psn = ps.norm() / std::sqrt(1.0 - std::pow(1.0 - cs, 2.0 * g));
    const bool hsig = psn / chin < 1.4 + 2.0 / (nd + 1.0);
    pc = (1.0 - cc) * pc + (hsig ? std::sqrt(cc * (2.0 - cc) * mueff) : 0.0) * yw;
    MatrixXd rank_mu = MatrixXd::Zero(n, n);
    for (int i = 0; i < mu; ++i) {
      const VectorXd y = (xs[static_cast<size_t>(order[static_cast<size_t>(i)])] - old) / sigma;
      rank_mu.noalias() += w[i] * y * y.transpose();
    }
    C = (1.0 - c1 - cmu) * C + c1 * (pc * pc.transpose() + (hsig ? 0.0 : cc * (2.0 - cc)) * C) + cmu * rank_mu;
    sigma *= std::exp((cs / damps) * (ps.norm() / chin - 1.0));
    if (static_cast<double>(st.evaluations - eigen_at) > static_cast<double>(lambda) / (c1 + cmu) / nd / 10.0) {
      eigen_at = st.evaluations;
      C = 0.5 * (C + C.transpose().eval());
      Eigen::SelfAdjointEigenSolver<MatrixXd> es(C);
      B = es.eigenvectors();
      diag = es.eigenvalues().cwiseMax(1e-300).cwiseSqrt();
      invsqrtC = B * diag.cwiseInverse().asDiagonal() * B.transpose();
    }
    st.iterations = g;
    st.trajectory.push_back(fbest);
    if (opt.progress) opt.progress(g, fbest);
    const double spread = fit[static_cast<size_t>(order.back())] - fit[static_cast<size_t>(order.front())];
    if (opt.tol_fun > 0.0 && std::isfinite(spread) && spread <= opt.tol_fun * std::abs(fbest)) {
      st.converged = true;
      break;
    }
    if (!(sigma * diag.maxCoeff() > 1e-14 * spacing)) {  // the search has collapsed
      st.converged = true;
      break;
    }
  }
  st.seconds = seconds_since(t0);
  if (stats) *stats = st;
  return best;
}

}  // namespace tq::codebook
