// Lloyd-Max quantizers for two symmetric laws, solved exactly from closed forms.
//
// Laws (both symmetric about 0, so only the positive half is solved and mirrored):
//
// (a) Sphere law: one coordinate x of a uniform random unit vector in R^d, d >= 2,
//       f(x) = C (1 - x^2)^beta on [-1, 1],  beta = (d-3)/2,  a' = (d-1)/2 = beta + 1,
//       C = Gamma(d/2) / (sqrt(pi) Gamma((d-1)/2)).
//     With v = x^2 (x >= 0), dx = dv / (2 sqrt v), the positive half becomes Beta(1/2, a'):
//       P(a < x < b)     = 1/2 [I_{b^2}(1/2, a') - I_{a^2}(1/2, a')]          (I: regularized
//                                                                           incomplete beta)
//       int_a^b x f      = C [(1-a^2)^a' - (1-b^2)^a'] / (2 a')             (w = 1 - x^2)
//       int_a^b x^2 f    = (C/2) B(3/2, a') [I_{b^2}(3/2, a') - I_{a^2}(3/2, a')]
//                        = 1/(2d) [I_{b^2}(3/2, a') - I_{a^2}(3/2, a')]
//     using C B(1/2, a') = 1 (normalisation) and B(3/2, a') / B(1/2, a') = 1/(2 a' + 1) = 1/d.
//     Check: E[x^2] = 1/d, as it must for a unit vector's coordinate.
//
// (b) Gaussian N(0, s^2), phi its density:
//       P(a < x < b)  = 1/2 [erfc(a / (s sqrt 2)) - erfc(b / (s sqrt 2))]
//       int_a^b x phi = s^2 [phi(a) - phi(b)]
//       int_a^b x^2 phi = s^2 P(a < x < b) + s^2 [a phi(a) - b phi(b)]
//
// Lloyd-Max fixed point: boundaries t_i = (c_i + c_{i+1})/2, centroids c_i = E[x | cell i].
// Plain Lloyd iteration converges linearly with a rate near 1 - O(4^-b), far too slowly for 8
// bits, so we run Newton's method on F(c) = G(c) - c, G the Lloyd map. G_i depends only on the
// cell edges lo_i, hi_i, with
//     dG_i/dhi = f(hi) (hi - G_i) / P_i,   dG_i/dlo = f(lo) (G_i - lo) / P_i,
// and each interior edge is the mean of two neighbouring centroids, so the Jacobian of G is
// tridiagonal and each Newton step is a Thomas solve. A step is accepted only if it keeps the
// centroids ordered inside the support and reduces max |F|; otherwise it is halved, and after
// a few halvings a plain Lloyd step is taken. The fixed point is the same as Lloyd's; Newton
// only gets there faster. Convergence: max |G(c) - c| < 1e-9 * (std of the law), i.e. one
// more Lloyd iteration would move no centroid by more than that.
//
// Initial point: the asymptotic (Panter-Dite) optimum places centroids with density
// proportional to f^(1/3). For the Gaussian that is N(0, 3 s^2); for the sphere law it is the
// sphere law of dimension d' = (d + 6) / 3 (since (d'-3)/2 = (d-3)/6). Centroids start at the
// quantiles of that law.
#include <boost/math/special_functions/beta.hpp>
#include <boost/math/special_functions/erf.hpp>
#include <cmath>
#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <numbers>
#include <tuple>

#include <fmt/format.h>

#include "tq/codebook/scalar_codebook.h"
#include "tq/core/error.h"

