// Codebook design problems and the solve driver (design.h).
#include "tq/codebook/design.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <numbers>

#include <boost/math/special_functions/beta.hpp>
#include <boost/math/special_functions/erf.hpp>
#include <fmt/format.h>

#include "tq/codec/codec.h"
#include "tq/codec/rotated_scalar.h"
#include "tq/core/build_info.h"
#include "tq/core/error.h"
#include "tq/core/half.h"
#include "tq/core/rng.h"
#include "tq/io/dump.h"
#include "tq/metrics/attention.h"
#include "tq/metrics/inner_product.h"
#include "tq/rotation/rotation.h"
#include "tq/stats/sphere_law.h"

namespace tq::codebook {

ObjectiveKind parse_objective(const std::string& s) {
  if (s == "mse") return ObjectiveKind::Mse;
  if (s == "ip") return ObjectiveKind::Ip;
  if (s == "attention") return ObjectiveKind::Attention;
  throw UsageError(fmt::format("--objective: '{}' is not mse, ip or attention", s));
}

const char* objective_name(ObjectiveKind k) {
  switch (k) {
    case ObjectiveKind::Mse: return "mse";
    case ObjectiveKind::Ip: return "ip";
    case ObjectiveKind::Attention: return "attention";
  }
  return "?";
}

namespace {

constexpr float kFp16MinNormal = 0x1.0p-14f;

/// The scale the codec stores with norm=fp16 (rounded; escaped values kept in fp32).
float stored_scale(float r) {
  if (r == 0.0f || (r >= kFp16MinNormal && r <= kFp16Max)) return fp16_to_float(float_to_fp16(r));
  return r;
}

int parse_dim(const std::string& source, const std::string& text) {
  int v = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || v < 2 || v > (1 << 20))
    throw UsageError(fmt::format("--source '{}': the dimension must be an integer >= 2", source));
  return v;
}

// ---- analytic laws ----------------------------------------------------------------------------

class LawProblem final : public Problem {
 public:
  LawProblem(const ProblemSpec& spec, bool gaussian, int dim) : spec_(spec), gaussian_(gaussian), dim_(dim) {
    if (spec.objective != ObjectiveKind::Mse)
      throw UsageError(fmt::format("--objective {} needs real queries: use a dump:PATH source", objective_name(spec.objective)));
    if (!spec.heldout.empty()) throw UsageError("--heldout applies to dump sources only (a law's held-out set is fresh samples)");
    sigma_ = gaussian ? (dim > 0 ? 1.0 / std::sqrt(static_cast<double>(dim)) : 1.0) : 1.0 / std::sqrt(static_cast<double>(dim));
    // Held-out: fresh seeded samples. beta:D: every coordinate of normalised Gaussian vectors in
    // R^D (exactly the law; coordinates of one vector are identically distributed).
    Rng rng(seed_combine(spec.seed, hash_tag("codebook-heldout")));
    const size_t n = std::max<size_t>(spec.law_samples, 1024);
    std::vector<double> x;
    x.reserve(n);
    if (gaussian) {
      for (size_t i = 0; i < n; ++i) x.push_back(sigma_ * rng.gaussian());
    } else {
      const auto d = static_cast<size_t>(dim);
      std::vector<double> g(d);
      while (x.size() < n) {
        double ss = 0.0;
        for (auto& v : g) {
          v = rng.gaussian();
          ss += v * v;
        }
        const double inv = 1.0 / std::sqrt(ss);
        for (size_t i = 0; i < d && x.size() < n; ++i) x.push_back(g[i] * inv);
      }
    }
    heldout_ = std::make_unique<SortedSamples>(std::move(x));
  }
  double law_mse(const ScalarCodebook& cb) const {
    return gaussian_ ? gaussian_law_distortion(sigma_, cb) : sphere_law_distortion(static_cast<size_t>(dim_), cb);
  }
  ObjectiveValue train(const ScalarCodebook& cb) const override {
    ObjectiveValue v;
    v.value = v.nmse = law_mse(cb) / (sigma_ * sigma_);
    return v;
  }
  ObjectiveValue heldout(const ScalarCodebook& cb) const override {
    ObjectiveValue v;
    v.value = v.nmse = heldout_->mse(cb) / (sigma_ * sigma_);
    return v;
  }
  const SortedSamples* train_samples() const override { return nullptr; }
  ScalarCodebook analytic(int bits) const override {
    return gaussian_ ? lloyd_max_gaussian(sigma_, bits) : lloyd_max_sphere(static_cast<size_t>(dim_), bits);
  }
  ScalarCodebook exact(int bits, SolveStats* st) const {
    LloydMaxStats ls;
    ScalarCodebook cb = gaussian_ ? solve_lloyd_max_gaussian(sigma_, bits, &ls) : solve_lloyd_max_sphere(static_cast<size_t>(dim_), bits, &ls);
    if (st) {
      st->iterations = ls.newton_steps + ls.lloyd_steps;
      st->converged = true;
    }
    return cb;
  }
  /// m evenly spaced quantiles of the law (a deterministic quadrature grid for fuzzy C-means).
  std::vector<double> grid(size_t m) const {
    std::vector<double> x(2 * (m / 2));
    const size_t h = m / 2;
    for (size_t i = 0; i < h; ++i) {
      const double q = (static_cast<double>(i) + 0.5) / static_cast<double>(h);  // half-mass fraction
      const double v = gaussian_ ? sigma_ * std::numbers::sqrt2 * boost::math::erf_inv(q)
                                 : std::sqrt(boost::math::ibeta_inv(0.5, 0.5 * (dim_ - 1.0), q));
      x[h + i] = v;
      x[h - 1 - i] = -v;
    }
    return x;
  }
  int dim() const override { return dim_; }
  std::string heldout_name() const override { return "samples"; }
  bool is_law() const override { return true; }

