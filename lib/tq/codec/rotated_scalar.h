#pragma once
// The shared engine of `tq-mse` (TurboQuant-MSE / PolarQuant) and `eden`: per vector a scale
// and d scalar codes of the normalised, rotated vector.
//
//   encode row x:  r = |x| (float sum of squares in the kernels' canonical order, so every ISA
//                  path gives the same bits), y = R (x / r), code_i = Q(y_i) with the Lloyd-Max codebook of the
//                  coordinate law (exact sphere law of dimension d, or N(0, 1/d));
//                  scale = r                       (tq-mse)
//                  scale = r / <y, c>, c_i = centroid of code_i   (eden: unbiased <q, xhat>)
//   decode row:    xhat = scale * R^T c
//
// Byte layout of one encoding of n rows (little endian), see docs/codec-spec.md:
//   norm=fp16: [n x u16 fp16 scales][k x f32 escaped scales][ceil(n d b / 8) packed codes]
//              A scale that fp16 cannot hold (> 65504, or nonzero below the smallest normal
//              fp16 2^-14 where precision would be lost) is written as the escape 0x7C00 (+inf)
//              and its fp32 value follows in the escape list, in row order.
//   norm=fp32: [n x f32 scales][ceil(n d b / 8) packed codes]
// Side bytes = scales (+ escapes); payload = packed codes.
//
// codebook=FILE (or CodecContext::codebook_dir): the codebook comes from a codebook file
// (lib/tq/codebook/codebook_file.h) instead of the analytic law. When the file's scope is
// "tensor" (a data codebook solved for this one layer/head/tensor) the encoding starts with its
// 2^b centroids as fp32 (4 * 2^b side bytes) and the decoder reads them from there; analytic and
// shared codebooks cost no bytes (they are fixed per model, like the rotation seed).
#include <limits>
#include <memory>
#include <string>

#include "tq/codebook/scalar_codebook.h"
#include "tq/codec/codec.h"
#include "tq/rotation/rotation.h"
#include "tq/simd/kernels.h"

namespace tq {

enum class ScaleFormat { Fp16, Fp32 };

struct RotatedScalarConfig {
  std::string method;        ///< "tq-mse" or "eden"
  int bits = 0;              ///< 1..8
  std::string rotation;      ///< "haar", "hr" or "id"
  ScaleFormat scale_format = ScaleFormat::Fp16;
  bool gaussian_law = false; ///< false: exact sphere law; true: N(0, 1/d)
  bool eden = false;         ///< eden scale r / <y, c> instead of r
  std::string codebook_file; ///< codebook file path ("" = analytic law codebook)
};

/// The codec's normalise step: y_t = x_t / |x_t| (zero rows stay zero), norms[t] = |x_t| (double
/// accumulation). Throws tq::Error naming `who` and the row on a non-finite value or norm.
void normalise_rows(const float* x, size_t n, size_t d, float* y, float* norms, const std::string& who);

/// The codebook file for (ctx.layer, ctx.head, ctx.tensor, bits) under ctx.codebook_dir (a file
/// is returned as is; directory lookup order in codec.h). "" when codebook_dir is empty. Throws
/// tq::UsageError when a directory holds none of the candidates.
std::string resolve_codebook_path(const CodecContext& ctx, int bits);

class RotatedScalarCodec final : public Codec {
 public:
  RotatedScalarCodec(const RotatedScalarConfig& cfg, const CodecContext& ctx);
  std::string spec() const override;
  Encoded encode(const float* x, size_t n, const int32_t* positions) const override;
  void decode(const Encoded& e, float* out) const override;
  ByteCount byte_count(size_t n) const override;
  /// Size of the encoding of n rows that starts at p (avail bytes readable): byte_count(n) plus
  /// the escapes counted in the scale array. Lets a composite codec find where it ends.
  size_t encoding_size(const uint8_t* p, size_t avail, size_t n) const;

  const ScalarCodebook& codebook() const { return *codebook_; }
  /// True when the centroids travel in every encoding (a per-tensor data codebook).
  bool codebook_in_stream() const { return codebook_in_stream_; }
  const Rotation& rotation() const { return *rotation_; }

 private:
  /// y = x / |x| for one row of x (row index t for errors); returns |x|. Float, fixed order.
  float normalise_row(const simd::Kernels& k, const float* x, float* y, size_t t) const;
  /// For a row outside the plain norm range: the exponent e of its largest |x_i| (x 2^-e is an
  /// exact rescaling into [1, 2) at the top), or kZeroRow for an all-zero row. Throws tq::Error
  /// naming row t on a non-finite value.
  int exact_rescale_exponent(const float* x, size_t t) const;
  static constexpr int kZeroRow = std::numeric_limits<int>::min();
  /// r1 2^e as a float, or tq::Error naming row t when it exceeds the float range.
  float rescaled_norm(float r1, int e, size_t t) const;
  /// The one-round Hadamard signs when the fused row kernels apply (hr, d a power of two >= 8,
  /// not eden), else nullptr.
  const float* fused_signs() const;
  /// Scales of rows [t0, t0 + rows) into their fp16 (escape marker if needed) or fp32 slots.
  void write_scales(uint8_t* base, const float* scale, size_t t0, size_t rows) const;

  RotatedScalarConfig cfg_;
  size_t header_bytes() const { return codebook_in_stream_ ? 4 * codebook_->size() : 0; }
  const ScalarCodebook* codebook_;
  std::shared_ptr<const ScalarCodebook> owned_codebook_;  ///< loaded from codebook_file
  bool codebook_in_stream_ = false;
  std::unique_ptr<Rotation> rotation_;
};

/// Parse the options shared by tq-mse and eden (rotation=, norm=, law=) and build the codec.
std::unique_ptr<Codec> make_rotated_scalar(const CodecArgs& args, const CodecContext& ctx, bool eden);

/// Seed of the rotation of a codec or rotation stage built for `ctx`.
uint64_t rotation_seed(const CodecContext& ctx);

}  // namespace tq
