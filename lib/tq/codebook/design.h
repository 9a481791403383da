#pragma once
// Codebook design problems: a source (analytic law or real dump), an objective, train and
// held-out data, and the solve driver behind `tq codebook solve|verify` (docs/codebooks.md).
//
// Sources
//   beta:D       the exact law of one coordinate of a uniform unit vector in R^D (what tq-mse
//                quantizes with a Haar rotation); train value exact (closed form), held-out on
//                seeded fresh samples of the law.
//   gaussian     N(0, 1) (dim 0: a reference law, not usable by a codec);  gaussian:D  N(0, 1/D).
//   dump:PATH    rows of the selected layers / KV heads / tensor of a tq KV dump, put through the
//                codec's own split: y = R x / |x| with the rotation a codec would build for that
//                (layer, head, tensor) (seed_for(seed, layer, head, tensor), rotation kind), so
//                the samples are the normalised rotated coordinates the codec quantizes, on the
//                same scale as beta:D. Held-out data: `heldout` = dump:PATH2 (another prompt), or
//                by default the second half of the tokens (train = first half).
// Objectives (value reported for train and held-out):
//   mse        NMSE of the unit vectors, E[(y - Q(y))^2] / E[y^2] = d E[(y - Q(y))^2] for beta:d
//              (0.116 at 2 bits, d = 128); for N(0, s^2) the distortion / s^2.
//   ip         ip_rms of the metrics (inner_product.h): keys rebuilt as |k| R^T Q(R k/|k|) (norm
//              rounded to fp16, as the codec stores it), against the dump's real queries over
//              causal pairs, GQA mapping kv_head_for.
//   attention  attn_kl of the metrics (attention.h): causal softmax KL in nats per query with the
//              real Q and the layer's attn_scale / window / softcap, K rebuilt as for ip and V
//              exact; attn_out_err reported alongside. Needs tensor k.
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "tq/codebook/codebook_file.h"
#include "tq/codebook/solvers.h"

namespace tq::codebook {

enum class ObjectiveKind { Mse, Ip, Attention };
ObjectiveKind parse_objective(const std::string& s);  ///< UsageError naming --objective
const char* objective_name(ObjectiveKind k);

struct ProblemSpec {
  std::string source;            ///< beta:D | gaussian | gaussian:D | dump:PATH
  std::string heldout;           ///< "" (default split) or dump:PATH
  ObjectiveKind objective = ObjectiveKind::Mse;
  std::vector<int> layers;       ///< empty = all layers of the dump
  std::vector<int> heads;        ///< KV heads; empty = all
  std::string tensor = "k";
  std::string rotation = "haar";
  uint64_t seed = 0;
  size_t law_samples = size_t{1} << 20;  ///< held-out samples drawn from a law
  size_t query_stride = 1;       ///< attention/ip: count queries t % stride == 0
};

struct ObjectiveValue {
  double value = std::numeric_limits<double>::quiet_NaN();    ///< the objective
  double out_err = std::numeric_limits<double>::quiet_NaN();  ///< attention only: attn_out_err
  double nmse = std::numeric_limits<double>::quiet_NaN();     ///< NMSE of the unit vectors (always)
};

/// A loaded problem (reads the dumps once; evaluation is then pure computation).
class Problem {
 public:
  virtual ~Problem() = default;
  virtual ObjectiveValue train(const ScalarCodebook& cb) const = 0;
  virtual ObjectiveValue heldout(const ScalarCodebook& cb) const = 0;
  /// Training samples of the normalised rotated coordinates (for Lloyd-Max / fuzzy on data);
  /// for a law: nullptr (use the exact solver).
  virtual const SortedSamples* train_samples() const = 0;
  /// The analytic Lloyd-Max codebook of the matching law (the start point / reference).
  virtual ScalarCodebook analytic(int bits) const = 0;
  virtual int dim() const = 0;
  virtual std::string heldout_name() const = 0;  ///< "samples", "tokens", "dump:PATH"
  virtual bool is_law() const = 0;
};

/// Build a problem. Throws tq::UsageError / tq::Error (one line) on a bad source or selection.
std::unique_ptr<Problem> make_problem(const ProblemSpec& spec);

struct SolveSpec {
  std::string solver = "lloyd-max";  ///< lloyd-max | cma-es | fuzzy
  int bits = 2;
  CmaOptions cma;
  FuzzyOptions fuzzy;
  size_t fuzzy_max_samples = size_t{1} << 15;  ///< fuzzy runs on at most this many order statistics
  std::function<void(const std::string&)> progress;  ///< one-line progress text (may be empty)
};

struct SolveResult {
  CodebookFile file;
  ObjectiveValue train, heldout, start_train, start_heldout;
  SolveStats stats;
};

/// Solve: lloyd-max (exact law solver, or sample k-means from the analytic start), fuzzy (from
/// the analytic start, on the train samples or 2^17 order-statistics of the law's held-out-free
/// quadrature grid), cma-es (from the Lloyd-Max solution, minimising the objective on train).
SolveResult solve(const Problem& problem, const ProblemSpec& pspec, const SolveSpec& sspec);

/// Kolmogorov-Smirnov distance sup_x |F_n(x) - F(x)| between samples and the sphere law of
/// dimension d (F(x) = 1/2 + sign(x)/2 I_{x^2}(1/2, (d-1)/2)).
double ks_sphere(const SortedSamples& s, size_t d);

/// The KS distance expected from the rotation alone: `rows` i.i.d. uniform unit vectors in R^d
/// (seeded), all d coordinates pooled, as the dump's rows are pooled.
double ks_sphere_null(size_t rows, size_t d, uint64_t seed);

}  // namespace tq::codebook
