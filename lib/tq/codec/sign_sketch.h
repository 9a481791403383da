#pragma once
// 1-bit random sketches of vectors (QJL, Zandieh et al. 2024) used by the `qjl` and `tq-prod`
// codecs: per row r, store |r| and the m signs sign(<s_i, r>) of m random projections; decode
//
//     r^ = |r| * kappa * sum_i s_i sign(<s_i, r>),
//
// with kappa chosen so that E[r^] = r over the draw of the sketch (unbiased inner products).
//
// Sketch kinds (docs/codec-spec.md derives the constants):
//   gaussian - s_i iid N(0, I_d) (an m x d matrix):  E[s sign<s, r>] = E|g| r/|r| = sqrt(2/pi) r/|r|
//              so kappa = sqrt(pi/2) / m.
//   haar     - s_i the rows of Haar-random orthogonal d x d matrices (blocks of d rows; m > d uses
//              ceil(m/d) independent blocks, the last one partial). Each row is uniform on the unit
//              sphere, E[u sign<u, r>] = c_d r/|r| with c_d = E|u_1| = Gamma(d/2) / (sqrt(pi)
//              Gamma((d+1)/2)), so kappa = 1 / (m c_d). Orthogonality within a block only lowers
//              the variance; the mean is the same.
//   hadamard - s_i the rows of randomized Hadamard transforms (rotation kind "hr"), with the same
//              kappa as haar. Rows are +-1/sqrt(d) vectors, NOT uniform on the sphere, so the
//              estimate is biased for inputs aligned with the coordinate axes (one-hot r gives
//              r^ = r / (c_d sqrt(d)) ~ 1.25 r at m = d); measured in tests/unit/test_codec_prod.cpp.
//
// Byte layout of one sketch part for n rows (mirrors tq-mse, norm=fp16):
//   [n x u16 fp16 |r|][k x f32 escaped norms][ceil(n m / 8) packed sign bits, bit = 1 for >= 0]
// Norms (and escapes) are side bytes, signs payload. A norm fp16 cannot hold is written as the
// escape 0x7C00 and its fp32 value follows in the escape list (as in rotated_scalar.h).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tq/codec/codec.h"
#include "tq/rotation/rotation.h"

namespace tq {

enum class SketchKind { Gaussian, Haar, Hadamard };

/// "gaussian" | "haar" | "hadamard"; false when unknown.
bool parse_sketch_kind(const std::string& s, SketchKind* out);
const char* sketch_kind_name(SketchKind k);

/// c_d = E|u_1| for u uniform on the unit sphere of R^d (d >= 2), computed with lgamma in double.
double sphere_abs_mean(size_t d);

/// Seed of the sketch of a codec built for `ctx`: seed_combine(ctx.seed, hash_tag("sketch")).
uint64_t sketch_seed(const CodecContext& ctx);

/// Build the sketch from the options `sketch=gaussian|haar|hadamard` (default gaussian) and `m=`
/// (default d, 1 <= m <= 64 d) of a codec spec; UsageError naming the spec on a bad value.
std::unique_ptr<class SignSketch> make_sketch_from_args(const CodecArgs& args, const CodecContext& ctx);

class SignSketch {
 public:
  SignSketch(SketchKind kind, size_t d, size_t m, uint64_t seed);

  /// Append the sketch part of rows r [n, d] to `out`; returns its byte split.
  ByteCount encode(const float* r, size_t n, std::vector<uint8_t>& out) const;
  /// Read a sketch part of n rows from p[0 : avail] and ADD r^ to out [n, d]. Returns bytes read.
  /// Throws tq::Error (naming `what`) when the part is truncated.
  size_t decode_add(const uint8_t* p, size_t avail, size_t n, float* out, const std::string& what) const;
  /// Byte split without escapes.
  ByteCount byte_count(size_t n) const;

  size_t dim() const { return d_; }
  size_t rows() const { return m_; }
  SketchKind kind() const { return kind_; }
  /// kappa: r^ = |r| kappa sum_i s_i sign<s_i, r>.
  double kappa() const { return kappa_; }

 private:
  /// proj [n, m] = S r for rows r [n, d].
  void project(const float* r, size_t n, float* proj) const;
  /// out [n, d] += coef[t] * S^T z_t for z [n, m].
  void back_add(const float* z, const float* coef, size_t n, float* out) const;

  SketchKind kind_;
  size_t d_, m_;
  double kappa_;
  std::vector<float> gauss_;                     ///< m x d, gaussian kind
  std::vector<std::unique_ptr<Rotation>> blocks_;  ///< ceil(m/d) rotations, haar/hadamard kinds
};

}  // namespace tq
