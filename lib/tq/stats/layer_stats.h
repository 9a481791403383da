#pragma once
// Layer-level checks: RoPE consistency of k (q) with k_pre (q_pre), and the entropy of the real
// causal attention.
//
// RoPE check: rel_err = max |k − RoPE(k_pre)| / max |k| over every head, token and channel, with
// RoPE applied at the dump's positions under the layer's rope_pairing / rope_theta / rotary_dim
// (rope.h). It passes when rel_err ≤ kRopeTolerance: a dump whose RoPE attributes describe what
// the model did reproduces k from k_pre to float rounding (~1e−6 relative); a wrong pairing or
// theta gives errors of order 1.
//
// Attention entropy: for query head h (reading KV head ⌊h·n_kv/n_heads⌋) and position t, the
// causal softmax p_t(s) ∝ exp(l_s), l_s = attn_scale·⟨q_t, k_s⟩ (soft-capped / windowed as the
// layer says, via metrics::AttnOptions), s ≤ t; its entropy H_t = LSE(l) − Σ_s p_s l_s in nats,
// computed in double. Reported: the mean over positions t ≥ min_pos (default 16) and heads, and
// beside it the mean of log |S_t| (the entropy of uniform attention over the same keys) to show
// how peaked attention is.
#include <cstddef>
#include <cstdint>

#include "tq/io/dump.h"
#include "tq/metrics/attention.h"
#include "tq/stats/rope.h"

namespace tq::stats {

inline constexpr double kRopeTolerance = 1e-4;

struct RopeCheck {
  double rel_err = 0;  ///< max |rot − RoPE(pre)| / max |rot|
  bool pass = false;   ///< rel_err ≤ kRopeTolerance
};

/// Compare rotated [heads, T, d] with RoPE(pre) at `positions` (size T). Shapes must match.
RopeCheck rope_check(const Tensor3& rotated, const Tensor3& pre, const int32_t* positions, const RopeParams& p);

/// Sums over the counted positions of one head (pool heads by adding).
struct EntropySums {
  uint64_t n = 0;        ///< counted positions
  double entropy = 0;    ///< Σ_t H_t (nats)
  double uniform = 0;    ///< Σ_t log |S_t|
  double mean() const;          ///< entropy / n (NaN when n = 0)
  double uniform_mean() const;  ///< uniform / n (NaN when n = 0)
  void add(const EntropySums& o) { n += o.n; entropy += o.entropy; uniform += o.uniform; }
};

/// One query head q [T, d] against the keys k [T, d] of the KV head it reads. Uses opt.scale,
/// sliding_window, softcap, min_pos and query_stride.
EntropySums attention_entropy_head(const float* q, const float* k, size_t T, size_t d,
                                   const metrics::AttnOptions& opt);

}  // namespace tq::stats
