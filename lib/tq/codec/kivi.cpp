// KIVI (Liu et al. 2024, "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache",
// arXiv:2402.02750): asymmetric uniform quantization with a per-group fp16 scale and zero point.
//
//   keys   (ctx.tensor == "k"): per-CHANNEL quantization. Tokens are cut into groups of G_k
//          consecutive tokens; each channel of each token group gets its own (min, scale), so an
//          outlier channel only stretches its own grid (the paper's observation about K).
//   values (ctx.tensor == "v"): per-TOKEN quantization over groups of G_v consecutive channels.
//
// One group with values x_1..x_m and b bits (Q = 2^b - 1 levels above the minimum):
//   z = fp16(min x),  s = fp16((max x - min x) / Q)
//   q = clamp(floor((x - z) / s + 1/2), 0, Q)      (round to nearest, ties up)
//   x^ = z + q s
// z and s are rounded to fp16 BEFORE the codes are chosen, so each code is the nearest point of
// the grid the decoder really uses. max == min gives s = 0, every code 0 and x^ = fp16(min).
//
// Full-precision tokens (fp16 by default, fp32 with window-dtype=fp32, counted as window bytes):
//   * sinks=N: the first min(N, T) tokens;
//   * window=R: the last min(R, T - sinks) tokens (the paper's residual window);
//   * K only: of the tokens between sinks and window, the last (count mod G_k) do not fill a
//     token group and stay full precision too (the paper's not-yet-quantized K residual).
// So for keys the quantized tokens are exactly floor((T - S - R) / G_k) * G_k groups' worth, and
// everything else is exact up to fp16 rounding.
//
// Byte layout of the quantized core (sinks/window are stage_sinks.cpp's KeepRowsStage around it):
//   [side: (scale fp16, zero fp16) per group]  K: group-major, channel-minor; V: token-major,
//                                              channel-group-minor
//   [payload: codes of the quantized tokens, token-major (row t, channel c), LSB-first
//    bit stream of b bits each, zero-padded to a whole byte]
//   [K residual rows: (T' mod G_k) rows at fp16/fp32]
// Bits per element of the quantized part: b + 32 / G (k2, G = 32: 3.0 bits).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <fmt/format.h>

#include "tq/codec/byte_fields.h"
#include "tq/codec/codec.h"
#include "tq/codec/factories.h"
#include "tq/core/error.h"
#include "tq/core/parallel.h"
#include "tq/simd/kernels.h"

namespace tq {

namespace {

constexpr long kDefaultGroup = 32;     ///< the paper's group size
constexpr size_t kGroupSideBytes = 4;  ///< fp16 scale + fp16 zero point per group

/// Decoded quantization grid of one group.
struct UniformGrid {
  float zero = 0.0f;
  float scale = 0.0f;
};

/// The fp16 (zero, scale) of a group with range [mn, mx] and `levels` = 2^b - 1 steps; writes
/// both fp16 fields to `side` and returns the values the decoder will read back.
UniformGrid make_grid(float mn, float mx, int levels, uint8_t* side) {
  const float s = (mx - mn) / static_cast<float>(levels);
  bytes::put_fp16(side, s);
  bytes::put_fp16(side + 2, mn);
  return {bytes::get_fp16(side + 2), bytes::get_fp16(side)};
}

UniformGrid read_grid(const uint8_t* side) { return {bytes::get_fp16(side + 2), bytes::get_fp16(side)}; }

/// The quantized part of KIVI for one tensor (no sinks, no recent window).
class KiviCore final : public Codec {
 public:
  KiviCore(CodecContext ctx, int bits, bool keys, size_t group, bool residual_fp32)
      : Codec(std::move(ctx)), bits_(bits), levels_((1 << bits) - 1), keys_(keys), group_(group),
        residual_fp32_(residual_fp32) {}

  std::string spec() const override { return "kivi-core"; }  // never shown: Kivi wraps it

