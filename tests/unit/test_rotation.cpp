// Tests of lib/tq/rotation: orthogonality, inverse, determinism, Haar uniformity, mixing.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "codec_test_util.h"
#include "tq/core/error.h"
#include "tq/rotation/rotation.h"

namespace {
const size_t kDims[] = {1, 2, 7, 13, 64, 80, 96, 112, 128, 256};
}

TEST_CASE("rotation: orthogonal, exact inverse, in-place, for every dim") {
  for (const char* kind : {"haar", "hr", "id"}) {
    for (size_t d : kDims) {
      CAPTURE(kind);
      CAPTURE(d);
      const auto rot = tq::make_rotation(kind, d, 1234);
      CHECK(rot->dim() == d);
      CHECK(rot->name() == kind);
      // Apply to the d one-hot rows: the result is the matrix R^T (rows R e_i); check R R^T = I.
      std::vector<float> eye(d * d, 0.0f);
      for (size_t i = 0; i < d; ++i) eye[i * d + i] = 1.0f;
      std::vector<float> m(d * d);
      rot->forward(eye.data(), m.data(), d);
      double max_dev = 0;
      for (size_t i = 0; i < d; ++i)
        for (size_t j = 0; j < d; ++j) {
          double dot = 0;
          for (size_t k = 0; k < d; ++k) dot += static_cast<double>(m[i * d + k]) * static_cast<double>(m[j * d + k]);
          max_dev = std::max(max_dev, std::abs(dot - (i == j ? 1.0 : 0.0)));
        }
      CHECK(max_dev < 1e-5);
      // Random batch: norms kept, inverse(forward(x)) = x, in-place equals out-of-place.
      const size_t n = 17;
      const std::vector<float> x = tq::testing::gaussian_rows(n, d, 99 + d);
      std::vector<float> y(n * d), z(n * d);
      rot->forward(x.data(), y.data(), n);
      std::vector<float> y_inplace = x;
      rot->forward(y_inplace.data(), y_inplace.data(), n);
      CHECK(y_inplace == y);
      rot->inverse(y.data(), z.data(), n);
      double max_norm_err = 0, max_inv_err = 0;
      for (size_t t = 0; t < n; ++t) {
        double nx = 0, ny = 0;
        for (size_t i = 0; i < d; ++i) {
          nx += static_cast<double>(x[t * d + i]) * static_cast<double>(x[t * d + i]);
          ny += static_cast<double>(y[t * d + i]) * static_cast<double>(y[t * d + i]);
          max_inv_err = std::max(max_inv_err, std::abs(static_cast<double>(z[t * d + i] - x[t * d + i])));
        }
        max_norm_err = std::max(max_norm_err, std::abs(std::sqrt(ny) / std::sqrt(nx) - 1.0));
      }
      CHECK(max_norm_err < 1e-5);
      CHECK(max_inv_err < 1e-5);
      rot->inverse(y.data(), y.data(), n);
      CHECK(y == z);
    }
  }
}

TEST_CASE("rotation: deterministic in the seed; different seeds differ") {
  for (const char* kind : {"haar", "hr"}) {
    const auto a = tq::make_rotation(kind, 96, 5);
    const auto b = tq::make_rotation(kind, 96, 5);
    const auto c = tq::make_rotation(kind, 96, 6);
    const std::vector<float> x = tq::testing::gaussian_rows(3, 96, 1);
    std::vector<float> ya(x.size()), yb(x.size()), yc(x.size());
    a->forward(x.data(), ya.data(), 3);
    b->forward(x.data(), yb.data(), 3);
    c->forward(x.data(), yc.data(), 3);
    CHECK(ya == yb);
    CHECK(ya != yc);
  }
  CHECK_THROWS_AS(tq::make_rotation("dct", 8, 1), tq::UsageError);
  CHECK_THROWS_AS(tq::make_rotation("haar", 0, 1), tq::UsageError);
}

