// RotatedScalarCodec: the engine of tq-mse and eden (see rotated_scalar.h for the maths and
// the byte layout).
#include "tq/codec/rotated_scalar.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <vector>

#include <fmt/format.h>

#include "tq/codebook/codebook_file.h"
#include "tq/codec/byte_fields.h"
#include "tq/core/error.h"
#include "tq/core/half.h"
#include "tq/core/rng.h"
#include "tq/pack/bitpack.h"

namespace tq {

namespace {

constexpr uint16_t kScaleEscape = 0x7C00;       // fp16 +inf marks "fp32 value in the escape list"
constexpr float kFp16MinNormal = 0x1.0p-14f;    // below this fp16 loses relative precision
constexpr size_t kFp16Bytes = 2;
constexpr size_t kFp32Bytes = 4;

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

Encoded RotatedScalarCodec::encode(const float* x, size_t n, const int32_t* positions) const {
  (void)positions;
  const size_t d = dim();
  std::vector<float> y(n * d);
  std::vector<float> scale(n);
  normalise_rows(x, n, d, y.data(), scale.data(), spec());
  rotation_->forward(y.data(), y.data(), n);
  std::vector<uint8_t> codes(n * d);
  codebook_->encode(y.data(), codes.data(), n * d);

  if (cfg_.eden) {
    // s = r / <y, c>: then <xhat, x> = s <c, R x> = r^2 <c, y> / <y, c> = |x|^2 exactly, and
    // over a Haar R, E[xhat] = x (EDEN, Vargaftik et al. 2022). <y, c> > 0 whenever y != 0
    // because the codebook is symmetric with a boundary at 0, so sign(c_i) = sign(y_i).
    const float* cent = codebook_->centroids.data();
    for (size_t t = 0; t < n; ++t) {
      const float* yr = y.data() + t * d;
      const uint8_t* cr = codes.data() + t * d;
      double ip = 0.0;
      for (size_t i = 0; i < d; ++i) ip += static_cast<double>(yr[i]) * static_cast<double>(cent[cr[i]]);
      scale[t] = ip > 0.0 ? static_cast<float>(static_cast<double>(scale[t]) / ip) : 0.0f;
    }
  }

  Encoded e;
  e.n_tokens = n;
  e.dim = d;
  e.count = byte_count(n);
  size_t n_escapes = 0;
  if (cfg_.scale_format == ScaleFormat::Fp16)
    for (size_t t = 0; t < n; ++t) n_escapes += fits_fp16(scale[t]) ? 0 : 1;
  e.count.side += n_escapes * kFp32Bytes;
  e.bytes.assign(e.count.total(), 0);
  uint8_t* p = e.bytes.data();
  if (codebook_in_stream_) {  // per-tensor data codebook: centroids first, fp32 little endian
    for (size_t i = 0; i < codebook_->size(); ++i) bytes::put_u32(p + 4 * i, std::bit_cast<uint32_t>(codebook_->centroids[i]));
    p += header_bytes();
  }
  if (cfg_.scale_format == ScaleFormat::Fp16) {
    uint8_t* esc = p + n * kFp16Bytes;
    for (size_t t = 0; t < n; ++t) {
      uint16_t h = kScaleEscape;
      if (fits_fp16(scale[t])) {
        h = float_to_fp16(scale[t]);
      } else {
        std::memcpy(esc, &scale[t], kFp32Bytes);
        esc += kFp32Bytes;
      }
      std::memcpy(p + t * kFp16Bytes, &h, kFp16Bytes);
    }
  } else {
    for (size_t t = 0; t < n; ++t) std::memcpy(p + t * kFp32Bytes, &scale[t], kFp32Bytes);
  }
  pack_bits(codes.data(), n * d, cfg_.bits, p + (e.count.side - header_bytes()));
  return e;
}

void RotatedScalarCodec::decode(const Encoded& e, float* out) const {
  const size_t d = dim();
  const size_t n = e.n_tokens;
  if (e.dim != d) throw Error(fmt::format("codec '{}': encoding has dim {}, codec has {}", spec(), e.dim, d));
  const ByteCount base = byte_count(n);
  std::vector<float> scale(n);
  const size_t hb = header_bytes();
  size_t off = hb;
  if (e.bytes.size() < hb)
    throw Error(fmt::format("codec '{}': encoding of {} rows is truncated ({} bytes)", spec(), n, e.bytes.size()));
  ScalarCodebook stream_cb;
  if (codebook_in_stream_) {  // the decoder uses the centroids carried in the encoding
    stream_cb.bits = cfg_.bits;
    std::vector<float> c(codebook_->size());
    for (size_t i = 0; i < c.size(); ++i) c[i] = std::bit_cast<float>(bytes::get_u32(e.bytes.data() + 4 * i));
    stream_cb.centroids = std::move(c);
  }
  const ScalarCodebook& dec_cb = codebook_in_stream_ ? stream_cb : *codebook_;
  if (cfg_.scale_format == ScaleFormat::Fp16) {
    if (e.bytes.size() < base.total())
      throw Error(fmt::format("codec '{}': encoding of {} rows is truncated ({} bytes)", spec(), n, e.bytes.size()));
    const uint8_t* p = e.bytes.data() + hb;
    size_t n_escapes = 0;
    for (size_t t = 0; t < n; ++t) {
      uint16_t h;
      std::memcpy(&h, p + t * kFp16Bytes, kFp16Bytes);
      if (h == kScaleEscape) ++n_escapes;
      scale[t] = fp16_to_float(h);
    }
    off = hb + n * kFp16Bytes;
    if (e.bytes.size() != base.total() + n_escapes * kFp32Bytes)
      throw Error(fmt::format("codec '{}': encoding has {} bytes, expected {}", spec(), e.bytes.size(),
                              base.total() + n_escapes * kFp32Bytes));
    for (size_t t = 0; t < n; ++t) {
      uint16_t h;
      std::memcpy(&h, p + t * kFp16Bytes, kFp16Bytes);
      if (h != kScaleEscape) continue;
      std::memcpy(&scale[t], e.bytes.data() + off, kFp32Bytes);
      off += kFp32Bytes;
    }
  } else {
    if (e.bytes.size() != base.total())
      throw Error(fmt::format("codec '{}': encoding has {} bytes, expected {}", spec(), e.bytes.size(), base.total()));
    if (n > 0) std::memcpy(scale.data(), e.bytes.data() + hb, n * kFp32Bytes);
    off = hb + n * kFp32Bytes;
  }
  std::vector<uint8_t> codes(n * d);
  unpack_bits(e.bytes.data() + off, n * d, cfg_.bits, codes.data());
  dec_cb.decode(codes.data(), out, n * d);
  rotation_->inverse(out, out, n);
  for (size_t t = 0; t < n; ++t) {
    float* row = out + t * d;
    const float s = scale[t];
    if (s == 0.0f) {
      for (size_t i = 0; i < d; ++i) row[i] = 0.0f;
    } else {
      for (size_t i = 0; i < d; ++i) row[i] *= s;
    }
  }
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