  Encoded encode(const float* x, size_t n, const int32_t* positions) const override {
    (void)positions;
    Encoded e;
    e.n_tokens = n;
    e.dim = dim();
    e.count = byte_count(n);
    e.bytes.assign(e.count.total(), 0);
    uint8_t* side = e.bytes.data();
    uint8_t* payload = side + e.count.side;
    uint8_t* residual = payload + e.count.payload;
    const size_t nq = quantized_tokens(n);
    if (keys_) encode_keys(x, nq, side, payload);
    else encode_values(x, nq, side, payload);
    bytes::store_full_precision(x + nq * dim(), (n - nq) * dim(), residual_fp32_, residual);
    return e;
  }

  void decode(const Encoded& e, float* out) const override {
    const size_t n = e.n_tokens;
    const ByteCount c = byte_count(n);
    if (e.dim != dim() || e.bytes.size() != c.total())
      throw Error(fmt::format("codec 'kivi:{}': encoding of {} tokens holds {} bytes, expected {} for head_dim {}",
                              bits_, n, e.bytes.size(), c.total(), dim()));
    const uint8_t* side = e.bytes.data();
    const uint8_t* payload = side + c.side;
    const uint8_t* residual = payload + c.payload;
    const size_t nq = quantized_tokens(n);
    if (keys_) decode_keys(side, payload, nq, out);
    else decode_values(side, payload, nq, out);
    bytes::load_full_precision(residual, (n - nq) * dim(), residual_fp32_, out + nq * dim());
  }

  ByteCount byte_count(size_t n) const override {
    const size_t d = dim();
    const size_t nq = quantized_tokens(n);
    const size_t n_groups = keys_ ? (nq / group_) * d : nq * (d / group_);
    ByteCount c;
    c.side = n_groups * kGroupSideBytes;
    c.payload = bytes::packed_bytes(nq * d, bits_);
    c.window = (n - nq) * d * bytes::full_precision_bytes(residual_fp32_);
    return c;
  }

 private:
  /// Tokens that get quantized: whole token groups for K, every token for V.
  size_t quantized_tokens(size_t n) const { return keys_ ? (n / group_) * group_ : n; }

  // Codes are computed row by row into a byte buffer with the element-wise grid kernels
  // (simd::Kernels::uniform_quantize, per-element zero/scale arrays), then bit-packed in one
  // call: the same LSB-first stream as a bit-by-bit writer, in token-major order. Token groups (K)
  // and token blocks (V) are independent work items for parallel_for: each writes its own side
  // bytes and code rows, so the bytes are the same at any thread count.

  /// Tokens per parallel work item of the V paths, and the least elements worth a thread team.
  static constexpr size_t kValueBlockTokens = 64;
  static constexpr size_t kParallelMinElements = size_t{1} << 15;

  void encode_keys(const float* x, size_t nq, uint8_t* side, uint8_t* payload) const {
    const size_t d = dim();
    const simd::Kernels& k = simd::kernels();
    std::vector<uint8_t> codes(nq * d);
    parallel_for(nq / group_, nq * d >= kParallelMinElements, [&](size_t gi) {
      const size_t t0 = gi * group_;
      std::vector<float> mn(d, std::numeric_limits<float>::infinity()), mx(d, -std::numeric_limits<float>::infinity());
      std::vector<float> zero(d), scale(d);
      // Per-channel range over the group's tokens (row-wise sweep keeps the loads contiguous).
      const float* xg = x + t0 * d;
      for (size_t t = 0; t < group_; ++t) {
        const float* row = xg + t * d;
        for (size_t c = 0; c < d; ++c) {
          mn[c] = std::min(mn[c], row[c]);
          mx[c] = std::max(mx[c], row[c]);
        }
      }
      uint8_t* gs = side + gi * d * kGroupSideBytes;
      for (size_t c = 0; c < d; ++c) {
        const UniformGrid g = make_grid(mn[c], mx[c], levels_, gs + c * kGroupSideBytes);
        zero[c] = g.zero;
        scale[c] = g.scale;
      }
      for (size_t t = 0; t < group_; ++t)
        k.uniform_quantize(xg + t * d, d, zero.data(), scale.data(), levels_, codes.data() + (t0 + t) * d);
    });
    k.pack(codes.data(), nq * d, bits_, payload);
  }

