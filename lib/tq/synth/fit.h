#pragma once
// Fitting a synth Profile to a real dump (tq synth --fit). Per layer:
//   * K: the pre-RoPE keys (k_pre, or RoPE⁻¹(k) when k_pre is absent) of every KV head; V: v;
//     Q: q_pre (or RoPE⁻¹(q)). For each head, channels whose range max_t |x_tc| is at least
//     kOutlierFactor × the median channel range are outliers; the rest give scale (median
//     channel std), scale_log_sd (std of log std), offset (RMS of channel means / scale); the
//     outliers give outlier_offset (mean |mean| / scale) and outlier_scale (mean std / scale);
//     n_outliers is the mean count rounded. rho is the mean lag-1 autocorrelation; tail the
//     median per-channel excess kurtosis κ_x mapped back to the innovations,
//     κ_ε = κ_x (1 + ρ²)/(1 − ρ²) (the AR(1) filter shrinks the fourth cumulant by that factor),
//     clamped to [0, kMaxTail]. Heads are averaged.
//   * q_align / q_gain: with K, V, Q fitted, the layer is generated at the dump's length and the
//     attention entropy (positions t ≥ 16, every `stride`-th) is matched to the real one by
//     bisection: on q_align ≥ 0 when the unaligned queries give too flat attention, else on
//     q_gain ∈ [0, 1] (shrinking the queries flattens attention).
#include <cstdint>
#include <string>
#include <vector>

#include "tq/io/dump.h"
#include "tq/synth/profile.h"

namespace tq::synth {

inline constexpr double kOutlierFactor = 2.0;
inline constexpr double kMaxTail = 500.0;

struct FitOptions {
  uint64_t seed = 0;              ///< seed of the synthetic layers used to match the entropy
  size_t entropy_positions = 256; ///< about this many query positions per head in the match
  int bisect_iterations = 40;
};

struct FitResult {
  Profile profile;
  std::vector<double> real_entropy;   ///< per layer (NaN without q)
  std::vector<double> synth_entropy;  ///< per layer, with the fitted q_align / q_gain
};

/// Fit every layer of the dump (all layers must share head counts, head_dim and RoPE; the dump
/// must hold every layer 0..n_layers−1 and q for the entropy match). Throws tq::Error naming
/// the file otherwise. `name` becomes the profile's name.
FitResult fit_profile(const DumpReader& reader, const std::string& name, const FitOptions& opt = {});

/// Fit one ChannelModel to x [heads, T, d] (already pre-RoPE for k and q).
ChannelModel fit_channel_model(const Tensor3& x);

/// C++ source of the profile's layer list (paste into lib/tq/synth/profiles.cpp to refit).
std::string profile_layers_cpp(const Profile& p);

}  // namespace tq::synth