TEST_CASE("rotation: haar is uniform (sign fix) - moments of R_00 and of one rotated coordinate") {
  // Over Haar R: R_00 ~ sphere law: E[R_00] = 0, E[R_00^2] = 1/d, E[R_00^4] = 3/(d(d+2)).
  // Without the sign fix, Householder QR makes R_00 one-signed and E[R_00] far from 0.
  const size_t d = 8;
  const int seeds = 4000;
  std::vector<double> r1, r2, r4;
  std::vector<float> e0(d, 0.0f), col(d);
  e0[0] = 1.0f;
  for (int s = 0; s < seeds; ++s) {
    tq::make_rotation("haar", d, static_cast<uint64_t>(s) * 7919u + 1u)->forward(e0.data(), col.data(), 1);
    const double v = col[0];
    r1.push_back(v);
    r2.push_back(v * v);
    r4.push_back(v * v * v * v);
  }
  const auto m1 = tq::testing::mean_se(r1), m2 = tq::testing::mean_se(r2), m4 = tq::testing::mean_se(r4);
  CHECK(std::abs(m1.mean) < 4 * m1.se);
  CHECK(std::abs(m2.mean - 1.0 / d) < 4 * m2.se);
  CHECK(std::abs(m4.mean - 3.0 / (d * (d + 2.0))) < 4 * m4.se);
}

TEST_CASE("rotation: hr mixes every input coordinate like a Haar rotation (one-hot inputs)") {
  // Spread of a rotated one-hot y = R e_i measured by sum_j y_j^4: 1 for an unmixed one-hot,
  // 3/(d+2) on average for a Haar R, 1/d for a flat vector (one RHT round when d = 2^k).
  // Over 20 seeds x d one-hots, the mean must be at most 10% above the Haar value and no single
  // one-hot may keep most of its energy in a few coordinates.
  for (size_t d : {7, 13, 64, 80, 96, 112, 128, 256}) {
    CAPTURE(d);
    double mean_q = 0, max_q = 0;
    for (uint64_t seed = 1; seed <= 20; ++seed) {
      const auto rot = tq::make_rotation("hr", d, seed);
      std::vector<float> eye(d * d, 0.0f), m(d * d);
      for (size_t i = 0; i < d; ++i) eye[i * d + i] = 1.0f;
      rot->forward(eye.data(), m.data(), d);
      for (size_t i = 0; i < d; ++i) {
        double q = 0;
        for (size_t j = 0; j < d; ++j) q += std::pow(static_cast<double>(m[i * d + j]), 4);
        mean_q += q;
        max_q = std::max(max_q, q);
      }
    }
    mean_q /= 20.0 * static_cast<double>(d);
    const double haar = 3.0 / (static_cast<double>(d) + 2.0);
    MESSAGE("hr d=" << d << ": one-hot mean sum y^4 = " << mean_q << " (Haar " << haar << "), max " << max_q);
    CHECK(mean_q <= 1.1 * haar);
    CHECK(max_q <= std::max(0.7, 4.0 * haar));
  }
}

TEST_CASE("rotation: a row's result does not depend on the batch it is in") {
  for (const char* kind : {"haar", "hr"}) {
    for (size_t d : {13, 96, 128}) {
      CAPTURE(kind);
      CAPTURE(d);
      const auto rot = tq::make_rotation(kind, d, 8);
      const size_t n = 203;
      const std::vector<float> x = tq::testing::gaussian_rows(n, d, 12);
      std::vector<float> all(n * d), one(d);
      rot->forward(x.data(), all.data(), n);
      bool same = true;
      for (size_t t = 0; t < n; ++t) {
        rot->forward(x.data() + t * d, one.data(), 1);
        same = same && std::equal(one.begin(), one.end(), all.begin() + static_cast<std::ptrdiff_t>(t * d));
      }
      CHECK(same);
      std::vector<float> part(37 * d);
      rot->forward(x.data() + 50 * d, part.data(), 37);
      CHECK(std::equal(part.begin(), part.end(), all.begin() + static_cast<std::ptrdiff_t>(50 * d)));
    }
  }
}
