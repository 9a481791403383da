// llama.cpp / ggml block quantization formats as KV-cache baselines: q8_0, q4_0, q4_1, iq4_nl.
//
// Each row (one token's head vector of d elements) is cut into blocks of B consecutive elements
// (B = 32 as in ggml; see "Block size" below); every block is quantized on its own with an fp16
// scale (and, for q4_1, an fp16 minimum). The quantizers follow the semantics of ggml's
// reference (scalar) quantizers in ggml-quants.c; the code here is written from that description:
//
//   q8_0:   d = amax / 127,            q = round(x / d)                 in [-127, 127], x^ = q d
//   q4_0:   d = max / -8 (max = the element of largest magnitude, sign kept),
//           q = min(15, trunc(x / d + 8.5)) in [0, 15],                  x^ = (q - 8) d
//   q4_1:   d = (max - min) / 15, m = min,
//           q = min(15, trunc((x - m) / d + 0.5)) in [0, 15],            x^ = q d + m
//   iq4_nl: x^ = d * T[q] with the fixed non-uniform table T (16 int8 values), d chosen by a
//           small weighted least-squares search (see quantize_iq4_nl_block).
//
// As in ggml, q8_0/q4_0/q4_1 compute codes with the unrounded fp32 scale (1/d multiplied in) and
// then store d (and m) as fp16: the decoder uses the fp16 values.
//
// Byte layout: blocks in row-major element order, each block laid out as ggml's block structs,
// little-endian fp16:
//   q8_0:   [d fp16][B int8 codes]                          2 + B     bytes
//   q4_0:   [d fp16][B/2 bytes of nibbles]                  2 + B/2   bytes
//   q4_1:   [d fp16][m fp16][B/2 bytes of nibbles]          4 + B/2   bytes
//   iq4_nl: [d fp16][B/2 bytes of nibbles]                  2 + B/2   bytes
// Nibble packing as in ggml: byte j holds code j in its low nibble and code j + B/2 in its high
// nibble. With B = 32 an encoding is byte-compatible with a ggml tensor of that type.
// Counting: fp16 scales/minima are side bytes, codes are payload.
//
// Block size: option block=B (default 32). The effective block is min(B, d): a head shorter than
// the block (e.g. head_dim 8) is one block per row, its fp16 scale amortised over fewer elements
// and counted honestly. d not a multiple of the effective block is a UsageError naming the spec.
#include <algorithm>
#include <cmath>
#include <string>
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

enum class BlockKind { Q8_0, Q4_0, Q4_1, IQ4_NL };

constexpr size_t kDefaultBlock = 32;   ///< QK8_0 = QK4_0 = QK4_1 = QK4_NL = 32 in ggml
constexpr int kQ8Max = 127;            ///< q8_0 codes are symmetric in [-127, 127]
constexpr float kQ4ZeroOffset = 8.0f;  ///< q4_0 code q stands for q - 8
constexpr int kNibbleMax = 15;
constexpr float kIq4EpsAmax = 1e-15f;  ///< below this block maximum iq4_nl stores a zero scale
constexpr int kIq4ScaleTries = 7;      ///< iq4_nl tries the max element on table[0] + t, |t| <= 7

