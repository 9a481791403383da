// qjl - standalone 1-bit QJL sketch of each row (Zandieh, Daliri, Han 2024): |x| (fp16) and the m
// signs of random projections; decode x^ = |x| kappa S^T sign(S x), unbiased for the gaussian and
// haar sketches (sign_sketch.h). Bits per element: m/d + 16/d.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "tq/codec/factories.h"
#include "tq/codec/sign_sketch.h"
#include "tq/core/error.h"

namespace tq {

namespace {

class QjlCodec final : public Codec {
 public:
  QjlCodec(std::unique_ptr<SignSketch> sk, const CodecContext& ctx) : Codec(ctx), sketch_(std::move(sk)) {}

  std::string spec() const override {
    return fmt::format("qjl,sketch={},m={}", sketch_kind_name(sketch_->kind()), sketch_->rows());
  }

  Encoded encode(const float* x, size_t n, const int32_t* positions) const override {
    (void)positions;
    const size_t d = dim();
    for (size_t k = 0; k < n * d; ++k)
      if (!std::isfinite(x[k])) throw Error(fmt::format("codec '{}': row {} has a non-finite value", spec(), k / d));
    Encoded e;
    e.n_tokens = n;
    e.dim = d;
    e.count = sketch_->encode(x, n, e.bytes);
    return e;
  }

  void decode(const Encoded& e, float* out) const override {
    const size_t d = dim();
    if (e.dim != d) throw Error(fmt::format("codec '{}': encoding has dim {}, codec has {}", spec(), e.dim, d));
    std::fill(out, out + e.n_tokens * d, 0.0f);
    const size_t used = sketch_->decode_add(e.bytes.data(), e.bytes.size(), e.n_tokens, out, spec());
    if (used != e.bytes.size())
      throw Error(fmt::format("codec '{}': encoding has {} bytes, expected {}", spec(), e.bytes.size(), used));
  }

  ByteCount byte_count(size_t n) const override { return sketch_->byte_count(n); }

 private:
  std::unique_ptr<SignSketch> sketch_;
};

}  // namespace

std::unique_ptr<Codec> make_qjl(const CodecArgs& args, const CodecContext& ctx) {
  if (args.bits != -1 && args.bits != 1)
    throw UsageError(fmt::format("codec spec '{}': qjl takes no bit width other than 1 (use m= for the sketch size)", args.spec));
  return std::make_unique<QjlCodec>(make_sketch_from_args(args, ctx), ctx);
}

}  // namespace tq