  void decode_keys(const uint8_t* side, const uint8_t* payload, size_t nq, float* out) const {
    const size_t d = dim();
    const simd::Kernels& k = simd::kernels();
    std::vector<uint8_t> codes(nq * d);
    k.unpack(payload, nq * d, bits_, codes.data());
    parallel_for(nq / group_, nq * d >= kParallelMinElements, [&](size_t gi) {
      const size_t t0 = gi * group_;
      std::vector<float> zero(d), scale(d);
      const uint8_t* gs = side + gi * d * kGroupSideBytes;
      for (size_t c = 0; c < d; ++c) {
        const UniformGrid g = read_grid(gs + c * kGroupSideBytes);
        zero[c] = g.zero;
        scale[c] = g.scale;
      }
      for (size_t t = 0; t < group_; ++t)
        k.uniform_dequantize(codes.data() + (t0 + t) * d, d, zero.data(), scale.data(), out + (t0 + t) * d);
    });
  }

  /// zero/scale arrays of one V row from its per-channel-group grids (side: the row's grids).
  void value_row_grids(const uint8_t* side, float* zero, float* scale) const {
    for (size_t c0 = 0; c0 < dim(); c0 += group_) {
      const UniformGrid g = read_grid(side + (c0 / group_) * kGroupSideBytes);
      std::fill(zero + c0, zero + c0 + group_, g.zero);
      std::fill(scale + c0, scale + c0 + group_, g.scale);
    }
  }

  void encode_values(const float* x, size_t nq, uint8_t* side, uint8_t* payload) const {
    const size_t d = dim();
    const size_t row_side = (d / group_) * kGroupSideBytes;
    const simd::Kernels& k = simd::kernels();
    std::vector<uint8_t> codes(nq * d);
    const size_t n_blocks = (nq + kValueBlockTokens - 1) / kValueBlockTokens;
    parallel_for(n_blocks, nq * d >= kParallelMinElements, [&](size_t blk) {
      std::vector<float> zero(d), scale(d);
      for (size_t t = blk * kValueBlockTokens; t < std::min(nq, (blk + 1) * kValueBlockTokens); ++t) {
        for (size_t c0 = 0; c0 < d; c0 += group_) {
          const float* xg = x + t * d + c0;
          float mn = xg[0], mx = xg[0];
          for (size_t c = 1; c < group_; ++c) {
            mn = std::min(mn, xg[c]);
            mx = std::max(mx, xg[c]);
          }
          make_grid(mn, mx, levels_, side + t * row_side + (c0 / group_) * kGroupSideBytes);
        }
        value_row_grids(side + t * row_side, zero.data(), scale.data());
        k.uniform_quantize(x + t * d, d, zero.data(), scale.data(), levels_, codes.data() + t * d);
      }
    });
    k.pack(codes.data(), nq * d, bits_, payload);
  }

  void decode_values(const uint8_t* side, const uint8_t* payload, size_t nq, float* out) const {
    const size_t d = dim();
    const size_t row_side = (d / group_) * kGroupSideBytes;
    const simd::Kernels& k = simd::kernels();
    std::vector<uint8_t> codes(nq * d);
    k.unpack(payload, nq * d, bits_, codes.data());
    const size_t n_blocks = (nq + kValueBlockTokens - 1) / kValueBlockTokens;
    parallel_for(n_blocks, nq * d >= kParallelMinElements, [&](size_t blk) {
      std::vector<float> zero(d), scale(d);
      for (size_t t = blk * kValueBlockTokens; t < std::min(nq, (blk + 1) * kValueBlockTokens); ++t) {
        value_row_grids(side + t * row_side, zero.data(), scale.data());
        k.uniform_dequantize(codes.data() + t * d, d, zero.data(), scale.data(), out + t * d);
      }
    });
  }

