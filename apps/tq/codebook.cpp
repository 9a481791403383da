// tq codebook solve|show|verify|list: design scalar codebooks (Lloyd-Max, CMA-ES, fuzzy C-means)
// for analytic laws or real dumps under MSE / inner-product / attention objectives, and inspect
// codebook files. Reference: docs/codebooks.md; library: lib/tq/codebook/design.h.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include <fmt/format.h>

#include "app.h"
#include "commands.h"
#include "index_list.h"
#include "terminal.h"
#include "tq/codebook/codebook_file.h"
#include "tq/codebook/design.h"
#include "tq/core/error.h"
#include "tq/core/rng.h"
#include "tq/io/dump.h"
#include "tq/rotation/rotation.h"

namespace tq::app {

namespace {

using codebook::CodebookFile;

struct SolveConfig {
  std::string solver = "lloyd-max";
  std::string objective = "mse";
  std::string source;
  std::string heldout;
  int bits = 2;
  std::string layers = "all";
  std::string heads = "all";
  std::string tensor = "k";
  std::string rotation = "haar";
  std::string out;
  bool force = false;
  int generations = 100;
  int lambda = 0;
  double sigma0 = 0.1;
  int64_t max_evaluations = 0;
  double t0 = 0.5;
  double t_min = 1e-6;
  double cooling = 0.5;
  int inner = 100;
  int64_t law_samples = int64_t{1} << 20;
  int64_t fuzzy_samples = int64_t{1} << 15;
  int query_stride = 1;
};

struct VerifyConfig {
  std::string file;
  std::string source;
  int64_t law_samples = int64_t{1} << 20;
};

/// Progress text on stderr (one redrawn line) when it is a terminal and not --quiet.
std::function<void(const std::string&)> progress_line(const RunContext& rc) {
  if (!rc.progress) return {};
  auto last = std::make_shared<std::chrono::steady_clock::time_point>();
  return [last](const std::string& text) {
    const auto now = std::chrono::steady_clock::now();
    if (now - *last < std::chrono::milliseconds(100)) return;
    *last = now;
    std::fprintf(stderr, "\r%s\x1b[K", text.c_str());
    std::fflush(stderr);
  };
}

void clear_progress(const RunContext& rc) {
  if (rc.progress) std::fprintf(stderr, "\r\x1b[K");
}

codebook::ProblemSpec problem_spec(const std::string& source, const std::string& heldout, const std::string& objective,
                                   const std::string& layers, const std::string& heads, const std::string& tensor,
                                   const std::string& rotation, uint64_t seed, int64_t law_samples, int query_stride) {
  codebook::ProblemSpec p;
  p.source = source;
  p.heldout = heldout;
  p.objective = codebook::parse_objective(objective);
  p.layers = parse_index_list(layers, "--layers");
  p.heads = parse_index_list(heads, "--heads");
  p.tensor = tensor;
  if (tensor != "k" && tensor != "v") throw UsageError(fmt::format("--tensor: '{}' is not k or v", tensor));
  if (!is_rotation_kind(rotation)) throw UsageError(fmt::format("--rotation: '{}' is not haar, hr or id", rotation));
  p.rotation = rotation;
  p.seed = seed;
  if (law_samples < 1024) throw UsageError(fmt::format("--law-samples: {} is below 1024", law_samples));
  p.law_samples = static_cast<size_t>(law_samples);
  if (query_stride < 1) throw UsageError(fmt::format("--query-stride: {} must be >= 1", query_stride));
  p.query_stride = static_cast<size_t>(query_stride);
  return p;
}

void add_values(Table& t, const std::string& name, const codebook::ObjectiveValue& tr, const codebook::ObjectiveValue& ho) {
  Cell a, b;
  if (!std::isnan(tr.out_err)) a = tr.out_err;
  if (!std::isnan(ho.out_err)) b = ho.out_err;
  t.add({name, tr.value, ho.value, tr.nmse, ho.nmse, a, b});
}

Table meta_table(const CodebookFile& f) {
  Table t{"codebook", {"field", "value"}, {}};
  t.add({"bits", int64_t{f.cb.bits}});
  t.add({"dim", int64_t{f.dim}});
  t.add({"scope", f.scope});
  t.add({"source", f.source});
  t.add({"heldout", f.heldout});
  t.add({"layers", f.layers});
  t.add({"heads", f.heads});
  t.add({"tensor", f.tensor});
  t.add({"rotation", f.rotation});
  t.add({"solver", f.solver});
  t.add({"objective", f.objective});
  t.add({"seed", static_cast<int64_t>(f.seed)});
  t.add({"train", f.train});
  t.add({"heldout_value", f.heldout_value});
  t.add({"start_train", f.start_train});
  t.add({"iterations", f.iterations});
  t.add({"evaluations", f.evaluations});
  t.add({"tq_version", f.tq_version});
  return t;
}

Table centroid_table(const CodebookFile& f) {
  Table t{"centroids", {"index", "centroid", "upper_boundary"}, {}};
  for (size_t i = 0; i < f.cb.centroids.size(); ++i) {
    Cell upper;
    if (i < f.cb.boundaries.size()) upper = static_cast<double>(f.cb.boundaries[i]);
    t.add({static_cast<int64_t>(i), static_cast<double>(f.cb.centroids[i]), upper});
  }
  return t;
}

Report run_solve(const SolveConfig& c, const RunContext& rc) {
  if (c.source.empty()) throw UsageError("--source is required: beta:D, gaussian, gaussian:D or dump:PATH");
  if (!c.out.empty()) check_output(c.out, c.force);
  const codebook::ProblemSpec ps = problem_spec(c.source, c.heldout, c.objective, c.layers, c.heads, c.tensor, c.rotation,
                                                rc.common.seed, c.law_samples, c.query_stride);
  codebook::SolveSpec ss;
  ss.solver = c.solver;
  ss.bits = c.bits;
  if (c.generations < 1) throw UsageError(fmt::format("--generations: {} must be >= 1", c.generations));
  if (c.lambda < 0 || c.lambda == 1) throw UsageError(fmt::format("--lambda: {} must be 0 (default) or >= 2", c.lambda));
  if (!(c.sigma0 > 0.0)) throw UsageError(fmt::format("--sigma0: {} must be > 0", c.sigma0));
  if (c.inner < 1) throw UsageError(fmt::format("--inner: {} must be >= 1", c.inner));
  if (c.fuzzy_samples < 256) throw UsageError(fmt::format("--fuzzy-samples: {} is below 256", c.fuzzy_samples));
  ss.cma.max_generations = c.generations;
  ss.cma.lambda = c.lambda;
  ss.cma.sigma0 = c.sigma0;
  ss.cma.max_evaluations = c.max_evaluations;
  ss.fuzzy.t0 = c.t0;
  ss.fuzzy.t_min = c.t_min;
  ss.fuzzy.cooling = c.cooling;
  ss.fuzzy.inner = c.inner;
  ss.fuzzy_max_samples = static_cast<size_t>(c.fuzzy_samples);
  ss.progress = progress_line(rc);

  const auto t0 = std::chrono::steady_clock::now();
  const auto problem = codebook::make_problem(ps);
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const codebook::SolveResult res = codebook::solve(*problem, ps, ss);
  clear_progress(rc);
  if (!c.out.empty()) codebook::save_codebook_file(c.out, res.file, c.force);

  Report r;
  Table v{"values", {"codebook", "train", "heldout", "train_nmse", "heldout_nmse", "train_out_err", "heldout_out_err"}, {}};
  const ScalarCodebook start = problem->analytic(c.bits);
  add_values(v, "analytic", problem->train(start), problem->heldout(start));
  add_values(v, c.solver, res.train, res.heldout);
  r.tables.push_back(std::move(v));
  Table s{"solve", {"field", "value"}, {}};
  s.add({"solver", c.solver});
  s.add({"objective", c.objective});
  s.add({"source", c.source});
  s.add({"heldout", problem->heldout_name()});
  s.add({"bits", int64_t{c.bits}});
  s.add({"dim", int64_t{problem->dim()}});
  s.add({"scope", res.file.scope});
  s.add({"iterations", int64_t{res.stats.iterations}});
  s.add({"evaluations", static_cast<int64_t>(res.stats.evaluations)});
  s.add({"converged", res.stats.converged});
  s.add({"start_train", res.start_train.value});
  s.add({"train", res.train.value});
  s.add({"heldout_value", res.heldout.value});
  s.add({"out", c.out.empty() ? std::string("(not written)") : c.out});
  r.tables.push_back(std::move(s));
  r.tables.push_back(centroid_table(res.file));
  Json traj = Json::array();
  for (double x : res.stats.trajectory) traj.push_back(std::isfinite(x) ? Json(x) : Json());
  r.extra["trajectory"] = traj;
  r.run_extra["solve_seconds"] = res.stats.seconds;
  r.run_extra["load_seconds"] = load_s;
  r.notes.push_back(fmt::format("objective {}: {}", c.objective,
                                c.objective == "mse"         ? "NMSE of the normalised rotated vectors, E[(y-Q(y))^2]/E[y^2]"
                                : c.objective == "ip"        ? "ip_rms of <q,k^> vs <q,k> over causal pairs, real queries"
                                                             : "attn_kl (nats per query), real Q, K coded, V exact"));
  if (c.solver != "cma-es")
    r.notes.push_back("lloyd-max and fuzzy minimise the MSE; the objective column reports the chosen objective");
  r.notes.push_back(fmt::format("solve time {:.3f} s (in the JSON run object)", res.stats.seconds));
  return r;
}

Report run_show(const std::string& file) {
  const CodebookFile f = codebook::load_codebook_file(file);
  Report r;
  r.inputs.push_back(Json{{"path", file}});
  r.tables.push_back(meta_table(f));
  r.tables.push_back(centroid_table(f));
  return r;
}

Report run_verify(const VerifyConfig& c, const RunContext& rc) {
  const CodebookFile f = codebook::load_codebook_file(c.file);
  const std::string source = c.source.empty() ? f.source : c.source;
  const std::string heldout = f.heldout == "tokens" || f.heldout == "samples" ? "" : f.heldout;
  // Fresh samples: a law's held-out set is drawn with a seed other than the solve's.
  const uint64_t seed = f.data_source() ? f.seed : seed_combine(f.seed, rc.common.seed + 1);
  const codebook::ProblemSpec ps = problem_spec(source, c.source.empty() ? heldout : "", f.objective, f.layers, f.heads,
                                                f.tensor, f.rotation, seed, c.law_samples, 1);
  const auto problem = codebook::make_problem(ps);
  if (problem->dim() != f.dim)
    throw Error(fmt::format("codebook file '{}': dim {} does not match the source '{}' (dim {})", c.file, f.dim, source, problem->dim()));
  const auto tr = problem->train(f.cb);
  const auto ho = problem->heldout(f.cb);
  const ScalarCodebook start = problem->analytic(f.cb.bits);
  Report r;
  r.inputs.push_back(Json{{"path", c.file}});
  Table v{"verify", {"quantity", "recorded", "recomputed", "rel_diff", "analytic"}, {}};
  const auto rel = [](double a, double b) { return std::abs(a - b) / std::max(std::abs(a), 1e-300); };
  v.add({"train", f.train, tr.value, rel(f.train, tr.value), problem->train(start).value});
  v.add({"heldout", f.heldout_value, ho.value, rel(f.heldout_value, ho.value), problem->heldout(start).value});
  r.tables.push_back(std::move(v));
  r.notes.push_back(fmt::format("source {}; held-out {}{}", source, problem->heldout_name(),
                                problem->is_law() ? " (fresh samples, seed differs from the solve: expect sampling noise)" : ""));
  return r;
}

Report run_list(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(fmt::format("codebook list: '{}' is not a directory", dir));
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".toml") files.push_back(e.path().string());
  if (ec) throw Error(fmt::format("codebook list: cannot read directory '{}': {}", dir, ec.message()));
  std::sort(files.begin(), files.end());
  Table t{"codebooks",
          {"file", "bits", "dim", "scope", "source", "layers", "heads", "tensor", "solver", "objective", "train", "heldout"},
          {}};
  for (const auto& p : files) {
    const CodebookFile f = codebook::load_codebook_file(p);
    t.add({fs::path(p).filename().string(), int64_t{f.cb.bits}, int64_t{f.dim}, f.scope, f.source, f.layers, f.heads, f.tensor,
           f.solver, f.objective, f.train, f.heldout_value});
  }
  Report r;
  r.inputs.push_back(Json{{"path", dir}});
  r.tables.push_back(std::move(t));
  return r;
}

struct CompareConfig {
  std::string source;
  std::string heldout;
  int bits = 2;
  std::string layers = "all";
  std::string heads = "all";
  std::string tensors = "k,v";
  std::string rotation = "haar";
  int query_stride = 1;
};

double gain_pct(double analytic, double data) { return analytic > 0.0 ? 100.0 * (analytic - data) / analytic : 0.0; }

Report run_compare(const CompareConfig& c, const RunContext& rc) {
  if (c.source.rfind("dump:", 0) != 0) throw UsageError("--source must be dump:PATH for a data comparison");
  if (c.bits < 1 || c.bits > 8) throw UsageError(fmt::format("--bits: {} is not in 1..8", c.bits));
  const std::vector<std::string> tensors = parse_name_list(c.tensors, "--tensors");
  for (const auto& t : tensors)
    if (t != "k" && t != "v") throw UsageError(fmt::format("--tensors: '{}' is not k or v", t));
  DumpReader reader(c.source.substr(5));
  const DumpInfo& info = reader.info();
  std::vector<int> layers = parse_index_list(c.layers, "--layers");
  if (layers.empty())
    for (const auto& l : info.layers) layers.push_back(l.index);
  const std::vector<int> heads_sel = parse_index_list(c.heads, "--heads");
  Table t{"compare",
          {"layer", "head", "tensor", "samples", "ks", "ks_null", "nmse_analytic", "nmse_data", "nmse_gain_pct", "kl_analytic",
           "kl_data", "kl_gain_pct"},
          {}};
  size_t total = 0;
  for (int l : layers) {
    const int nkv = info.layer(l).n_kv_heads;
    total += tensors.size() * (heads_sel.empty() ? static_cast<size_t>(nkv) : heads_sel.size());
  }
  Progress progress(rc, "compare", total);
  for (int l : layers) {
    std::vector<int> heads = heads_sel;
    if (heads.empty())
      for (int h = 0; h < info.layer(l).n_kv_heads; ++h) heads.push_back(h);
    for (int h : heads) {
      for (const auto& tensor : tensors) {
        const codebook::ProblemSpec ps =
            problem_spec(c.source, c.heldout, tensor == "k" ? "attention" : "mse", std::to_string(l), std::to_string(h), tensor,
                         c.rotation, rc.common.seed, 1024, c.query_stride);
        const auto problem = codebook::make_problem(ps);
        codebook::SolveSpec ss;
        ss.bits = c.bits;
        const codebook::SolveResult res = codebook::solve(*problem, ps, ss);
        const ScalarCodebook analytic = problem->analytic(c.bits);
        const auto ha = problem->heldout(analytic);
        const auto& smp = *problem->train_samples();
        const auto d = static_cast<size_t>(problem->dim());
        Cell kla, kld, klg;
        if (tensor == "k") {
          kla = ha.value;
          kld = res.heldout.value;
          klg = gain_pct(ha.value, res.heldout.value);
        }
        t.add({int64_t{l}, int64_t{h}, tensor, static_cast<int64_t>(smp.size()), codebook::ks_sphere(smp, d),
               codebook::ks_sphere_null(smp.size() / d, d, seed_for(rc.common.seed, l, h, tensor)), ha.nmse, res.heldout.nmse,
               gain_pct(ha.nmse, res.heldout.nmse), kla, kld, klg});
        progress.advance();
      }
    }
  }
  progress.finish();
  Report r;
  r.inputs.push_back(Json{{"path", c.source.substr(5)}});
  r.tables.push_back(std::move(t));
  r.notes.push_back(fmt::format("data codebook = sample Lloyd-Max per (layer, head, tensor) on the train part at {} bits; "
                                "values on the held-out part ({})",
                                c.bits, c.heldout.empty() ? "second half of the tokens" : c.heldout));
  r.notes.push_back("ks: KS distance of the normalised rotated train coordinates from the sphere (Beta) law; ks_null: the "
                    "same for as many uniform random unit vectors");
  r.notes.push_back("kl: attn_kl (nats per query) with K coded and V exact, real queries; gain_pct = 100 (analytic - data) / analytic");
  return r;
}

}  // namespace