 private:
  ProblemSpec spec_;
  bool gaussian_;
  int dim_;
  double sigma_ = 1.0;
  std::unique_ptr<SortedSamples> heldout_;
};

// ---- dumps ------------------------------------------------------------------------------------

struct HeadData {
  int layer = 0, head = 0;
  std::vector<float> y;      ///< [rows, d] normalised rotated rows
  std::vector<float> scale;  ///< [rows] stored norms
  std::vector<float> x;      ///< [rows, d] original rows (k, or v)
  std::vector<float> v;      ///< [rows, d] values (attention only)
  std::unique_ptr<Rotation> rot;
};

struct LayerData {
  int layer = 0;
  int n_heads = 0, n_kv = 0;
  metrics::AttnOptions opt;
  Tensor3 q;                     ///< [n_heads, rows, d] (ip / attention only)
  std::vector<int> slot;         ///< KV head -> index into heads, -1 if not selected
};

/// One part (train or held-out) of a dump problem.
struct DataPart {
  size_t d = 0, rows = 0, sample_from = 0, query_from = 0;
  std::vector<HeadData> heads;
  std::vector<LayerData> layers;
  std::unique_ptr<SortedSamples> samples;
};

std::string join(const std::vector<int>& v) {
  if (v.empty()) return "all";
  std::string s;
  for (int i : v) {
    if (!s.empty()) s += ',';
    s += std::to_string(i);
  }
  return s;
}

DataPart load_part(const std::string& path, const ProblemSpec& spec, bool half_train, bool half_heldout) {
  DumpReader reader(path);
  const DumpInfo& info = reader.info();
  DataPart part;
  const bool need_q = spec.objective != ObjectiveKind::Mse;
  std::vector<int> layers = spec.layers;
  if (layers.empty())
    for (const auto& l : info.layers) layers.push_back(l.index);
  std::vector<double> samples;
  for (int li : layers) {
    const LayerInfo* lip = nullptr;
    for (const auto& l : info.layers)
      if (l.index == li) lip = &l;
    if (!lip) throw UsageError(fmt::format("--layers: dump '{}' has no layer {}", path, li));
    const LayerInfo& L = *lip;
    const size_t d = static_cast<size_t>(L.head_dim);
    if (part.d != 0 && part.d != d) throw UsageError(fmt::format("dump '{}': selected layers differ in head_dim", path));
    part.d = d;
    const auto T = static_cast<size_t>(info.n_tokens);
    if (T < 4) throw Error(fmt::format("dump '{}': {} tokens are too few for a train/held-out split", path, T));
    part.rows = half_train ? T / 2 : T;
    part.sample_from = half_heldout ? T / 2 : 0;
    part.query_from = half_heldout ? T / 2 : 0;
    std::vector<int> heads = spec.heads;
    if (heads.empty())
      for (int h = 0; h < L.n_kv_heads; ++h) heads.push_back(h);
    for (int h : heads)
      if (h < 0 || h >= L.n_kv_heads)
        throw UsageError(fmt::format("--heads: KV head {} is out of range (dump '{}' layer {} has {})", h, path, li, L.n_kv_heads));
    if (need_q && !L.has("q"))
      throw Error(fmt::format("dump '{}': layer {} has no 'q' dataset (objective {} needs real queries)", path, li,
                              objective_name(spec.objective)));
    LayerData ld;
    ld.layer = li;
    ld.n_heads = L.n_heads;
    ld.n_kv = L.n_kv_heads;
    ld.slot.assign(static_cast<size_t>(L.n_kv_heads), -1);
    if (need_q) {
      ld.opt = metrics::attn_options_for(L);
      ld.opt.min_pos = std::max(ld.opt.min_pos, part.query_from);
      ld.opt.query_stride = std::max<size_t>(1, spec.query_stride);
      Tensor3 q = reader.read(li, "q");
      ld.q.n0 = q.n0;
      ld.q.n1 = part.rows;
      ld.q.n2 = d;
      ld.q.data.resize(q.n0 * part.rows * d);
      for (size_t h = 0; h < q.n0; ++h) std::copy_n(q.at(h), part.rows * d, ld.q.at(h));
    }
    for (int h : heads) {
      HeadData hd;
      hd.layer = li;
      hd.head = h;
      std::vector<float> x = reader.read_head(li, spec.tensor, h);
      x.resize(part.rows * d);
      CodecContext ctx;
      ctx.dim = d;
      ctx.seed = seed_for(spec.seed, li, h, spec.tensor);
      ctx.tensor = spec.tensor;
      hd.rot = make_rotation(spec.rotation, d, rotation_seed(ctx));
      hd.y.resize(part.rows * d);
      hd.scale.resize(part.rows);
      normalise_rows(x.data(), part.rows, d, hd.y.data(), hd.scale.data(), fmt::format("dump '{}' layer {} head {}", path, li, h));
      hd.rot->forward(hd.y.data(), hd.y.data(), part.rows);
      for (auto& s : hd.scale) s = stored_scale(s);
      for (size_t t = part.sample_from; t < part.rows; ++t)
        for (size_t i = 0; i < d; ++i) samples.push_back(static_cast<double>(hd.y[t * d + i]));
      if (spec.objective == ObjectiveKind::Attention) {
        hd.v = reader.read_head(li, "v", h);
        hd.v.resize(part.rows * d);
      }
      hd.x = std::move(x);
      ld.slot[static_cast<size_t>(h)] = static_cast<int>(part.heads.size());
      part.heads.push_back(std::move(hd));
    }
    part.layers.push_back(std::move(ld));
  }
  part.samples = std::make_unique<SortedSamples>(std::move(samples));
  return part;
}

ObjectiveValue evaluate(const DataPart& p, ObjectiveKind obj, const ScalarCodebook& cb) {
  ObjectiveValue out;
  out.nmse = p.samples->mse(cb) / p.samples->mean_sq();
  if (obj == ObjectiveKind::Mse) {
    out.value = out.nmse;
    return out;
  }
  const size_t d = p.d, rows = p.rows;
  // Rebuild the keys as the codec does: |k| R^T Q(R k / |k|).
  std::vector<std::vector<float>> khat(p.heads.size());
#pragma omp parallel for schedule(dynamic)
  for (size_t i = 0; i < p.heads.size(); ++i) {
    const HeadData& h = p.heads[i];
    std::vector<float> yq(rows * d);
    for (size_t j = 0; j < rows * d; ++j) yq[j] = cb.decode(cb.encode(h.y[j]));
    h.rot->inverse(yq.data(), yq.data(), rows);
    for (size_t t = 0; t < rows; ++t)
      for (size_t j = 0; j < d; ++j) yq[t * d + j] *= h.scale[t];
    khat[i] = std::move(yq);
  }
  // Tasks: (layer, query head) pairs whose KV head is selected, in a fixed order.
  struct Task {
    size_t layer;
    int qh;
    int slot;
  };
  std::vector<Task> tasks;
  for (size_t l = 0; l < p.layers.size(); ++l) {
    const LayerData& L = p.layers[l];
    for (int qh = 0; qh < L.n_heads; ++qh) {
      const int kv = metrics::kv_head_for(qh, L.n_heads, L.n_kv);
      const int slot = L.slot[static_cast<size_t>(kv)];
      if (slot >= 0) tasks.push_back({l, qh, slot});
    }
  }
  if (obj == ObjectiveKind::Ip) {
    std::vector<metrics::IpStats> st(tasks.size());
#pragma omp parallel for schedule(dynamic)
    for (size_t i = 0; i < tasks.size(); ++i) {
      const Task& tk = tasks[i];
      const LayerData& L = p.layers[tk.layer];
      const HeadData& h = p.heads[static_cast<size_t>(tk.slot)];
      const float* q = L.q.at(static_cast<size_t>(tk.qh));
      metrics::IpStats s = metrics::ip_stats_head(q, h.x.data(), khat[static_cast<size_t>(tk.slot)].data(), rows, d);
      if (p.query_from > 0) {  // count only queries t >= query_from: subtract the prefix's pairs
        const metrics::IpStats pre = metrics::ip_stats_head(q, h.x.data(), khat[static_cast<size_t>(tk.slot)].data(), p.query_from, d);
        s.n_pairs -= pre.n_pairs;
        s.sum_cross -= pre.sum_cross;
        s.sum_sq -= pre.sum_sq;
        s.sum_sq_err -= pre.sum_sq_err;
        s.sum_err -= pre.sum_err;
      }
      st[i] = s;
    }
    metrics::IpStats total;
    for (const auto& s : st) total.merge(s);
    out.value = total.rms();
    return out;
  }
  std::vector<metrics::AttnStats> st(tasks.size());
#pragma omp parallel for schedule(dynamic)
  for (size_t i = 0; i < tasks.size(); ++i) {
    const Task& tk = tasks[i];
    const LayerData& L = p.layers[tk.layer];
    const HeadData& h = p.heads[static_cast<size_t>(tk.slot)];
    st[i] = metrics::attention_head(L.q.at(static_cast<size_t>(tk.qh)), h.x.data(), h.v.data(),
                                    khat[static_cast<size_t>(tk.slot)].data(), h.v.data(), rows, d, L.opt);
  }
  metrics::AttnStats total;
  for (const auto& s : st) total.merge(s);
  const metrics::AttnSummary sm = total.summary();
  out.value = sm.kl;
  out.out_err = sm.out_err;
  return out;
}

class DumpProblem final : public Problem {
 public:
  DumpProblem(const ProblemSpec& spec, const std::string& path) {
    if (spec.tensor != "k" && spec.tensor != "v") throw UsageError(fmt::format("--tensor: '{}' is not k or v", spec.tensor));
    if (spec.objective != ObjectiveKind::Mse && spec.tensor != "k")
      throw UsageError(fmt::format("--objective {} codes the keys: use --tensor k", objective_name(spec.objective)));
    obj_ = spec.objective;
    if (spec.heldout.empty()) {
      train_ = load_part(path, spec, true, false);
      heldout_ = load_part(path, spec, false, true);
      heldout_name_ = "tokens";
    } else {
      if (spec.heldout.rfind("dump:", 0) != 0)
        throw UsageError(fmt::format("--heldout: '{}' is not dump:PATH", spec.heldout));
      train_ = load_part(path, spec, false, false);
      heldout_ = load_part(spec.heldout.substr(5), spec, false, false);
      if (heldout_.d != train_.d) throw UsageError("--heldout: the held-out dump has another head_dim");
      heldout_name_ = spec.heldout;
    }
  }
  ObjectiveValue train(const ScalarCodebook& cb) const override { return evaluate(train_, obj_, cb); }
  ObjectiveValue heldout(const ScalarCodebook& cb) const override { return evaluate(heldout_, obj_, cb); }
  const SortedSamples* train_samples() const override { return train_.samples.get(); }
  ScalarCodebook analytic(int bits) const override { return lloyd_max_sphere(train_.d, bits); }
  int dim() const override { return static_cast<int>(train_.d); }
  std::string heldout_name() const override { return heldout_name_; }
  bool is_law() const override { return false; }