  int bits_;
  int levels_;
  bool keys_;
  size_t group_;  ///< tokens per group (K) or channels per group (V)
  bool residual_fp32_;
};

/// KIVI with its full-precision sinks and recent window: a facade over
/// sinks(window(KiviCore)) that reports the kivi spec.
class Kivi final : public Codec {
 public:
  Kivi(CodecContext ctx, std::string spec, std::unique_ptr<Codec> pipeline)
      : Codec(std::move(ctx)), spec_(std::move(spec)), pipeline_(std::move(pipeline)) {}
  std::string spec() const override { return spec_; }
  Encoded encode(const float* x, size_t n, const int32_t* positions) const override {
    return pipeline_->encode(x, n, positions);
  }
  void decode(const Encoded& e, float* out) const override { pipeline_->decode(e, out); }
  ByteCount byte_count(size_t n) const override { return pipeline_->byte_count(n); }

 private:
  std::string spec_;
  std::unique_ptr<Codec> pipeline_;
};

long read_nonnegative(const CodecArgs& args, const char* key, long fallback) {
  const long v = args.get_int(key, fallback);
  if (v < 0) throw UsageError(fmt::format("codec spec '{}': {}={} must be >= 0", args.spec, key, v));
  return v;
}

long read_group(const CodecArgs& args, const char* key, long fallback) {
  const long v = args.get_int(key, fallback);
  if (v < 1) throw UsageError(fmt::format("codec spec '{}': {}={} must be a positive integer", args.spec, key, v));
  return v;
}

bool read_fp32_flag(const CodecArgs& args, const char* key) {
  const std::string v = args.get_string(key, "fp16");
  if (v == "fp16") return false;
  if (v == "fp32") return true;
  throw UsageError(fmt::format("codec spec '{}': {}={} must be fp16 or fp32", args.spec, key, v));
}

}  // namespace

std::unique_ptr<Codec> make_kivi(const CodecArgs& args, const CodecContext& ctx) {
  const int bits = args.require_bits(1, 8);
  if (ctx.tensor != "k" && ctx.tensor != "v")
    throw UsageError(fmt::format("codec spec '{}': kivi codes keys (tensor k) and values (tensor v), not '{}'",
                                 args.spec, ctx.tensor));
  if (ctx.dim == 0) throw UsageError(fmt::format("codec spec '{}': head_dim is 0", args.spec));
  const long group = read_group(args, "group", kDefaultGroup);
  const long group_k = read_group(args, "group-k", group);
  const long group_v_requested = read_group(args, "group-v", group);
  const long window = read_nonnegative(args, "window", 0);
  const long sinks = read_nonnegative(args, "sinks", 0);
  const bool fp32 = read_fp32_flag(args, "window-dtype");
  if (window > std::numeric_limits<int>::max() || sinks > std::numeric_limits<int>::max())
    throw UsageError(fmt::format("codec spec '{}': window/sinks too large", args.spec));

  // The V channel group never exceeds the row (head_dim 8 with group 32: one group per token);
  // otherwise it must divide head_dim.
  const size_t d = ctx.dim;
  const size_t group_v = std::min(static_cast<size_t>(group_v_requested), d);
  if (d % group_v != 0)
    throw UsageError(fmt::format("codec spec '{}': head_dim {} is not a multiple of the {}-channel value group",
                                 args.spec, d, group_v));

  const bool keys = ctx.tensor == "k";
  auto core = std::make_unique<KiviCore>(ctx, bits, keys, keys ? static_cast<size_t>(group_k) : group_v, fp32);
  auto pipeline = wrap_with_sinks(wrap_with_window(std::move(core), static_cast<int>(window), fp32),
                                  static_cast<int>(sinks), fp32);
  std::string spec = fmt::format("kivi:{},group-k={},group-v={},window={},sinks={}", bits, group_k, group_v, window, sinks);
  if (fp32) spec += ",window-dtype=fp32";
  return std::make_unique<Kivi>(ctx, std::move(spec), std::move(pipeline));
}

}  // namespace tq
