// The sweep of tq benchmark: one layer in memory at a time; per layer and seed repeat, phase 1
// codes every (tensor, codec, KV head) in parallel and measures its reconstruction, phase 2
// measures inner products and attention per (codec, query head) in parallel. Results are stored
// by task index and merged in (layer, seed, tensor, codec, head) order.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include <fmt/format.h>

#include "tq/bench/bench.h"
#include "tq/bench/parallel.h"
#include "tq/bench/pool.h"
#include "tq/core/error.h"
#include "tq/core/rng.h"
#include "tq/metrics/metrics.h"

namespace tq::bench {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

/// Rows [T', d] of `src` [n0, T, d] at token indices `keep` (all when empty).
Tensor3 select_tokens(Tensor3 src, const std::vector<size_t>& keep) {
  if (keep.empty() || src.n0 == 0) return src;
  Tensor3 out{src.n0, keep.size(), src.n2, std::vector<float>(src.n0 * keep.size() * src.n2)};
  for (size_t h = 0; h < src.n0; ++h)
    for (size_t i = 0; i < keep.size(); ++i)
      std::copy_n(src.at(h) + keep[i] * src.n2, src.n2, out.at(h) + i * src.n2);
  return out;
}

/// One coded head: its bytes and reconstruction stats.
struct CodedHead {
  ByteCount bytes;
  metrics::ReconStats recon;
};

/// The selection of one input after intersecting the flags with what it holds.
struct InputPlan {
  std::vector<int> layers;           ///< layer indices to run
  std::vector<size_t> tokens;        ///< token indices (empty = all)
  size_t T = 0;                      ///< tokens after selection
};

std::vector<int> intersect(const std::vector<int>& want, const std::vector<int>& have) {
  if (want.empty()) return have;
  std::vector<int> out;
  for (int w : want)
    if (std::find(have.begin(), have.end(), w) != have.end()) out.push_back(w);
  return out;
}

std::vector<int> kv_heads_of(const LayerInfo& li, const std::vector<int>& want) {
  std::vector<int> all(static_cast<size_t>(li.n_kv_heads));
  for (int h = 0; h < li.n_kv_heads; ++h) all[static_cast<size_t>(h)] = h;
  return intersect(want, all);
}

}  // namespace

double asymptotic_bits(const Codec& codec) {
  constexpr size_t n = size_t{1} << 20;
  try {
    const ByteCount a = codec.byte_count(n), b = codec.byte_count(2 * n);
    const double extra = static_cast<double>(b.total()) - static_cast<double>(a.total());
    return extra * 8.0 / (static_cast<double>(n) * static_cast<double>(codec.dim()));
  } catch (const std::exception&) {
    return kNaN;
  }
}

