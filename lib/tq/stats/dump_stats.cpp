#include "tq/stats/dump_stats.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "tq/core/error.h"
#include "tq/core/rng.h"
#include "tq/metrics/inner_product.h"

namespace tq::stats {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::vector<int> selected_layers(const DumpInfo& info, const std::vector<int>& wanted) {
  std::vector<int> out;
  if (wanted.empty()) {
    for (const auto& l : info.layers) out.push_back(l.index);
    return out;
  }
  for (int l : wanted) {
    bool found = false;
    for (const auto& li : info.layers) found = found || li.index == l;
    if (!found) throw UsageError(fmt::format("--layers: layer {} is not in {}", l, info.path));
    if (std::find(out.begin(), out.end(), l) == out.end()) out.push_back(l);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

DumpStats dump_stats(const DumpReader& reader, const DumpStatsOptions& opt) {
  const DumpInfo& info = reader.info();
  const std::vector<int> layers = selected_layers(info, opt.layers);
  // Every requested tensor must exist in at least one selected layer.
  for (const auto& name : opt.tensors) {
    bool any = false;
    for (int l : layers) any = any || info.layer(l).has(name);
    if (!any) throw UsageError(fmt::format("--tensors: no selected layer of {} has a dataset '{}'", info.path, name));
  }
  for (int h : opt.heads) {
    if (h < 0) throw UsageError(fmt::format("--heads: head {} is negative", h));
    bool any = false;
    for (int l : layers) any = any || h < info.layer(l).n_heads;
    if (!any) throw UsageError(fmt::format("--heads: head {} exceeds every selected layer's head count", h));
  }

  DumpStats out;
  const size_t T = static_cast<size_t>(info.n_tokens);
  for (int l : layers) {
    const LayerInfo& li = info.layer(l);
    const size_t d = static_cast<size_t>(li.head_dim);
    LayerRecord lr;
    lr.layer = l;
    lr.n_heads = li.n_heads;
    lr.n_kv_heads = li.n_kv_heads;
    lr.head_dim = li.head_dim;

    // Read what this layer needs (single thread: HDF5 is serialised).
    std::vector<std::string> names;
    for (const auto& name : opt.tensors) {
      if (li.has(name)) names.push_back(name);
      else out.skipped.push_back(fmt::format("layer {}: no {}", l, name));
    }
    std::map<std::string, Tensor3> data;
    auto load = [&](const std::string& name) -> const Tensor3& {
      auto it = data.find(name);
      if (it == data.end()) it = data.emplace(name, reader.read(l, name)).first;
      return it->second;
    };
    for (const auto& name : names) load(name);

    const RopeParams rope = RopeParams::from_layer(li);
    if (li.has("k_pre")) lr.rope_k = rope_check(load("k"), load("k_pre"), info.positions.data(), rope);
    if (li.has("q") && li.has("q_pre")) lr.rope_q = rope_check(load("q"), load("q_pre"), info.positions.data(), rope);

    // Attention entropy for every query head (per-head values also feed the q rows).
    std::vector<EntropySums> head_entropy;
    if (opt.entropy && li.has("q")) {
      const Tensor3& q = load("q");
      const Tensor3& k = load("k");
      metrics::AttnOptions ao = metrics::attn_options_for(li);
      ao.min_pos = opt.entropy_min_pos;
      head_entropy.resize(static_cast<size_t>(li.n_heads));
#pragma omp parallel for schedule(dynamic, 1)
      for (int h = 0; h < li.n_heads; ++h) {
        const int g = metrics::kv_head_for(h, li.n_heads, li.n_kv_heads);
        head_entropy[static_cast<size_t>(h)] =
            attention_entropy_head(q.at(static_cast<size_t>(h)), k.at(static_cast<size_t>(g)), T, d, ao);
      }
      EntropySums pooled;
      for (const auto& e : head_entropy) pooled.add(e);  // fixed order
      lr.entropy = pooled;
    }

    // Head items of this layer, in (tensor, head) order.
    std::vector<HeadRecord> items;
    for (const auto& name : names) {
      const Tensor3& t = load(name);
      for (size_t h = 0; h < t.n0; ++h) {
        if (!opt.heads.empty() && std::find(opt.heads.begin(), opt.heads.end(), static_cast<int>(h)) == opt.heads.end()) continue;
        HeadRecord r;
        r.layer = l;
        r.head = static_cast<int>(h);
        r.tensor = name;
        r.dtype = li.datasets.at(name);
        r.attn_entropy = (name == "q" && !head_entropy.empty()) ? head_entropy[h].mean() : kNaN;
        items.push_back(std::move(r));
      }
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t i = 0; i < items.size(); ++i) {
      HeadRecord& r = items[i];
      const Tensor3& t = data.at(r.tensor);
      HeadStatsOptions ho;
      ho.ks = opt.ks;
      ho.rotation_seed = seed_for(opt.seed, r.layer, r.head, r.tensor);
      r.stats = head_stats(t.at(static_cast<size_t>(r.head)), T, d, ho);
    }
    for (auto& r : items) out.heads.push_back(std::move(r));
    out.layers.push_back(std::move(lr));
  }
  return out;
}

TensorSummary DumpStats::summary(const std::string& tensor, int layer) const {
  TensorSummary s;
  for (const auto& r : heads) {
    if (r.tensor != tensor || (layer >= 0 && r.layer != layer)) continue;
    ++s.heads;
    s.norm_mean += r.stats.norm_mean;
    s.outlier_ratio += r.stats.outlier_ratio;
    s.channel_mean_spread += r.stats.channel_mean_spread;
    s.kurtosis_pooled += r.stats.kurtosis_pooled;
    s.kurtosis_channel_max += r.stats.kurtosis_channel_max;
    s.lag1_autocorr += r.stats.lag1_autocorr;
    s.ks_rotated += r.stats.ks_rotated;
    s.ks_raw += r.stats.ks_raw;
  }
  if (s.heads > 0) {
    const double n = static_cast<double>(s.heads);
    for (double* v : {&s.norm_mean, &s.outlier_ratio, &s.channel_mean_spread, &s.kurtosis_pooled,
                      &s.kurtosis_channel_max, &s.lag1_autocorr, &s.ks_rotated, &s.ks_raw})
      *v /= n;
  }
  return s;
}

double DumpStats::mean_attention_entropy() const {
  double sum = 0.0;
  size_t n = 0;
  for (const auto& l : layers) {
    if (!l.entropy || l.entropy->n == 0) continue;
    sum += l.entropy->mean();
    ++n;
  }
  return n > 0 ? sum / static_cast<double>(n) : kNaN;
}

}  // namespace tq::stats
