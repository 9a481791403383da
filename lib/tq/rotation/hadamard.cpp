// Randomized Hadamard transform (RHT) for any dimension d.
//
// Let H_p be the p x p Walsh-Hadamard matrix (entries +-1, H_p H_p = p I), so H_p / sqrt(p) is
// orthogonal and symmetric, and applying it costs p log2 p additions (fast Walsh-Hadamard
// transform, FWHT). D denotes a diagonal matrix of random signs, P a random permutation.
//
// * d a power of two:  R = H_d D / sqrt(d)  (one round; the usual RHT).
// * otherwise, with p the largest power of two below d (p < d < 2p), one round is
//       x <- D1 x;  x[0:p] <- H_p x[0:p] / sqrt(p);  x <- P x;  x <- D2 x;
//       x[d-p:d] <- H_p x[d-p:d] / sqrt(p)
//   i.e. a Hadamard block on the first p coordinates, a random shuffle, and a Hadamard block on
//   the last p coordinates (the two blocks overlap in 2p - d coordinates). Every step is
//   orthogonal, so the product is an orthogonal d x d map and the rotated vector keeps exactly
//   d coordinates (no padding of the stored code). One round can leave a coordinate that only
//   went through a shuffle, so kRoundsGeneral rounds are chained with fresh signs and
//   permutations; after them every output coordinate depends on every input coordinate.
//   Cost per vector: kRoundsGeneral * (2 p log2 p + O(d)) operations.
//
// The inverse applies the inverse steps in reverse order (H_p / sqrt(p) and D are their own
// inverses; P^-1 is the inverse permutation).
#include <cmath>
#include <cstring>
#include <vector>

#include "tq/core/rng.h"
#include "tq/rotation/rotation.h"
#include "tq/simd/kernels.h"

namespace tq {

namespace {

/// Rounds of (block, shuffle, block) when d is not a power of two.
constexpr int kRoundsGeneral = 2;

bool is_pow2(size_t d) { return d > 0 && (d & (d - 1)) == 0; }

size_t floor_pow2(size_t d) {
  size_t p = 1;
  while (p * 2 <= d) p *= 2;
  return p;
}

struct Round {
  std::vector<float> signs1;  // D1 (or D for a power of two)
  std::vector<float> signs2;  // D2
  std::vector<uint32_t> perm;  // (P x)[i] = x[perm[i]]; inverse: x[perm[i]] = (P x)[i]
};

class HadamardRotation final : public Rotation {
 public:
  HadamardRotation(size_t d, uint64_t seed) : Rotation(d), p_(floor_pow2(d)) {
    scale_ = static_cast<float>(1.0 / std::sqrt(static_cast<double>(p_)));
    Rng rng(seed);
    const int rounds = is_pow2(d) ? 1 : kRoundsGeneral;
    for (int r = 0; r < rounds; ++r) {
      Round rd;
      rd.signs1.resize(d);
      for (auto& s : rd.signs1) s = rng.sign();
      if (!is_pow2(d)) {
        // Fisher-Yates shuffle driven by the seeded generator.
        rd.perm.resize(d);
        for (size_t i = 0; i < d; ++i) rd.perm[i] = static_cast<uint32_t>(i);
        for (size_t i = d - 1; i > 0; --i) std::swap(rd.perm[i], rd.perm[rng.below(i + 1)]);
        rd.signs2.resize(d);
        for (auto& s : rd.signs2) s = rng.sign();
      }
      rounds_.push_back(std::move(rd));
    }
  }

  // The FWHT, the sign flips and the products run in simd::kernels() (bit-identical on every ISA
  // path); the permutation is a plain gather. No allocation per row: one scratch row per call,
  // only for non-powers of two.
  void forward(const float* in, float* out, size_t n) const override {
    if (in != out && n > 0) std::memmove(out, in, n * dim_ * sizeof(float));
    const simd::Kernels& k = simd::kernels();
    std::vector<float> tmp(rounds_.front().perm.empty() ? 0 : dim_);
    for (size_t row = 0; row < n; ++row) {
      float* x = out + row * dim_;
      for (const Round& rd : rounds_) {
        k.mul(x, rd.signs1.data(), x, dim_);
        k.fwht(x, p_, scale_);
        if (rd.perm.empty()) continue;
        for (size_t i = 0; i < dim_; ++i) tmp[i] = x[rd.perm[i]];
        k.mul(tmp.data(), rd.signs2.data(), x, dim_);
        k.fwht(x + (dim_ - p_), p_, scale_);
      }
    }
  }

  void inverse(const float* in, float* out, size_t n) const override {
    if (in != out && n > 0) std::memmove(out, in, n * dim_ * sizeof(float));
    const simd::Kernels& k = simd::kernels();
    std::vector<float> tmp(rounds_.front().perm.empty() ? 0 : dim_);
    for (size_t row = 0; row < n; ++row) {
      float* x = out + row * dim_;
      for (auto it = rounds_.rbegin(); it != rounds_.rend(); ++it) {
        const Round& rd = *it;
        if (!rd.perm.empty()) {
          k.fwht(x + (dim_ - p_), p_, scale_);
          k.mul(x, rd.signs2.data(), tmp.data(), dim_);
          for (size_t i = 0; i < dim_; ++i) x[rd.perm[i]] = tmp[i];
        }
        k.fwht(x, p_, scale_);
        k.mul(x, rd.signs1.data(), x, dim_);
      }
    }
  }

  std::string name() const override { return "hr"; }
  const float* hadamard_signs() const override {
    return rounds_.size() == 1 && rounds_.front().perm.empty() ? rounds_.front().signs1.data() : nullptr;
  }
  float hadamard_scale() const override { return scale_; }

 private:
  size_t p_;
  float scale_;
  std::vector<Round> rounds_;
};

}  // namespace

std::unique_ptr<Rotation> make_hadamard_rotation(size_t d, uint64_t seed) {
  return std::make_unique<HadamardRotation>(d, seed);
}

}  // namespace tq
