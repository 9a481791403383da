// SignSketch: 1-bit random sketches (see sign_sketch.h for the estimator and the layout).
#include "tq/codec/sign_sketch.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#include <fmt/format.h>

#include "tq/core/error.h"
#include "tq/core/half.h"
#include "tq/core/rng.h"
#include "tq/pack/bitpack.h"
#include "tq/simd/kernels.h"

namespace tq {

namespace {

constexpr uint16_t kNormEscape = 0x7C00;     // fp16 +inf marks "fp32 value in the escape list"
constexpr float kFp16MinNormal = 0x1.0p-14f;  // below this fp16 loses relative precision
constexpr size_t kFp16Bytes = 2;
constexpr size_t kFp32Bytes = 4;

bool fits_fp16(float s) { return s == 0.0f || (s >= kFp16MinNormal && s <= kFp16Max); }

}  // namespace

bool parse_sketch_kind(const std::string& s, SketchKind* out) {
  if (s == "gaussian") *out = SketchKind::Gaussian;
  else if (s == "haar") *out = SketchKind::Haar;
  else if (s == "hadamard") *out = SketchKind::Hadamard;
  else return false;
  return true;
}

const char* sketch_kind_name(SketchKind k) {
  switch (k) {
    case SketchKind::Gaussian: return "gaussian";
    case SketchKind::Haar: return "haar";
    case SketchKind::Hadamard: return "hadamard";
  }
  return "?";
}

double sphere_abs_mean(size_t d) {
  // E|u_1| = int |x| C (1-x^2)^((d-3)/2) dx with C = Gamma(d/2) / (sqrt(pi) Gamma((d-1)/2))
  //        = C / ((d-1)/2) ... = Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2)).
  const double h = static_cast<double>(d) / 2.0;
  return std::exp(std::lgamma(h) - std::lgamma(h + 0.5)) / std::sqrt(std::numbers::pi);
}

uint64_t sketch_seed(const CodecContext& ctx) { return seed_combine(ctx.seed, hash_tag("sketch")); }

std::unique_ptr<SignSketch> make_sketch_from_args(const CodecArgs& args, const CodecContext& ctx) {
  constexpr long kMaxRowsPerDim = 64;
  SketchKind kind{};
  const std::string ks = args.get_string("sketch", "gaussian");
  if (!parse_sketch_kind(ks, &kind))
    throw UsageError(fmt::format("codec spec '{}': sketch must be gaussian, haar or hadamard, not '{}'", args.spec, ks));
  if (ctx.dim < 2) throw UsageError(fmt::format("codec spec '{}': {} needs head_dim >= 2, not {}", args.spec, args.name, ctx.dim));
  const long d = static_cast<long>(ctx.dim);
  const long m = args.get_int("m", d);
  if (m < 1 || m > kMaxRowsPerDim * d)
    throw UsageError(fmt::format("codec spec '{}': m must be in 1..{} (64 d), not {}", args.spec, kMaxRowsPerDim * d, m));
  return std::make_unique<SignSketch>(kind, ctx.dim, static_cast<size_t>(m), sketch_seed(ctx));
}

SignSketch::SignSketch(SketchKind kind, size_t d, size_t m, uint64_t seed) : kind_(kind), d_(d), m_(m) {
  if (kind == SketchKind::Gaussian) {
    // E[g sign<g, r>] = E[|<g, e>|] e = sqrt(2/pi) e for e = r/|r|, hence kappa = sqrt(pi/2)/m.
    kappa_ = std::sqrt(std::numbers::pi / 2.0) / static_cast<double>(m);
    gauss_.resize(m * d);
    Rng rng(seed);
    for (auto& v : gauss_) v = static_cast<float>(rng.gaussian());
  } else {
    // Unit rows: E[u sign<u, r>] = c_d e, hence kappa = 1 / (m c_d).
    kappa_ = 1.0 / (static_cast<double>(m) * sphere_abs_mean(d));
    const size_t nb = (m + d - 1) / d;
    const std::string rot = kind == SketchKind::Haar ? "haar" : "hr";
    for (size_t b = 0; b < nb; ++b) blocks_.push_back(make_rotation(rot, d, seed_combine(seed, b)));
  }
}

ByteCount SignSketch::byte_count(size_t n) const {
  ByteCount c;
  c.payload = packed_bytes(n * m_, 1);
  c.side = n * kFp16Bytes;
  return c;
}

void SignSketch::project(const float* r, size_t n, float* proj) const {
  const size_t d = d_, m = m_;
  if (kind_ == SketchKind::Gaussian) {
    // <s_i, r_t> in double (the kernels' canonical summation order), then rounded to float
    const simd::Kernels& k = simd::kernels();
    std::vector<double> rd(d), acc(m);
    for (size_t t = 0; t < n; ++t) {
      const float* rt = r + t * d;
      for (size_t j = 0; j < d; ++j) rd[j] = static_cast<double>(rt[j]);
      k.dot_rows_f64(rd.data(), gauss_.data(), m, d, acc.data());
      for (size_t i = 0; i < m; ++i) proj[t * m + i] = static_cast<float>(acc[i]);
    }
    return;
  }
  std::vector<float> buf(n * d);
  for (size_t b = 0; b < blocks_.size(); ++b) {
    const size_t i0 = b * d, mb = std::min(d, m - i0);
    blocks_[b]->forward(r, buf.data(), n);  // row i of R_b is s_{i0 + i}
    for (size_t t = 0; t < n; ++t) std::memcpy(proj + t * m + i0, buf.data() + t * d, mb * sizeof(float));
  }
}

void SignSketch::back_add(const float* z, const float* coef, size_t n, float* out) const {
  const size_t d = d_, m = m_;
  if (kind_ == SketchKind::Gaussian) {
    // acc = sum_i z_i s_i in double, rows i in ascending order (simd axpy_rows_f64)
    const simd::Kernels& k = simd::kernels();
    std::vector<double> acc(d), zd(m);
    for (size_t t = 0; t < n; ++t) {
      std::fill(acc.begin(), acc.end(), 0.0);
      const float* zt = z + t * m;
      for (size_t i = 0; i < m; ++i) zd[i] = static_cast<double>(zt[i]);
      k.axpy_rows_f64(acc.data(), zd.data(), gauss_.data(), m, d);
      const double c = static_cast<double>(coef[t]);
      float* ot = out + t * d;
      for (size_t j = 0; j < d; ++j) ot[j] += static_cast<float>(c * acc[j]);
    }
    return;
  }
  std::vector<float> buf(n * d);
  for (size_t b = 0; b < blocks_.size(); ++b) {
    const size_t i0 = b * d, mb = std::min(d, m - i0);
    std::fill(buf.begin(), buf.end(), 0.0f);
    for (size_t t = 0; t < n; ++t) std::memcpy(buf.data() + t * d, z + t * m + i0, mb * sizeof(float));
    blocks_[b]->inverse(buf.data(), buf.data(), n);  // R_b^T z = sum_i z_i s_{i0 + i}
    for (size_t t = 0; t < n; ++t) {
      const float c = coef[t];
      float* ot = out + t * d;
      const float* bt = buf.data() + t * d;
      for (size_t j = 0; j < d; ++j) ot[j] += c * bt[j];
    }
  }
}

ByteCount SignSketch::encode(const float* r, size_t n, std::vector<uint8_t>& out) const {
  const size_t d = d_, m = m_;
  std::vector<float> norm(n);
  for (size_t t = 0; t < n; ++t) {
    double ss = 0.0;
    for (size_t j = 0; j < d; ++j) ss += static_cast<double>(r[t * d + j]) * static_cast<double>(r[t * d + j]);
    norm[t] = static_cast<float>(std::sqrt(ss));
  }
  std::vector<float> proj(n * m);
  project(r, n, proj.data());
  std::vector<uint8_t> bits(n * m);
  for (size_t k = 0; k < n * m; ++k) bits[k] = proj[k] >= 0.0f ? 1 : 0;

  ByteCount c = byte_count(n);
  size_t n_esc = 0;
  for (size_t t = 0; t < n; ++t) n_esc += fits_fp16(norm[t]) ? 0 : 1;
  c.side += n_esc * kFp32Bytes;
  const size_t base = out.size();
  out.resize(base + c.total(), 0);
  uint8_t* p = out.data() + base;
  uint8_t* esc = p + n * kFp16Bytes;
  for (size_t t = 0; t < n; ++t) {
    uint16_t h = kNormEscape;
    if (fits_fp16(norm[t])) {
      h = float_to_fp16(norm[t]);
    } else {
      std::memcpy(esc, &norm[t], kFp32Bytes);
      esc += kFp32Bytes;
    }
    std::memcpy(p + t * kFp16Bytes, &h, kFp16Bytes);
  }
  pack_bits(bits.data(), n * m, 1, p + c.side);
  return c;
}

size_t SignSketch::decode_add(const uint8_t* p, size_t avail, size_t n, float* out, const std::string& what) const {
  const size_t m = m_;
  const ByteCount base = byte_count(n);
  if (avail < base.total())
    throw Error(fmt::format("codec '{}': sketch part of {} rows is truncated ({} bytes)", what, n, avail));
  std::vector<float> coef(n);
  size_t n_esc = 0;
  for (size_t t = 0; t < n; ++t) {
    uint16_t h;
    std::memcpy(&h, p + t * kFp16Bytes, kFp16Bytes);
    n_esc += h == kNormEscape ? 1 : 0;
  }
  const size_t total = base.total() + n_esc * kFp32Bytes;
  if (avail < total) throw Error(fmt::format("codec '{}': sketch part of {} rows is truncated ({} bytes)", what, n, avail));
  size_t off = n * kFp16Bytes;
  for (size_t t = 0; t < n; ++t) {
    uint16_t h;
    std::memcpy(&h, p + t * kFp16Bytes, kFp16Bytes);
    float nr;
    if (h == kNormEscape) {
      std::memcpy(&nr, p + off, kFp32Bytes);
      off += kFp32Bytes;
    } else {
      nr = fp16_to_float(h);
    }
    coef[t] = static_cast<float>(static_cast<double>(nr) * kappa_);
  }
  std::vector<uint8_t> bits(n * m);
  unpack_bits(p + off, n * m, 1, bits.data());
  std::vector<float> z(n * m);
  for (size_t k = 0; k < n * m; ++k) z[k] = bits[k] ? 1.0f : -1.0f;
  back_add(z.data(), coef.data(), n, out);
  return total;
}

}  // namespace tq
