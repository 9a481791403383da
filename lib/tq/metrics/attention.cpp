// Attention fidelity, row by row in double precision: see attention.h for the definitions.
#include "tq/metrics/attention.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <string>

#include "tq/core/error.h"
#include "tq/metrics/inner_product.h"
#include "tq/simd/kernels.h"

namespace tq::metrics {

namespace {

double safe_ratio(double num, double den) { return den > 0.0 ? num / den : 0.0; }

void add_padded(std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() < b.size()) a.resize(b.size(), 0.0);
  for (size_t i = 0; i < b.size(); ++i) a[i] += b[i];
}

void validate(const AttnOptions& opt) {
  if (!(opt.scale > 0.0) || !std::isfinite(opt.scale)) {
    throw Error("metrics: attention scale " + std::to_string(opt.scale) + " must be a positive number");
  }
  if (!(opt.softcap >= 0.0) || !std::isfinite(opt.softcap)) {
    throw Error("metrics: logit softcap " + std::to_string(opt.softcap) + " must be >= 0 (0 = none)");
  }
  if (opt.top_k == 0) throw Error("metrics: top_k must be >= 1");
  if (opt.query_stride == 0) throw Error("metrics: query_stride must be >= 1");
}

/// Below this the sink-excluded normaliser is recomputed with its own maximum (see below).
constexpr double kReuseFloor = 1e-280;

/// log Σ exp(l[i]) over i in [b, e) (non-empty), shifted by the maximum for stability.
double log_sum_exp(const double* l, size_t b, size_t e) {
  double m = -std::numeric_limits<double>::infinity();
  for (size_t i = b; i < e; ++i) m = std::max(m, l[i]);
  double z = 0.0;
  for (size_t i = b; i < e; ++i) z += std::exp(l[i] - m);
  return m + std::log(z);
}

/// Softmax of one row l[0..n) in the log domain: fills w[i] = exp(l[i] − m) with m = max l, so
/// p_i = w[i] / z and log p_i = l_i − lse, where z = Σ w and lse = m + log z.
struct Softmax {
  double m = 0, z = 0, lse = 0;
};
Softmax softmax_row(const double* l, double* w, size_t n) {
  Softmax r;
  r.m = -std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < n; ++i) r.m = std::max(r.m, l[i]);
  for (size_t i = 0; i < n; ++i) {
    w[i] = std::exp(l[i] - r.m);
    r.z += w[i];
  }
  r.lse = r.m + std::log(r.z);
  return r;
}

/// KL(p ‖ p̂) over i in [b, e), p_i = w[i] · w_scale, log p_i = l_i − lse, log p̂_i = lh_i − lse_h.
double kl_divergence(const double* w, double w_scale, const double* l, double lse, const double* lh,
                     double lse_h, size_t b, size_t e) {
  double kl = 0.0;
  for (size_t i = b; i < e; ++i) kl += w[i] * w_scale * ((l[i] - lse) - (lh[i] - lse_h));
  return kl;
}

/// Sink-excluded KL: p'_i = p_i / Σ_{j≥1} p_j for i ≥ 1 (likewise p̂'). The normaliser reuses the
/// row's exponentials, z1 = Σ_{i≥1} w[i] (a sum of positive terms: no cancellation even when the
/// sink holds almost all mass). Only if z1 or ẑ1 falls near underflow are the log-normalisers
/// recomputed with their own maxima and p' re-exponentiated into `tmp`.
double kl_without_sink(const double* l, const double* w, const Softmax& s, const double* lh,
                       const double* wh, const Softmax& sh, size_t n, double* tmp) {
  double z1 = 0, zh1 = 0;
  for (size_t i = 1; i < n; ++i) {
    z1 += w[i];
    zh1 += wh[i];
  }
  if (z1 > kReuseFloor && zh1 > kReuseFloor) {
    const double lse1 = s.m + std::log(z1), lse1_h = sh.m + std::log(zh1);
    return kl_divergence(w, 1.0 / z1, l, lse1, lh, lse1_h, 1, n);
  }
  const double lse1 = log_sum_exp(l, 1, n), lse1_h = log_sum_exp(lh, 1, n);
  for (size_t i = 1; i < n; ++i) tmp[i] = std::exp(l[i] - lse1);
  return kl_divergence(tmp, 1.0, l, lse1, lh, lse1_h, 1, n);
}

