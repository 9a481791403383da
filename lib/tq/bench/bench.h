#pragma once
// The benchmark driver behind `tq benchmark` (docs/benchmark.md): resolve the inputs (dumps or
// synthetic data), expand the codec sweep, and for every selected layer — one layer in memory at
// a time — code every selected KV head with every codec, measure reconstruction, inner-product
// and attention fidelity with lib/tq/metrics, and pool the results into a tq::Report.
//
// Reproducibility: the codec of (layer, head, tensor) under seed repeat i gets the seed
// tq::seed_for(run_seed + i, layer, head, tensor), so a --layers subset reproduces the full run's
// rows exactly. Work inside a layer runs in parallel (OpenMP) over (tensor, head, codec) and
// (query head, codec) tasks; every task stores its result by index and results are merged in a
// fixed order, so the report is byte-identical at any thread count. HDF5 is read on the calling
// thread only.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tq/codec/codec.h"
#include "tq/io/dump.h"
#include "tq/report/report.h"

namespace tq::bench {

/// Which metrics to compute.
enum class MetricSet {
  Recon,  ///< reconstruction only (cheap)
  Ip,     ///< + inner products of K against (real or random) queries
  Full,   ///< + attention (needs q in the dump)
};
/// "recon" | "ip" | "full" (UsageError naming --metrics otherwise).
MetricSet parse_metric_set(const std::string& s);
const char* metric_set_name(MetricSet m);

/// How the K and V codec lists pair up into attention configurations.
enum class Pairing {
  Auto,   ///< zip when both lists have the same length, else every combination
  Zip,    ///< i-th K codec with i-th V codec (lists must have the same length)
  Cross,  ///< every K codec with every V codec
};
Pairing parse_pairing(const std::string& s);

/// Everything a benchmark run needs; plain data (the CLI fills it, see apps/tq/benchmark.cpp).
struct BenchConfig {
  // ---- inputs
  std::vector<std::string> inputs;  ///< files, directories (*.h5 inside, sorted) or globs
  std::string synthetic;            ///< "" | a tq synth profile | "gaussian"
  int head_dim = 128;               ///< --synthetic gaussian: d
  int64_t n_vectors = 0;            ///< synthetic: tokens (0 = profile default; gaussian 4096)
  // ---- sweep
  std::vector<int> bits_k{4};
  std::vector<int> bits_v;          ///< empty = same as bits_k
  std::vector<std::string> codecs;  ///< applied to K and V unless codecs_k / codecs_v are given
  std::vector<std::string> codecs_k, codecs_v;
  Pairing pairing = Pairing::Auto;
  int keep_sinks = 0;               ///< appends sinks=N to every spec (counted as window bytes)
  std::string codebook;             ///< CodecContext::codebook_dir for codecs with codebook=...
  // ---- selection
  std::vector<int> layers, heads, tokens;  ///< empty = all
  // ---- seeds, metrics
  uint64_t seed = 0;
  int seeds = 1;                    ///< repeats over rotation seeds run_seed + 0 .. seeds-1
  MetricSet metrics = MetricSet::Full;
  int64_t max_queries = 512;        ///< query positions per head for ip/attention (0 = all)
  int64_t bootstrap = 1000;         ///< block-bootstrap resamples for the CIs (0 = none)
  int64_t bootstrap_block = 0;      ///< tokens per bootstrap block (0 = ceil(sqrt(T)), at most 64)
  int worst = 3;                    ///< worst-head rows per (input, codec, tensor)
  /// Tables to put in the report (rows, attention, summary, attn_summary, pareto, worst,
  /// overview); empty = all.
  std::vector<std::string> tables;
  /// With `tables` empty: only overview, worst_heads and (for a sweep of several codecs)
  /// pareto — the compact set `--format table` prints for people.
  bool compact = false;
};

/// The expanded sweep: distinct K and V codec labels and the (K, V) pairs for attention.
struct Sweep {
  std::vector<std::string> k, v;
  std::vector<std::pair<size_t, size_t>> pairs;  ///< indices into k and v
};

/// Expand --codec/--codec-k/--codec-v/--bits-k/--bits-v/--keep-sinks into the sweep. A spec
/// whose codec item has ":BITS" is used as is; one without gets every width of the tensor's
/// bits list when it needs one (probed with make_codec), else is used as is. Throws UsageError
/// naming the spec or flag.
Sweep expand_sweep(const BenchConfig& c);

/// Insert ":bits" after the codec item of a spec ("hr,tq-mse,norm=fp32" -> "hr,tq-mse:3,norm=fp32").
std::string spec_with_bits(const std::string& spec, int bits);
/// True when the spec's codec item (last bare item) carries ":N".
bool spec_has_bits(const std::string& spec);

// ---- inputs --------------------------------------------------------------------------------

/// One layer of an input in memory: k, v [n_kv_heads, T, d]; q [n_heads, T, d] when present and
/// wanted (else empty).
struct LayerData {
  LayerInfo info;
  Tensor3 k, v, q;
};

/// A source of layers: a dump file, a synth profile, or iid Gaussian vectors.
class Source {
 public:
  virtual ~Source() = default;
  virtual std::string name() const = 0;      ///< short label: file stem or "synthetic:<profile>"
  virtual Json input_json() const = 0;       ///< report "inputs" entry
  virtual const std::vector<LayerInfo>& layers() const = 0;  ///< present layers, ascending
  virtual size_t n_tokens() const = 0;
  virtual std::vector<int32_t> positions() const = 0;
  /// Read (or generate) one layer; q only when `want_q` and present.
  virtual LayerData read_layer(int layer, bool want_q) const = 0;
  /// A note for the report about this source (e.g. "iid N(0,1)"), or "".
  virtual std::string note() const { return {}; }
};

/// Expand --input items (files, directories -> *.h5 inside sorted, globs -> sorted matches) into
/// paths, duplicates removed, order kept. Throws tq::Error naming the item when it matches nothing.
std::vector<std::string> resolve_input_paths(const std::vector<std::string>& items);

/// Open every input (dump files are validated now) or build the synthetic source.
std::vector<std::unique_ptr<Source>> open_sources(const BenchConfig& c);

/// iid N(0,1) data [T, d], one layer, one head, no queries; drawn from
/// Rng(seed_for(seed, 0, 0, "gaussian")).
std::unique_ptr<Source> gaussian_source(size_t d, size_t T, uint64_t seed);

// ---- running -------------------------------------------------------------------------------

/// Progress callback: (layers done, layers total), called on the calling thread.
using ProgressFn = std::function<void(size_t, size_t)>;

/// Wall-clock seconds spent in each stage (for `--timing`; never part of the report).
struct BenchTiming {
  double read = 0;     ///< reading (or generating) layers, token selection, random queries
  double code = 0;     ///< building codecs, encode + decode + reconstruction metrics (parallel)
  double metrics = 0;  ///< inner products and attention (parallel)
  double pool = 0;     ///< merging, rows, summaries, bootstrap, Pareto
};

/// Run the benchmark and build the report (tables, extra sections, notes; the caller adds
/// command/config/run). Validates everything it can (specs, bits, dims, selections) before the
/// first layer is coded. Throws tq::Error / UsageError with one line on bad input.
Report run_benchmark(const BenchConfig& c, const ProgressFn& progress = {}, BenchTiming* timing = nullptr);

/// Asymptotic bits per element of a codec (T -> infinity): the marginal cost of 2^20 more
/// tokens, (bytes(2^21) - bytes(2^20)) * 8 / (2^20 d). NaN when the codec cannot say.
double asymptotic_bits(const Codec& codec);

}  // namespace tq::bench
