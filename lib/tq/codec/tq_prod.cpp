// tq-prod:b - TurboQuant-prod (Zandieh et al. 2025): a (b-1)-bit tq-mse code of x plus a 1-bit
// QJL sketch of the residual r = x - x^_mse (|r| in fp16). Decode x^ = x^_mse + r^ with
// r^ = |r| kappa S^T sign(S r) (sign_sketch.h). Given x^_mse, E_S[r^] = r, so with the gaussian or
// haar sketch E[<q, x^>] = <q, x> for every q (unbiased inner products), at the cost of a larger
// MSE than a b-bit tq-mse.
//
// Layout: [sketch part: n fp16 |r|, escapes, n m sign bits][tq-mse:(b-1) encoding].
// Bits per element: (b - 1) + m/d + 32/d as T -> inf.
#include <algorithm>

#include <fmt/format.h>

#include "tq/codec/factories.h"
#include "tq/codec/rotated_scalar.h"
#include "tq/codec/sign_sketch.h"
#include "tq/core/error.h"

namespace tq {

namespace {

class TqProdCodec final : public Codec {
 public:
  TqProdCodec(int bits, std::unique_ptr<Codec> mse, std::unique_ptr<SignSketch> sk, const CodecContext& ctx)
      : Codec(ctx), bits_(bits), mse_(std::move(mse)), sketch_(std::move(sk)) {}

  std::string spec() const override {
    // mse_->spec() is "ROT,tq-mse:B,norm=..,law=.."; keep its rotation and options.
    std::string s = mse_->spec();
    const std::string key = "tq-mse:" + std::to_string(bits_ - 1);
    s.replace(s.find(key), key.size(), "tq-prod:" + std::to_string(bits_));
    return fmt::format("{},sketch={},m={}", s, sketch_kind_name(sketch_->kind()), sketch_->rows());
  }

  Encoded encode(const float* x, size_t n, const int32_t* positions) const override {
    const size_t d = dim();
    const Encoded inner = mse_->encode(x, n, positions);  // also rejects non-finite rows
    std::vector<float> r(n * d);
    mse_->decode(inner, r.data());
    for (size_t k = 0; k < n * d; ++k) r[k] = x[k] - r[k];
    Encoded e;
    e.n_tokens = n;
    e.dim = d;
    e.count = sketch_->encode(r.data(), n, e.bytes);
    e.count += inner.count;
    e.bytes.insert(e.bytes.end(), inner.bytes.begin(), inner.bytes.end());
    return e;
  }

  void decode(const Encoded& e, float* out) const override {
    const size_t d = dim();
    if (e.dim != d) throw Error(fmt::format("codec '{}': encoding has dim {}, codec has {}", spec(), e.dim, d));
    const size_t n = e.n_tokens;
    // Find the end of the sketch part without applying it yet, then decode x^_mse and add r^.
    std::vector<float> rhat(n * d, 0.0f);
    const size_t used = sketch_->decode_add(e.bytes.data(), e.bytes.size(), n, rhat.data(), spec());
    Encoded inner;
    inner.n_tokens = n;
    inner.dim = d;
    inner.bytes.assign(e.bytes.begin() + static_cast<std::ptrdiff_t>(used), e.bytes.end());
    mse_->decode(inner, out);
    for (size_t k = 0; k < n * d; ++k) out[k] += rhat[k];
  }

  ByteCount byte_count(size_t n) const override {
    ByteCount c = sketch_->byte_count(n);
    c += mse_->byte_count(n);
    return c;
  }

 private:
  int bits_;
  std::unique_ptr<Codec> mse_;
  std::unique_ptr<SignSketch> sketch_;
};

}  // namespace

std::unique_ptr<Codec> make_tq_prod(const CodecArgs& args, const CodecContext& ctx) {
  constexpr int kMinBits = 2, kMaxBits = 9;  // (b - 1) bits of tq-mse, 1..8
  const int b = args.require_bits(kMinBits, kMaxBits);
  CodecArgs mse_args = args;
  mse_args.name = "tq-mse";
  mse_args.bits = b - 1;
  auto mse = make_rotated_scalar(mse_args, ctx, /*eden=*/false);
  for (const auto& k : mse_args.consumed)
    if (std::find(args.consumed.begin(), args.consumed.end(), k) == args.consumed.end()) args.consumed.push_back(k);
  auto sk = make_sketch_from_args(args, ctx);
  return std::make_unique<TqProdCodec>(b, std::move(mse), std::move(sk), ctx);
}

}  // namespace tq
