// Uncompressed references: `fp32` stores the values as they are (4 bytes each), `fp16` as IEEE
// binary16 (2 bytes each, round to nearest even; values beyond +-65504 become +-inf as they
// would in an fp16 KV cache). Layout: the n*d values in row-major order, all payload.
#include <cstring>

#include <fmt/format.h>

#include "tq/codec/factories.h"
#include "tq/core/error.h"
#include "tq/core/half.h"

namespace tq {

namespace {

class PlainCodec final : public Codec {
 public:
  PlainCodec(bool half, const CodecContext& ctx) : Codec(ctx), half_(half) {}
  std::string spec() const override { return half_ ? "fp16" : "fp32"; }

  ByteCount byte_count(size_t n) const override {
    ByteCount c;
    c.payload = n * dim() * (half_ ? sizeof(uint16_t) : sizeof(float));
    return c;
  }

  Encoded encode(const float* x, size_t n, const int32_t* positions) const override {
    (void)positions;
    Encoded e;
    e.n_tokens = n;
    e.dim = dim();
    e.count = byte_count(n);
    e.bytes.resize(e.count.total());
    const size_t m = n * dim();
    if (m == 0) return e;
    if (half_) {
      std::vector<uint16_t> h(m);
      float_to_fp16(x, h.data(), m);
      std::memcpy(e.bytes.data(), h.data(), m * sizeof(uint16_t));
    } else {
      std::memcpy(e.bytes.data(), x, m * sizeof(float));
    }
    return e;
  }

  void decode(const Encoded& e, float* out) const override {
    if (e.dim != dim() || e.bytes.size() != byte_count(e.n_tokens).total())
      throw Error(fmt::format("codec '{}': encoding has {} bytes for {} x {}, expected {}", spec(), e.bytes.size(),
                              e.n_tokens, e.dim, byte_count(e.n_tokens).total()));
    const size_t m = e.n_tokens * dim();
    if (m == 0) return;
    if (half_) {
      std::vector<uint16_t> h(m);
      std::memcpy(h.data(), e.bytes.data(), m * sizeof(uint16_t));
      fp16_to_float(h.data(), out, m);
    } else {
      std::memcpy(out, e.bytes.data(), m * sizeof(float));
    }
  }

 private:
  bool half_;
};

void reject_bits(const CodecArgs& args) {
  if (args.bits != -1)
    throw UsageError(fmt::format("codec spec '{}': {} takes no bit width", args.spec, args.name));
}

}  // namespace

std::unique_ptr<Codec> make_fp32(const CodecArgs& args, const CodecContext& ctx) {
  reject_bits(args);
  return std::make_unique<PlainCodec>(false, ctx);
}

std::unique_ptr<Codec> make_fp16(const CodecArgs& args, const CodecContext& ctx) {
  reject_bits(args);
  return std::make_unique<PlainCodec>(true, ctx);
}

}  // namespace tq
