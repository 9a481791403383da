// outlier - channel split: the n_out channels of largest RMS over the encoded head are coded with
// tq-mse:hi, the other d - n_out channels with tq-mse:lo; each part is a vector of its own
// dimension with its own norm (fp16) and rotation. The channel set is chosen from the head being
// encoded (no training pass) and stored as a d-bit bitmap (side bytes), so the decoder needs
// nothing else.
//
// Layout: [ceil(d/8) bytes bitmap, bit j = channel j is an outlier (LSB first)]   side
//         [tq-mse:hi encoding of the [n, n_out] outlier matrix]
//         [tq-mse:lo encoding of the [n, d - n_out] remaining matrix]
// Bits per element as T -> inf: (n_out hi + (d - n_out) lo + 32) / d; e.g. d = 128, n_out = 32,
// hi = 3, lo = 2: 2.25 payload + 0.25 norms = 2.5.
#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "tq/codec/factories.h"
#include "tq/codec/rotated_scalar.h"
#include "tq/core/error.h"
#include "tq/core/rng.h"

namespace tq {

namespace {

class OutlierCodec final : public Codec {
 public:
  OutlierCodec(size_t n_out, int hi, int lo, const std::string& rotation, const CodecContext& ctx)
      : Codec(ctx), n_out_(n_out), hi_bits_(hi), lo_bits_(lo), rotation_(rotation) {
    CodecContext ch = ctx, cl = ctx;
    ch.dim = n_out;
    ch.seed = seed_combine(ctx.seed, hash_tag("outlier-hi"));
    cl.dim = ctx.dim - n_out;
    cl.seed = seed_combine(ctx.seed, hash_tag("outlier-lo"));
    RotatedScalarConfig cfg;
    cfg.method = "tq-mse";
    cfg.rotation = rotation;
    cfg.bits = hi;
    hi_ = std::make_unique<RotatedScalarCodec>(cfg, ch);
    cfg.bits = lo;
    lo_ = std::make_unique<RotatedScalarCodec>(cfg, cl);
  }

  std::string spec() const override {
    return fmt::format("{},outlier,n={},hi={},lo={}", rotation_, n_out_, hi_bits_, lo_bits_);
  }

  ByteCount byte_count(size_t n) const override {
    ByteCount c;
    c.side = bitmap_bytes();
    c += hi_->byte_count(n);
    c += lo_->byte_count(n);
    return c;
  }

  Encoded encode(const float* x, size_t n, const int32_t* positions) const override {
    const size_t d = dim();
    // Per-channel energy over the head (fixed summation order: deterministic).
    std::vector<double> energy(d, 0.0);
    for (size_t t = 0; t < n; ++t)
      for (size_t j = 0; j < d; ++j) energy[j] += static_cast<double>(x[t * d + j]) * static_cast<double>(x[t * d + j]);
    std::vector<size_t> order(d);
    std::iota(order.begin(), order.end(), size_t{0});
    // Largest energy first; ties by channel index. NaN energies are rejected by tq-mse below.
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return energy[a] > energy[b]; });
    std::vector<uint8_t> is_out(d, 0);
    for (size_t k = 0; k < n_out_; ++k) is_out[order[k]] = 1;

    std::vector<float> xh, xl;
    split(x, n, is_out, xh, xl);
    const Encoded eh = hi_->encode(xh.data(), n, positions);
    const Encoded el = lo_->encode(xl.data(), n, positions);

    Encoded e;
    e.n_tokens = n;
    e.dim = d;
    e.count.side = bitmap_bytes();
    e.count += eh.count;
    e.count += el.count;
    e.bytes.assign(bitmap_bytes(), 0);
    for (size_t j = 0; j < d; ++j)
      if (is_out[j]) e.bytes[j / 8] = static_cast<uint8_t>(e.bytes[j / 8] | (1u << (j % 8)));
    e.bytes.insert(e.bytes.end(), eh.bytes.begin(), eh.bytes.end());
    e.bytes.insert(e.bytes.end(), el.bytes.begin(), el.bytes.end());
    return e;
  }

