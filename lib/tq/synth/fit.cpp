#include "tq/synth/fit.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "tq/core/error.h"
#include "tq/metrics/attention.h"
#include "tq/metrics/inner_product.h"
#include "tq/stats/head_stats.h"
#include "tq/stats/layer_stats.h"
#include "tq/stats/rope.h"
#include "tq/synth/generate.h"

namespace tq::synth {

namespace {

constexpr size_t kEntropyMinPos = 16;
constexpr double kMaxRho = 0.99;
constexpr double kMaxAlign = 1024.0;

/// Mean attention entropy of a layer over its query heads (equal weights).
double layer_entropy(const Tensor3& q, const Tensor3& k, int n_heads, int n_kv_heads, const metrics::AttnOptions& ao) {
  stats::EntropySums sums;
  for (int h = 0; h < n_heads; ++h) {
    const size_t g = static_cast<size_t>(metrics::kv_head_for(h, n_heads, n_kv_heads));
    sums.add(stats::attention_entropy_head(q.at(static_cast<size_t>(h)), k.at(g), q.n1, q.n2, ao));
  }
  return sums.mean();
}

Tensor3 pre_rope(const DumpReader& reader, int layer, const std::string& rotated, const std::string& pre) {
  const DumpInfo& info = reader.info();
  const LayerInfo& li = info.layer(layer);
  if (li.has(pre)) return reader.read(layer, pre);
  Tensor3 x = reader.read(layer, rotated);
  const stats::RopeParams rope = stats::RopeParams::from_layer(li);
  for (size_t h = 0; h < x.n0; ++h) stats::apply_rope(x.at(h), x.n1, x.n2, info.positions.data(), rope, true);
  return x;
}

}  // namespace

ChannelModel fit_channel_model(const Tensor3& x) {
  const size_t H = x.n0, T = x.n1, d = x.n2;
  ChannelModel m;
  double scale = 0, log_sd = 0, offset = 0, out_off = 0, out_sc = 0, rho = 0, n_out = 0;
  size_t heads_with_outliers = 0;
  std::vector<double> kurt;
  for (size_t h = 0; h < H; ++h) {
    stats::HeadStatsOptions ho;
    ho.ks = false;
    const stats::HeadStats s = stats::head_stats(x.at(h), T, d, ho);
    const double med_range = stats::median(s.channel_absmax);
    std::vector<double> sds, means;
    double oo = 0, os = 0;
    size_t no = 0;
    for (size_t c = 0; c < d; ++c) {
      kurt.push_back(stats::excess_kurtosis(x.at(h) + c, T, d));
      if (med_range > 0.0 && s.channel_absmax[c] >= kOutlierFactor * med_range) {
        ++no;
        oo += std::fabs(s.channel_mean[c]);
        os += s.channel_std[c];
      } else {
        sds.push_back(s.channel_std[c]);
        means.push_back(s.channel_mean[c]);
      }
    }
    const double sc = stats::median(sds);
    scale += sc;
    double lm = 0, lv = 0, ms = 0;
    for (double v : sds) lm += std::log(std::max(v, 1e-30));
    lm /= static_cast<double>(sds.size());
    for (double v : sds) lv += (std::log(std::max(v, 1e-30)) - lm) * (std::log(std::max(v, 1e-30)) - lm);
    log_sd += std::sqrt(lv / static_cast<double>(sds.size()));
    for (double v : means) ms += v * v;
    offset += sc > 0.0 ? std::sqrt(ms / static_cast<double>(means.size())) / sc : 0.0;
    if (no > 0 && sc > 0.0) {
      out_off += oo / static_cast<double>(no) / sc;
      out_sc += os / static_cast<double>(no) / sc;
      ++heads_with_outliers;
    }
    n_out += static_cast<double>(no);
    rho += s.lag1_autocorr;
  }
  const double nh = static_cast<double>(H);
  m.scale = scale / nh;
  m.scale_log_sd = log_sd / nh;
  m.offset = offset / nh;
  m.n_outliers = static_cast<int>(std::lround(n_out / nh));
  if (heads_with_outliers > 0) {
    m.outlier_offset = out_off / static_cast<double>(heads_with_outliers);
    m.outlier_scale = out_sc / static_cast<double>(heads_with_outliers);
  }
  m.rho = std::clamp(rho / nh, -kMaxRho, kMaxRho);
  const double kx = stats::median(kurt);
  const double r2 = m.rho * m.rho;
  m.tail = std::clamp(kx * (1.0 + r2) / (1.0 - r2), 0.0, kMaxTail);
  return m;
}

FitResult fit_profile(const DumpReader& reader, const std::string& name, const FitOptions& opt) {
  const DumpInfo& info = reader.info();
  if (info.layers.empty()) throw Error(info.path + ": no layers to fit");
  if (static_cast<int>(info.layers.size()) != info.n_layers)
    throw Error(fmt::format("{}: --fit needs every layer 0..{} (the dump has {})", info.path, info.n_layers - 1,
                            info.layers.size()));
  const LayerInfo& l0 = info.layers.front();
  for (const auto& li : info.layers) {
    if (li.n_heads != l0.n_heads || li.n_kv_heads != l0.n_kv_heads || li.head_dim != l0.head_dim ||
        li.rope_theta != l0.rope_theta || li.rope_pairing != l0.rope_pairing || li.rotary_dim != l0.rotary_dim)
      throw Error(fmt::format("{}: layer {} differs from layer 0 in heads, head_dim or RoPE; --fit needs uniform layers",
                              info.path, li.index));
    if (!li.has("q")) throw Error(fmt::format("{}: /layers/{}/q is missing; --fit needs queries", info.path, li.index));
  }

  FitResult res;
  Profile& p = res.profile;
  p.name = name;
  p.description = fmt::format("fitted to {}", info.path);
  p.fitted_to = info.model_name;
  p.source = fmt::format("tq synth --fit {}", info.path);
  p.n_heads = l0.n_heads;
  p.n_kv_heads = l0.n_kv_heads;
  p.head_dim = l0.head_dim;
  p.rope_theta = l0.rope_theta;
  p.rope_pairing = l0.rope_pairing;
  p.rotary_dim = l0.rotary_dim;
  p.default_tokens = info.n_tokens;

  const size_t T = static_cast<size_t>(info.n_tokens);
  for (const auto& li : info.layers) {
    LayerProfile lp;
    lp.k = fit_channel_model(pre_rope(reader, li.index, "k", "k_pre"));
    lp.v = fit_channel_model(reader.read(li.index, "v"));
    lp.q = fit_channel_model(pre_rope(reader, li.index, "q", "q_pre"));
    p.layers.push_back(lp);
  }

  // Kurtosis match, layer by layer: the pooled kurtosis of a head mixes the innovations' tails
  // with the spread of channel scales, so the per-channel estimate above undershoots it on
  // heavy-tailed caches (SmolLM2). Pooled kurtosis grows monotonically with `tail`: bisect it.
  for (const auto& li : info.layers) {
    LayerProfile& lp = p.layers[static_cast<size_t>(li.index)];
    const auto mean_pooled_kurtosis = [](const Tensor3& t) {
      double s = 0.0;
      for (size_t h = 0; h < t.n0; ++h) s += stats::excess_kurtosis(t.at(h), t.n1 * t.n2);
      return t.n0 ? s / static_cast<double>(t.n0) : 0.0;
    };
    const double target_k = mean_pooled_kurtosis(pre_rope(reader, li.index, "k", "k_pre"));
    const double target_v = mean_pooled_kurtosis(reader.read(li.index, "v"));
    const auto fit_tail = [&](ChannelModel& m, double target, bool is_k) {
      const auto measure = [&](double tail) {
        const double saved = m.tail;
        m.tail = tail;
        const LayerTensors t = generate_layer(p, lp, li.index, T, opt.seed);
        m.tail = saved;
        return mean_pooled_kurtosis(is_k ? t.k_pre : t.v);
      };
      if (!std::isfinite(target) || measure(m.tail) >= target || measure(0.0) >= target) return;
      double lo = m.tail, hi = std::max(1.0, 2.0 * m.tail);
      while (measure(hi) < target && hi < kMaxTail) {
        lo = hi;
        hi = std::min(kMaxTail, 2.0 * hi);
      }
      for (int i = 0; i < opt.bisect_iterations; ++i) {
        const double mid = 0.5 * (lo + hi);
        (measure(mid) < target ? lo : hi) = mid;
      }
      m.tail = 0.5 * (lo + hi);
    };
    fit_tail(lp.k, target_k, true);
    fit_tail(lp.v, target_v, false);
  }

  // Entropy match, layer by layer: q = gain·base + align·pointer is linear in (gain, align).
  for (const auto& li : info.layers) {
    LayerProfile& lp = p.layers[static_cast<size_t>(li.index)];
    metrics::AttnOptions ao = metrics::attn_options_for(li);
    ao.min_pos = kEntropyMinPos;
    ao.query_stride = T > kEntropyMinPos ? std::max<size_t>(1, (T - kEntropyMinPos) / opt.entropy_positions) : 1;
    const double target = layer_entropy(reader.read(li.index, "q"), reader.read(li.index, "k"), li.n_heads,
                                        li.n_kv_heads, ao);
    LayerProfile base = lp, ptr = lp;
    base.q_align = 0.0;
    base.q_gain = 1.0;
    ptr.q_align = 1.0;
    ptr.q_gain = 0.0;
    const LayerTensors tb = generate_layer(p, base, li.index, T, opt.seed);
    const LayerTensors tp = generate_layer(p, ptr, li.index, T, opt.seed);
    Tensor3 q = tb.q;
    auto entropy_at = [&](double gain, double align) {
      for (size_t i = 0; i < q.data.size(); ++i)
        q.data[i] = static_cast<float>(gain * static_cast<double>(tb.q.data[i]) + align * static_cast<double>(tp.q.data[i]));
      return layer_entropy(q, tb.k, p.n_heads, p.n_kv_heads, ao);
    };
    if (!std::isfinite(target)) {
      res.real_entropy.push_back(target);
      res.synth_entropy.push_back(entropy_at(1.0, 0.0));
      continue;
    }
    if (entropy_at(1.0, 0.0) > target) {  // too flat: lean queries towards keys
      double lo = 0.0, hi = 1.0;
      while (entropy_at(1.0, hi) > target && hi < kMaxAlign) {
        lo = hi;
        hi *= 2.0;
      }
      for (int i = 0; i < opt.bisect_iterations; ++i) {
        const double mid = 0.5 * (lo + hi);
        (entropy_at(1.0, mid) > target ? lo : hi) = mid;
      }
      lp.q_align = 0.5 * (lo + hi);
      lp.q_gain = 1.0;
    } else {  // too peaked already: shrink the queries
      double lo = 0.0, hi = 1.0;  // entropy(gain = 0) is the uniform entropy ≥ target
      for (int i = 0; i < opt.bisect_iterations; ++i) {
        const double mid = 0.5 * (lo + hi);
        (entropy_at(mid, 0.0) > target ? lo : hi) = mid;
      }
      lp.q_align = 0.0;
      lp.q_gain = 0.5 * (lo + hi);
    }
    res.real_entropy.push_back(target);
    res.synth_entropy.push_back(entropy_at(lp.q_gain, lp.q_align));
  }
  return res;
}

namespace {
std::string model_cpp(const ChannelModel& m) {
  return fmt::format("{{{:.4g}, {:.4g}, {:.4g}, {}, {:.4g}, {:.4g}, {:.4g}, {:.4g}}}", m.scale, m.scale_log_sd, m.offset,
                     m.n_outliers, m.outlier_offset, m.outlier_scale, m.rho, m.tail);
}
}  // namespace

std::string profile_layers_cpp(const Profile& p) {
  std::string s = fmt::format(
      "  // {} layers fitted by `{}`.\n"
      "  // ChannelModel = {{scale, scale_log_sd, offset, n_outliers, outlier_offset, outlier_scale, rho, tail}}\n"
      "  // LayerProfile = {{k, v, q, q_align, q_gain}}\n",
      p.layers.size(), p.source);
  for (const auto& l : p.layers)
    s += fmt::format("  {{{}, {}, {}, {:.4g}, {:.4g}}},\n", model_cpp(l.k), model_cpp(l.v), model_cpp(l.q), l.q_align,
                     l.q_gain);
  return s;
}

}  // namespace tq::synth
