// RotatedScalarCodec: the engine of tq-mse and eden (see rotated_scalar.h for the maths and
// the byte layout).
#include "tq/codec/rotated_scalar.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <vector>

#include <fmt/format.h>

#include "tq/codebook/codebook_file.h"
#include "tq/codec/byte_fields.h"
#include "tq/core/error.h"
#include "tq/core/half.h"
#include "tq/core/parallel.h"
#include "tq/core/rng.h"
#include "tq/pack/bitpack.h"

namespace tq {

namespace {

constexpr uint16_t kScaleEscape = 0x7C00;       // fp16 +inf marks "fp32 value in the escape list"
constexpr float kFp16MinNormal = 0x1.0p-14f;    // below this fp16 loses relative precision
constexpr size_t kFp16Bytes = 2;
constexpr size_t kFp32Bytes = 4;
constexpr size_t kMaxCentroids = 256;  // 8 bits

bool fits_fp16(float s) { return s == 0.0f || (s >= kFp16MinNormal && s <= kFp16Max); }

}  // namespace

uint64_t rotation_seed(const CodecContext& ctx) { return seed_combine(ctx.seed, hash_tag("rotation")); }

void normalise_rows(const float* x, size_t n, size_t d, float* y, float* norms, const std::string& who) {
  for (size_t t = 0; t < n; ++t) {
    const float* row = x + t * d;
    double ss = 0.0;
    for (size_t i = 0; i < d; ++i) ss += static_cast<double>(row[i]) * static_cast<double>(row[i]);
    if (!std::isfinite(ss)) throw Error(fmt::format("codec '{}': row {} has a non-finite value or norm", who, t));
    const double r = std::sqrt(ss);
    norms[t] = static_cast<float>(r);
    if (!std::isfinite(norms[t])) throw Error(fmt::format("codec '{}': row {} has a norm beyond the float range", who, t));
    float* yr = y + t * d;
    if (r == 0.0) {
      for (size_t i = 0; i < d; ++i) yr[i] = 0.0f;
    } else {
      const double inv = 1.0 / r;
      for (size_t i = 0; i < d; ++i) yr[i] = static_cast<float>(static_cast<double>(row[i]) * inv);
    }
  }
}

std::string resolve_codebook_path(const CodecContext& ctx, int bits) {
  namespace fs = std::filesystem;
  if (ctx.codebook_dir.empty()) return "";
  std::error_code ec;
  if (!fs::is_directory(ctx.codebook_dir, ec)) return ctx.codebook_dir;  // a file (the loader reports a missing one)
  std::vector<std::string> names;
  if (ctx.layer >= 0 && ctx.head >= 0 && !ctx.tensor.empty()) {
    names.push_back(fmt::format("L{}_H{}_{}_b{}.toml", ctx.layer, ctx.head, ctx.tensor, bits));
    names.push_back(fmt::format("L{}_H{}_{}.toml", ctx.layer, ctx.head, ctx.tensor));
  }
  names.push_back(fmt::format("default_b{}.toml", bits));
  names.push_back("default.toml");
  std::string tried;
  for (const auto& nm : names) {
    const fs::path p = fs::path(ctx.codebook_dir) / nm;
    if (fs::is_regular_file(p, ec)) return p.string();
    if (!tried.empty()) tried += ", ";
    tried += nm;
  }
  throw UsageError(fmt::format("codebook directory '{}' has none of: {}", ctx.codebook_dir, tried));
}

RotatedScalarCodec::RotatedScalarCodec(const RotatedScalarConfig& cfg, const CodecContext& ctx) : Codec(ctx), cfg_(cfg) {
  const size_t d = ctx.dim;
  if (!cfg.codebook_file.empty()) {
    codebook::CodebookFile f = codebook::load_codebook_file(cfg.codebook_file);
    if (f.cb.bits != cfg.bits)
      throw UsageError(fmt::format("codec {}:{}: codebook file '{}' has {} bits", cfg.method, cfg.bits, cfg.codebook_file, f.cb.bits));
    if (static_cast<size_t>(f.dim) != d)
      throw UsageError(fmt::format("codec {}:{}: codebook file '{}' is for dim {}, the tensor has head_dim {}", cfg.method,
                                   cfg.bits, cfg.codebook_file, f.dim, d));
    if (f.rotation != cfg.rotation)
      throw UsageError(fmt::format("codec {}:{}: codebook file '{}' was solved with rotation {}, the codec uses {}", cfg.method,
                                   cfg.bits, cfg.codebook_file, f.rotation, cfg.rotation));
    codebook_in_stream_ = f.per_tensor();
    owned_codebook_ = std::make_shared<const ScalarCodebook>(std::move(f.cb));
    codebook_ = owned_codebook_.get();
  } else {
    codebook_ = cfg.gaussian_law ? &lloyd_max_gaussian(1.0 / std::sqrt(static_cast<double>(d)), cfg.bits)
                                 : &lloyd_max_sphere(d, cfg.bits);
  }
  rotation_ = make_rotation(cfg.rotation, d, rotation_seed(ctx));
}

std::string RotatedScalarCodec::spec() const {
  if (!cfg_.codebook_file.empty())
    return fmt::format("{},{}:{},norm={},codebook={}", cfg_.rotation, cfg_.method, cfg_.bits,
                       cfg_.scale_format == ScaleFormat::Fp16 ? "fp16" : "fp32", cfg_.codebook_file);
  return fmt::format("{},{}:{},norm={},law={}", cfg_.rotation, cfg_.method, cfg_.bits,
                     cfg_.scale_format == ScaleFormat::Fp16 ? "fp16" : "fp32", cfg_.gaussian_law ? "gaussian" : "beta");
}

ByteCount RotatedScalarCodec::byte_count(size_t n) const {
  ByteCount c;
  c.payload = packed_bytes(n * dim(), cfg_.bits);
  c.side = n * (cfg_.scale_format == ScaleFormat::Fp16 ? kFp16Bytes : kFp32Bytes) + header_bytes();
  return c;  // plus 4 bytes per escaped fp16 scale (data dependent, rare)
}

size_t RotatedScalarCodec::encoding_size(const uint8_t* p, size_t avail, size_t n) const {
  const size_t base = byte_count(n).total();
  if (cfg_.scale_format == ScaleFormat::Fp32) return base;
  const size_t hb = header_bytes();
  if (avail < hb + n * kFp16Bytes)
    throw Error(fmt::format("codec '{}': encoding of {} rows is truncated ({} bytes)", spec(), n, avail));
  p += hb;
  size_t n_escapes = 0;
  for (size_t t = 0; t < n; ++t) {
    uint16_t h;
    std::memcpy(&h, p + t * kFp16Bytes, kFp16Bytes);
    n_escapes += h == kScaleEscape ? 1 : 0;
  }
  return base + n_escapes * kFp32Bytes;
}

namespace {

/// Rows per work item: a multiple of 8, so every block's packed codes start on a byte boundary
/// and blocks write disjoint bytes; small enough that a block's scratch stays in L1/L2.
constexpr size_t kBlockRows = 32;
/// Decoded outputs at least this large are written with non-temporal stores where the kernels
/// can (a batch far larger than the caches: keeping it there would only evict the inputs).
constexpr size_t kStreamOutputBytes = size_t{32} << 20;
/// Below this many elements a call runs on one thread (the OpenMP start-up would dominate).
constexpr size_t kParallelMinElements = size_t{1} << 15;

/// Per-thread scratch, grown once and reused (no allocation per row or per block).
struct Scratch {
  std::vector<float> y;
  std::vector<uint8_t> codes;
  std::vector<float> c;
};
Scratch& scratch(size_t rows, size_t d) {
  thread_local Scratch s;
  if (s.y.size() < rows * d) s.y.resize(rows * d);
  if (s.codes.size() < rows * d) s.codes.resize(rows * d);
  if (s.c.size() < d) s.c.resize(d);
  return s;
}

}  // namespace

int RotatedScalarCodec::exact_rescale_exponent(const float* x, size_t t) const {
  float m = 0.0f;
  for (size_t i = 0; i < dim(); ++i) {
    const float a = std::fabs(x[i]);
    if (!(a <= std::numeric_limits<float>::max()))
      throw Error(fmt::format("codec '{}': row {} has a non-finite value or norm", spec(), t));
    m = a > m ? a : m;
  }
  return m == 0.0f ? kZeroRow : std::ilogb(m);
}

float RotatedScalarCodec::rescaled_norm(float r1, int e, size_t t) const {
  const double r = std::ldexp(static_cast<double>(r1), e);
  if (r > static_cast<double>(std::numeric_limits<float>::max()))
    throw Error(fmt::format("codec '{}': row {} has a norm beyond the float range", spec(), t));
  return static_cast<float>(r);
}

float RotatedScalarCodec::normalise_row(const simd::Kernels& k, const float* x, float* y, size_t t) const {
  const size_t d = dim();
  const float ss = k.sum_squares(x, d);
  if (ss >= simd::kRhtMinSumSquares && ss <= std::numeric_limits<float>::max()) {  // NaN fails both
    const float r = std::sqrt(ss);
    k.scale(x, 1.0f / r, y, d);
    return r;
  }
  // Rare: a non-finite value, a huge or a tiny row. Scale by a power of two (exact) first.
  const int e = exact_rescale_exponent(x, t);
  if (e == kZeroRow) {
    for (size_t i = 0; i < d; ++i) y[i] = 0.0f;
    return 0.0f;
  }
  for (size_t i = 0; i < d; ++i) y[i] = std::ldexp(x[i], -e);
  const float r1 = std::sqrt(k.sum_squares(y, d));  // in [1, 2 sqrt(d))
  k.scale(y, 1.0f / r1, y, d);
  return rescaled_norm(r1, e, t);
}

const float* RotatedScalarCodec::fused_signs() const {
  const size_t d = dim();
  if (d < 8 || (d & (d - 1)) != 0) return nullptr;
  return rotation_->hadamard_signs();
}

void RotatedScalarCodec::write_scales(uint8_t* base, const float* scale, size_t t0, size_t rows) const {
  if (cfg_.scale_format == ScaleFormat::Fp32) {
    std::memcpy(base + t0 * kFp32Bytes, scale + t0, rows * kFp32Bytes);
    return;
  }
  // the block's fp16 scales in one kernel call (the same bits as float_to_fp16), then the escape
  // marker for the rare scales fp16 cannot hold
  std::array<uint16_t, kBlockRows> h{};
  simd::kernels().f32_to_f16(scale + t0, h.data(), rows);
  for (size_t r = 0; r < rows; ++r)
    if (!fits_fp16(scale[t0 + r])) h[r] = kScaleEscape;
  std::memcpy(base + t0 * kFp16Bytes, h.data(), rows * kFp16Bytes);
}

// Encode pipeline per block of kBlockRows rows, all in float with the kernels' fixed summation
// order (bit-identical on every ISA path and at any thread count):
//   norm (sum_squares) -> y = x / |x| -> rotate -> boundary search -> [eden: <y, c>] -> pack.
// Scales go straight into their fp16/fp32 slots; the rare escaped fp16 scales are inserted after.
Encoded RotatedScalarCodec::encode(const float* x, size_t n, const int32_t* positions) const {
  (void)positions;
  const size_t d = dim();
  const int bits = cfg_.bits;
  const simd::Kernels& k = simd::kernels();
  const bool fp16 = cfg_.scale_format == ScaleFormat::Fp16;
  const size_t scale_bytes = fp16 ? kFp16Bytes : kFp32Bytes;

  Encoded e;
  e.n_tokens = n;
  e.dim = d;
  e.count = byte_count(n);
  e.bytes.assign(e.count.total(), 0);
  std::vector<float> scale(n);
  const size_t hb = header_bytes();
  if (codebook_in_stream_) {  // per-tensor data codebook: centroids first, fp32 little endian
    for (size_t i = 0; i < codebook_->size(); ++i)
      bytes::put_u32(e.bytes.data() + 4 * i, std::bit_cast<uint32_t>(codebook_->centroids[i]));
  }
  uint8_t* base = e.bytes.data() + hb;  // the scales
  uint8_t* payload = base + n * scale_bytes;
  const float* bounds = codebook_->boundaries.data();
  const float* cent = codebook_->centroids.data();

  const size_t n_blocks = (n + kBlockRows - 1) / kBlockRows;
  const float* signs = fused_signs();
  const size_t row_bytes = d * static_cast<size_t>(bits) / 8;  // whole bytes on the fused path
  parallel_for(n_blocks, n * d >= kParallelMinElements, [&](size_t blk) {
    const size_t t0 = blk * kBlockRows;
    const size_t rows = std::min(kBlockRows, n - t0);
    Scratch& s = scratch(kBlockRows, d);
    float* y = s.y.data();
    uint8_t* codes = s.codes.data();
    if (signs != nullptr) {
      // fused per row: norm -> (x / |x|) D -> FWHT -> boundary search -> pack, in registers.
      // One kernel call encodes the block, each row by its own norm. Rows it leaves with norm 0
      // (zero, tiny, huge or non-finite; rare) are checked and, unless zero, re-encoded after an
      // exact power-of-two rescaling.
      // EDEN also takes <y, c> from the kernel (see the unfused branch below for the formula).
      const float fs = rotation_->hadamard_scale();
      std::array<float, kBlockRows> ips{};
      const float* ccent = cfg_.eden ? cent : nullptr;
      float* ip = cfg_.eden ? ips.data() : nullptr;
      k.rht_encode_rows(x + t0 * d, rows, signs, d, fs, bounds, bits, payload + t0 * row_bytes, scale.data() + t0,
                        ccent, ip);
      for (size_t t = t0; t < t0 + rows; ++t) {
        if (scale[t] != 0.0f) continue;
        const float* xr = x + t * d;
        const int ex = exact_rescale_exponent(xr, t);
        if (ex == kZeroRow) continue;  // the codes of the zero vector are already in place
        for (size_t i = 0; i < d; ++i) y[i] = std::ldexp(xr[i], -ex);
        float r1 = 0.0f;  // in [1, 2 sqrt(d)): inside the kernel's norm range
        k.rht_encode_rows(y, 1, signs, d, fs, bounds, bits, payload + t * row_bytes, &r1, ccent,
                          ip != nullptr ? ip + (t - t0) : nullptr);
        scale[t] = rescaled_norm(r1, ex, t);
      }
      if (cfg_.eden) {
        for (size_t t = t0; t < t0 + rows; ++t) {
          const float ipt = ips[t - t0];
          scale[t] = ipt > 0.0f ? scale[t] / ipt : 0.0f;
        }
      }
      write_scales(base, scale.data(), t0, rows);
      return;
    }
    for (size_t r = 0; r < rows; ++r) scale[t0 + r] = normalise_row(k, x + (t0 + r) * d, y + r * d, t0 + r);
    rotation_->forward(y, y, rows);
    k.quantize(y, rows * d, bounds, bits, codes);
    if (cfg_.eden) {
      // s = r / <y, c>: then <xhat, x> = s <c, R x> = r^2 <c, y> / <y, c> = |x|^2 exactly, and
      // over a Haar R, E[xhat] = x (EDEN, Vargaftik et al. 2022). <y, c> > 0 whenever y != 0
      // because the codebook is symmetric with a boundary at 0, so sign(c_i) = sign(y_i).
      for (size_t r = 0; r < rows; ++r) {
        k.lookup(codes + r * d, d, cent, bits, s.c.data());
        const float ip = k.dot(y + r * d, s.c.data(), d);
        float& sc = scale[t0 + r];
        sc = ip > 0.0f ? sc / ip : 0.0f;
      }
    }
    k.pack(codes, rows * d, bits, payload + t0 * d * static_cast<size_t>(bits) / 8);
    write_scales(base, scale.data(), t0, rows);
  });

  if (fp16) {
    size_t n_escapes = 0;
    for (size_t t = 0; t < n; ++t) n_escapes += fits_fp16(scale[t]) ? 0 : 1;
    if (n_escapes > 0) {
      const auto at = static_cast<std::ptrdiff_t>(hb + n * kFp16Bytes);
      e.bytes.insert(e.bytes.begin() + at, n_escapes * kFp32Bytes, uint8_t{0});
      uint8_t* esc = e.bytes.data() + at;
      for (size_t t = 0; t < n; ++t) {
        if (fits_fp16(scale[t])) continue;
        std::memcpy(esc, &scale[t], kFp32Bytes);
        esc += kFp32Bytes;
      }
      e.count.side += n_escapes * kFp32Bytes;
    }
  }
  return e;
}

void RotatedScalarCodec::decode(const Encoded& e, float* out) const {
  const size_t d = dim();
  const size_t n = e.n_tokens;
  const int bits = cfg_.bits;
  const simd::Kernels& k = simd::kernels();
  if (e.dim != d) throw Error(fmt::format("codec '{}': encoding has dim {}, codec has {}", spec(), e.dim, d));
  const ByteCount base = byte_count(n);
  std::vector<float> scale(n);
  const size_t hb = header_bytes();
  size_t off = hb;
  if (e.bytes.size() < hb)
    throw Error(fmt::format("codec '{}': encoding of {} rows is truncated ({} bytes)", spec(), n, e.bytes.size()));
  std::array<float, kMaxCentroids> stream_centroids{};  // at most 2^8 centroids
  if (codebook_in_stream_) {  // the decoder uses the centroids carried in the encoding
    for (size_t i = 0; i < codebook_->size(); ++i)
      stream_centroids[i] = std::bit_cast<float>(bytes::get_u32(e.bytes.data() + 4 * i));
  }
  if (cfg_.scale_format == ScaleFormat::Fp16) {
    if (e.bytes.size() < base.total())
      throw Error(fmt::format("codec '{}': encoding of {} rows is truncated ({} bytes)", spec(), n, e.bytes.size()));
    const uint8_t* p = e.bytes.data() + hb;
    std::vector<uint16_t> h(n);
    if (n > 0) std::memcpy(h.data(), p, n * kFp16Bytes);
    size_t n_escapes = 0;
    for (size_t t = 0; t < n; ++t) n_escapes += h[t] == kScaleEscape ? 1 : 0;
    off = hb + n * kFp16Bytes;
    if (e.bytes.size() != base.total() + n_escapes * kFp32Bytes)
      throw Error(fmt::format("codec '{}': encoding has {} bytes, expected {}", spec(), e.bytes.size(),
                              base.total() + n_escapes * kFp32Bytes));
    k.f16_to_f32(h.data(), scale.data(), n);
    for (size_t t = 0; t < n && n_escapes > 0; ++t) {
      if (h[t] != kScaleEscape) continue;
      std::memcpy(&scale[t], e.bytes.data() + off, kFp32Bytes);
      off += kFp32Bytes;
      --n_escapes;
    }
  } else {
    if (e.bytes.size() != base.total())
      throw Error(fmt::format("codec '{}': encoding has {} bytes, expected {}", spec(), e.bytes.size(), base.total()));
    if (n > 0) std::memcpy(scale.data(), e.bytes.data() + hb, n * kFp32Bytes);
    off = hb + n * kFp32Bytes;
  }
  const uint8_t* payload = e.bytes.data() + off;
  const float* cent = codebook_in_stream_ ? stream_centroids.data() : codebook_->centroids.data();
  const size_t n_blocks = (n + kBlockRows - 1) / kBlockRows;
  const float* signs = fused_signs();
  const bool stream = n * d * sizeof(float) >= kStreamOutputBytes;
  parallel_for(n_blocks, n * d >= kParallelMinElements, [&](size_t blk) {
    const size_t t0 = blk * kBlockRows;
    const size_t rows = std::min(kBlockRows, n - t0);
    if (signs != nullptr) {  // fused per row: unpack -> lookup -> FWHT -> D -> * scale
      const float fs = rotation_->hadamard_scale();
      const size_t row_bytes = d * static_cast<size_t>(bits) / 8;
      k.rht_decode_rows(payload + t0 * row_bytes, rows, cent, bits, signs, d, fs, scale.data() + t0, out + t0 * d,
                        stream);
      for (size_t t = t0; t < t0 + rows; ++t)  // a zero norm decodes to +0 exactly, not +-0
        if (scale[t] == 0.0f) std::fill(out + t * d, out + (t + 1) * d, 0.0f);
      return;
    }
    Scratch& s = scratch(kBlockRows, d);
    float* o = out + t0 * d;
    k.unpack(payload + t0 * d * static_cast<size_t>(bits) / 8, rows * d, bits, s.codes.data());
    k.lookup(s.codes.data(), rows * d, cent, bits, o);
    rotation_->inverse(o, o, rows);
    for (size_t r = 0; r < rows; ++r) {
      float* row = o + r * d;
      const float sc = scale[t0 + r];
      if (sc == 0.0f) {
        for (size_t i = 0; i < d; ++i) row[i] = 0.0f;
      } else {
        k.scale(row, sc, row, d);
      }
    }
  });
}

std::unique_ptr<Codec> make_rotated_scalar(const CodecArgs& args, const CodecContext& ctx, bool eden) {
  RotatedScalarConfig cfg;
  cfg.method = args.name;
  cfg.eden = eden;
  cfg.bits = args.require_bits(1, 8);
  cfg.rotation = args.get_string("rotation", "haar");
  if (!is_rotation_kind(cfg.rotation))
    throw UsageError(fmt::format("codec spec '{}': unknown rotation '{}' (known: haar, hr, id)", args.spec, cfg.rotation));
  const std::string norm = args.get_string("norm", "fp16");
  if (norm == "fp16") {
    cfg.scale_format = ScaleFormat::Fp16;
  } else if (norm == "fp32") {
    cfg.scale_format = ScaleFormat::Fp32;
  } else {
    throw UsageError(fmt::format("codec spec '{}': norm must be fp16 or fp32, not '{}'", args.spec, norm));
  }
  cfg.codebook_file = args.get_string("codebook", "");
  if (!cfg.codebook_file.empty() && args.has("law"))
    throw UsageError(fmt::format("codec spec '{}': give law= or codebook=, not both", args.spec));
  if (cfg.codebook_file.empty()) cfg.codebook_file = resolve_codebook_path(ctx, cfg.bits);
  const std::string law = args.get_string("law", "beta");
  if (law == "beta") {
    cfg.gaussian_law = false;
  } else if (law == "gaussian") {
    cfg.gaussian_law = true;
  } else {
    throw UsageError(fmt::format("codec spec '{}': law must be beta or gaussian, not '{}'", args.spec, law));
  }
  if (ctx.dim < 2) throw UsageError(fmt::format("codec spec '{}': {} needs head_dim >= 2, not {}", args.spec, args.name, ctx.dim));
  return std::make_unique<RotatedScalarCodec>(cfg, ctx);
}

}  // namespace tq