/// The iq4_nl value table (ggml's kvalues_iq4nl): a fixed non-uniform 4-bit grid, sorted.
constexpr int8_t kIq4Table[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
constexpr int kIq4NearZeroIndex = 8;  ///< T[8] = 1: the code written for an all-zero block

const char* kind_name(BlockKind k) {
  switch (k) {
    case BlockKind::Q8_0: return "q8_0";
    case BlockKind::Q4_0: return "q4_0";
    case BlockKind::Q4_1: return "q4_1";
    case BlockKind::IQ4_NL: return "iq4_nl";
  }
  return "?";
}

int nominal_bits(BlockKind k) { return k == BlockKind::Q8_0 ? 8 : 4; }

/// Truncate v to an integer code in [lo, hi]; out-of-range values clamp and NaN (possible only
/// when a subnormal scale makes 1/d overflow) maps to `lo`, so the float -> int cast is always
/// defined.
int clamp_trunc(float v, int lo, int hi) {
  if (!(v > static_cast<float>(lo))) return lo;
  if (v >= static_cast<float>(hi)) return hi;
  return static_cast<int>(v);
}

/// Side bytes (fp16 scale, plus fp16 minimum for q4_1) per block.
size_t side_bytes_per_block(BlockKind k) { return k == BlockKind::Q4_1 ? 4 : 2; }

/// Code bytes per block of b elements.
size_t code_bytes_per_block(BlockKind k, size_t b) { return k == BlockKind::Q8_0 ? b : b / 2; }

/// Index of the table entry nearest to v (ties go to the larger entry).
int iq4_nearest(float v) {
  if (v <= kIq4Table[0]) return 0;
  if (v >= kIq4Table[15]) return 15;
  int lo = 0, hi = 15;  // invariant: T[lo] <= v < T[hi]
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (v < kIq4Table[mid]) hi = mid;
    else lo = mid;
  }
  return (v - kIq4Table[lo] < kIq4Table[hi] - v) ? lo : hi;
}

/// Weighted least-squares fit for the iq4_nl assignment induced by the inverse scale `inv`:
/// codes q_j = nearest(inv * x_j); returns sum w q x and sum w q^2. With these the best scale for
/// that assignment is d* = sum(wqx) / sum(wq^2) and the weighted error it leaves is
/// sum(w x^2) - sum(wqx)^2 / sum(wq^2), so maximising sum(wqx)^2 / sum(wq^2) minimises the error.
void iq4_fit(const float* x, const float* w, size_t b, float inv, float& sum_qx, float& sum_q2) {
  sum_qx = 0.0f;
  sum_q2 = 0.0f;
  for (size_t j = 0; j < b; ++j) {
    const float q = kIq4Table[iq4_nearest(inv * x[j])];
    sum_qx += w[j] * q * x[j];
    sum_q2 += w[j] * q * q;
  }
}

/// Scale of one iq4_nl block, following ggml's reference search (quantize_row_iq4_nl_impl with
/// ntry = 7, no importance matrix): weights w_j = x_j^2 (big elements matter most).
///  1. Start from d0 = max / 127 (the element of largest magnitude near the table's +127 end,
///     i.e. d0 = -max / T[0]); assign nearest codes and take the least-squares scale.
///  2. For t = -7..7 map the largest element exactly onto T[0] + t (inverse scale (T[0]+t)/max,
///     i.e. the opposite end of the table); assign, and keep the least-squares scale if it
///     lowers the weighted error.
/// The chosen scale is stored as fp16; the codes are then re-assigned as nearest entries for
/// the fp16 scale the decoder will use (ggml re-assigns with the fp32 scale; using the stored one
/// can only lower each element's error).
float iq4_nl_scale(const float* x, float* w, size_t b) {
  float amax = 0.0f, max = 0.0f;
  for (size_t j = 0; j < b; ++j) {
    w[j] = x[j] * x[j];
    const float ax = std::fabs(x[j]);
    if (ax > amax) {
      amax = ax;
      max = x[j];
    }
  }
  if (amax < kIq4EpsAmax) return 0.0f;
  const float d0 = -max / static_cast<float>(kIq4Table[0]);
  float sum_qx = 0.0f, sum_q2 = 0.0f;
  iq4_fit(x, w, b, 1.0f / d0, sum_qx, sum_q2);
  if (!(sum_q2 > 0.0f)) return d0;  // every weight underflowed: keep the plain scale
  float d = sum_qx / sum_q2;
  float best = d * sum_qx;  // = sum_qx^2 / sum_q2
  for (int t = -kIq4ScaleTries; t <= kIq4ScaleTries; ++t) {
    const float inv = (static_cast<float>(t) + static_cast<float>(kIq4Table[0])) / max;
    iq4_fit(x, w, b, inv, sum_qx, sum_q2);
    if (sum_q2 > 0.0f && sum_qx * sum_qx > best * sum_q2) {
      d = sum_qx / sum_q2;
      best = d * sum_qx;
    }
  }
  return d;
}