namespace tq {

namespace {

constexpr int kMinBits = 1;
constexpr int kMaxBits = 8;
constexpr double kRelTol = 1e-9;          // convergence: max centroid move < kRelTol * std
constexpr long kMaxIterations = 1000000;  // safety cap; hitting it is an error
constexpr int kMaxHalvings = 8;           // Newton step halvings before falling back to Lloyd

/// I_{hi}(p, q) - I_{lo}(p, q) without cancellation when both are close to 1.
double ibeta_diff(double p, double q, double lo, double hi) {
  if (hi <= lo) return 0.0;
  const double ilo = boost::math::ibeta(p, q, lo);
  if (ilo > 0.5) return boost::math::ibetac(p, q, lo) - boost::math::ibetac(p, q, hi);
  return boost::math::ibeta(p, q, hi) - ilo;
}

/// A symmetric law restricted to x >= 0: the pieces the Lloyd-Max solver needs.
struct HalfLaw {
  virtual ~HalfLaw() = default;
  virtual double upper() const = 0;                   // end of the support (1 or +inf)
  virtual double stddev() const = 0;                  // sqrt(E[x^2])
  virtual double pdf(double x) const = 0;             // f(x)
  virtual double mass(double a, double b) const = 0;  // P(a < x < b), 0 <= a < b
  virtual double m1(double a, double b) const = 0;    // int_a^b x f(x) dx
  virtual double m2(double a, double b) const = 0;    // int_a^b x^2 f(x) dx
  virtual double init_point(double q) const = 0;      // f^(1/3)-law point with half-mass fraction q
};

struct SphereLaw final : HalfLaw {
  explicit SphereLaw(double d_) : d(d_), a(0.5 * (d_ - 1.0)) {
    log_c = std::lgamma(0.5 * d) - std::lgamma(0.5 * (d - 1.0)) - 0.5 * std::log(std::numbers::pi);
  }
  double d, a, log_c;
  double upper() const override { return 1.0; }
  double stddev() const override { return 1.0 / std::sqrt(d); }
  double pdf(double x) const override {
    if (x >= 1.0) return 0.0;
    return std::exp(log_c + (a - 1.0) * std::log1p(-x * x));
  }
  double mass(double lo, double hi) const override { return 0.5 * ibeta_diff(0.5, a, lo * lo, std::min(hi * hi, 1.0)); }
  double m1(double lo, double hi) const override {
    // C [(1-lo^2)^a - (1-hi^2)^a] / (2a) = C e^A (-expm1(B - A)) / (2a), A, B the logs.
    const double la = a * std::log1p(-lo * lo);
    if (hi >= 1.0) return std::exp(log_c + la) / (2.0 * a);
    const double lb = a * std::log1p(-hi * hi);
    return -std::exp(log_c + la) * std::expm1(lb - la) / (2.0 * a);
  }
  double m2(double lo, double hi) const override { return ibeta_diff(1.5, a, lo * lo, std::min(hi * hi, 1.0)) / (2.0 * d); }
  double init_point(double q) const override {
    const double a3 = 0.5 * ((d + 6.0) / 3.0 - 1.0);
    return std::sqrt(boost::math::ibeta_inv(0.5, a3, q));
  }
};

struct GaussianLaw final : HalfLaw {
  explicit GaussianLaw(double s) : sigma(s) {}
  double sigma;
  double upper() const override { return std::numeric_limits<double>::infinity(); }
  double stddev() const override { return sigma; }
  double pdf(double x) const override {
    if (std::isinf(x)) return 0.0;
    const double z = x / sigma;
    return std::exp(-0.5 * z * z) / (sigma * std::sqrt(2.0 * std::numbers::pi));
  }
  double mass(double lo, double hi) const override {
    const double k = 1.0 / (sigma * std::numbers::sqrt2);
    const double ehi = std::isinf(hi) ? 0.0 : std::erfc(hi * k);
    return 0.5 * (std::erfc(lo * k) - ehi);
  }
  double m1(double lo, double hi) const override { return sigma * sigma * (pdf(lo) - pdf(hi)); }
  double m2(double lo, double hi) const override {
    const double hi_term = std::isinf(hi) ? 0.0 : hi * pdf(hi);
    return sigma * sigma * (mass(lo, hi) + lo * pdf(lo) - hi_term);
  }
  double init_point(double q) const override {
    return std::sqrt(3.0) * sigma * std::numbers::sqrt2 * boost::math::erf_inv(q);
  }
};

/// Cell edges of the positive half for centroids c (sorted, positive).
void cell_edges(const HalfLaw& law, const std::vector<double>& c, size_t i, double& lo, double& hi) {
  const size_t m = c.size();
  lo = (i == 0) ? 0.0 : 0.5 * (c[i - 1] + c[i]);
  hi = (i + 1 == m) ? law.upper() : 0.5 * (c[i] + c[i + 1]);
}

/// The Lloyd map G(c): conditional means of the cells. Returns max |G(c) - c|.
double lloyd_map(const HalfLaw& law, const std::vector<double>& c, std::vector<double>& g, std::vector<double>& p) {
  const size_t m = c.size();
  g.resize(m);
  p.resize(m);
  double move = 0.0;
  for (size_t i = 0; i < m; ++i) {
    double lo, hi;
    cell_edges(law, c, i, lo, hi);
    p[i] = law.mass(lo, hi);
    g[i] = p[i] > 0.0 ? law.m1(lo, hi) / p[i] : 0.5 * (lo + std::min(hi, law.upper()));
    move = std::max(move, std::abs(g[i] - c[i]));
  }
  return move;
}

bool valid_point(const HalfLaw& law, const std::vector<double>& c) {
  if (!(c[0] > 0.0)) return false;
  for (size_t i = 1; i < c.size(); ++i)
    if (!(c[i] > c[i - 1])) return false;
  return c.back() < law.upper() && std::isfinite(c.back());
}

/// Newton step direction: solve (I - J_G) delta = G(c) - c (tridiagonal, Thomas algorithm).
std::vector<double> newton_direction(const HalfLaw& law, const std::vector<double>& c, const std::vector<double>& g,
                                     const std::vector<double>& p) {
  const size_t m = c.size();
  std::vector<double> sub(m, 0.0), diag(m, 1.0), sup(m, 0.0), rhs(m);
  for (size_t i = 0; i < m; ++i) {
    double lo, hi;
    cell_edges(law, c, i, lo, hi);
    const double a = (i > 0 && p[i] > 0.0) ? law.pdf(lo) * (g[i] - lo) / p[i] : 0.0;
    const double b = (i + 1 < m && p[i] > 0.0) ? law.pdf(hi) * (hi - g[i]) / p[i] : 0.0;
    sub[i] = -0.5 * a;
    sup[i] = -0.5 * b;
    diag[i] = 1.0 - 0.5 * (a + b);
    rhs[i] = g[i] - c[i];
  }
  for (size_t i = 1; i < m; ++i) {  // forward elimination
    const double w = sub[i] / diag[i - 1];
    diag[i] -= w * sup[i - 1];
    rhs[i] -= w * rhs[i - 1];
  }
  std::vector<double> delta(m);
  delta[m - 1] = rhs[m - 1] / diag[m - 1];
  for (size_t i = m - 1; i-- > 0;) delta[i] = (rhs[i] - sup[i] * delta[i + 1]) / diag[i];
  return delta;
}

/// Solve the positive half (m = 2^(bits-1) centroids), build the full symmetric codebook.
ScalarCodebook solve(const HalfLaw& law, int bits, const std::string& law_name, LloydMaxStats* stats) {
  if (bits < kMinBits || bits > kMaxBits)
    throw UsageError(fmt::format("Lloyd-Max codebook: bits must be in {}..{}, not {}", kMinBits, kMaxBits, bits));
  const size_t m = size_t{1} << (bits - 1);
  const double tol = kRelTol * law.stddev();
  std::vector<double> c(m), g, p, trial, gt, pt;
  for (size_t i = 0; i < m; ++i) c[i] = law.init_point((static_cast<double>(i) + 0.5) / static_cast<double>(m));
  if (!valid_point(law, c)) {  // fall back to an even spread (only for degenerate tiny d)
    for (size_t i = 0; i < m; ++i) c[i] = (static_cast<double>(i) + 0.5) / static_cast<double>(m) * std::min(law.upper(), 4.0 * law.stddev());
  }
  LloydMaxStats st;
  double move = lloyd_map(law, c, g, p);
  long iterations = 0;
  while (move >= tol) {
    if (++iterations > kMaxIterations)
      throw Error(fmt::format("Lloyd-Max solver for {} at {} bits did not converge in {} iterations", law_name, bits,
                              kMaxIterations));
    const std::vector<double> delta = newton_direction(law, c, g, p);
    bool accepted = false;
    double lambda = 1.0;
    for (int h = 0; h <= kMaxHalvings && !accepted; ++h, lambda *= 0.5) {
      trial = c;
      for (size_t i = 0; i < m; ++i) trial[i] += lambda * delta[i];
      if (!valid_point(law, trial)) continue;
      const double tmove = lloyd_map(law, trial, gt, pt);
      if (tmove < move) {
        c.swap(trial);
        g.swap(gt);
        p.swap(pt);
        move = tmove;
        accepted = true;
      }
    }
    if (accepted) {
      ++st.newton_steps;
    } else {  // plain Lloyd step (always valid: conditional means stay inside ordered cells)
      c = g;
      move = lloyd_map(law, c, g, p);
      ++st.lloyd_steps;
    }
  }
  st.final_move = move;
  if (stats) *stats = st;

  ScalarCodebook cb;
  cb.bits = bits;
  cb.law = law_name;
  const size_t k = 2 * m;
  cb.centroids.resize(k);
  for (size_t i = 0; i < m; ++i) {
    const auto v = static_cast<float>(c[i]);
    cb.centroids[m + i] = v;
    cb.centroids[m - 1 - i] = -v;
  }
  cb.set_midpoint_boundaries();
  cb.boundaries[m - 1] = 0.0f;  // exact symmetry
  // Exact distortion of the stored (float) quantizer: 2 * sum over positive cells of
  // int (x - c)^2 f = m2 - 2 c m1 + c^2 P.
  double dist = 0.0;
  for (size_t i = 0; i < m; ++i) {
    const double lo = static_cast<double>(cb.boundaries[m - 1 + i]);
    const double hi = (i + 1 == m) ? law.upper() : static_cast<double>(cb.boundaries[m + i]);
    const double ci = static_cast<double>(cb.centroids[m + i]);
    dist += law.m2(lo, hi) - 2.0 * ci * law.m1(lo, hi) + ci * ci * law.mass(lo, hi);
  }
  cb.distortion = 2.0 * dist;
  return cb;
}

template <class Key>
const ScalarCodebook& memoised(std::map<Key, std::unique_ptr<ScalarCodebook>>& cache, std::mutex& mu, const Key& key,
                               const std::function<ScalarCodebook()>& make) {
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, std::make_unique<ScalarCodebook>(make())).first;
  return *it->second;
}

}  // namespace

