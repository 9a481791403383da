// Haar-random orthogonal matrix: R = Q diag(sign(diag(R_qr))) where G = Q R_qr is the QR
// factorisation of a d x d matrix of i.i.d. N(0, 1) entries. Without the sign fix Q is not
// Haar distributed (Householder QR makes diag(R_qr) positive or negative by convention, which
// biases Q); with it, Q is exactly uniform on O(d) (Mezzadri 2007, "How to generate random
// matrices from the classical compact groups").
//
// The QR runs in double (Eigen); the matrix is stored in float and applied to the rows by our own
// small GEMM kernel, y_t = sum_k x_t[k] * (row k of R^T), accumulating over k in order. Every
// output element is then computed by the same sequence of operations whatever the batch size or
// the row's position in it (Eigen's GEMM picks blockings and kernels by size, so a row's result
// would depend on how many rows were rotated with it).
#include <Eigen/Dense>
#include <algorithm>
#include <vector>

#include "tq/core/rng.h"
#include "tq/rotation/rotation.h"
#include "tq/simd/kernels.h"

namespace tq {

namespace {

using MatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

class HaarRotation final : public Rotation {
 public:
  HaarRotation(size_t d, uint64_t seed) : Rotation(d) {
    const auto n = static_cast<Eigen::Index>(d);
    MatD g(n, n);
    Rng rng(seed);
    for (Eigen::Index i = 0; i < n; ++i)
      for (Eigen::Index j = 0; j < n; ++j) g(i, j) = rng.gaussian();
    Eigen::HouseholderQR<MatD> qr(g);
    MatD q = qr.householderQ() * MatD::Identity(n, n);
    const MatD& r = qr.matrixQR();  // upper triangle holds R_qr
    for (Eigen::Index j = 0; j < n; ++j)
      if (r(j, j) < 0.0) q.col(j) *= -1.0;
    r_ = q.cast<float>();
    rt_ = r_.transpose();
  }

  // Rows are vectors: y = R x, i.e. Y = X R^T (forward); x = R^T y, i.e. X = Y R (inverse).
  void forward(const float* in, float* out, size_t n) const override { apply(in, out, n, rt_.data()); }
  void inverse(const float* in, float* out, size_t n) const override { apply(in, out, n, r_.data()); }
  std::string name() const override { return "haar"; }

 private:
  /// out[t] = in[t] M for row-major M (d x d): out[t][j] = sum_k in[t][k] M[k][j], k ascending
  /// (simd::Kernels::matmul_rows, the same bits on every ISA path and for any batch size).
  void apply(const float* in, float* out, size_t n, const float* m) const {
    simd::kernels().matmul_rows(in, out, n, m, dim_);
  }

  MatF r_;   // R, row-major
  MatF rt_;  // R^T, row-major
};

}  // namespace

std::unique_ptr<Rotation> make_haar_rotation(size_t d, uint64_t seed) { return std::make_unique<HaarRotation>(d, seed); }

}  // namespace tq
