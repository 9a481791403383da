#pragma once
// Attention fidelity: causal softmax attention of one query head computed with the original
// (k, v) and with the reconstruction (k̂, v̂), compared position by position.
//
// Per query position t (keys s in the window S_t = [max(0, t−W+1), t], all s ≤ t when W = 0):
//   logit  l_s = scale · ⟨q_t, k_s⟩, then l_s = c·tanh(l_s / c) when a softcap c > 0 is set
//   p_t    = softmax(l) in double through log-sum-exp (row by row, O(T·d) memory, no T×T matrix);
//   p̂_t    the same with k̂.
// Metrics (positions t ≥ min_pos, and t % query_stride == 0, are "counted"):
//   attn_kl         mean over counted t of KL(p_t ‖ p̂_t) = Σ_s p_s (log p_s − log p̂_s), in nats.
//   kl by position  the same mean within position bins: bin 0 = [0, 2), bin b ≥ 1 = [2^b, 2^(b+1)).
//   attn_kl_nosink  KL with the first (sink) token removed: p'_s = p_s / (1 − p_0) for s ≥ 1
//                   (likewise p̂'), KL(p' ‖ p̂'); computed as log p'_s = l_s − LSE_{s'≥1} l_{s'} so a
//                   sink holding almost all mass loses no precision. When token 0 is outside the
//                   window (t ≥ W) p' = p. Mean over counted t ≥ 1 (t = 0 has only the sink).
//   attn_top1       fraction of counted t with argmax p̂_t = argmax p_t (ties -> lowest index).
//   attn_topk       mean of |topk(p) ∩ topk(p̂)| / k', k' = min(k, |S_t|), ties -> lowest index.
//   attn_out_err    output o_t = Σ p_s v_s, ô_t = Σ p̂_s v̂_s; POOLED ratio of summed squares
//                   sqrt(Σ_t ‖o_t − ô_t‖² / Σ_t ‖o_t‖²) over counted t (and over pooled heads).
//                   The mean of per-position ratios ‖o_t − ô_t‖/‖o_t‖ (t with ‖o_t‖ > 0) is
//                   also kept as out_err_mean_ratio.
//   attn_wv_err     attention-weighted value error: mean over counted t of Σ_s p_s ‖v_s − v̂_s‖²;
//   attn_wv_nerr    normalised, pooled: Σ_t Σ_s p_s ‖v_s − v̂_s‖² / Σ_t Σ_s p_s ‖v_s‖².
// Accumulators hold sums and counts only, so heads and layers pool exactly (merge in a fixed
// order). Per-position arrays (summed over pooled heads) feed block_bootstrap_ratio in pareto.h:
// attn_kl = Σ pos_kl / Σ pos_n, attn_out_err² = Σ pos_out_err_sq / Σ pos_out_sq.
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "tq/io/dump.h"

namespace tq::metrics {

struct AttnOptions {
  double scale = 0.0;        ///< logit scale (the layer's attn_scale); must be > 0
  size_t sliding_window = 0; ///< W: token t attends to s in (t − W, t]; 0 = full causal
  double softcap = 0.0;      ///< c: logits -> c·tanh(logits / c); 0 = none
  size_t min_pos = 16;       ///< first position counted (early rows have few keys)
  size_t top_k = 5;          ///< k of the top-k agreement (>= 1)
  size_t query_stride = 1;   ///< count only t % query_stride == 0 (>= 1), to bound O(T²) cost
};

/// Options of a dump layer: attn_scale, sliding_window and logit_softcap from its attributes
/// (min_pos, top_k and query_stride keep their defaults). Throws tq::Error naming the layer when
/// the scale is not positive or the window is negative.
AttnOptions attn_options_for(const LayerInfo& layer);

/// Number of position bins: bin 0 = [0, 2), bin b = [2^b, 2^(b+1)) — enough for any size_t.
inline constexpr size_t kAttnPosBins = 64;

/// Bin of position t (see kAttnPosBins).
size_t attn_pos_bin(size_t t);

/// One position bin of a summary.
struct AttnBin {
  size_t lo = 0, hi = 0;  ///< positions [lo, hi)
  uint64_t n = 0;         ///< counted (position, head) rows in the bin
  double kl = 0;          ///< mean KL over them
};

/// Final values of an AttnStats.
struct AttnSummary {
  uint64_t n_pos = 0;       ///< counted (position, head) rows
  bool has_values = false;  ///< output / value metrics present (v was given)
  double kl = 0, kl_nosink = 0, top1 = 0, topk = 0;
  double out_err = 0, out_err_mean_ratio = 0, wv_err = 0, wv_nerr = 0;
  std::vector<AttnBin> bins;  ///< non-empty bins only, ascending
};

/// Poolable sums of the attention metrics (see the file comment).
struct AttnStats {
  uint64_t n_pos = 0;          ///< counted rows
  double sum_kl = 0;
  uint64_t n_pos_nosink = 0;   ///< counted rows with t >= 1
  double sum_kl_nosink = 0;
  uint64_t n_top1 = 0;         ///< rows whose argmax agrees
  double sum_topk = 0;         ///< Σ |topk ∩ topk̂| / k'
  uint64_t n_pos_values = 0;   ///< counted rows with value metrics
  double sum_out_err_sq = 0;   ///< Σ_t ‖o_t − ô_t‖²
  double sum_out_sq = 0;       ///< Σ_t ‖o_t‖²
  uint64_t n_out_ratio = 0;    ///< rows with ‖o_t‖ > 0
  double sum_out_ratio = 0;    ///< Σ_t ‖o_t − ô_t‖ / ‖o_t‖
  double sum_wv_err = 0;       ///< Σ_t Σ_s p_s ‖v_s − v̂_s‖²
  double sum_wv_norm = 0;      ///< Σ_t Σ_s p_s ‖v_s‖²
  std::array<uint64_t, kAttnPosBins> bin_n{};
  std::array<double, kAttnPosBins> bin_kl{};
  // Per position t (index t), summed over the pooled heads; zero where t was not counted.
  std::vector<double> pos_n;           ///< number of heads counting t
  std::vector<double> pos_kl;          ///< Σ KL(p_t ‖ p̂_t)
  std::vector<double> pos_out_err_sq;  ///< Σ ‖o_t − ô_t‖²
  std::vector<double> pos_out_sq;      ///< Σ ‖o_t‖²

  /// Pool another accumulator in (per-position arrays add element-wise, zero-padded).
  void merge(const AttnStats& o);
  AttnSummary summary() const;
};

/// One query head. q [T, d]; k, khat [T, d] of the KV head it reads; v, vhat [T, d] or both
/// nullptr (then only the key-side metrics are computed; pass vhat = v when V is not coded).
/// Throws tq::Error on bad options.
AttnStats attention_head(const float* q, const float* k, const float* v, const float* khat,
                         const float* vhat, size_t T, size_t d, const AttnOptions& opt);

/// Every query head of a layer (q [n_heads, T, d]; k, v, khat, vhat [n_kv_heads, T, d]; v and
/// vhat may be nullptr), head h reading KV head kv_head_for(h, ...). One AttnStats per query head.
std::vector<AttnStats> attention_layer(const float* q, int n_heads, const float* k, const float* v,
                                       const float* khat, const float* vhat, int n_kv_heads,
                                       size_t T, size_t d, const AttnOptions& opt);

}  // namespace tq::metrics
