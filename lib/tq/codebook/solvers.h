#pragma once
// Codebook solvers beyond the analytic Lloyd-Max of scalar_codebook.h (docs/codebooks.md):
//
//  * SortedSamples + lloyd_samples: Lloyd-Max on a sample set, i.e. exact 1-D k-means. The
//    samples are sorted once and prefix sums of x and x^2 are kept, so every Lloyd iteration
//    and every MSE evaluation costs O(K log n) (a binary search per boundary), not O(n K).
//  * fuzzy_cmeans: fuzzy C-means with deterministic temperature annealing (DSQ-style soft
//    assignment w_ik ∝ exp(-(x_i - c_k)^2 / T)); each stage iterates c_k = Σ w_ik x_i / Σ w_ik.
//    As T -> 0 the weights become the nearest-centroid indicator and the update is Lloyd's.
//  * cma_es: a compact (mu/mu_w, lambda)-CMA-ES (Hansen's tutorial, arXiv:1604.00772) on the
//    sorted centroid vector, seeded with tq::Rng; it evaluates its start point first and always
//    returns the best point ever evaluated, so it is never worse than the start.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tq/codebook/scalar_codebook.h"

namespace tq::codebook {

/// Build a codebook from centroids (sorted here; boundaries = midpoints). Throws tq::Error when
/// the count is not 2^bits or a centroid is not finite.
ScalarCodebook make_codebook(std::vector<double> centroids, int bits);

/// Centroids as doubles.
std::vector<double> centroids_of(const ScalarCodebook& cb);

/// A sorted sample set with prefix sums (long double) of x and x^2.
class SortedSamples {
 public:
  /// Sorts `x`. Throws tq::Error when empty or a value is not finite.
  explicit SortedSamples(std::vector<double> x);
  size_t size() const { return x_.size(); }
  const std::vector<double>& values() const { return x_; }
  /// Number of samples <= t.
  size_t rank(double t) const;
  double sum(size_t a, size_t b) const { return static_cast<double>(s1_[b] - s1_[a]); }
  double mean_sq() const { return static_cast<double>(s2_.back()) / static_cast<double>(x_.size()); }
  /// Mean over samples of (x - Q(x))^2 for the codebook's centroids and boundaries (x on a
  /// boundary goes to the lower cell, as ScalarCodebook::encode does).
  double mse(const ScalarCodebook& cb) const;
  /// The same for sorted centroids with midpoint boundaries.
  double mse(const std::vector<double>& centroids) const;
  /// Evenly spaced order statistics, at most m of them (all when size() <= m).
  std::vector<double> thin(size_t m) const;

 private:
  double cells_mse(const std::vector<double>& c, const std::vector<double>& b) const;
  std::vector<double> x_;
  std::vector<long double> s1_, s2_;
};

/// Diagnostics shared by the solvers.
struct SolveStats {
  int iterations = 0;               ///< Lloyd / fuzzy fixed-point iterations, CMA-ES generations
  long evaluations = 0;             ///< objective evaluations (CMA-ES)
  std::vector<double> trajectory;   ///< objective after each iteration / stage / generation
  bool converged = false;
  double seconds = 0.0;
};

/// Quantile initialisation: the K sample quantiles at (i + 1/2) / K.
std::vector<double> quantile_init(const SortedSamples& s, int bits);

/// Lloyd-Max (exact 1-D k-means) on samples from `init` (sorted, 2^bits values). Iterates until
/// the partition stops changing (an exact fixed point) or max_iterations. Empty cells keep their
/// centroid. Trajectory: MSE after each iteration, recorded every `record_every` iterations.
std::vector<double> lloyd_samples(const SortedSamples& s, std::vector<double> init, SolveStats* stats = nullptr,
                                  long max_iterations = 1000000, int record_every = 1);

struct FuzzyOptions {
  double t0 = 0.5;        ///< first temperature, relative to the squared mean centroid spacing
  double t_min = 1e-6;    ///< last temperature (same units)
  double cooling = 0.5;   ///< T <- cooling * T between stages (0 < cooling < 1)
  int inner = 100;        ///< fixed-point iterations per stage (stops early when converged)
  double tol = 1e-9;      ///< stage convergence: max centroid move < tol * RMS(x)
  std::function<void(int stage, int n_stages, double temperature)> progress;
};

/// Fuzzy C-means with annealing on samples `x` (unit weights) from `init`. The soft weights of a
/// sample are computed only for centroids within 40 T (in squared distance) of its nearest one
/// (the rest are below e^-40 of the largest); samples farther than 20 T / (c_{i+1} - c_i) from
/// every boundary are assigned hard through prefix sums, so a step costs O(K log n) plus the
/// samples near boundaries. Returns sorted centroids. Trajectory: hard-assignment
/// MSE (on `x`) after each stage.
std::vector<double> fuzzy_cmeans(const std::vector<double>& x, std::vector<double> init, const FuzzyOptions& opt,
                                 SolveStats* stats = nullptr);

/// One soft update at temperature T in absolute units (exposed for tests): returns new centroids.
std::vector<double> fuzzy_step(const std::vector<double>& x, const std::vector<double>& c, double temperature);

struct CmaOptions {
  uint64_t seed = 0;
  int max_generations = 200;
  long max_evaluations = 0;  ///< 0 = no limit beyond generations
  int lambda = 0;            ///< population; 0 = 4 + floor(3 ln n)
  double sigma0 = 0.1;       ///< initial step, relative to the mean spacing of the start centroids
  double tol_fun = 0.0;      ///< stop when the generation's best-worst spread < tol_fun * |best|; 0 = never
  std::function<void(int generation, double best)> progress;
};

/// Minimise f over sorted centroid vectors starting at x0 (sorted). f receives sorted vectors.
/// Returns the best point evaluated (x0 included), so f(result) <= f(x0).
std::vector<double> cma_es(const std::function<double(const std::vector<double>&)>& f, const std::vector<double>& x0,
                           const CmaOptions& opt, SolveStats* stats = nullptr);

}  // namespace tq::codebook