void put_nibbles(const uint8_t* codes, size_t b, uint8_t* out) {
  const size_t half = b / 2;
  for (size_t j = 0; j < half; ++j) out[j] = static_cast<uint8_t>(codes[j] | (codes[j + half] << 4));
}

void get_nibbles(const uint8_t* in, size_t b, uint8_t* codes) {
  const size_t half = b / 2;
  for (size_t j = 0; j < half; ++j) {
    codes[j] = in[j] & 0x0Fu;
    codes[j + half] = static_cast<uint8_t>(in[j] >> 4);
  }
}

class BlockFormatCodec final : public Codec {
 public:
  BlockFormatCodec(BlockKind kind, size_t block, CodecContext ctx)
      : Codec(std::move(ctx)), kind_(kind), block_(block),
        block_bytes_(side_bytes_per_block(kind) + code_bytes_per_block(kind, block)) {}

  std::string spec() const override { return fmt::format("{},block={}", kind_name(kind_), block_); }

  Encoded encode(const float* x, size_t n, const int32_t* positions) const override {
    (void)positions;
    Encoded e;
    e.n_tokens = n;
    e.dim = dim();
    e.count = byte_count(n);
    e.bytes.assign(e.count.total(), 0);
    const size_t n_blocks = n * dim() / block_;
    if (fast_path()) {  // q8_0 / q4_0 with 32-element blocks: simd kernels, chunks of blocks in parallel
      const simd::Kernels& k = simd::kernels();
      parallel_for(chunks(n_blocks), n_blocks >= kParallelMinBlocks, [&](size_t c) {
        const size_t b0 = c * kChunkBlocks, nb = std::min(kChunkBlocks, n_blocks - b0);
        uint8_t* out = e.bytes.data() + b0 * block_bytes_;
        if (kind_ == BlockKind::Q8_0) k.q8_0_encode(x + b0 * block_, nb, out);
        else k.q4_0_encode(x + b0 * block_, nb, out);
      });
      return e;
    }
    std::vector<uint8_t> codes(block_);
    std::vector<float> weights(block_);
    for (size_t i = 0; i < n_blocks; ++i) {
      const float* xb = x + i * block_;
      uint8_t* out = e.bytes.data() + i * block_bytes_;
      switch (kind_) {
        case BlockKind::Q8_0: encode_q8_0(xb, out); break;
        case BlockKind::Q4_0: encode_q4_0(xb, codes.data(), out); break;
        case BlockKind::Q4_1: encode_q4_1(xb, codes.data(), out); break;
        case BlockKind::IQ4_NL: encode_iq4_nl(xb, codes.data(), weights.data(), out); break;
      }
    }
    return e;
  }