Report run_benchmark(const BenchConfig& c, const ProgressFn& progress, BenchTiming* timing) {
  BenchTiming tm;
  using Clock = std::chrono::steady_clock;
  const auto secs = [](Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); };
  // ---- validate flags, expand the sweep, open the inputs --------------------------------------
  if (c.seeds < 1) throw UsageError(fmt::format("--seeds: {} must be at least 1", c.seeds));
  if (c.max_queries < 0) throw UsageError(fmt::format("--max-queries: {} must be >= 0", c.max_queries));
  if (c.bootstrap < 0) throw UsageError(fmt::format("--bootstrap: {} must be >= 0", c.bootstrap));
  if (c.bootstrap_block < 0) throw UsageError(fmt::format("--bootstrap-block: {} must be >= 0", c.bootstrap_block));
  if (c.worst < 0) throw UsageError(fmt::format("--worst: {} must be >= 0", c.worst));
  const Sweep sweep = expand_sweep(c);
  const std::vector<std::unique_ptr<Source>> sources = open_sources(c);

  Pooler pool(c, sweep);
  std::vector<std::string> notes;

  // Selections: every requested index must exist in at least one input; an input left with
  // nothing selected is skipped with a note.
  std::vector<InputPlan> plans(sources.size());
  std::set<int> layers_seen, heads_seen;
  std::set<size_t> tokens_seen;
  size_t total_layers = 0;
  for (size_t si = 0; si < sources.size(); ++si) {
    const Source& src = *sources[si];
    std::vector<int> have;
    for (const auto& li : src.layers()) have.push_back(li.index);
    InputPlan& plan = plans[si];
    plan.layers = intersect(c.layers, have);
    for (int l : plan.layers) layers_seen.insert(l);
    const size_t T = src.n_tokens();
    if (!c.tokens.empty()) {
      for (int t : c.tokens)
        if (static_cast<size_t>(t) < T) {
          plan.tokens.push_back(static_cast<size_t>(t));
          tokens_seen.insert(static_cast<size_t>(t));
        }
      plan.T = plan.tokens.size();
    } else {
      plan.T = T;
    }
    bool any_head = false;
    for (int l : plan.layers) {
      const auto hs = kv_heads_of(src.layers()[static_cast<size_t>(
                                      std::find(have.begin(), have.end(), l) - have.begin())],
                                  c.heads);
      for (int h : hs) heads_seen.insert(h);
      any_head |= !hs.empty();
    }
    if (plan.layers.empty() || plan.T == 0 || !any_head) {
      notes.push_back(fmt::format("skipped input {}: nothing selected (--layers/--heads/--tokens)", src.name()));
      plan.layers.clear();
      continue;
    }
    if (!c.tokens.empty() && plan.T < c.tokens.size())
      notes.push_back(fmt::format("{}: {} of the {} selected tokens exist (T = {})", src.name(), plan.T,
                                  c.tokens.size(), T));
    total_layers += plan.layers.size();
  }
  for (int l : c.layers)
    if (!layers_seen.count(l)) throw UsageError(fmt::format("--layers: layer {} is in no input", l));
  for (int h : c.heads)
    if (!heads_seen.count(h)) throw UsageError(fmt::format("--heads: KV head {} is in no selected layer of any input", h));
  for (int t : c.tokens)
    if (!tokens_seen.count(static_cast<size_t>(t)))
      throw UsageError(fmt::format("--tokens: token {} is in no input", t));
  if (total_layers == 0) throw UsageError("empty selection: no layer of any input selected");

  // Every codec must build for every head_dim it will meet (before any work).
  std::map<std::pair<std::string, int>, double> asym;  // (tensor:label, d) -> T->inf bits
  for (size_t si = 0; si < sources.size(); ++si) {
    for (int l : plans[si].layers) {
      const LayerInfo* li = nullptr;
      for (const auto& x : sources[si]->layers())
        if (x.index == l) li = &x;
      for (const char* tensor : {"k", "v"}) {
        for (const auto& label : std::string(tensor) == "k" ? sweep.k : sweep.v) {
          const auto key = std::make_pair(fmt::format("{}:{}", tensor, label), li->head_dim);
          if (asym.count(key)) continue;
          // layer/head 0 of this layer: a --codebook directory must resolve for it as for every head
          const CodecContext ctx{static_cast<size_t>(li->head_dim), 0, std::string(tensor), c.codebook, l, 0};
          try {
            asym[key] = asymptotic_bits(*make_codec(label, ctx));
          } catch (const Error& e) {
            throw UsageError(fmt::format("{} (input {}, layer {}, head_dim {})", e.what(), sources[si]->name(), l,
                                         li->head_dim));
          }
        }
      }
    }
  }

  // ---- the sweep ----------------------------------------------------------------------------
  const bool want_ip = c.metrics != MetricSet::Recon;
  const bool want_attn = c.metrics == MetricSet::Full;
  size_t layers_done = 0;
  for (size_t si = 0; si < sources.size(); ++si) {
    const Source& src = *sources[si];
    const InputPlan& plan = plans[si];
    if (plan.layers.empty()) continue;
    pool.begin_input(src.name(), src.input_json(), plan.T);
    if (!src.note().empty()) notes.push_back(src.note());
    std::vector<int32_t> positions = src.positions();
    if (!plan.tokens.empty()) {
      std::vector<int32_t> p;
      for (size_t t : plan.tokens) p.push_back(positions[t]);
      positions = std::move(p);
    }
    const size_t T = plan.T;
    const size_t stride =
        c.max_queries > 0 ? std::max<size_t>(1, (T + static_cast<size_t>(c.max_queries) - 1) / static_cast<size_t>(c.max_queries))
                          : 1;
    if (want_ip && stride > 1)
      notes.push_back(fmt::format("{}: inner-product and attention metrics use every {}th query position (T = {}, "
                                  "--max-queries {}); every key s <= t of a used query counts",
                                  src.name(), stride, T, c.max_queries));
    bool noted_random = false, noted_no_attn = false;

    for (int layer : plan.layers) {
      // Read on this thread only (HDF5), then compute in parallel.
      auto t0 = Clock::now();
      LayerData ld = src.read_layer(layer, want_ip);
      ld.k = select_tokens(std::move(ld.k), plan.tokens);
      ld.v = select_tokens(std::move(ld.v), plan.tokens);
      ld.q = select_tokens(std::move(ld.q), plan.tokens);
      const LayerInfo& li = ld.info;
      const size_t d = static_cast<size_t>(li.head_dim);
      const std::vector<int> kv_heads = kv_heads_of(li, c.heads);
      const bool real_q = ld.q.size() > 0;
      if (want_ip && !real_q) {
        ld.q = metrics::random_queries(c.seed, layer, li.n_heads, T, d);
        if (!noted_random) {
          notes.push_back(fmt::format("{}: no queries in the input; ip_bias/ip_rms use seeded random N(0, I) queries "
                                      "(run seed {}, isotropic key error)",
                                      src.name(), c.seed));
          noted_random = true;
        }
      }
      const bool do_attn = want_attn && real_q;
      if (want_attn && !real_q && !noted_no_attn) {
        notes.push_back(fmt::format("{}: attention metrics skipped (the input has no queries)", src.name()));
        noted_no_attn = true;
      }
      // Query heads reading a selected KV head.
      std::vector<int> q_heads;
      if (want_ip) {
        for (int h = 0; h < li.n_heads; ++h) {
          const int g = metrics::kv_head_for(h, li.n_heads, li.n_kv_heads);
          if (std::find(kv_heads.begin(), kv_heads.end(), g) != kv_heads.end()) q_heads.push_back(h);
        }
      }
      tm.read += secs(t0);
      metrics::AttnOptions aopt;
      if (do_attn) {
        aopt = metrics::attn_options_for(li);
        aopt.query_stride = stride;
      }

      for (int s = 0; s < c.seeds; ++s) {
        const uint64_t run_seed = c.seed + static_cast<uint64_t>(s);
        // Phase 1: code (tensor, codec, kv head).
        struct Task1 {
          int tensor;  // 0 = k, 1 = v
          size_t codec;
          size_t head_pos;  // index into kv_heads
        };
        std::vector<Task1> t1;
        for (int tensor = 0; tensor < 2; ++tensor) {
          const auto& list = tensor == 0 ? sweep.k : sweep.v;
          for (size_t ci = 0; ci < list.size(); ++ci)
            for (size_t hp = 0; hp < kv_heads.size(); ++hp) t1.push_back({tensor, ci, hp});
        }
        // Reconstructions [codec] -> [n_kv_heads, T, d] (only selected heads filled).
        std::vector<Tensor3> khat(sweep.k.size()), vhat(sweep.v.size());
        for (auto& t : khat) t = Tensor3{static_cast<size_t>(li.n_kv_heads), T, d, std::vector<float>(ld.k.size())};
        for (auto& t : vhat) t = Tensor3{static_cast<size_t>(li.n_kv_heads), T, d, std::vector<float>(ld.v.size())};
        std::vector<CodedHead> coded(t1.size());
        t0 = Clock::now();
        parallel_tasks(t1.size(), [&](size_t i) {
          const Task1& task = t1[i];
          const int head = kv_heads[task.head_pos];
          const char* tensor = task.tensor == 0 ? "k" : "v";
          const std::string& label = task.tensor == 0 ? sweep.k[task.codec] : sweep.v[task.codec];
          const Tensor3& x = task.tensor == 0 ? ld.k : ld.v;
          Tensor3& xh = task.tensor == 0 ? khat[task.codec] : vhat[task.codec];
          const CodecContext ctx{d, seed_for(run_seed, layer, head, tensor), std::string(tensor), c.codebook, layer, head};
          const auto codec = make_codec(label, ctx);
          const float* xs = x.at(static_cast<size_t>(head));
          if (codec->needs_training()) codec->train(xs, T);
          const Encoded e = codec->encode(xs, T, positions.data());
          if (e.count.total() != e.bytes.size() || e.n_tokens != T || e.dim != d)
            throw Error(fmt::format("codec '{}': encoding of layer {} head {} {} is inconsistent ({} bytes counted, "
                                    "{} stored)",
                                    label, layer, head, tensor, e.count.total(), e.bytes.size()));
          codec->decode(e, xh.at(static_cast<size_t>(head)));
          coded[i].bytes = e.count;
          coded[i].recon = metrics::ReconStats::of_head(xs, xh.at(static_cast<size_t>(head)), T, d);
        });

        tm.code += secs(t0);
        // Phase 2: inner products (K codec, query head) and attention (pair, query head).
        struct Task2 {
          bool attn;
          size_t index;  // K codec (ip) or pair (attn)
          size_t qh_pos; // index into q_heads
        };
        std::vector<Task2> t2;
        if (want_ip)
          for (size_t ci = 0; ci < sweep.k.size(); ++ci)
            for (size_t qp = 0; qp < q_heads.size(); ++qp) t2.push_back({false, ci, qp});
        if (do_attn)
          for (size_t pi = 0; pi < sweep.pairs.size(); ++pi)
            for (size_t qp = 0; qp < q_heads.size(); ++qp) t2.push_back({true, pi, qp});
        std::vector<metrics::IpStats> ip(t2.size());
        std::vector<metrics::AttnStats> at(t2.size());
        t0 = Clock::now();
        parallel_tasks(t2.size(), [&](size_t i) {
          const Task2& task = t2[i];
          const int h = q_heads[task.qh_pos];
          const size_t g = static_cast<size_t>(metrics::kv_head_for(h, li.n_heads, li.n_kv_heads));
          const float* q = ld.q.at(static_cast<size_t>(h));
          if (!task.attn) {
            ip[i] = metrics::ip_stats_head(q, ld.k.at(g), khat[task.index].at(g), T, d, stride);
          } else {
            const auto [ki, vi] = sweep.pairs[task.index];
            at[i] = metrics::attention_head(q, ld.k.at(g), ld.v.at(g), khat[ki].at(g), vhat[vi].at(g), T, d, aopt);
          }
        });

        tm.metrics += secs(t0);
        // Merge in fixed order.
        t0 = Clock::now();
        for (size_t i = 0; i < t1.size(); ++i) {
          const Task1& task = t1[i];
          const int head = kv_heads[task.head_pos];
          metrics::IpStats ip_head;
          bool has_ip = false;
          if (task.tensor == 0 && want_ip) {
            for (size_t j = 0; j < t2.size(); ++j) {
              if (t2[j].attn || t2[j].index != task.codec) continue;
              const int h = q_heads[t2[j].qh_pos];
              if (metrics::kv_head_for(h, li.n_heads, li.n_kv_heads) != head) continue;
              ip_head.merge(ip[j]);
              has_ip = true;
            }
          }
          const std::string& label = task.tensor == 0 ? sweep.k[task.codec] : sweep.v[task.codec];
          const double a = asym.at({fmt::format("{}:{}", task.tensor == 0 ? "k" : "v", label), li.head_dim});
          pool.add_head(layer, head, task.tensor, task.codec, s, T, d, coded[i].bytes, std::move(coded[i].recon),
                        has_ip ? &ip_head : nullptr, a);
        }
        for (size_t j = 0; j < t2.size(); ++j) {
          if (!t2[j].attn) continue;
          const int h = q_heads[t2[j].qh_pos];
          pool.add_attention(layer, h, metrics::kv_head_for(h, li.n_heads, li.n_kv_heads), t2[j].index, s, at[j]);
        }
        tm.pool += secs(t0);
      }
      ++layers_done;
      if (progress) progress(layers_done, total_layers);
    }
    const auto t0 = Clock::now();
    pool.end_input();
    tm.pool += secs(t0);
  }

  Report r = pool.report();
  if (timing) *timing = tm;
  for (auto& n : notes) r.notes.push_back(std::move(n));
  return r;
}

}  // namespace tq::bench
