#pragma once
// Pooling of tq benchmark results into report tables (internal to lib/tq/bench).
//
// The driver (run.cpp) feeds per-head results in a fixed order — input, layer, seed repeat,
// tensor, codec, head — and per-query-head attention results in (layer, seed, pair, head) order;
// the Pooler turns each into a row, merges it into the per-(input, seed, tensor, codec) and
// per-(input, seed, pair) accumulators, and builds the summary, overview, Pareto and worst-head
// tables at the end of each input. Definitions of every column: docs/benchmark.md.
#include <string>
#include <vector>

#include "tq/bench/bench.h"
#include "tq/metrics/metrics.h"

namespace tq::bench {

/// Mean and sample standard deviation (n − 1; NaN for fewer than two values).
struct MeanSd {
  double mean = 0, sd = 0;
};
MeanSd mean_sd(const std::vector<double>& v);

/// Block length used for the bootstrap of T tokens when --bootstrap-block is 0: ceil(sqrt(T)),
/// clipped to [1, 64].
size_t auto_block_len(size_t T);

class Pooler {
 public:
  Pooler(const BenchConfig& c, const Sweep& s);

  void begin_input(const std::string& name, const Json& input_json, size_t T);
  /// One coded KV head. `ip` is the inner-product stats pooled over the query heads reading it
  /// (K only; nullptr when not measured). `asym_bits`: the codec's T -> inf bits (NaN = none).
  void add_head(int layer, int head, int tensor, size_t codec, int seed, size_t T, size_t d, const ByteCount& bytes,
                metrics::ReconStats recon, const metrics::IpStats* ip, double asym_bits);
  /// One query head's attention stats for sweep pair `pair`.
  void add_attention(int layer, int head, int kv_head, size_t pair, int seed, const metrics::AttnStats& a);
  void end_input();

  /// All tables (filtered by BenchConfig::tables), extra sections and notes.
  Report report();

 private:
  struct TensorAcc {
    metrics::ReconStats recon;
    metrics::IpStats ip;
    bool has_ip = false;
    ByteCount bytes;
    uint64_t elements = 0;
    uint64_t heads = 0;
    double asym_weighted = 0;  ///< Σ asym_bits · elements (NaN if any codec could not say)
  };
  struct WorstRow {
    int layer, head, seed;
    double nmse, nmse_centered, bits;
  };
  /// Seed-level summary values of one (tensor, codec) of the current input.
  struct TensorSummary {
    bool present = false;
    double bits = 0, nmse = 0, nmse_sd = 0, ip_bias = 0, ip_rms = 0, nmse_centered = 0;
    double nmse_ci_lo = 0, nmse_ci_hi = 0;
    bool has_ip = false;
  };
  struct AttnSummaryVals {
    bool present = false;
    double bits = 0;
    double kl = 0, kl_sd = 0, kl_ci_lo = 0, kl_ci_hi = 0, kl_nosink = 0, top1 = 0, out_err = 0;
  };

  TensorAcc& acc(int seed, int tensor, size_t codec);
  const std::vector<std::string>& list(int tensor) const { return tensor == 0 ? sweep_.k : sweep_.v; }
  metrics::BootstrapOptions boot_options() const;

  const BenchConfig& c_;
  const Sweep& sweep_;
  // current input
  std::string input_;
  size_t T_ = 0;
  std::vector<TensorAcc> acc_;                    ///< [seed][tensor][codec]
  std::vector<metrics::AttnStats> attn_;          ///< [seed][pair]
  std::vector<bool> attn_seen_;                   ///< [pair]
  std::vector<std::vector<WorstRow>> worst_rows_; ///< [tensor][codec] flattened
  // output
  Table rows_, attention_, summary_, attn_summary_, overview_, pareto_, worst_;
  Json by_position_ = Json::array();
  Json inputs_ = Json::array();
};

}  // namespace tq::bench
