// The `center` stage: subtract the mean row m = (1/n) sum_t x_t of the encoded head before the
// inner codec and add it back after decoding. Softmax attention is invariant to adding one
// constant vector to every key (q.(k_t + m) shifts all logits by q.m), so keys can be centred
// for free in attention terms, while their quantization error shrinks when the head has a
// large common offset. The mean (d fp32 values) is side information, stored before the inner
// encoding: layout [d x f32 mean][inner encoding]. For n = 0 the mean is 0.
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "tq/codec/factories.h"
#include "tq/core/error.h"

namespace tq {

namespace {

constexpr size_t kFp32Bytes = 4;

class CenterStage final : public Codec {
 public:
  CenterStage(std::unique_ptr<Codec> inner, const CodecContext& ctx) : Codec(ctx), inner_(std::move(inner)) {}

  std::string spec() const override { return "center," + inner_->spec(); }
  bool needs_training() const override { return inner_->needs_training(); }
  void train(const float* x, size_t n) override {
    std::vector<float> y(x, x + n * dim());
    subtract(y.data(), n, mean(x, n));
    inner_->train(y.data(), n);
  }

  Encoded encode(const float* x, size_t n, const int32_t* positions) const override {
    const size_t d = dim();
    const std::vector<float> m = mean(x, n);
    std::vector<float> y(x, x + n * d);
    subtract(y.data(), n, m);
    Encoded inner = inner_->encode(y.data(), n, positions);
    Encoded e;
    e.n_tokens = n;
    e.dim = d;
    e.count = inner.count;
    e.count.side += d * kFp32Bytes;
    e.bytes.resize(d * kFp32Bytes + inner.bytes.size());
    std::memcpy(e.bytes.data(), m.data(), d * kFp32Bytes);
    if (!inner.bytes.empty()) std::memcpy(e.bytes.data() + d * kFp32Bytes, inner.bytes.data(), inner.bytes.size());
    return e;
  }

  void decode(const Encoded& e, float* out) const override {
    const size_t d = dim();
    if (e.dim != d || e.bytes.size() < d * kFp32Bytes)
      throw Error(fmt::format("codec '{}': encoding is too short ({} bytes) or has the wrong dim", spec(), e.bytes.size()));
    std::vector<float> m(d);
    std::memcpy(m.data(), e.bytes.data(), d * kFp32Bytes);
    Encoded inner;
    inner.n_tokens = e.n_tokens;
    inner.dim = d;
    inner.bytes.assign(e.bytes.begin() + static_cast<std::ptrdiff_t>(d * kFp32Bytes), e.bytes.end());
    inner.count = e.count;
    inner.count.side -= std::min(inner.count.side, d * kFp32Bytes);
    inner_->decode(inner, out);
    for (size_t t = 0; t < e.n_tokens; ++t) {
      float* row = out + t * d;
      for (size_t i = 0; i < d; ++i) row[i] += m[i];
    }
  }

  ByteCount byte_count(size_t n) const override {
    ByteCount c = inner_->byte_count(n);
    c.side += dim() * kFp32Bytes;
    return c;
  }

 private:
  /// Column means accumulated in double, rows in order (deterministic).
  std::vector<float> mean(const float* x, size_t n) const {
    const size_t d = dim();
    std::vector<double> acc(d, 0.0);
    for (size_t t = 0; t < n; ++t)
      for (size_t i = 0; i < d; ++i) acc[i] += static_cast<double>(x[t * d + i]);
    std::vector<float> m(d, 0.0f);
    if (n > 0)
      for (size_t i = 0; i < d; ++i) m[i] = static_cast<float>(acc[i] / static_cast<double>(n));
    return m;
  }
  void subtract(float* y, size_t n, const std::vector<float>& m) const {
    const size_t d = dim();
    for (size_t t = 0; t < n; ++t)
      for (size_t i = 0; i < d; ++i) y[t * d + i] -= m[i];
  }
  std::unique_ptr<Codec> inner_;
};

}  // namespace

std::unique_ptr<Codec> make_center_stage(const CodecArgs& stage, std::unique_ptr<Codec> inner, const CodecContext& ctx) {
  if (stage.bits != -1)
    throw UsageError(fmt::format("codec spec '{}': stage 'center' takes no ':N' parameter", stage.spec));
  return std::make_unique<CenterStage>(std::move(inner), ctx);
}

}  // namespace tq