  void decode(const Encoded& e, float* out) const override {
    const size_t n = e.n_tokens;
    if (e.dim != dim() || e.bytes.size() != byte_count(n).total())
      throw Error(fmt::format("codec '{}': encoding of {} tokens holds {} bytes, expected {} for head_dim {}", spec(), n,
                              e.bytes.size(), byte_count(n).total(), dim()));
    const size_t n_blocks = n * dim() / block_;
    if (fast_path()) {
      const simd::Kernels& k = simd::kernels();
      // an output far larger than the caches goes straight to memory (non-temporal stores)
      const bool stream = n * dim() * sizeof(float) >= kStreamOutputBytes;
      parallel_for(chunks(n_blocks), n_blocks >= kParallelMinBlocks, [&](size_t c) {
        const size_t b0 = c * kChunkBlocks, nb = std::min(kChunkBlocks, n_blocks - b0);
        const uint8_t* in = e.bytes.data() + b0 * block_bytes_;
        if (kind_ == BlockKind::Q8_0) k.q8_0_decode(in, nb, out + b0 * block_, stream);
        else k.q4_0_decode(in, nb, out + b0 * block_, stream);
      });
      return;
    }
    std::vector<uint8_t> codes(block_);
    for (size_t i = 0; i < n_blocks; ++i) {
      const uint8_t* in = e.bytes.data() + i * block_bytes_;
      float* yb = out + i * block_;
      const float d = bytes::get_fp16(in);
      switch (kind_) {
        case BlockKind::Q8_0:
          for (size_t j = 0; j < block_; ++j) yb[j] = static_cast<float>(static_cast<int8_t>(in[2 + j])) * d;
          break;
        case BlockKind::Q4_0:
          get_nibbles(in + 2, block_, codes.data());
          for (size_t j = 0; j < block_; ++j) yb[j] = (static_cast<float>(codes[j]) - kQ4ZeroOffset) * d;
          break;
        case BlockKind::Q4_1: {
          const float m = bytes::get_fp16(in + 2);
          get_nibbles(in + 4, block_, codes.data());
          for (size_t j = 0; j < block_; ++j) yb[j] = static_cast<float>(codes[j]) * d + m;
          break;
        }
        case BlockKind::IQ4_NL:
          get_nibbles(in + 2, block_, codes.data());
          for (size_t j = 0; j < block_; ++j) yb[j] = d * static_cast<float>(kIq4Table[codes[j]]);
          break;
      }
    }
  }

  ByteCount byte_count(size_t n) const override {
    const size_t n_blocks = n * dim() / block_;
    ByteCount c;
    c.side = n_blocks * side_bytes_per_block(kind_);
    c.payload = n_blocks * code_bytes_per_block(kind_, block_);
    return c;
  }

 private:
  /// Blocks per parallel work item, and the batch size below which one thread does it all.
  static constexpr size_t kChunkBlocks = 256;
  static constexpr size_t kParallelMinBlocks = 1024;
  /// Decoded outputs at least this large use the kernels' streaming stores (as rotated_scalar.cpp).
  static constexpr size_t kStreamOutputBytes = size_t{32} << 20;
  static size_t chunks(size_t n_blocks) { return (n_blocks + kChunkBlocks - 1) / kChunkBlocks; }
  /// The simd kernels implement exactly these two formats at ggml's block size (same bytes as
  /// encode_q8_0 / encode_q4_0 below, which serve the other block sizes).
  bool fast_path() const { return block_ == simd::kQBlock && (kind_ == BlockKind::Q8_0 || kind_ == BlockKind::Q4_0); }