/// Indices of the k' = min(k, n) largest l[0..n), largest first; ties go to the lower index
/// (scan in index order, an entry displaces only a strictly smaller one).
size_t top_k_indices(const double* l, size_t n, size_t k, size_t* out) {
  const size_t kk = std::min(k, n);
  size_t filled = 0;
  for (size_t i = 0; i < n; ++i) {
    if (filled == kk && !(l[i] > l[out[kk - 1]])) continue;
    size_t pos = (filled < kk) ? filled++ : kk - 1;
    while (pos > 0 && l[i] > l[out[pos - 1]]) {
      out[pos] = out[pos - 1];
      --pos;
    }
    out[pos] = i;
  }
  return kk;
}

}  // namespace

AttnOptions attn_options_for(const LayerInfo& layer) {
  AttnOptions o;
  const std::string where = "metrics: layer " + std::to_string(layer.index) + ": ";
  if (!(layer.attn_scale > 0.0) || !std::isfinite(layer.attn_scale)) {
    throw Error(where + "attn_scale " + std::to_string(layer.attn_scale) + " is not a positive number");
  }
  o.scale = layer.attn_scale;
  if (layer.sliding_window) {
    if (*layer.sliding_window < 0) {
      throw Error(where + "sliding_window " + std::to_string(*layer.sliding_window) + " is negative");
    }
    o.sliding_window = static_cast<size_t>(*layer.sliding_window);
  }
  if (layer.logit_softcap) {
    if (!(*layer.logit_softcap >= 0.0) || !std::isfinite(*layer.logit_softcap)) {
      throw Error(where + "logit_softcap " + std::to_string(*layer.logit_softcap) + " is not >= 0");
    }
    o.softcap = *layer.logit_softcap;
  }
  return o;
}

size_t attn_pos_bin(size_t t) { return t < 2 ? 0 : static_cast<size_t>(std::bit_width(t)) - 1; }

void AttnStats::merge(const AttnStats& o) {
  n_pos += o.n_pos;
  sum_kl += o.sum_kl;
  n_pos_nosink += o.n_pos_nosink;
  sum_kl_nosink += o.sum_kl_nosink;
  n_top1 += o.n_top1;
  sum_topk += o.sum_topk;
  n_pos_values += o.n_pos_values;
  sum_out_err_sq += o.sum_out_err_sq;
  sum_out_sq += o.sum_out_sq;
  n_out_ratio += o.n_out_ratio;
  sum_out_ratio += o.sum_out_ratio;
  sum_wv_err += o.sum_wv_err;
  sum_wv_norm += o.sum_wv_norm;
  for (size_t b = 0; b < kAttnPosBins; ++b) {
    bin_n[b] += o.bin_n[b];
    bin_kl[b] += o.bin_kl[b];
  }
  add_padded(pos_n, o.pos_n);
  add_padded(pos_kl, o.pos_kl);
  add_padded(pos_out_err_sq, o.pos_out_err_sq);
  add_padded(pos_out_sq, o.pos_out_sq);
}

AttnSummary AttnStats::summary() const {
  AttnSummary r;
  r.n_pos = n_pos;
  r.has_values = n_pos_values > 0;
  const double n = static_cast<double>(n_pos);
  r.kl = safe_ratio(sum_kl, n);
  r.kl_nosink = safe_ratio(sum_kl_nosink, static_cast<double>(n_pos_nosink));
  r.top1 = safe_ratio(static_cast<double>(n_top1), n);
  r.topk = safe_ratio(sum_topk, n);
  r.out_err = std::sqrt(safe_ratio(sum_out_err_sq, sum_out_sq));
  r.out_err_mean_ratio = safe_ratio(sum_out_ratio, static_cast<double>(n_out_ratio));
  r.wv_err = safe_ratio(sum_wv_err, static_cast<double>(n_pos_values));
  r.wv_nerr = safe_ratio(sum_wv_err, sum_wv_norm);
  for (size_t b = 0; b < kAttnPosBins; ++b) {
    if (bin_n[b] == 0) continue;
    AttnBin bin;
    bin.lo = b == 0 ? 0 : size_t{1} << b;
    bin.hi = b + 1 < kAttnPosBins ? size_t{1} << (b + 1) : std::numeric_limits<size_t>::max();
    bin.n = bin_n[b];
    bin.kl = bin_kl[b] / static_cast<double>(bin_n[b]);
    r.bins.push_back(bin);
  }
  return r;
}

