#pragma once
// Synthetic-dump profiles: plain parameter structs describing how tq synth generates K, V and Q
// for each layer of a model-like dump. The generative model (generate.h, docs/synth-profiles.md):
//
//   pre-RoPE keys, per KV head g and channel c:  k_pre[t, c] = μ_c + σ_c · z[t, c]
//     σ_c = scale · exp(scale_log_sd · g_c),  μ_c = scale · offset · g'_c   (g, g' ~ N(0,1) per head)
//     n_outliers channels, placed in the lowest-frequency RoPE pairs (outlier_band of the pairs),
//     get |μ_c| = outlier_offset · scale (random sign) and σ_c = outlier_scale · scale;
//     z[·, c] is AR(1): z_t = ρ z_{t−1} + √(1−ρ²) ε_t, with innovations ε of excess kurtosis
//     `tail` (Gaussian scale mixture ε = g · exp(τ h − τ²), 3(e^{4τ²} − 1) = tail).
//   keys                k = RoPE(k_pre) at positions 0..T−1 with the profile's RoPE.
//   values              v[t, c] = μ_c + σ_c · z[t, c] with the V channel model (no RoPE).
//   queries, head h     q = gain · RoPE(q_base) + align · (s_q/s_k) · (k_{s*} − RoPE_{s*}(μ_k)),
//                       q_base from the Q channel model, s* uniform in [0, t] per (h, t): each
//                       query leans towards the centred key of one earlier token, which makes
//                       attention peaked; align (or gain < 1) is the scalar per layer fitted so
//                       the mean attention entropy matches the real dump. q_pre = RoPE⁻¹(q).
#include <string>
#include <vector>

namespace tq::synth {

/// Per-channel model of one tensor family (k_pre, v or q_pre) in one layer.
struct ChannelModel {
  double scale = 1.0;          ///< typical (median) channel std of the non-outlier channels
  double scale_log_sd = 0.0;   ///< std of log(channel std) across channels
  double offset = 0.0;         ///< RMS of non-outlier channel means / scale
  int n_outliers = 0;          ///< outlier channels per head
  double outlier_offset = 0.0; ///< |mean| of an outlier channel / scale
  double outlier_scale = 1.0;  ///< std of an outlier channel / scale
  double rho = 0.0;            ///< AR(1) coefficient of the token sequence (−1 < ρ < 1)
  double tail = 0.0;           ///< excess kurtosis of the AR innovations (≥ 0)
};

struct LayerProfile {
  ChannelModel k, v, q;
  double q_align = 0.0;  ///< weight of the key the query points at (dimensionless)
  double q_gain = 1.0;   ///< multiplier of the base query (< 1 flattens attention)
};

struct Profile {
  std::string name;
  std::string description;  ///< one line
  std::string fitted_to;    ///< the real dump the parameters were fitted to, or "" (not fitted)
  std::string source;       ///< where the numbers come from (one line)
  int n_heads = 1, n_kv_heads = 1, head_dim = 8;
  double rope_theta = 10000.0;
  std::string rope_pairing = "interleaved";
  int rotary_dim = 0;         ///< 0 = head_dim
  double outlier_band = 0.25; ///< fraction of the RoPE pairs (lowest frequencies) holding outliers
  int default_tokens = 512;
  std::vector<LayerProfile> layers;  ///< one per layer (n_layers = layers.size())
};

/// Names of the built-in profiles: stories-like, smollm2-like, llama3-8b-like, gaussian.
std::vector<std::string> profile_names();

/// A built-in profile. `head_dim` is used by "gaussian" only (> 0). Throws tq::UsageError
/// naming --profile for an unknown name.
Profile make_profile(const std::string& name, int head_dim = 128);

/// Linear interpolation of two layer profiles (per-layer variation of the unfitted profiles):
/// every parameter a + f·(b − a), outlier counts rounded.
LayerProfile lerp(const LayerProfile& a, const LayerProfile& b, double f);

}  // namespace tq::synth