  void encode_q8_0(const float* x, uint8_t* out) const {
    float amax = 0.0f;
    for (size_t j = 0; j < block_; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / static_cast<float>(kQ8Max);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    bytes::put_fp16(out, d);
    for (size_t j = 0; j < block_; ++j) {
      const int q = clamp_trunc(std::round(x[j] * id), -kQ8Max, kQ8Max);  // round half away from 0 (roundf)
      out[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(q));
    }
  }

  void encode_q4_0(const float* x, uint8_t* codes, uint8_t* out) const {
    float amax = 0.0f, max = 0.0f;  // max: the element of largest magnitude (first one on ties)
    for (size_t j = 0; j < block_; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -kQ4ZeroOffset;  // the largest element lands exactly on code 0 (= -8 d)
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    bytes::put_fp16(out, d);
    for (size_t j = 0; j < block_; ++j) {
      // x / d lies in [-8, 8]; + 8.5 then truncation rounds x/d + 8 to nearest (ties up).
      const float v = x[j] * id + (kQ4ZeroOffset + 0.5f);
      codes[j] = static_cast<uint8_t>(clamp_trunc(v, 0, kNibbleMax));
    }
    put_nibbles(codes, block_, out + 2);
  }

  void encode_q4_1(const float* x, uint8_t* codes, uint8_t* out) const {
    float mn = x[0], mx = x[0];
    for (size_t j = 1; j < block_; ++j) {
      mn = std::min(mn, x[j]);
      mx = std::max(mx, x[j]);
    }
    const float d = (mx - mn) / static_cast<float>(kNibbleMax);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    bytes::put_fp16(out, d);
    bytes::put_fp16(out + 2, mn);
    for (size_t j = 0; j < block_; ++j) {
      const float v = (x[j] - mn) * id + 0.5f;  // >= 0: truncation = round to nearest, ties up
      codes[j] = static_cast<uint8_t>(clamp_trunc(v, 0, kNibbleMax));
    }
    put_nibbles(codes, block_, out + 4);
  }

  void encode_iq4_nl(const float* x, uint8_t* codes, float* weights, uint8_t* out) const {
    const float d = iq4_nl_scale(x, weights, block_);
    bytes::put_fp16(out, d);
    const float d16 = bytes::get_fp16(out);
    const float id = d16 != 0.0f ? 1.0f / d16 : 0.0f;
    for (size_t j = 0; j < block_; ++j)
      codes[j] = static_cast<uint8_t>(d16 != 0.0f ? iq4_nearest(id * x[j]) : kIq4NearZeroIndex);
    put_nibbles(codes, block_, out + 2);
  }

  BlockKind kind_;
  size_t block_;
  size_t block_bytes_;
};

/// Largest power of two dividing d that is at most `cap` (a block size to suggest).
size_t suggest_block(size_t d, size_t cap) {
  size_t b = 1;
  while (b * 2 <= cap && d % (b * 2) == 0) b *= 2;
  return b;
}

std::unique_ptr<Codec> make_block_format(BlockKind kind, const CodecArgs& args, const CodecContext& ctx) {
  const char* name = kind_name(kind);
  if (args.bits != -1 && args.bits != nominal_bits(kind))
    throw UsageError(fmt::format("codec spec '{}': {} is a fixed {}-bit format; drop ':{}'", args.spec, name,
                                 nominal_bits(kind), args.bits));
  if (ctx.dim == 0) throw UsageError(fmt::format("codec spec '{}': head_dim is 0", args.spec));
  const long requested = args.get_int("block", static_cast<long>(kDefaultBlock));
  const bool nibbles = kind != BlockKind::Q8_0;
  if (requested < 1 || (nibbles && requested % 2 != 0))
    throw UsageError(fmt::format("codec spec '{}': block={} must be a positive{} integer", args.spec, requested,
                                 nibbles ? " even" : ""));
  const size_t d = ctx.dim;
  const size_t block = std::min(static_cast<size_t>(requested), d);
  if (d % block != 0 || (nibbles && block % 2 != 0)) {
    const size_t hint = suggest_block(d, static_cast<size_t>(requested));
    throw UsageError(fmt::format("codec spec '{}': head_dim {} is not a multiple of the {}-element block{}", args.spec,
                                 d, block,
                                 (hint >= (nibbles ? 2u : 1u)) ? fmt::format(" (block={} would divide it)", hint) : ""));
  }
  return std::make_unique<BlockFormatCodec>(kind, block, ctx);
}

}  // namespace

std::unique_ptr<Codec> make_q8_0(const CodecArgs& args, const CodecContext& ctx) {
  return make_block_format(BlockKind::Q8_0, args, ctx);
}
std::unique_ptr<Codec> make_q4_0(const CodecArgs& args, const CodecContext& ctx) {
  return make_block_format(BlockKind::Q4_0, args, ctx);
}
std::unique_ptr<Codec> make_q4_1(const CodecArgs& args, const CodecContext& ctx) {
  return make_block_format(BlockKind::Q4_1, args, ctx);
}
std::unique_ptr<Codec> make_iq4_nl(const CodecArgs& args, const CodecContext& ctx) {
  return make_block_format(BlockKind::IQ4_NL, args, ctx);
}

}  // namespace tq
