#pragma once
// Statistics of a whole dump (or a selection of layers, heads and tensors): one HeadStats per
// (layer, head, tensor), and per layer the RoPE checks and the attention entropy. This is what
// `tq inspect` renders and what `tq synth --fit` and the synth tests compare.
//
// Determinism: every (layer, head, tensor) item is computed independently (its Haar rotation
// seeded by tq::seed_for(seed, layer, head, tensor)) and stored by index, so the result is the
// same at any OpenMP thread count.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tq/io/dump.h"
#include "tq/stats/head_stats.h"
#include "tq/stats/layer_stats.h"

namespace tq::stats {

struct DumpStatsOptions {
  std::vector<int> layers;   ///< layer indices; empty = every layer in the file
  std::vector<int> heads;    ///< head indices within each tensor; empty = all
  std::vector<std::string> tensors{"k", "v", "q"};  ///< datasets; absent ones are skipped per layer
  uint64_t seed = 0;         ///< run seed for the Haar rotations
  bool ks = true;            ///< compute KS distances
  bool entropy = true;       ///< compute attention entropy (needs q)
  size_t entropy_min_pos = 16;
};

struct HeadRecord {
  int layer = 0, head = 0;
  std::string tensor;
  DType dtype = DType::F32;
  HeadStats stats;
  double attn_entropy = 0;  ///< tensor "q" only: this query head's mean entropy; NaN otherwise
};

struct LayerRecord {
  int layer = 0;
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  std::optional<RopeCheck> rope_k;  ///< when k_pre exists
  std::optional<RopeCheck> rope_q;  ///< when q and q_pre exist
  std::optional<EntropySums> entropy;  ///< when q exists (pooled over all query heads)
};

/// Mean over heads of the scalar statistics of one tensor (one layer or all layers).
struct TensorSummary {
  size_t heads = 0;
  double norm_mean = 0, outlier_ratio = 0, channel_mean_spread = 0, kurtosis_pooled = 0,
         kurtosis_channel_max = 0, lag1_autocorr = 0, ks_rotated = 0, ks_raw = 0;
};

struct DumpStats {
  std::vector<HeadRecord> heads;    ///< ordered by layer, tensor (option order), head
  std::vector<LayerRecord> layers;  ///< ordered by layer
  std::vector<std::string> skipped; ///< "layer L: no q" notes for requested tensors that are absent

  /// Mean over the records of `tensor` in `layer` (layer < 0: every layer). heads = 0 when none.
  TensorSummary summary(const std::string& tensor, int layer = -1) const;
  /// Mean over layers of the pooled attention entropy (each layer weighted equally); NaN if none.
  double mean_attention_entropy() const;
};

/// Compute the statistics. Throws tq::UsageError for a layer not in the file, a head beyond
/// every selected tensor, or a tensor name no selected layer has; reader errors pass through.
DumpStats dump_stats(const DumpReader& reader, const DumpStatsOptions& opt);

}  // namespace tq::stats
