// ScalarCodebook batch encode/decode.
#include "tq/codebook/scalar_codebook.h"

namespace tq {

void ScalarCodebook::set_midpoint_boundaries() {
  boundaries.resize(centroids.empty() ? 0 : centroids.size() - 1);
  for (size_t i = 0; i + 1 < centroids.size(); ++i) boundaries[i] = 0.5f * (centroids[i] + centroids[i + 1]);
}

void ScalarCodebook::encode(const float* x, uint8_t* codes, size_t n) const {
  for (size_t i = 0; i < n; ++i) codes[i] = encode(x[i]);
}

void ScalarCodebook::decode(const uint8_t* codes, float* out, size_t n) const {
  const float* c = centroids.data();
  for (size_t i = 0; i < n; ++i) out[i] = c[codes[i]];
}

}  // namespace tq