AttnStats attention_head(const float* q, const float* k, const float* v, const float* khat,
                         const float* vhat, size_t T, size_t d, const AttnOptions& opt) {
  validate(opt);
  if ((v == nullptr) != (vhat == nullptr)) {
    throw Error("metrics: attention needs both v and its reconstruction, or neither");
  }
  const bool values = v != nullptr;
  const simd::Kernels& kern = simd::kernels();
  AttnStats st;
  st.pos_n.assign(T, 0.0);
  st.pos_kl.assign(T, 0.0);
  if (values) {
    st.pos_out_err_sq.assign(T, 0.0);
    st.pos_out_sq.assign(T, 0.0);
  }

  // Per-key value errors and norms, computed once: err_v[s] = ‖v_s − v̂_s‖², norm_v[s] = ‖v_s‖².
  std::vector<double> err_v, norm_v;
  if (values) {
    err_v.resize(T);
    norm_v.resize(T);
    for (size_t s = 0; s < T; ++s) {
      double e2 = 0, n2 = 0;
      for (size_t i = 0; i < d; ++i) {
        const double a = static_cast<double>(v[s * d + i]);
        const double e = a - static_cast<double>(vhat[s * d + i]);
        e2 += e * e;
        n2 += a * a;
      }
      err_v[s] = e2;
      norm_v[s] = n2;
    }
  }

  // Counted query positions go in groups of up to kGroup: their logits against the union of their
  // windows come from one dot_rows4_f64 call per tensor, and their outputs from one
  // axpy_rows4_f64 call over the keys all of them see (keys only some of them see are added
  // per query, before and after, so every output still sums its keys in ascending order). The
  // per-pair dot products and per-query sums are exactly those of the one-query kernels, so the
  // statistics do not depend on the grouping. Buffers: row g of L, Lh, W, Wh holds query g's
  // values at key index s − s_lo (s_lo = the first key of the group's union).
  constexpr size_t kGroup = 4;
  std::vector<double> q4(kGroup * d, 0.0), L(kGroup * T), Lh(kGroup * T), W(kGroup * T), Wh(kGroup * T), tmp(T);
  std::vector<double> o4(kGroup * d), oh4(kGroup * d);
  std::vector<size_t> top(opt.top_k), top_h(opt.top_k);
  const bool cap = opt.softcap > 0.0;
  const double c = opt.softcap;
  auto window_start = [&](size_t t) {
    return (opt.sliding_window > 0 && t + 1 > opt.sliding_window) ? t + 1 - opt.sliding_window : 0;
  };

  // First counted position: the least multiple of query_stride that is >= min_pos.
  const size_t stride = opt.query_stride;
  const size_t t_first = (opt.min_pos + stride - 1) / stride * stride;
  for (size_t tg = t_first; tg < T; tg += kGroup * stride) {
    size_t tq[kGroup] = {}, s0q[kGroup] = {};
    size_t ng = 0;
    for (size_t t = tg; t < T && ng < kGroup; t += stride, ++ng) {
      tq[ng] = t;
      s0q[ng] = window_start(t);
    }
    const size_t s_lo = s0q[0], s_hi = tq[ng - 1];  // window starts and ends grow with t
    const size_t n_all = s_hi - s_lo + 1;
    for (size_t g = 0; g < kGroup; ++g)  // unused rows of a short last group: zero queries
      for (size_t i2 = 0; i2 < d; ++i2)
        q4[g * d + i2] = g < ng ? static_cast<double>(q[tq[g] * d + i2]) : 0.0;

    // Logits of the union of the windows, original and reconstructed.
    kern.dot_rows4_f64(q4.data(), k + s_lo * d, n_all, d, L.data(), T);
    kern.dot_rows4_f64(q4.data(), khat + s_lo * d, n_all, d, Lh.data(), T);

    for (size_t g = 0; g < ng; ++g) {
      const size_t t = tq[g], s0 = s0q[g];
      const size_t n = t - s0 + 1;
      double* l = L.data() + g * T + (s0 - s_lo);
      double* lh = Lh.data() + g * T + (s0 - s_lo);
      double* w = W.data() + g * T + (s0 - s_lo);
      double* wh = Wh.data() + g * T + (s0 - s_lo);
      for (size_t j2 = 0; j2 < n; ++j2) {
        double a = l[j2] * opt.scale;
        double ah = lh[j2] * opt.scale;
        if (cap) {
          a = c * std::tanh(a / c);
          ah = c * std::tanh(ah / c);
        }
        l[j2] = a;
        lh[j2] = ah;
      }

      // KL over the full window.
      const Softmax sm = softmax_row(l, w, n);
      const Softmax smh = softmax_row(lh, wh, n);
      const double kl = kl_divergence(w, 1.0 / sm.z, l, sm.lse, lh, smh.lse, 0, n);
      st.n_pos += 1;
      st.sum_kl += kl;
      const size_t bin = attn_pos_bin(t);
      st.bin_n[bin] += 1;
      st.bin_kl[bin] += kl;
      st.pos_n[t] += 1.0;
      st.pos_kl[t] += kl;

      // Sink-excluded KL: renormalise over s >= 1 (identity when token 0 is outside the window).
      if (t >= 1) {
        const double kl1 = s0 == 0 ? kl_without_sink(l, w, sm, lh, wh, smh, n, tmp.data()) : kl;
        st.n_pos_nosink += 1;
        st.sum_kl_nosink += kl1;
      }

      // Top-1 / top-k agreement.
      const size_t kk = top_k_indices(l, n, opt.top_k, top.data());
      top_k_indices(lh, n, opt.top_k, top_h.data());
      if (top[0] == top_h[0]) st.n_top1 += 1;
      size_t common = 0;
      for (size_t a = 0; a < kk; ++a) {
        for (size_t b = 0; b < kk; ++b) {
          if (top[a] == top_h[b]) {
            ++common;
            break;
          }
        }
      }
      st.sum_topk += static_cast<double>(common) / static_cast<double>(kk);

      // Attention weights (w, wh become p, p^) and the attention-weighted value error.
      if (values) {
        double wv_err = 0, wv_norm = 0;
        const double inv_z = 1.0 / sm.z, inv_zh = 1.0 / smh.z;
        for (size_t j2 = 0; j2 < n; ++j2) {
          const size_t s = s0 + j2;
          const double pj = w[j2] * inv_z;
          wh[j2] *= inv_zh;
          w[j2] = pj;
          wv_err += pj * err_v[s];
          wv_norm += pj * norm_v[s];
        }
        st.sum_wv_err += wv_err;
        st.sum_wv_norm += wv_norm;
      }
    }
    if (!values) continue;

    // Outputs o_g = sum_s p_gs v_s over each query's window [s0_g, t_g], keys ascending: keys
    // before the common range per query, the common range [s_mid, e_mid] for all at once, the
    // keys after it per query.
    std::fill(o4.begin(), o4.end(), 0.0);
    std::fill(oh4.begin(), oh4.end(), 0.0);
    const size_t s_mid = s0q[ng - 1], e_mid = tq[0];
    const bool joint = ng == kGroup && s_mid <= e_mid;
    auto add_keys = [&](size_t g, size_t from, size_t to) {  // keys [from, to) of query g
      if (from >= to) return;
      kern.axpy_rows_f64(o4.data() + g * d, W.data() + g * T + (from - s_lo), v + from * d, to - from, d);
      kern.axpy_rows_f64(oh4.data() + g * d, Wh.data() + g * T + (from - s_lo), vhat + from * d, to - from, d);
    };
    if (joint) {
      for (size_t g = 0; g < ng; ++g) add_keys(g, s0q[g], s_mid);
      kern.axpy_rows4_f64(o4.data(), W.data() + (s_mid - s_lo), T, v + s_mid * d, e_mid - s_mid + 1, d);
      kern.axpy_rows4_f64(oh4.data(), Wh.data() + (s_mid - s_lo), T, vhat + s_mid * d, e_mid - s_mid + 1, d);
      for (size_t g = 0; g < ng; ++g) add_keys(g, e_mid + 1, tq[g] + 1);
    } else {
      for (size_t g = 0; g < ng; ++g) add_keys(g, s0q[g], tq[g] + 1);
    }
    for (size_t g = 0; g < ng; ++g) {
      const size_t t = tq[g];
      const double* o = o4.data() + g * d;
      const double* oh = oh4.data() + g * d;
      double e2 = 0, o2 = 0;
      for (size_t i2 = 0; i2 < d; ++i2) {
        const double e = o[i2] - oh[i2];
        e2 += e * e;
        o2 += o[i2] * o[i2];
      }
      st.n_pos_values += 1;
      st.sum_out_err_sq += e2;
      st.sum_out_sq += o2;
      if (o2 > 0.0) {
        st.n_out_ratio += 1;
        st.sum_out_ratio += std::sqrt(e2 / o2);
      }
      st.pos_out_err_sq[t] += e2;
      st.pos_out_sq[t] += o2;
    }
  }
  return st;
}

std::vector<AttnStats> attention_layer(const float* q, int n_heads, const float* k, const float* v,
                                       const float* khat, const float* vhat, int n_kv_heads,
                                       size_t T, size_t d, const AttnOptions& opt) {
  std::vector<AttnStats> out;
  out.reserve(static_cast<size_t>(n_heads > 0 ? n_heads : 0));
  const size_t hs = T * d;
  for (int h = 0; h < n_heads; ++h) {
    const size_t g = static_cast<size_t>(kv_head_for(h, n_heads, n_kv_heads));
    out.push_back(attention_head(q + static_cast<size_t>(h) * hs, k + g * hs,
                                 v ? v + g * hs : nullptr, khat + g * hs,
                                 vhat ? vhat + g * hs : nullptr, T, d, opt));
  }
  return out;
}

}  // namespace tq::metrics
