// tq inspect: statistics of a KV dump, one row per (layer, head, tensor) and one per layer
// (RoPE check, attention entropy). Definitions: lib/tq/stats/head_stats.h, layer_stats.h.
#include <cmath>
#include <memory>

#include <fmt/format.h>

#include "app.h"
#include "commands.h"
#include "dump_input.h"
#include "index_list.h"
#include "tq/io/dump.h"
#include "tq/stats/dump_stats.h"

namespace tq::app {

namespace {

struct InspectConfig {
  std::string input;
  std::string layers = "all";
  std::string heads = "all";
  std::string tensors = "k,v,q";
  bool no_ks = false;
};

std::string shape_text(const stats::HeadStats& s) { return fmt::format("{}x{}", s.tokens, s.dim); }

Cell rope_cell(const std::optional<stats::RopeCheck>& c) {
  if (!c) return std::string("n/a");
  return std::string(c->pass ? "pass" : "FAIL");
}
Cell rope_err_cell(const std::optional<stats::RopeCheck>& c) {
  if (!c) return std::monostate{};
  return c->rel_err;
}
Cell maybe(double v) {
  if (std::isnan(v)) return std::monostate{};
  return v;
}

Report run(const InspectConfig& c, const RunContext& rc) {
  stats::DumpStatsOptions opt;
  opt.layers = parse_index_list(c.layers, "--layers");
  opt.heads = parse_index_list(c.heads, "--heads");
  opt.tensors = parse_name_list(c.tensors, "--tensors");
  opt.seed = rc.common.seed;
  opt.ks = !c.no_ks;

  DumpReader reader(c.input);
  const DumpInfo& info = reader.info();
  const stats::DumpStats ds = stats::dump_stats(reader, opt);

  Report r;
  r.inputs.push_back(dump_input_json(info));

  Table heads{"heads",
              {"layer", "head", "tensor", "shape", "dtype", "norm_mean", "norm_min", "norm_max", "outlier_ratio",
               "kurtosis", "kurtosis_ch_max", "mean_spread", "lag1_corr", "ks_haar", "ks_raw", "attn_entropy"},
              {}};
  Json channels = Json::array();
  for (const auto& h : ds.heads) {
    const auto& s = h.stats;
    heads.add({int64_t{h.layer}, int64_t{h.head}, h.tensor, shape_text(s), std::string(dtype_name(h.dtype)),
               s.norm_mean, s.norm_min, s.norm_max, s.outlier_ratio, s.kurtosis_pooled, s.kurtosis_channel_max,
               s.channel_mean_spread, s.lag1_autocorr, maybe(s.ks_rotated), maybe(s.ks_raw), maybe(h.attn_entropy)});
    channels.push_back(Json{{"layer", h.layer}, {"head", h.head}, {"tensor", h.tensor},
                            {"mean", s.channel_mean}, {"std", s.channel_std}, {"absmax", s.channel_absmax}});
  }

  Table layers{"layers",
               {"layer", "n_heads", "n_kv_heads", "head_dim", "rope", "rope_k_rel_err", "rope_k", "rope_q_rel_err",
                "rope_q", "attn_entropy", "attn_entropy_uniform"},
               {}};
  for (const auto& l : ds.layers) {
    const LayerInfo& li = info.layer(l.layer);
    const std::string rope = fmt::format("{} theta={} r={}", li.rope_pairing, li.rope_theta,
                                         li.rotary_dim > 0 ? li.rotary_dim : li.head_dim);
    layers.add({int64_t{l.layer}, int64_t{l.n_heads}, int64_t{l.n_kv_heads}, int64_t{l.head_dim}, rope,
                rope_err_cell(l.rope_k), rope_cell(l.rope_k), rope_err_cell(l.rope_q), rope_cell(l.rope_q),
                l.entropy ? maybe(l.entropy->mean()) : Cell{}, l.entropy ? maybe(l.entropy->uniform_mean()) : Cell{}});
  }
  r.tables.push_back(std::move(heads));
  r.tables.push_back(std::move(layers));
  r.extra["channels"] = std::move(channels);

  r.notes.push_back(fmt::format(
      "ks_haar / ks_raw: KS distance of the coordinates of x/|x| with / without a Haar rotation (seed {}) "
      "from the exact law (1+y)/2 ~ Beta((d-1)/2, (d-1)/2); ~1/sqrt(T*d) is ideal.",
      rc.common.seed));
  r.notes.push_back(fmt::format("rope: pass when max|k - RoPE(k_pre)| / max|k| <= {:g}; attn_entropy: mean causal "
                                "softmax entropy (nats) over positions t >= {} and query heads; uniform = log(t+1).",
                                stats::kRopeTolerance, opt.entropy_min_pos));
  r.notes.push_back("mean_spread = std of channel means / mean channel std; lag1_corr = mean lag-1 autocorrelation "
                    "of the centred channels; kurtosis = pooled excess kurtosis of all elements.");
  for (const auto& s : ds.skipped) r.notes.push_back("skipped " + s);
  return r;
}

}  // namespace

void add_inspect_command(CLI::App& root, Context& ctx) {
  auto cfg = std::make_shared<InspectConfig>();
  Command& cmd = ctx.add_command(root, "inspect", "Statistics of a KV dump: norms, outliers, kurtosis, KS after rotation, RoPE, attention entropy");
  cmd.option("input", cfg->input, "HDF5 KV dump to read");
  cmd.require("input");
  cmd.option("--layers", cfg->layers, "Layers to inspect: all, or a list such as 0,2,5-7");
  cmd.option("--heads", cfg->heads, "Heads (within each tensor) to inspect: all, or a list such as 0-3");
  cmd.option("--tensors", cfg->tensors, "Datasets to inspect (k, v, q, k_pre, q_pre, grad2_k, grad2_v)");
  cmd.flag("--no-ks", cfg->no_ks, "Skip the KS distances (faster)");
  cmd.on_run([cfg](const RunContext& rc) { return run(*cfg, rc); });
}

}  // namespace tq::app
