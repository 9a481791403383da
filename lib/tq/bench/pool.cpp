// Rows, pooled summaries, Pareto fronts and worst heads of tq benchmark (see pool.h).
#include "tq/bench/pool.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <fmt/format.h>

#include "tq/core/rng.h"

namespace tq::bench {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Cell maybe(double v) {
  if (std::isnan(v)) return std::monostate{};
  return v;
}

Cell i64(uint64_t v) { return static_cast<int64_t>(v); }

double bits_of(size_t bytes, double elements) { return elements > 0 ? static_cast<double>(bytes) * 8.0 / elements : kNaN; }

const char* tensor_name(int t) { return t == 0 ? "k" : "v"; }

std::vector<std::string> kRowCols() {
  return {"input",       "layer",       "head",        "tensor",      "codec",       "seed",
          "n_tokens",    "bits_per_element", "bits_payload", "bits_side", "bits_window",
          "bits_per_element_asymptotic", "ratio_fp16", "ratio_fp32", "nmse", "nmse_centered", "mse",
          "max_abs_err", "rel_err_p50", "rel_err_p95", "rel_err_p99", "cosine_mean", "ip_bias", "ip_rms"};
}

}  // namespace

MeanSd mean_sd(const std::vector<double>& v) {
  MeanSd m;
  if (v.empty()) return {kNaN, kNaN};
  double s = 0;
  for (double x : v) s += x;
  m.mean = s / static_cast<double>(v.size());
  if (v.size() < 2) {
    m.sd = kNaN;
    return m;
  }
  double ss = 0;
  for (double x : v) ss += (x - m.mean) * (x - m.mean);
  m.sd = std::sqrt(ss / static_cast<double>(v.size() - 1));
  return m;
}

size_t auto_block_len(size_t T) {
  const auto L = static_cast<size_t>(std::ceil(std::sqrt(static_cast<double>(T))));
  return std::clamp<size_t>(L, 1, 64);
}

Pooler::Pooler(const BenchConfig& c, const Sweep& s) : c_(c), sweep_(s) {
  rows_ = Table{"rows", kRowCols(), {}};
  attention_ = Table{"attention",
                     {"input", "layer", "head", "kv_head", "codec_k", "codec_v", "seed", "n_pos", "attn_kl",
                      "attn_kl_nosink", "attn_top1", "attn_top5", "attn_out_err", "attn_wv_err", "attn_wv_nerr"},
                     {}};
  summary_ = Table{"summary",
                   {"input", "codec", "tensor", "n_heads", "n_tokens", "seeds", "bits_per_element", "bits_payload",
                    "bits_side", "bits_window", "bits_per_element_asymptotic", "ratio_fp16", "ratio_fp32", "nmse",
                    "nmse_sd", "nmse_ci_lo", "nmse_ci_hi", "nmse_heads_mean", "nmse_centered", "nmse_centered_sd",
                    "mse", "max_abs_err", "rel_err_p50", "rel_err_p95", "rel_err_p99", "cosine_mean", "ip_bias",
                    "ip_bias_sd", "ip_rms", "ip_rms_sd"},
                   {}};
  attn_summary_ = Table{"attn_summary",
                        {"input", "codec_k", "codec_v", "bits_per_element", "n_pos", "seeds", "attn_kl", "attn_kl_sd",
                         "attn_kl_ci_lo", "attn_kl_ci_hi", "attn_kl_nosink", "attn_top1", "attn_top1_sd", "attn_top5",
                         "attn_out_err", "attn_out_err_ci_lo", "attn_out_err_ci_hi", "attn_wv_err", "attn_wv_nerr"},
                        {}};
  overview_ = Table{"overview",
                    {"input", "codec_k", "codec_v", "bits_k", "bits_v", "nmse_k", "nmse_v", "nmse_centered_k",
                     "ip_bias", "ip_rms", "attn_kl", "attn_top1", "attn_out_err"},
                    {}};
  pareto_ = Table{"pareto",
                  {"input", "metric", "tensor", "codec", "bits_per_element", "value", "sd", "ci_lo", "ci_hi",
                   "on_front", "on_front_point", "dominated_by"},
                  {}};
  worst_ = Table{"worst_heads",
                 {"input", "codec", "tensor", "rank", "layer", "head", "seed", "nmse", "nmse_vs_pooled",
                  "nmse_centered", "bits_per_element"},
                 {}};
}