 private:
  ObjectiveKind obj_;
  DataPart train_, heldout_;
  std::string heldout_name_;
};

}  // namespace

double ks_sphere(const SortedSamples& s, size_t d) {
  if (d < 2) throw UsageError(fmt::format("KS distance: the sphere law needs d >= 2, not {}", d));
  std::vector<double> x = s.values();  // already sorted
  return stats::ks_distance_sphere(x, d);
}

double ks_sphere_null(size_t rows, size_t d, uint64_t seed) {
  Rng rng(seed_combine(seed, hash_tag("ks-null")));
  std::vector<double> x;
  x.reserve(rows * d);
  std::vector<double> g(d);
  for (size_t t = 0; t < rows; ++t) {
    double ss = 0.0;
    for (auto& v : g) {
      v = rng.gaussian();
      ss += v * v;
    }
    const double inv = 1.0 / std::sqrt(ss);
    for (double v : g) x.push_back(v * inv);
  }
  return ks_sphere(SortedSamples(std::move(x)), d);
}

std::unique_ptr<Problem> make_problem(const ProblemSpec& spec) {
  const std::string& s = spec.source;
  if (s.rfind("beta:", 0) == 0) return std::make_unique<LawProblem>(spec, false, parse_dim(s, s.substr(5)));
  if (s == "gaussian") return std::make_unique<LawProblem>(spec, true, 0);
  if (s.rfind("gaussian:", 0) == 0) return std::make_unique<LawProblem>(spec, true, parse_dim(s, s.substr(9)));
  if (s.rfind("dump:", 0) == 0) {
    if (s.size() == 5) throw UsageError("--source: dump: needs a path, e.g. dump:data/smollm2_a.h5");
    return std::make_unique<DumpProblem>(spec, s.substr(5));
  }
  throw UsageError(fmt::format("--source: '{}' is not beta:D, gaussian, gaussian:D or dump:PATH", s));
}

