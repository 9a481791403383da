#pragma once
// The tq KV dump format (spec: docs/kv-dump-format.md): reader and writer.
//
// File layout (HDF5):
//   /                       attrs: format="tq-kv-dump", format_version, model_name, model_source,
//                                  weight_precision, n_layers, n_tokens, creator, created
//   /tokens/ids             int32 [n_tokens]
//   /tokens/positions       int32 [n_tokens]
//   /layers/<i>/k           [n_kv_heads, n_tokens, head_dim]   post-RoPE, as attention sees it
//   /layers/<i>/v           [n_kv_heads, n_tokens, head_dim]
//   /layers/<i>/q           [n_heads, n_tokens, head_dim]      optional, post-RoPE
//   /layers/<i>/k_pre, q_pre                                   optional, pre-RoPE
//   /layers/<i>/grad2_k, grad2_v [n_kv_heads, n_tokens, head_dim] optional
//   /layers/<i>             attrs: n_heads, n_kv_heads, head_dim, attn_scale, rope_theta,
//                                  rope_pairing, rotary_dim, rope_scaling, [sliding_window],
//                                  [logit_softcap]
// dtypes: fp32, fp16 (HDF5 16-bit IEEE float as h5py writes it), bf16 (uint16 + attr
// dtype="bfloat16"); the reader also accepts fp64 (reported as F32) and a 2-byte HDF5 float with
// bfloat16's layout. The reader converts everything to fp32 and streams one layer or one head
// at a time, so memory never holds more than one layer's tensor.
//
// Threads: HDF5 (Debian's build) serialises all calls behind one global lock, and a reader or
// writer object is not safe to share. Use a DumpReader/DumpWriter from ONE thread; parallelise
// the work on the tensors it returns, not the reading.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tq {

inline constexpr const char* kDumpFormatName = "tq-kv-dump";
inline constexpr int kDumpFormatVersion = 1;

/// Storage dtype of a dataset in the file.
enum class DType { F32, F16, BF16 };
const char* dtype_name(DType t);  // "float32" | "float16" | "bfloat16"

/// A dense [n0, n1, n2] float tensor (row-major), e.g. [heads, tokens, head_dim].
struct Tensor3 {
  size_t n0 = 0, n1 = 0, n2 = 0;
  std::vector<float> data;
  float* at(size_t i0) { return data.data() + i0 * n1 * n2; }              ///< slice i0: [n1, n2]
  const float* at(size_t i0) const { return data.data() + i0 * n1 * n2; }
  size_t size() const { return n0 * n1 * n2; }
};

/// Per-layer metadata (attributes of /layers/<i>) plus which datasets exist.
struct LayerInfo {
  int index = 0;               ///< layer number i in /layers/<i>
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  double attn_scale = 0.0;     ///< 1/sqrt(head_dim) when the attribute is absent
  double rope_theta = 10000.0;
  std::string rope_pairing = "interleaved";  ///< "interleaved" | "half"
  int rotary_dim = 0;          ///< = head_dim when absent
  std::string rope_scaling = "none";
  std::optional<int> sliding_window;
  std::optional<double> logit_softcap;
  /// name ("k", "v", "q", "k_pre", ...) -> stored dtype (fp64 data is reported as F32).
  std::map<std::string, DType> datasets;
  bool has(const std::string& name) const { return datasets.count(name) != 0; }
};

/// Root metadata.
struct DumpInfo {
  std::string path;
  int format_version = kDumpFormatVersion;
  std::string model_name, model_source, weight_precision, creator, created;
  int n_layers = 0;   ///< number of transformer layers in the model (some may be absent)
  int n_tokens = 0;
  std::vector<int32_t> token_ids;
  std::vector<int32_t> positions;
  std::vector<LayerInfo> layers;  ///< layers present in the file, ascending index
  /// Every root attribute rendered as a string (for reports' "input" metadata).
  std::map<std::string, std::string> attributes;
  const LayerInfo& layer(int index) const;  ///< throws tq::Error if absent
};

/// Opens and validates a dump (format, version, shapes, dtypes, attributes) without reading the
/// tensors. Every problem throws tq::Error with one line naming the file and dataset.
class DumpReader {
 public:
  explicit DumpReader(const std::string& path);
  ~DumpReader();
  DumpReader(DumpReader&&) noexcept;
  DumpReader& operator=(DumpReader&&) noexcept;

  const DumpInfo& info() const;

  /// Read a whole tensor of one layer as fp32, e.g. read(3, "k") -> [n_kv_heads, T, d].
  /// Non-finite values throw tq::Error naming file, dataset, head, token.
  Tensor3 read(int layer, const std::string& name) const;

  /// Read one head's [T, d] slice as fp32 (streams a hyperslab).
  std::vector<float> read_head(int layer, const std::string& name, int head) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Metadata for writing a dump.
struct DumpMeta {
  std::string model_name = "unknown", model_source = "unknown", weight_precision = "fp32";
  std::string creator = "tq";
  std::string created;  ///< ISO date; empty -> now (UTC)
  int n_layers = 0;
  std::vector<int32_t> token_ids;  ///< size n_tokens
  std::vector<int32_t> positions;  ///< size n_tokens (empty -> 0..n_tokens-1)
  std::map<std::string, std::string> extra_attributes;  ///< written as string root attributes
};

/// Writes a dump to `path` atomically: data goes to a temporary file in the same directory,
/// renamed over `path` by close(). Destroying an unclosed writer removes the temporary file.
class DumpWriter {
 public:
  DumpWriter(const std::string& path, const DumpMeta& meta, DType dtype = DType::F32,
             int deflate_level = 0);
  ~DumpWriter();
  DumpWriter(const DumpWriter&) = delete;
  DumpWriter& operator=(const DumpWriter&) = delete;

  /// Write layer attributes and tensors. `tensors` maps dataset name -> tensor
  /// (k, v required; q, k_pre, q_pre, grad2_k, grad2_v optional). Shapes, names and values are
  /// validated before anything is written: a value that would not be finite in the target dtype
  /// (NaN, inf, |x| > 65504 for fp16) throws. attn_scale <= 0 writes 1/sqrt(head_dim);
  /// rotary_dim <= 0 writes head_dim.
  void write_layer(const LayerInfo& info, const std::map<std::string, const Tensor3*>& tensors);

  /// Finish and rename into place. Throws tq::Error on failure (the temporary file is then
  /// removed and the writer is spent). A second close() does nothing.
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tq