  void decode(const Encoded& e, float* out) const override {
    const size_t d = dim();
    const size_t n = e.n_tokens;
    if (e.dim != d) throw Error(fmt::format("codec '{}': encoding has dim {}, codec has {}", spec(), e.dim, d));
    const size_t nb = bitmap_bytes();
    if (e.bytes.size() < nb) throw Error(fmt::format("codec '{}': encoding is truncated ({} bytes)", spec(), e.bytes.size()));
    std::vector<uint8_t> is_out(d);
    size_t count = 0;
    for (size_t j = 0; j < d; ++j) {
      is_out[j] = (e.bytes[j / 8] >> (j % 8)) & 1u;
      count += is_out[j];
    }
    if (count != n_out_)
      throw Error(fmt::format("codec '{}': channel bitmap marks {} channels, expected {}", spec(), count, n_out_));
    const uint8_t* p = e.bytes.data() + nb;
    const size_t avail = e.bytes.size() - nb;
    const size_t sh = hi_->encoding_size(p, avail, n);
    if (sh > avail) throw Error(fmt::format("codec '{}': encoding is truncated ({} bytes)", spec(), e.bytes.size()));
    Encoded eh, el;
    eh.n_tokens = el.n_tokens = n;
    eh.dim = n_out_;
    el.dim = d - n_out_;
    eh.bytes.assign(p, p + sh);
    el.bytes.assign(p + sh, p + avail);
    std::vector<float> xh(n * n_out_), xl(n * (d - n_out_));
    hi_->decode(eh, xh.data());
    lo_->decode(el, xl.data());
    for (size_t t = 0; t < n; ++t) {
      size_t ih = 0, il = 0;
      for (size_t j = 0; j < d; ++j)
        out[t * d + j] = is_out[j] ? xh[t * n_out_ + ih++] : xl[t * (d - n_out_) + il++];
    }
  }

 private:
  size_t bitmap_bytes() const { return (dim() + 7) / 8; }

  void split(const float* x, size_t n, const std::vector<uint8_t>& is_out, std::vector<float>& xh,
             std::vector<float>& xl) const {
    const size_t d = dim();
    xh.resize(n * n_out_);
    xl.resize(n * (d - n_out_));
    for (size_t t = 0; t < n; ++t) {
      size_t ih = 0, il = 0;
      for (size_t j = 0; j < d; ++j) {
        if (is_out[j]) xh[t * n_out_ + ih++] = x[t * d + j];
        else xl[t * (d - n_out_) + il++] = x[t * d + j];
      }
    }
  }

  size_t n_out_;
  int hi_bits_, lo_bits_;
  std::string rotation_;
  std::unique_ptr<RotatedScalarCodec> hi_, lo_;
};

}  // namespace

std::unique_ptr<Codec> make_outlier(const CodecArgs& args, const CodecContext& ctx) {
  constexpr long kDefaultOutliers = 32, kDefaultHi = 3, kDefaultLo = 2;
  constexpr long kMinPartDim = 2;  // each part is a tq-mse vector of dimension >= 2
  if (args.bits != -1)
    throw UsageError(fmt::format("codec spec '{}': outlier takes no ':B'; use hi= and lo=", args.spec));
  const long d = static_cast<long>(ctx.dim);
  const long n_out = args.get_int("n", kDefaultOutliers);
  const long hi = args.get_int("hi", kDefaultHi);
  const long lo = args.get_int("lo", kDefaultLo);
  if (n_out < kMinPartDim || n_out > d - kMinPartDim)
    throw UsageError(fmt::format("codec spec '{}': n must be in 2..d-2 = {} for head_dim {}, not {}", args.spec,
                                 d - kMinPartDim, d, n_out));
  if (hi < 1 || hi > 8) throw UsageError(fmt::format("codec spec '{}': hi must be 1..8, not {}", args.spec, hi));
  if (lo < 1 || lo > 8) throw UsageError(fmt::format("codec spec '{}': lo must be 1..8, not {}", args.spec, lo));
  const std::string rot = args.get_string("rotation", "haar");
  if (!is_rotation_kind(rot))
    throw UsageError(fmt::format("codec spec '{}': unknown rotation '{}' (known: haar, hr, id)", args.spec, rot));
  return std::make_unique<OutlierCodec>(static_cast<size_t>(n_out), static_cast<int>(hi), static_cast<int>(lo), rot, ctx);
}

}  // namespace tq