void add_codebook_command(CLI::App& root, Context& ctx) {
  CLI::App* grp = root.add_subcommand("codebook", "Design scalar codebooks (Lloyd-Max, CMA-ES, fuzzy) and inspect codebook files");
  grp->require_subcommand(1);

  {
    auto cfg = std::make_shared<SolveConfig>();
    Command& cmd = ctx.add_command(*grp, "solve", "Solve a codebook for a law or a dump and write it as TOML",
                                   CommandTraits{.seed = true, .report_out = false});
    cmd.option("--solver", cfg->solver, "lloyd-max (exact law / 1-D k-means), cma-es (from Lloyd-Max), fuzzy (annealed C-means)");
    cmd.option("--objective", cfg->objective, "mse, ip (real queries) or attention (attn KL, real Q/K); cma-es minimises it");
    cmd.option("--source", cfg->source, "beta:D, gaussian (N(0,1)), gaussian:D (N(0,1/D)) or dump:PATH")->type_name("SRC");
    cmd.option("--heldout", cfg->heldout, "dump:PATH held-out prompt (default: second half of the tokens)")->type_name("SRC");
    cmd.option("--bits", cfg->bits, "Bits per coordinate, 1..8");
    cmd.option("--layers", cfg->layers, "Dump layers: all, or a list such as 0,2,5-7");
    cmd.option("--heads", cfg->heads, "Dump KV heads: all, or a list (one layer and one head -> a per-tensor codebook)");
    cmd.option("--tensor", cfg->tensor, "Dump tensor k or v (ip and attention need k)");
    cmd.option("--rotation", cfg->rotation, "The codec rotation the samples go through: haar, hr or id");
    cmd.option("--out", cfg->out, "Codebook file to write (TOML)")->type_name("FILE.toml");
    cmd.flag("--force", cfg->force, "Allow --out to overwrite an existing file");
    cmd.option("--generations", cfg->generations, "cma-es: maximum generations");
    cmd.option("--lambda", cfg->lambda, "cma-es: population size (0 = 4 + 3 ln n)");
    cmd.option("--sigma0", cfg->sigma0, "cma-es: initial step relative to the mean centroid spacing");
    cmd.option("--max-evaluations", cfg->max_evaluations, "cma-es: evaluation budget (0 = generations only)");
    cmd.option("--t0", cfg->t0, "fuzzy: first temperature, relative to the squared mean centroid spacing");
    cmd.option("--t-min", cfg->t_min, "fuzzy: last temperature (same units)");
    cmd.option("--cooling", cfg->cooling, "fuzzy: temperature factor per stage, in (0, 1)");
    cmd.option("--inner", cfg->inner, "fuzzy: fixed-point iterations per stage");
    cmd.option("--fuzzy-samples", cfg->fuzzy_samples, "fuzzy: at most this many order statistics of the samples");
    cmd.option("--law-samples", cfg->law_samples, "Held-out samples drawn from a law source");
    cmd.option("--query-stride", cfg->query_stride, "ip/attention: count queries t with t % stride == 0");
    cmd.on_run([cfg](const RunContext& rc) { return run_solve(*cfg, rc); });
  }
  {
    auto file = std::make_shared<std::string>();
    Command& cmd = ctx.add_command(*grp, "show", "Print a codebook file's fields and centroids", CommandTraits{.seed = false});
    cmd.option("file", *file, "Codebook file (TOML)");
    cmd.require("file");
    cmd.on_run([file](const RunContext&) { return run_show(*file); });
  }
  {
    auto cfg = std::make_shared<VerifyConfig>();
    Command& cmd = ctx.add_command(*grp, "verify", "Recompute a codebook file's objective (fresh samples for a law)");
    cmd.option("file", cfg->file, "Codebook file (TOML)");
    cmd.require("file");
    cmd.option("--source", cfg->source, "Evaluate on this source instead of the file's (e.g. another dump)")->type_name("SRC");
    cmd.option("--law-samples", cfg->law_samples, "Fresh samples drawn from a law source");
    cmd.on_run([cfg](const RunContext& rc) { return run_verify(*cfg, rc); });
  }
  {
    auto cfg = std::make_shared<CompareConfig>();
    Command& cmd = ctx.add_command(*grp, "compare",
                                   "Per layer/head/K-V: distance of rotated real coordinates from the Beta law and what a data codebook gains");
    cmd.option("--source", cfg->source, "dump:PATH to train on (and measure the KS distance)")->type_name("SRC");
    cmd.require("--source");
    cmd.option("--heldout", cfg->heldout, "dump:PATH held-out prompt (default: second half of the tokens)")->type_name("SRC");
    cmd.option("--bits", cfg->bits, "Bits per coordinate, 1..8");
    cmd.option("--layers", cfg->layers, "Layers: all, or a list such as 0,2,5-7");
    cmd.option("--heads", cfg->heads, "KV heads: all, or a list");
    cmd.option("--tensors", cfg->tensors, "k, v or k,v");
    cmd.option("--rotation", cfg->rotation, "Codec rotation: haar, hr or id");
    cmd.option("--query-stride", cfg->query_stride, "attention: count queries t with t % stride == 0");
    cmd.on_run([cfg](const RunContext& rc) { return run_compare(*cfg, rc); });
  }
  {
    auto dir = std::make_shared<std::string>();
    Command& cmd = ctx.add_command(*grp, "list", "List the codebook files (*.toml) of a directory", CommandTraits{.seed = false});
    cmd.option("dir", *dir, "Directory");
    cmd.require("dir");
    cmd.on_run([dir](const RunContext&) { return run_list(*dir); });
  }
}

}  // namespace tq::app
