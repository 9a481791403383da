#pragma once
// The codec interface: what every KV-cache compression method in tq implements.
//
// A codec encodes ONE head's token-ordered matrix X of shape [T, d] (row t = the key or value
// of token t, row-major, size T * d floats) into bytes, and decodes those bytes back into a
// [T, d] matrix. Per-vector codecs (tq-mse, eden, q4_0, ...) treat rows independently;
// token-group codecs (KIVI), recent-token windows and sink tokens use the token axis, which is
// why the unit of coding is a whole head, not a vector.
//
// Every byte a decoder needs is inside `Encoded::bytes`, and `Encoded::bytes` holds nothing
// else: the byte split `payload + side + window == bytes.size()` is exact and tested.
// Things both sides can re-derive from the codec spec and the seed (a rotation generated from
// the seed, an analytic Lloyd-Max codebook) cost no bytes, exactly as in a real deployment where
// the spec and seed are fixed per model. A codebook trained on data is side information.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tq {

/// Bytes of an encoding, split by what they carry.
struct ByteCount {
  size_t payload = 0;  ///< the codes themselves (packed bit fields)
  size_t side = 0;     ///< norms, scales, zero points, offsets, outlier indices/values, codebooks
  size_t window = 0;   ///< tokens kept at full precision (recent window, sink tokens)
  size_t total() const { return payload + side + window; }
  ByteCount& operator+=(const ByteCount& o) {
    payload += o.payload;
    side += o.side;
    window += o.window;
    return *this;
  }
};

/// One encoded head: the bytes and their accounting.
struct Encoded {
  size_t n_tokens = 0;          ///< T
  size_t dim = 0;               ///< d
  std::vector<uint8_t> bytes;   ///< everything the decoder reads; size == count.total()
  ByteCount count;
};

/// What a codec instance is built for. One codec instance serves one (layer, head, tensor).
struct CodecContext {
  size_t dim = 0;          ///< head_dim d
  uint64_t seed = 0;       ///< per-(layer, head, tensor) seed (see tq::seed_for)
  std::string tensor;      ///< "k" or "v" (some codecs, e.g. kivi, code K and V differently)
  /// Optional codebook FILE, or DIRECTORY keyed by layer/head/tensor, for tq-mse/eden (and the
  /// tq-mse stage of tq-prod) when the spec has no codebook= option. Directory lookup order:
  /// L{layer}_H{head}_{k|v}_b{bits}.toml, L{layer}_H{head}_{k|v}.toml, default_b{bits}.toml,
  /// default.toml (see docs/codebooks.md). Empty = the analytic Lloyd-Max codebook.
  std::string codebook_dir;
  int layer = -1;          ///< layer of the tensor (-1 = unknown); keys codebook_dir lookups
  int head = -1;           ///< KV head of the tensor (-1 = unknown)
};

class Codec {
 public:
  virtual ~Codec() = default;

  /// Canonical spec string that rebuilds this codec (all parameters explicit).
  virtual std::string spec() const = 0;

  /// True when train() must be called before encode().
  virtual bool needs_training() const { return false; }

  /// Learn data-dependent state from x [n, d] (row-major). Learned state that the decoder needs
  /// is written into every encoding and counted as side bytes.
  virtual void train(const float* x, size_t n) {
    (void)x;
    (void)n;
  }

  /// Encode x [n, d] row-major. `positions` (size n, may be null) are the tokens' positions.
  virtual Encoded encode(const float* x, size_t n, const int32_t* positions) const = 0;

  /// Decode into out [e.n_tokens, e.dim] row-major.
  virtual void decode(const Encoded& e, float* out) const = 0;

  /// Bytes for a hypothetical n-token input, without encoding (used for the T -> inf figure:
  /// bits_per_element_asymptotic = lim bytes(n) * 8 / (n d)). Must agree with encode().
  virtual ByteCount byte_count(size_t n) const = 0;

  size_t dim() const { return ctx_.dim; }
  const CodecContext& context() const { return ctx_; }

 protected:
  explicit Codec(CodecContext ctx) : ctx_(std::move(ctx)) {}
  CodecContext ctx_;
};

/// A parsed codec spec element, e.g. "tq-mse:4,norm=fp32" -> name "tq-mse", bits 4,
/// options {norm: fp32}. Factories read options through the getters, which remember what was
/// consumed; make_codec() rejects options no factory consumed (typos never pass silently).
struct CodecArgs {
  std::string spec;   ///< the full spec string (for error messages)
  std::string name;   ///< codec name, e.g. "tq-mse"
  int bits = -1;      ///< ":B" suffix, -1 when absent
  std::vector<std::pair<std::string, std::string>> options;  ///< key=value in order
  mutable std::vector<std::string> consumed;

  bool has(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  long get_int(const std::string& key, long fallback) const;        ///< throws UsageError if not an integer
  double get_double(const std::string& key, double fallback) const; ///< throws UsageError if not a number
  int require_bits(int lo, int hi) const;  ///< bits in [lo, hi] or UsageError naming the spec
};

/// Build a codec from a spec string (grammar in docs/codec-spec.md and `tq benchmark --help`).
/// Throws tq::UsageError naming the spec on a bad string, an unsupported bit width or dim.
std::unique_ptr<Codec> make_codec(const std::string& spec, const CodecContext& ctx);

/// The spec grammar as help text (for --help and `tq plugins`).
std::string codec_spec_help();

/// Names of all registered codecs with a one-line description each.
std::vector<std::pair<std::string, std::string>> codec_list();

/// Names of all registered stages (rotations, center, ...) with a one-line description each.
std::vector<std::pair<std::string, std::string>> codec_stage_list();

}  // namespace tq
