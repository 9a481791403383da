#pragma once
// Generation of synthetic dumps from a Profile (the model is described in profile.h).
//
// Determinism: every random draw comes from tq::Rng streams seeded by
// tq::seed_for(seed, layer, head, tag), tag ∈ {"k:channels", "k_pre", "v:channels", "v",
// "q:channels", "q_pre", "q:pointer"}, and only Rng::gaussian / uniform / below are used, so a
// (profile, tokens, seed) triple gives the same tensors on every machine, and a --layers subset
// gives exactly the layers of the full dump.
#include <cstdint>
#include <string>
#include <vector>

#include "tq/io/dump.h"
#include "tq/synth/profile.h"

namespace tq::synth {

/// The tensors of one synthetic layer: k, v, k_pre [n_kv_heads, T, d]; q, q_pre [n_heads, T, d].
struct LayerTensors {
  Tensor3 k, v, q, k_pre, q_pre;
};

/// The LayerInfo (attributes) of layer `layer` of the profile.
LayerInfo layer_info(const Profile& p, int layer);

/// Generate layer `layer` (0 ≤ layer < p.layers.size()) for T tokens at positions 0..T−1.
/// `lp` overrides p.layers[layer] (the fitter varies q_align / q_gain through it).
LayerTensors generate_layer(const Profile& p, const LayerProfile& lp, int layer, size_t T, uint64_t seed);

struct SynthOptions {
  size_t tokens = 0;        ///< 0 = profile default
  uint64_t seed = 0;
  std::vector<int> layers;  ///< empty = all
  DType dtype = DType::F32;
  int deflate = 0;          ///< HDF5 deflate level (0 = none)
};

/// Write a synthetic dump atomically with DumpWriter. Throws tq::UsageError for a layer outside
/// the profile or zero tokens.
void write_synth_dump(const std::string& path, const Profile& p, const SynthOptions& opt);

}  // namespace tq::synth
