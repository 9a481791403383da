#pragma once
// The law of one coordinate of a uniform random unit vector in R^d, and the Kolmogorov–Smirnov
// distance of a sample from it.
//
// If u is uniform on the sphere S^(d−1) then each coordinate y = u_i has density
// ∝ (1 − y²)^((d−3)/2) on [−1, 1], i.e. (1 + y)/2 ~ Beta((d−1)/2, (d−1)/2). A Haar-random
// rotation R makes Rx/‖x‖ uniform on the sphere for every fixed x, so after rotation the
// coordinates of normalised KV vectors follow this law exactly when the vectors' directions are
// themselves spread out, and the KS distance measures how far a real head is from that ideal
// (what TurboQuant-style scalar codebooks assume).
#include <cstddef>
#include <vector>

namespace tq::stats {

/// P(y ≤ x) for one coordinate of a uniform unit vector in R^d (d ≥ 2), via the regularised
/// incomplete beta function I_{(1+x)/2}((d−1)/2, (d−1)/2) (boost::math::ibeta).
double sphere_coordinate_cdf(double x, size_t d);

/// Exact one-sample KS statistic sup_x |F_n(x) − F(x)| of `samples` against
/// sphere_coordinate_cdf(·, d): with the sample sorted, max over i of
/// max(i/n − F(x_(i)), F(x_(i)) − (i−1)/n). Sorts `samples` in place. NaN when empty or d < 2.
double ks_distance_sphere(std::vector<double>& samples, size_t d);

}  // namespace tq::stats
