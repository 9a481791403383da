#pragma once
// Rotary position embedding (RoPE, Su et al. 2021) as the KV dump format defines it
// (docs/kv-dump-format.md, "RoPE pairing"): with rotary dimension r and frequencies
// θ_j = rope_theta^(−2j/r), j = 0 … r/2 − 1, the row at position p has pair j turned by the angle
// p·θ_j:  (a, b) -> (a cos φ − b sin φ, a sin φ + b cos φ).
// Pair j is (2j, 2j+1) for "interleaved" and (j, j + r/2) for "half"; dimensions ≥ r are kept.
// Angles, sines and cosines are computed in double, so RoPE followed by its inverse returns the
// input to float rounding.
#include <cstddef>
#include <cstdint>
#include <string>

#include "tq/io/dump.h"

namespace tq::stats {

struct RopeParams {
  double theta = 10000.0;
  int rotary_dim = 0;        ///< r (even, 0 ≤ r ≤ head_dim); 0 = no rotation
  bool half_pairing = false; ///< false: interleaved pairs (2j, 2j+1); true: (j, j + r/2)

  /// From a dump layer's attributes. Throws tq::Error naming the layer on an odd or too large
  /// rotary_dim, a non-positive theta or an unknown pairing.
  static RopeParams from_layer(const LayerInfo& layer);
};

/// Rotate the n rows of x [n, d] in place; row t sits at position positions[t]. `inverse`
/// turns by −p·θ_j instead (RoPE⁻¹). Requires rotary_dim ≤ d.
void apply_rope(float* x, size_t n, size_t d, const int32_t* positions, const RopeParams& p,
                bool inverse = false);

}  // namespace tq::stats