SolveResult solve(const Problem& problem, const ProblemSpec& pspec, const SolveSpec& sspec) {
  if (sspec.bits < 1 || sspec.bits > 8) throw UsageError(fmt::format("--bits: {} is not in 1..8", sspec.bits));
  if (sspec.solver != "lloyd-max" && sspec.solver != "cma-es" && sspec.solver != "fuzzy")
    throw UsageError(fmt::format("--solver: '{}' is not lloyd-max, cma-es or fuzzy", sspec.solver));
  if (pspec.seed > static_cast<uint64_t>(INT64_MAX)) throw UsageError("--seed: must be < 2^63 to be stored in a codebook file");
  SolveResult res;
  const auto* law = dynamic_cast<const LawProblem*>(&problem);
  const ScalarCodebook start = problem.analytic(sspec.bits);
  ScalarCodebook cb;
  SolveStats st;
  const auto t_start = std::chrono::steady_clock::now();
  const auto lloyd = [&](SolveStats* s) {
    if (law) return law->exact(sspec.bits, s);
    return make_codebook(lloyd_samples(*problem.train_samples(), centroids_of(start), s), sspec.bits);
  };
  if (sspec.solver == "lloyd-max") {
    cb = lloyd(&st);
    res.start_train = problem.train(start);
  } else if (sspec.solver == "fuzzy") {
    const std::vector<double> x = law ? law->grid(sspec.fuzzy_max_samples) : problem.train_samples()->thin(sspec.fuzzy_max_samples);
    FuzzyOptions fo = sspec.fuzzy;
    if (sspec.progress && !fo.progress)
      fo.progress = [&](int stage, int n, double t) { sspec.progress(fmt::format("fuzzy: stage {}/{} T={:.3g}", stage + 1, n, t)); };
    cb = make_codebook(fuzzy_cmeans(x, centroids_of(start), fo, &st), sspec.bits);
    res.start_train = problem.train(start);
  } else {
    SolveStats lst;
    const ScalarCodebook lm = lloyd(&lst);
    const auto f = [&](const std::vector<double>& c) { return problem.train(make_codebook(c, sspec.bits)).value; };
    CmaOptions co = sspec.cma;
    co.seed = seed_combine(pspec.seed, hash_tag("codebook-cma"));
    if (sspec.progress && !co.progress)
      co.progress = [&](int g, double best) { sspec.progress(fmt::format("cma-es: generation {}/{} best {:.6g}", g, co.max_generations, best)); };
    cb = make_codebook(cma_es(f, centroids_of(lm), co, &st), sspec.bits);
    res.start_train = problem.train(lm);
  }
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  cb.law = pspec.source;
  res.train = problem.train(cb);
  res.heldout = problem.heldout(cb);
  res.stats = st;

  CodebookFile& f = res.file;
  f.cb = cb;
  f.dim = problem.dim();
  f.source = pspec.source;
  f.heldout = problem.heldout_name();
  const bool one = pspec.layers.size() == 1 && pspec.heads.size() == 1;
  f.scope = problem.is_law() ? "analytic" : (one ? "tensor" : "shared");
  f.layers = join(pspec.layers);
  f.heads = join(pspec.heads);
  f.tensor = pspec.tensor;
  f.rotation = pspec.rotation;
  f.solver = sspec.solver;
  f.objective = objective_name(pspec.objective);
  f.seed = pspec.seed;
  f.train = res.train.value;
  f.heldout_value = res.heldout.value;
  f.start_train = res.start_train.value;
  f.iterations = st.iterations;
  f.evaluations = st.evaluations;
  f.tq_version = build::kVersion;
  return res;
}

}  // namespace tq::codebook