Pooler::TensorAcc& Pooler::acc(int seed, int tensor, size_t codec) {
  const size_t per_seed = sweep_.k.size() + sweep_.v.size();
  const size_t off = tensor == 0 ? codec : sweep_.k.size() + codec;
  return acc_[static_cast<size_t>(seed) * per_seed + off];
}

metrics::BootstrapOptions Pooler::boot_options() const {
  metrics::BootstrapOptions o;
  o.block_len = c_.bootstrap_block > 0 ? static_cast<size_t>(c_.bootstrap_block) : auto_block_len(T_);
  o.n_resamples = static_cast<size_t>(c_.bootstrap);
  o.seed = seed_combine(c_.seed, hash_tag("bootstrap"));
  return o;
}

void Pooler::begin_input(const std::string& name, const Json& input_json, size_t T) {
  input_ = name;
  T_ = T;
  inputs_.push_back(input_json);
  acc_.assign(static_cast<size_t>(c_.seeds) * (sweep_.k.size() + sweep_.v.size()), TensorAcc{});
  attn_.assign(static_cast<size_t>(c_.seeds) * sweep_.pairs.size(), metrics::AttnStats{});
  attn_seen_.assign(sweep_.pairs.size(), false);
  worst_rows_.assign(sweep_.k.size() + sweep_.v.size(), {});
}

void Pooler::add_head(int layer, int head, int tensor, size_t codec, int seed, size_t T, size_t d,
                      const ByteCount& bytes, metrics::ReconStats recon, const metrics::IpStats* ip, double asym_bits) {
  const double elements = static_cast<double>(T) * static_cast<double>(d);
  const metrics::ReconSummary rs = recon.summary();
  const double bpe = bits_of(bytes.total(), elements);
  const std::string& label = list(tensor)[codec];
  rows_.add({input_, int64_t{layer}, int64_t{head}, std::string(tensor_name(tensor)), label,
             static_cast<int64_t>(c_.seed + static_cast<uint64_t>(seed)), static_cast<int64_t>(T), bpe,
             bits_of(bytes.payload, elements), bits_of(bytes.side, elements), bits_of(bytes.window, elements),
             maybe(asym_bits), 16.0 / bpe, 32.0 / bpe, rs.nmse_pooled, rs.nmse_centred_pooled, rs.mse, rs.max_abs_err,
             rs.rel_err_p50, rs.rel_err_p95, rs.rel_err_p99, rs.cosine_mean, ip ? Cell{ip->bias()} : Cell{},
             ip ? Cell{ip->rms()} : Cell{}});
  worst_rows_[tensor == 0 ? codec : sweep_.k.size() + codec].push_back(
      {layer, head, seed, rs.nmse_pooled, rs.nmse_centred_pooled, bpe});

  TensorAcc& a = acc(seed, tensor, codec);
  a.recon.merge(recon);
  if (ip) {
    a.ip.merge(*ip);
    a.has_ip = true;
  }
  a.bytes += bytes;
  a.elements += static_cast<uint64_t>(T) * d;
  a.heads += 1;
  a.asym_weighted += asym_bits * elements;
}

void Pooler::add_attention(int layer, int head, int kv_head, size_t pair, int seed, const metrics::AttnStats& st) {
  const metrics::AttnSummary s = st.summary();
  const auto [ki, vi] = sweep_.pairs[pair];
  attention_.add({input_, int64_t{layer}, int64_t{head}, int64_t{kv_head}, sweep_.k[ki], sweep_.v[vi],
                  static_cast<int64_t>(c_.seed + static_cast<uint64_t>(seed)), i64(s.n_pos),
                  s.n_pos ? Cell{s.kl} : Cell{}, s.n_pos ? Cell{s.kl_nosink} : Cell{}, s.n_pos ? Cell{s.top1} : Cell{},
                  s.n_pos ? Cell{s.topk} : Cell{}, s.n_pos ? Cell{s.out_err} : Cell{},
                  s.n_pos ? Cell{s.wv_err} : Cell{}, s.n_pos ? Cell{s.wv_nerr} : Cell{}});
  attn_[static_cast<size_t>(seed) * sweep_.pairs.size() + pair].merge(st);
  attn_seen_[pair] = true;
}

