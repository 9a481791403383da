#pragma once
// Names shared by the dump reader and writer (internal to lib/tq/io; the public contract is
// dump.h and docs/kv-dump-format.md).
#include <string>

namespace tq::dump_schema {

/// A per-layer dataset: its name, whether its head axis counts query heads (n_heads) rather
/// than KV heads (n_kv_heads), and whether every layer must have it.
struct DatasetSpec {
  const char* name;
  bool query_heads;
  bool required;
};

inline constexpr DatasetSpec kLayerDatasets[] = {
    {"k", false, true},      {"v", false, true},       {"q", true, false},
    {"k_pre", false, false}, {"q_pre", true, false},   {"grad2_k", false, false},
    {"grad2_v", false, false},
};

/// The spec of a known layer dataset, or nullptr.
inline const DatasetSpec* find_dataset(const std::string& name) {
  for (const DatasetSpec& s : kLayerDatasets) {
    if (name == s.name) return &s;
  }
  return nullptr;
}

/// bfloat16 is stored as uint16 words carrying this attribute (HDF5 1.10 has no bf16 type).
inline constexpr const char* kDtypeAttr = "dtype";
inline constexpr const char* kBf16Name = "bfloat16";

/// Writer chunking: one chunk holds at most this many bytes of one head's [tokens, head_dim]
/// block (whole heads when they fit), so reading one head touches only its own chunks.
inline constexpr size_t kMaxChunkBytes = size_t{4} << 20;

inline std::string layer_path(int index) { return "/layers/" + std::to_string(index); }

}  // namespace tq::dump_schema
