#pragma once
// Orthogonal rotations of R^d applied to row-major batches of vectors.
//
// TurboQuant-style codecs rotate every (normalised) vector by a random orthogonal matrix R so
// that each coordinate of Rx/|x| follows the law of one coordinate of a uniform random unit
// vector, whatever x is; a scalar quantizer designed for that law then works for every input.
// The rotation is generated from a seed, so it costs no bytes.
//
// Kinds (make_rotation):
//   "haar" - R drawn from the Haar (uniform) measure on O(d): QR of a Gaussian matrix with the
//            sign fix. Exact uniformity, O(d^2) per vector (a GEMM over the batch).
//   "hr"   - randomized Hadamard transform: random signs then a fast Walsh-Hadamard transform,
//            O(d log d) per vector; any d (non powers of two use overlapping blocks, see
//            hadamard.cpp and docs/codec-spec.md). Not exactly Haar.
//   "id"   - the identity (to show what happens without a rotation).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace tq {

class Rotation {
 public:
  virtual ~Rotation() = default;

  /// out[i] = R in[i] for the n rows of length dim() (row-major). `in` may equal `out`.
  virtual void forward(const float* in, float* out, size_t n) const = 0;
  /// out[i] = R^T in[i] (the inverse, R being orthogonal). `in` may equal `out`.
  virtual void inverse(const float* in, float* out, size_t n) const = 0;

  size_t dim() const { return dim_; }
  virtual std::string name() const = 0;

  /// For a one-round randomized Hadamard transform (kind "hr" with d a power of two), R x =
  /// fwht(D x) * hadamard_scale(): the diagonal of D (exactly +-1), so a codec can fuse the
  /// rotation with its own per-row loop (simd::Kernels::rht_encode_rows). nullptr otherwise.
  virtual const float* hadamard_signs() const { return nullptr; }
  virtual float hadamard_scale() const { return 0.0f; }

 protected:
  explicit Rotation(size_t dim) : dim_(dim) {}
  size_t dim_;
};

/// Names accepted by make_rotation.
inline constexpr const char* kRotationKinds[] = {"haar", "hr", "id"};
bool is_rotation_kind(const std::string& kind);

/// Build a rotation of R^d; the same (kind, d, seed) always gives the same matrix.
/// Throws tq::UsageError on an unknown kind or d == 0.
std::unique_ptr<Rotation> make_rotation(const std::string& kind, size_t d, uint64_t seed);

// The concrete constructors (haar.cpp, hadamard.cpp, identity.cpp).
std::unique_ptr<Rotation> make_haar_rotation(size_t d, uint64_t seed);
std::unique_ptr<Rotation> make_hadamard_rotation(size_t d, uint64_t seed);
std::unique_ptr<Rotation> make_identity_rotation(size_t d);

}  // namespace tq