ScalarCodebook solve_lloyd_max_sphere(size_t d, int bits, LloydMaxStats* stats) {
  if (d < 2) throw UsageError(fmt::format("Lloyd-Max codebook for the unit-sphere law needs d >= 2, not {}", d));
  return solve(SphereLaw(static_cast<double>(d)), bits, fmt::format("sphere(d={})", d), stats);
}

ScalarCodebook solve_lloyd_max_gaussian(double sigma, int bits, LloydMaxStats* stats) {
  if (!(sigma > 0.0) || !std::isfinite(sigma))
    throw UsageError(fmt::format("Lloyd-Max codebook for N(0, s^2) needs a positive finite s, not {}", sigma));
  return solve(GaussianLaw(sigma), bits, fmt::format("gaussian(sigma={})", sigma), stats);
}

namespace {

/// Exact E[(x - Q(x))^2] of an arbitrary sorted codebook (its own boundaries) under a symmetric
/// law, splitting every cell at 0 and mirroring negative pieces onto the positive half.
double codebook_distortion(const HalfLaw& law, const ScalarCodebook& cb) {
  const size_t k = cb.size();
  const double up = law.upper();
  // int_a^b (x - c)^2 f(x) dx for a < b on the whole line
  const auto piece = [&](double a, double b, double c) {
    double total = 0.0;
    if (a < 0.0) {  // negative part [a, min(b, 0)] mirrored to [-min(b,0), -a], x -> -x
      const double lo = -std::min(b, 0.0), hi = std::min(-a, up);
      if (hi > lo) total += law.m2(lo, hi) + 2.0 * c * law.m1(lo, hi) + c * c * law.mass(lo, hi);
    }
    if (b > 0.0) {
      const double lo = std::max(a, 0.0), hi = std::min(b, up);
      if (hi > lo) total += law.m2(lo, hi) - 2.0 * c * law.m1(lo, hi) + c * c * law.mass(lo, hi);
    }
    return total;
  };
  double dist = 0.0;
  for (size_t i = 0; i < k; ++i) {
    const double lo = i == 0 ? -up : static_cast<double>(cb.boundaries[i - 1]);
    const double hi = i + 1 == k ? up : static_cast<double>(cb.boundaries[i]);
    dist += piece(lo, hi, static_cast<double>(cb.centroids[i]));
  }
  return dist;
}

}  // namespace

