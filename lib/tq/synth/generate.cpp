#include "tq/synth/generate.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <ctime>

#include <fmt/format.h>

#include "tq/core/error.h"
#include "tq/core/rng.h"
#include "tq/metrics/inner_product.h"
#include "tq/stats/rope.h"

namespace tq::synth {

namespace {

/// Channel means and stds of one head drawn from a ChannelModel.
struct Channels {
  std::vector<double> mean, sd;
};

Channels draw_channels(const ChannelModel& m, size_t d, int rotary_dim, double band, bool half, uint64_t seed) {
  Rng rng(seed);
  Channels ch;
  ch.mean.resize(d);
  ch.sd.resize(d);
  for (size_t c = 0; c < d; ++c) {
    ch.sd[c] = m.scale * std::exp(m.scale_log_sd * rng.gaussian());
    ch.mean[c] = m.scale * m.offset * rng.gaussian();
  }
  if (m.n_outliers <= 0) return ch;
  // Candidate channels: both members of the lowest-frequency `band` of the RoPE pairs
  // (all channels when nothing is rotated).
  std::vector<size_t> cand;
  const size_t pairs = static_cast<size_t>(rotary_dim) / 2;
  if (pairs == 0) {
    for (size_t c = 0; c < d; ++c) cand.push_back(c);
  } else {
    const size_t nb = std::clamp<size_t>(static_cast<size_t>(std::ceil(band * static_cast<double>(pairs))), 1, pairs);
    for (size_t j = pairs - nb; j < pairs; ++j) {
      cand.push_back(half ? j : 2 * j);
      cand.push_back(half ? j + pairs : 2 * j + 1);
    }
  }
  const size_t n = std::min(cand.size(), static_cast<size_t>(m.n_outliers));
  for (size_t i = 0; i < n; ++i) {  // partial Fisher–Yates: n distinct candidates
    const size_t j = i + static_cast<size_t>(rng.below(cand.size() - i));
    std::swap(cand[i], cand[j]);
    const size_t c = cand[i];
    ch.mean[c] = (rng.uniform() < 0.5 ? -1.0 : 1.0) * m.outlier_offset * m.scale;
    ch.sd[c] = m.outlier_scale * m.scale;
  }
  return ch;
}

/// τ of the log-normal scale mixture with excess kurtosis `tail`: 3(exp(4τ²) − 1) = tail.
double tail_tau(double tail) { return tail > 0.0 ? std::sqrt(std::log1p(tail / 3.0) / 4.0) : 0.0; }

/// out [T, d] = mean + sd ⊙ z, z an AR(1) process per channel with heavy-tailed innovations.
void fill_channels(float* out, size_t T, size_t d, const Channels& ch, double rho, double tail, uint64_t seed) {
  if (!(rho > -1.0 && rho < 1.0)) throw Error(fmt::format("synth: AR coefficient {} is outside (-1, 1)", rho));
  Rng rng(seed);
  const double tau = tail_tau(tail);
  const double innov = std::sqrt(1.0 - rho * rho);
  std::vector<double> z(d, 0.0);
  for (size_t t = 0; t < T; ++t) {
    float* row = out + t * d;
    for (size_t c = 0; c < d; ++c) {
      double e = rng.gaussian();
      if (tau > 0.0) e *= std::exp(tau * rng.gaussian() - tau * tau);  // E[e²] stays 1
      z[c] = (t == 0) ? e : rho * z[c] + innov * e;
      row[c] = static_cast<float>(ch.mean[c] + ch.sd[c] * z[c]);
    }
  }
}

Tensor3 make_tensor(size_t n0, size_t n1, size_t n2) {
  Tensor3 t;
  t.n0 = n0;
  t.n1 = n1;
  t.n2 = n2;
  t.data.assign(n0 * n1 * n2, 0.0f);
  return t;
}

}  // namespace

LayerInfo layer_info(const Profile& p, int layer) {
  LayerInfo li;
  li.index = layer;
  li.n_heads = p.n_heads;
  li.n_kv_heads = p.n_kv_heads;
  li.head_dim = p.head_dim;
  li.attn_scale = 1.0 / std::sqrt(static_cast<double>(p.head_dim));
  li.rope_theta = p.rope_theta;
  li.rope_pairing = p.rope_pairing;
  li.rotary_dim = p.rotary_dim > 0 ? p.rotary_dim : p.head_dim;
  li.rope_scaling = "none";
  return li;
}

LayerTensors generate_layer(const Profile& p, const LayerProfile& lp, int layer, size_t T, uint64_t seed) {
  const size_t d = static_cast<size_t>(p.head_dim);
  const size_t H = static_cast<size_t>(p.n_heads), G = static_cast<size_t>(p.n_kv_heads);
  const LayerInfo li = layer_info(p, layer);
  const stats::RopeParams rope = stats::RopeParams::from_layer(li);
  std::vector<int32_t> pos(T);
  for (size_t t = 0; t < T; ++t) pos[t] = static_cast<int32_t>(t);

  LayerTensors out;
  out.k_pre = make_tensor(G, T, d);
  out.k = make_tensor(G, T, d);
  out.v = make_tensor(G, T, d);
  out.q = make_tensor(H, T, d);
  out.q_pre = make_tensor(H, T, d);

  // Keys and values, per KV head. kmean_rot[g] holds RoPE_t(μ_k) so queries can use the
  // centred key k_t − RoPE_t(μ_k).
  std::vector<Tensor3> kmean_rot(G);
  for (size_t g = 0; g < G; ++g) {
    const int64_t gh = static_cast<int64_t>(g);
    const Channels kc = draw_channels(lp.k, d, li.rotary_dim, p.outlier_band, rope.half_pairing,
                                      seed_for(seed, layer, gh, "k:channels"));
    fill_channels(out.k_pre.at(g), T, d, kc, lp.k.rho, lp.k.tail, seed_for(seed, layer, gh, "k_pre"));
    std::copy(out.k_pre.at(g), out.k_pre.at(g) + T * d, out.k.at(g));
    stats::apply_rope(out.k.at(g), T, d, pos.data(), rope);
    kmean_rot[g] = make_tensor(1, T, d);
    for (size_t t = 0; t < T; ++t)
      for (size_t c = 0; c < d; ++c) kmean_rot[g].data[t * d + c] = static_cast<float>(kc.mean[c]);
    stats::apply_rope(kmean_rot[g].data.data(), T, d, pos.data(), rope);

    const Channels vc = draw_channels(lp.v, d, 0, p.outlier_band, false, seed_for(seed, layer, gh, "v:channels"));
    fill_channels(out.v.at(g), T, d, vc, lp.v.rho, lp.v.tail, seed_for(seed, layer, gh, "v"));
  }

  // Queries: base (own channel model, rotated) plus a pull towards one earlier centred key.
  const double ratio = lp.k.scale > 0.0 ? lp.q.scale / lp.k.scale : 1.0;
  for (size_t h = 0; h < H; ++h) {
    const int64_t hh = static_cast<int64_t>(h);
    const size_t g = static_cast<size_t>(metrics::kv_head_for(static_cast<int>(h), p.n_heads, p.n_kv_heads));
    const Channels qc = draw_channels(lp.q, d, li.rotary_dim, p.outlier_band, rope.half_pairing,
                                      seed_for(seed, layer, hh, "q:channels"));
    float* q = out.q.at(h);
    fill_channels(q, T, d, qc, lp.q.rho, lp.q.tail, seed_for(seed, layer, hh, "q_pre"));
    stats::apply_rope(q, T, d, pos.data(), rope);
    Rng pick(seed_for(seed, layer, hh, "q:pointer"));
    const float* k = out.k.at(g);
    const float* km = kmean_rot[g].data.data();
    for (size_t t = 0; t < T; ++t) {
      const size_t s = static_cast<size_t>(pick.below(t + 1));
      float* row = q + t * d;
      for (size_t c = 0; c < d; ++c) {
        const double centred = static_cast<double>(k[s * d + c]) - static_cast<double>(km[s * d + c]);
        row[c] = static_cast<float>(lp.q_gain * static_cast<double>(row[c]) + lp.q_align * ratio * centred);
      }
    }
    std::copy(q, q + T * d, out.q_pre.at(h));
    stats::apply_rope(out.q_pre.at(h), T, d, pos.data(), rope, /*inverse=*/true);
  }
  return out;
}

void write_synth_dump(const std::string& path, const Profile& p, const SynthOptions& opt) {
  const size_t T = opt.tokens > 0 ? opt.tokens : static_cast<size_t>(p.default_tokens);
  const int n_layers = static_cast<int>(p.layers.size());
  std::vector<int> layers = opt.layers;
  if (layers.empty())
    for (int l = 0; l < n_layers; ++l) layers.push_back(l);
  for (int l : layers)
    if (l < 0 || l >= n_layers)
      throw UsageError(fmt::format("--layers: layer {} is outside profile {} (layers 0-{})", l, p.name, n_layers - 1));

  DumpMeta meta;
  meta.model_name = "synth:" + p.name;
  meta.model_source = fmt::format("tq synth --profile {} --tokens {} --seed {}", p.name, T, opt.seed);
  meta.weight_precision = "synthetic";
  meta.creator = "tq synth";
  // A fixed creation time keeps files byte-identical when SOURCE_DATE_EPOCH is set.
  if (const char* epoch = std::getenv("SOURCE_DATE_EPOCH")) {
    const std::time_t when = static_cast<std::time_t>(std::strtoll(epoch, nullptr, 10));
    std::tm tm{};
    gmtime_r(&when, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    meta.created = buf;
  }
  meta.n_layers = n_layers;
  meta.token_ids.assign(T, 0);  // synthetic: no real tokens
  meta.positions.resize(T);
  for (size_t t = 0; t < T; ++t) meta.positions[t] = static_cast<int32_t>(t);
  meta.extra_attributes["synth_profile"] = p.name;
  meta.extra_attributes["synth_seed"] = std::to_string(opt.seed);
  meta.extra_attributes["synth_fitted_to"] = p.fitted_to.empty() ? "none" : p.fitted_to;

  DumpWriter writer(path, meta, opt.dtype, opt.deflate);
  for (int l : layers) {
    const LayerTensors lt = generate_layer(p, p.layers[static_cast<size_t>(l)], l, T, opt.seed);
    writer.write_layer(layer_info(p, l),
                       {{"k", &lt.k}, {"v", &lt.v}, {"q", &lt.q}, {"k_pre", &lt.k_pre}, {"q_pre", &lt.q_pre}});
  }
  writer.close();
}

}  // namespace tq::synth
