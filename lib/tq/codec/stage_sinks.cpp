// Full-precision token stages: sink tokens (the first N rows) and a recent window (the last R
// rows) kept at fp16 or fp32 while an inner codec codes the remaining rows.
//
// Attention sinks (Xiao et al. 2024, "Efficient Streaming Language Models with Attention Sinks")
// and the recent full-precision window of KIVI (Liu et al. 2024) are both "keep some rows
// exact"; one class serves both, parameterised by which end of the token axis it keeps.
//
// Byte layout (docs/baselines.md):
//   sinks:  [k rows, fp16/fp32, row-major] [inner encoding of rows k..T-1]
//   window: [inner encoding of rows 0..T-R-1] [R rows, fp16/fp32, row-major]
// with k = min(N, T) and R = min(R_requested, T). The kept rows are counted as window bytes; the
// inner codec's payload/side/window counts pass through unchanged. When no row is left for the
// inner codec it is not called at all (zero bytes).
#include <algorithm>

#include <fmt/format.h>

#include "tq/codec/byte_fields.h"
#include "tq/codec/codec.h"
#include "tq/codec/factories.h"
#include "tq/core/error.h"

namespace tq {

namespace {

enum class KeptEnd { Head, Tail };

class KeepRowsStage final : public Codec {
 public:
  KeepRowsStage(std::unique_ptr<Codec> inner, KeptEnd end, size_t n_keep, bool fp32)
      : Codec(inner->context()), inner_(std::move(inner)), end_(end), n_keep_(n_keep), fp32_(fp32) {}

  std::string spec() const override {
    const char* key = end_ == KeptEnd::Head ? "sinks" : "window";
    std::string s = fmt::format("{},{}={}", inner_->spec(), key, n_keep_);
    if (fp32_) s += fmt::format(",{}-dtype=fp32", key);
    return s;
  }

  bool needs_training() const override { return inner_->needs_training(); }
  void train(const float* x, size_t n) override { inner_->train(x, n); }

  Encoded encode(const float* x, size_t n, const int32_t* positions) const override {
    const size_t d = dim();
    const size_t kept = std::min(n_keep_, n);
    const size_t coded = n - kept;
    const size_t kept_bytes = kept * d * bytes::full_precision_bytes(fp32_);
    // Rows given to the inner codec and rows kept, as offsets into x.
    const size_t coded_first = end_ == KeptEnd::Head ? kept : 0;
    const size_t kept_first = end_ == KeptEnd::Head ? 0 : coded;

    Encoded inner_e;
    if (coded > 0) {
      inner_e = inner_->encode(x + coded_first * d, coded, positions ? positions + coded_first : nullptr);
      if (inner_e.bytes.size() != inner_e.count.total())
        throw Error(fmt::format("codec '{}': inner encoding holds {} bytes but counts {}", spec(),
                                inner_e.bytes.size(), inner_e.count.total()));
    }

    Encoded e;
    e.n_tokens = n;
    e.dim = d;
    e.count = inner_e.count;
    e.count.window += kept_bytes;
    e.bytes.resize(e.count.total());
    uint8_t* kept_out = e.bytes.data() + (end_ == KeptEnd::Head ? 0 : inner_e.bytes.size());
    uint8_t* inner_out = e.bytes.data() + (end_ == KeptEnd::Head ? kept_bytes : 0);
    bytes::store_full_precision(x + kept_first * d, kept * d, fp32_, kept_out);
    std::copy(inner_e.bytes.begin(), inner_e.bytes.end(), inner_out);
    return e;
  }

  void decode(const Encoded& e, float* out) const override {
    const size_t d = dim();
    const size_t n = e.n_tokens;
    const size_t kept = std::min(n_keep_, n);
    const size_t coded = n - kept;
    const size_t kept_bytes = kept * d * bytes::full_precision_bytes(fp32_);
    const ByteCount expect = byte_count(n);
    if (e.dim != d || e.bytes.size() != expect.total())
      throw Error(fmt::format("codec '{}': encoding of {} tokens x {} holds {} bytes, expected {} for head_dim {}", spec(),
                              n, e.dim, e.bytes.size(), expect.total(), d));
    const size_t coded_first = end_ == KeptEnd::Head ? kept : 0;
    const size_t kept_first = end_ == KeptEnd::Head ? 0 : coded;
    const size_t inner_bytes = e.bytes.size() - kept_bytes;
    const uint8_t* kept_in = e.bytes.data() + (end_ == KeptEnd::Head ? 0 : inner_bytes);
    const uint8_t* inner_in = e.bytes.data() + (end_ == KeptEnd::Head ? kept_bytes : 0);

    bytes::load_full_precision(kept_in, kept * d, fp32_, out + kept_first * d);
    if (coded > 0) {
      Encoded inner_e;
      inner_e.n_tokens = coded;
      inner_e.dim = d;
      inner_e.count = inner_->byte_count(coded);
      inner_e.bytes.assign(inner_in, inner_in + inner_bytes);
      inner_->decode(inner_e, out + coded_first * d);
    }
  }

  ByteCount byte_count(size_t n) const override {
    const size_t kept = std::min(n_keep_, n);
    ByteCount c = n > kept ? inner_->byte_count(n - kept) : ByteCount{};
    c.window += kept * dim() * bytes::full_precision_bytes(fp32_);
    return c;
  }

 private:
  std::unique_ptr<Codec> inner_;
  KeptEnd end_;
  size_t n_keep_;
  bool fp32_;
};

std::unique_ptr<Codec> wrap(std::unique_ptr<Codec> inner, KeptEnd end, int n, bool fp32, const char* what) {
  if (!inner) throw Error(fmt::format("{} stage: no inner codec", what));
  if (n < 0) throw UsageError(fmt::format("codec spec '{}': {}={} must be >= 0", inner->spec(), what, n));
  if (n == 0) return inner;
  return std::make_unique<KeepRowsStage>(std::move(inner), end, static_cast<size_t>(n), fp32);
}

}  // namespace

std::unique_ptr<Codec> wrap_with_sinks(std::unique_ptr<Codec> inner, int n_sinks, bool fp32) {
  return wrap(std::move(inner), KeptEnd::Head, n_sinks, fp32, "sinks");
}

std::unique_ptr<Codec> wrap_with_window(std::unique_ptr<Codec> inner, int n_recent, bool fp32) {
  return wrap(std::move(inner), KeptEnd::Tail, n_recent, fp32, "window");
}

}  // namespace tq