void Pooler::end_input() {
  const size_t n_seeds = static_cast<size_t>(c_.seeds);
  const metrics::BootstrapOptions bo = boot_options();
  std::vector<std::vector<TensorSummary>> ts(2);
  ts[0].resize(sweep_.k.size());
  ts[1].resize(sweep_.v.size());

  // ---- summary per (tensor, codec)
  for (int tensor = 0; tensor < 2; ++tensor) {
    for (size_t ci = 0; ci < list(tensor).size(); ++ci) {
      std::vector<double> nmse, nmse_heads, nmse_c, mse, maxerr, p50, p95, p99, cosv, ipb, ipr;
      ByteCount bytes;
      uint64_t elements = 0, heads = 0;
      double asym = 0;
      bool has_ip = false;
      std::vector<double> tok_sse, tok_energy;
      for (size_t s = 0; s < n_seeds; ++s) {
        const TensorAcc& a = acc(static_cast<int>(s), tensor, ci);
        const metrics::ReconSummary rs = a.recon.summary();
        nmse.push_back(rs.nmse_pooled);
        nmse_heads.push_back(rs.nmse_mean);
        nmse_c.push_back(rs.nmse_centred_pooled);
        mse.push_back(rs.mse);
        maxerr.push_back(rs.max_abs_err);
        p50.push_back(rs.rel_err_p50);
        p95.push_back(rs.rel_err_p95);
        p99.push_back(rs.rel_err_p99);
        cosv.push_back(rs.cosine_mean);
        if (a.has_ip) {
          has_ip = true;
          ipb.push_back(a.ip.bias());
          ipr.push_back(a.ip.rms());
        }
        bytes += a.bytes;
        elements += a.elements;
        heads = a.heads;
        asym += a.asym_weighted;
        if (tok_sse.size() < a.recon.tok_sse.size()) {
          tok_sse.resize(a.recon.tok_sse.size(), 0.0);
          tok_energy.resize(a.recon.tok_energy.size(), 0.0);
        }
        for (size_t t = 0; t < a.recon.tok_sse.size(); ++t) {
          tok_sse[t] += a.recon.tok_sse[t];
          tok_energy[t] += a.recon.tok_energy[t];
        }
      }
      if (elements == 0) continue;
      const auto el = static_cast<double>(elements);
      const double bpe = bits_of(bytes.total(), el);
      const MeanSd m_nmse = mean_sd(nmse), m_nc = mean_sd(nmse_c), m_ipb = mean_sd(ipb), m_ipr = mean_sd(ipr);
      double ci_lo = kNaN, ci_hi = kNaN;
      const double energy = std::accumulate(tok_energy.begin(), tok_energy.end(), 0.0);
      if (c_.bootstrap > 0 && energy > 0) {
        const auto bi = metrics::block_bootstrap_ratio(tok_sse, tok_energy, bo);
        ci_lo = bi.lo;
        ci_hi = bi.hi;
      }
      const double asym_bits = asym / el;
      summary_.add({input_, list(tensor)[ci], std::string(tensor_name(tensor)), i64(heads), static_cast<int64_t>(T_),
                    static_cast<int64_t>(n_seeds), bpe, bits_of(bytes.payload, el), bits_of(bytes.side, el),
                    bits_of(bytes.window, el), maybe(asym_bits), 16.0 / bpe, 32.0 / bpe, m_nmse.mean,
                    maybe(m_nmse.sd), maybe(ci_lo), maybe(ci_hi), mean_sd(nmse_heads).mean, m_nc.mean, maybe(m_nc.sd),
                    mean_sd(mse).mean, *std::max_element(maxerr.begin(), maxerr.end()), mean_sd(p50).mean,
                    mean_sd(p95).mean, mean_sd(p99).mean, mean_sd(cosv).mean, has_ip ? Cell{m_ipb.mean} : Cell{},
                    has_ip ? maybe(m_ipb.sd) : Cell{}, has_ip ? Cell{m_ipr.mean} : Cell{},
                    has_ip ? maybe(m_ipr.sd) : Cell{}});
      TensorSummary sum;
      sum.present = true;
      sum.bits = bpe;
      sum.nmse = m_nmse.mean;
      sum.nmse_sd = m_nmse.sd;
      sum.nmse_ci_lo = ci_lo;
      sum.nmse_ci_hi = ci_hi;
      sum.nmse_centered = m_nc.mean;
      sum.has_ip = has_ip;
      sum.ip_bias = has_ip ? m_ipb.mean : kNaN;
      sum.ip_rms = has_ip ? m_ipr.mean : kNaN;
      ts[static_cast<size_t>(tensor)][ci] = sum;

      // worst heads of this (tensor, codec)
      auto& wr = worst_rows_[tensor == 0 ? ci : sweep_.k.size() + ci];
      std::stable_sort(wr.begin(), wr.end(), [](const WorstRow& a, const WorstRow& b) { return a.nmse > b.nmse; });
      for (size_t i = 0; i < wr.size() && i < static_cast<size_t>(c_.worst); ++i) {
        worst_.add({input_, list(tensor)[ci], std::string(tensor_name(tensor)), static_cast<int64_t>(i + 1),
                    int64_t{wr[i].layer}, int64_t{wr[i].head}, static_cast<int64_t>(c_.seed + static_cast<uint64_t>(wr[i].seed)),
                    wr[i].nmse, m_nmse.mean > 0 ? Cell{wr[i].nmse / m_nmse.mean} : Cell{}, wr[i].nmse_centered,
                    wr[i].bits});
      }
    }
  }

  // ---- attention summary per pair
  std::vector<AttnSummaryVals> as(sweep_.pairs.size());
  for (size_t pi = 0; pi < sweep_.pairs.size(); ++pi) {
    if (!attn_seen_[pi]) continue;
    const auto [ki, vi] = sweep_.pairs[pi];
    std::vector<double> kl, kln, top1, top5, out, wv, wvn;
    metrics::AttnStats all;
    uint64_t n_pos = 0;
    for (size_t s = 0; s < n_seeds; ++s) {
      const metrics::AttnStats& st = attn_[s * sweep_.pairs.size() + pi];
      const metrics::AttnSummary sm = st.summary();
      kl.push_back(sm.kl);
      kln.push_back(sm.kl_nosink);
      top1.push_back(sm.top1);
      top5.push_back(sm.topk);
      out.push_back(sm.out_err);
      wv.push_back(sm.wv_err);
      wvn.push_back(sm.wv_nerr);
      n_pos = sm.n_pos;
      all.merge(st);
    }
    if (n_pos == 0) continue;
    double kl_lo = kNaN, kl_hi = kNaN, oe_lo = kNaN, oe_hi = kNaN;
    if (c_.bootstrap > 0) {
      const auto bk = metrics::block_bootstrap_ratio(all.pos_kl, all.pos_n, bo);
      kl_lo = bk.lo;
      kl_hi = bk.hi;
      if (std::accumulate(all.pos_out_sq.begin(), all.pos_out_sq.end(), 0.0) > 0) {
        const auto bo2 = metrics::block_bootstrap_ratio(all.pos_out_err_sq, all.pos_out_sq, bo);
        oe_lo = std::sqrt(bo2.lo);
        oe_hi = std::sqrt(bo2.hi);
      }
    }
    // bits of the (K, V) pair: both tensors' bytes over both tensors' elements
    ByteCount bk, bv;
    uint64_t ek = 0, ev = 0;
    for (size_t s = 0; s < n_seeds; ++s) {
      bk += acc(static_cast<int>(s), 0, ki).bytes;
      ek += acc(static_cast<int>(s), 0, ki).elements;
      bv += acc(static_cast<int>(s), 1, vi).bytes;
      ev += acc(static_cast<int>(s), 1, vi).elements;
    }
    const double bits_pair = bits_of(bk.total() + bv.total(), static_cast<double>(ek + ev));
    const MeanSd m_kl = mean_sd(kl), m_top1 = mean_sd(top1);
    attn_summary_.add({input_, sweep_.k[ki], sweep_.v[vi], bits_pair, i64(n_pos), static_cast<int64_t>(n_seeds),
                       m_kl.mean, maybe(m_kl.sd), maybe(kl_lo), maybe(kl_hi), mean_sd(kln).mean, m_top1.mean,
                       maybe(m_top1.sd), mean_sd(top5).mean, mean_sd(out).mean, maybe(oe_lo), maybe(oe_hi),
                       mean_sd(wv).mean, mean_sd(wvn).mean});
    as[pi] = {true, bits_pair, m_kl.mean, m_kl.sd, kl_lo, kl_hi, mean_sd(kln).mean, m_top1.mean, mean_sd(out).mean};
    const metrics::AttnSummary pooled = all.summary();
    Json bins = Json::array();
    for (const auto& b : pooled.bins) bins.push_back(Json{{"lo", b.lo}, {"hi", b.hi}, {"n", b.n}, {"kl", b.kl}});
    by_position_.push_back(Json{{"input", input_}, {"codec_k", sweep_.k[ki]}, {"codec_v", sweep_.v[vi]}, {"bins", bins}});
  }

  // ---- overview per pair
  for (size_t pi = 0; pi < sweep_.pairs.size(); ++pi) {
    const auto [ki, vi] = sweep_.pairs[pi];
    if (!ts[0][ki].present || !ts[1][vi].present) continue;
    const TensorSummary& k = ts[0][ki];
    const TensorSummary& v = ts[1][vi];
    const AttnSummaryVals& a = as[pi];
    overview_.add({input_, sweep_.k[ki], sweep_.v[vi], k.bits, v.bits, k.nmse, v.nmse, k.nmse_centered,
                   k.has_ip ? Cell{k.ip_bias} : Cell{}, k.has_ip ? Cell{k.ip_rms} : Cell{}, a.present ? Cell{a.kl} : Cell{},
                   a.present ? Cell{a.top1} : Cell{}, a.present ? Cell{a.out_err} : Cell{}});
  }

  // ---- Pareto fronts: bits vs nmse (per tensor) and bits vs attn_kl (per pair)
  const auto add_front = [&](const std::string& metric, const std::string& tensor,
                             const std::vector<metrics::ParetoPoint>& pts) {
    if (pts.empty()) return;
    const auto entries = metrics::pareto_front(pts);
    for (size_t i = 0; i < pts.size(); ++i) {
      std::string by;
      for (size_t j : entries[i].dominated_by) {
        if (!by.empty()) by += "; ";
        by += pts[j].label;
      }
      pareto_.add({input_, metric, tensor, pts[i].label, pts[i].bits, pts[i].mean, maybe(pts[i].sd), maybe(pts[i].ci_lo),
                   maybe(pts[i].ci_hi), entries[i].on_front, entries[i].on_front_point, by});
    }
  };
  for (int tensor = 0; tensor < 2; ++tensor) {
    std::vector<metrics::ParetoPoint> pts;
    for (size_t ci = 0; ci < ts[static_cast<size_t>(tensor)].size(); ++ci) {
      const TensorSummary& t = ts[static_cast<size_t>(tensor)][ci];
      if (!t.present) continue;
      pts.push_back({list(tensor)[ci], t.bits, t.nmse, t.nmse_sd, t.nmse_ci_lo, t.nmse_ci_hi});
    }
    add_front("nmse", tensor_name(tensor), pts);
  }
  {
    std::vector<metrics::ParetoPoint> pts;
    for (size_t pi = 0; pi < sweep_.pairs.size(); ++pi) {
      if (!as[pi].present) continue;
      const auto [ki, vi] = sweep_.pairs[pi];
      pts.push_back({fmt::format("{} / {}", sweep_.k[ki], sweep_.v[vi]), as[pi].bits, as[pi].kl, as[pi].kl_sd, as[pi].kl_ci_lo,
                     as[pi].kl_ci_hi});
    }
    add_front("attn_kl", "kv", pts);
  }

  acc_.clear();
  attn_.clear();
  worst_rows_.clear();
}

