#include "tq/stats/rope.h"

#include <cmath>
#include <vector>

#include <fmt/format.h>

#include "tq/core/error.h"

namespace tq::stats {

RopeParams RopeParams::from_layer(const LayerInfo& layer) {
  RopeParams p;
  p.theta = layer.rope_theta;
  p.rotary_dim = layer.rotary_dim > 0 ? layer.rotary_dim : layer.head_dim;
  if (layer.rope_pairing == "interleaved") {
    p.half_pairing = false;
  } else if (layer.rope_pairing == "half") {
    p.half_pairing = true;
  } else {
    throw Error(fmt::format("layer {}: unknown rope_pairing '{}' (interleaved|half)", layer.index,
                            layer.rope_pairing));
  }
  if (p.rotary_dim % 2 != 0 || p.rotary_dim > layer.head_dim)
    throw Error(fmt::format("layer {}: rotary_dim {} must be even and at most head_dim {}", layer.index,
                            p.rotary_dim, layer.head_dim));
  if (!(p.theta > 0.0))
    throw Error(fmt::format("layer {}: rope_theta {} must be positive", layer.index, p.theta));
  return p;
}

void apply_rope(float* x, size_t n, size_t d, const int32_t* positions, const RopeParams& p, bool inverse) {
  const size_t r = static_cast<size_t>(p.rotary_dim);
  if (r == 0) return;
  if (r > d || r % 2 != 0) throw Error(fmt::format("RoPE: rotary_dim {} does not fit head_dim {}", r, d));
  const size_t pairs = r / 2;
  // θ_j = theta^(−2j/r), computed once.
  std::vector<double> freq(pairs);
  for (size_t j = 0; j < pairs; ++j)
    freq[j] = std::pow(p.theta, -2.0 * static_cast<double>(j) / static_cast<double>(r));
  const double sign = inverse ? -1.0 : 1.0;
  for (size_t t = 0; t < n; ++t) {
    float* row = x + t * d;
    const double pos = static_cast<double>(positions[t]);
    for (size_t j = 0; j < pairs; ++j) {
      const double phi = sign * pos * freq[j];
      const double c = std::cos(phi), s = std::sin(phi);
      const size_t ia = p.half_pairing ? j : 2 * j;
      const size_t ib = p.half_pairing ? j + pairs : 2 * j + 1;
      const double a = row[ia], b = row[ib];
      row[ia] = static_cast<float>(a * c - b * s);
      row[ib] = static_cast<float>(a * s + b * c);
    }
  }
}

}  // namespace tq::stats
