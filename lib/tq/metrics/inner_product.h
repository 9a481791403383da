#pragma once
// Inner-product fidelity of reconstructed keys: how well ⟨q, k̂⟩ tracks ⟨q, k⟩ over the causal
// (query t, key s ≤ t) pairs attention actually forms.
//
// With a = ⟨q_t, k_s⟩ and â = ⟨q_t, k̂_s⟩ summed over the pooled pairs:
//   ip_bias = Σ â·a / Σ a² − 1     the least-squares slope of â on a, minus 1: a codec that
//                                   shrinks keys (x̂ = c·x) has ip_bias = c − 1 exactly.
//   ip_rms  = RMS(â − a) / RMS(a) = sqrt(Σ (â − a)² / Σ a²)
// The sums are exposed (IpStats), so heads and layers pool exactly: pooled values are the
// ratios of summed sums, merged in the caller's fixed (layer, query head) order.
//
// GQA: query head h reads KV head ⌊h · n_kv_heads / n_heads⌋ (heads 0,1 -> 0 and 2,3 -> 1 for
// 4 query / 2 KV heads). Each query head is measured on its own; queries are never averaged.
//
// Dumps without Q: the caller passes random_queries(...), i.e. N(0, I) queries, so the numbers
// measure key error in an isotropic sense (both ratios are invariant to the scale of q). The
// report must say that random queries were used.
//
// Cost is O(T² d / 2 / query_stride) per head; query_stride > 1 keeps only queries t with
// t % query_stride == 0 (every key s ≤ t of a kept query still counts).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "tq/io/dump.h"

namespace tq::metrics {

/// Poolable sums over (query, key) pairs.
struct IpStats {
  uint64_t n_pairs = 0;
  double sum_cross = 0;   ///< Σ ⟨q,k̂⟩⟨q,k⟩
  double sum_sq = 0;      ///< Σ ⟨q,k⟩²
  double sum_sq_err = 0;  ///< Σ (⟨q,k̂⟩ − ⟨q,k⟩)²
  double sum_err = 0;     ///< Σ (⟨q,k̂⟩ − ⟨q,k⟩)  (signed; mean error = sum_err / n_pairs)

  void merge(const IpStats& o);
  double bias() const;  ///< ip_bias (0 when sum_sq = 0)
  double rms() const;   ///< ip_rms (0 when sum_sq = 0)
};

/// KV head read by query head h under grouped-query attention. Throws tq::Error unless
/// n_heads is a positive multiple of n_kv_heads (> 0) and 0 <= h < n_heads.
int kv_head_for(int h, int n_heads, int n_kv_heads);

/// One query head: q [T, d] against k, khat [T, d] (the KV head it reads), causal pairs s ≤ t.
IpStats ip_stats_head(const float* q, const float* k, const float* khat, size_t T, size_t d,
                      size_t query_stride = 1);

/// A whole layer: q [n_heads, T, d], k and khat [n_kv_heads, T, d]. Returns one IpStats per
/// query head (index = query head); pool them with merge in index order.
std::vector<IpStats> ip_stats_layer(const float* q, int n_heads, const float* k, const float* khat,
                                    int n_kv_heads, size_t T, size_t d, size_t query_stride = 1);

/// Seeded N(0, I) stand-in queries [n_heads, T, d] for dumps without Q. Head h of layer `layer`
/// draws from tq::Rng(seed_for(seed, layer, h, "q_random")), so a layer subset reproduces the
/// full run's queries.
Tensor3 random_queries(uint64_t seed, int layer, int n_heads, size_t T, size_t d);

}  // namespace tq::metrics
