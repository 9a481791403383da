#pragma once
// Scalar (per-coordinate) quantizer codebooks and the Lloyd-Max solver for analytic laws.
//
// A codebook with b bits has K = 2^b sorted centroids c_0 < ... < c_{K-1} and K - 1 decision
// boundaries t_i = (c_i + c_{i+1}) / 2 (nearest-centroid cells). encode() returns the index of
// the cell holding x, found by a branchless binary search over the boundaries (b comparisons;
// never a distance matrix); decode() is a table lookup.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tq {

struct ScalarCodebook {
  int bits = 0;
  std::vector<float> centroids;   ///< sorted, 2^bits entries
  std::vector<float> boundaries;  ///< 2^bits - 1 midpoints between consecutive centroids
  double distortion = 0.0;        ///< E[(x - Q(x))^2] under the design law (per coordinate)
  std::string law;                ///< description of the design law, e.g. "beta(d=128)"

  size_t size() const { return centroids.size(); }

  /// Rebuild boundaries as midpoints of the (sorted) centroids.
  void set_midpoint_boundaries();

  /// Cell index of x: the number of boundaries strictly below x (NaN -> 0).
  uint8_t encode(float x) const {
    // Branchless binary search: after the loop, idx = #{i : boundaries[i] < x}. The probe
    // boundaries[idx + step - 1] never exceeds index K - 2.
    const float* b = boundaries.data();
    size_t idx = 0;
    for (size_t step = centroids.size() / 2; step > 0; step /= 2) idx += (x > b[idx + step - 1]) ? step : 0;
    return static_cast<uint8_t>(idx);
  }
  float decode(uint8_t code) const { return centroids[code]; }

  void encode(const float* x, uint8_t* codes, size_t n) const;
  void decode(const uint8_t* codes, float* out, size_t n) const;
};

/// The exact law of one coordinate of a uniform random unit vector in R^d (d >= 2):
/// density f(x) = C (1 - x^2)^((d-3)/2) on [-1, 1], C = Gamma(d/2) / (sqrt(pi) Gamma((d-1)/2)).
/// Returns the memoised Lloyd-Max (MSE-optimal) codebook with `bits` in 1..8. Thread-safe.
const ScalarCodebook& lloyd_max_sphere(size_t d, int bits);

/// The Lloyd-Max codebook of N(0, sigma^2), bits in 1..8. Memoised, thread-safe.
const ScalarCodebook& lloyd_max_gaussian(double sigma, int bits);

/// Diagnostics of one solve (not memoised): iterations used and the final max centroid move.
struct LloydMaxStats {
  int newton_steps = 0;
  int lloyd_steps = 0;
  double final_move = 0.0;  ///< max |G(c) - c| of one Lloyd iteration at the solution
};
ScalarCodebook solve_lloyd_max_sphere(size_t d, int bits, LloydMaxStats* stats = nullptr);
ScalarCodebook solve_lloyd_max_gaussian(double sigma, int bits, LloydMaxStats* stats = nullptr);

/// Exact per-coordinate distortion E[(x - Q(x))^2] of any sorted codebook (using its stored
/// boundaries) under the sphere law of dimension d / under N(0, sigma^2). Closed forms, no sampling.
double sphere_law_distortion(size_t d, const ScalarCodebook& cb);
double gaussian_law_distortion(double sigma, const ScalarCodebook& cb);

}  // namespace tq