Report Pooler::report() {
  Report r;
  r.inputs = inputs_;
  const bool several = sweep_.k.size() > 1 || sweep_.v.size() > 1 || sweep_.pairs.size() > 1;
  const auto want = [&](const std::string& name) {
    if (c_.tables.empty() && c_.compact)
      return name == "overview" || name == "worst_heads" || (name == "pareto" && several);
    return c_.tables.empty() || std::find(c_.tables.begin(), c_.tables.end(), name) != c_.tables.end();
  };
  for (Table* t : {&overview_, &summary_, &attn_summary_, &pareto_, &worst_, &rows_, &attention_})
    if (want(t->name)) r.tables.push_back(std::move(*t));
  Json sweep = Json::object();
  Json k = Json::array(), v = Json::array(), pairs = Json::array();
  for (const auto& l : sweep_.k) k.push_back(l);
  for (const auto& l : sweep_.v) v.push_back(l);
  for (const auto& [ki, vi] : sweep_.pairs) pairs.push_back(Json{{"codec_k", sweep_.k[ki]}, {"codec_v", sweep_.v[vi]}});
  sweep["codecs_k"] = k;
  sweep["codecs_v"] = v;
  sweep["pairs"] = pairs;
  sweep["metrics"] = metric_set_name(c_.metrics);
  sweep["seeds"] = Json::array();
  for (int s = 0; s < c_.seeds; ++s) sweep["seeds"].push_back(c_.seed + static_cast<uint64_t>(s));
  r.extra["sweep"] = sweep;
  if (c_.tables.empty() && c_.compact)
    r.notes.push_back("compact view: per-head rows, attention rows and the full summary tables are in "
                      "--format json|csv|md or with --tables all");
  if (want("attn_summary") && !by_position_.empty()) r.extra["attn_kl_by_position"] = by_position_;
  return r;
}

}  // namespace tq::bench