double sphere_law_distortion(size_t d, const ScalarCodebook& cb) {
  if (d < 2) throw UsageError(fmt::format("sphere law needs d >= 2, not {}", d));
  return codebook_distortion(SphereLaw(static_cast<double>(d)), cb);
}

double gaussian_law_distortion(double sigma, const ScalarCodebook& cb) {
  if (!(sigma > 0.0) || !std::isfinite(sigma)) throw UsageError(fmt::format("N(0, s^2) needs a positive finite s, not {}", sigma));
  return codebook_distortion(GaussianLaw(sigma), cb);
}

const ScalarCodebook& lloyd_max_sphere(size_t d, int bits) {
  static std::mutex mu;
  static std::map<std::pair<size_t, int>, std::unique_ptr<ScalarCodebook>> cache;
  return memoised<std::pair<size_t, int>>(cache, mu, {d, bits}, [&] { return solve_lloyd_max_sphere(d, bits); });
}

const ScalarCodebook& lloyd_max_gaussian(double sigma, int bits) {
  static std::mutex mu;
  static std::map<std::pair<uint64_t, int>, std::unique_ptr<ScalarCodebook>> cache;
  uint64_t key = 0;
  std::memcpy(&key, &sigma, sizeof key);
  return memoised<std::pair<uint64_t, int>>(cache, mu, {key, bits}, [&] { return solve_lloyd_max_gaussian(sigma, bits); });
}

}  // namespace tq
