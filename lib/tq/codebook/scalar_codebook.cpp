// ScalarCodebook batch encode/decode.
#include "tq/codebook/scalar_codebook.h"

#include "tq/simd/kernels.h"

namespace tq {

void ScalarCodebook::set_midpoint_boundaries() {
  boundaries.resize(centroids.empty() ? 0 : centroids.size() - 1);
  for (size_t i = 0; i + 1 < centroids.size(); ++i) boundaries[i] = 0.5f * (centroids[i] + centroids[i + 1]);
}

namespace {
/// True when the table kernels apply: 2^bits centroids and 2^bits - 1 boundaries.
bool regular(const ScalarCodebook& cb) {
  return cb.bits >= 1 && cb.bits <= 8 && cb.centroids.size() == (size_t{1} << cb.bits) &&
         cb.boundaries.size() + 1 == cb.centroids.size();
}
}  // namespace

void ScalarCodebook::encode(const float* x, uint8_t* codes, size_t n) const {
  if (regular(*this)) {
    simd::kernels().quantize(x, n, boundaries.data(), bits, codes);
    return;
  }
  for (size_t i = 0; i < n; ++i) codes[i] = encode(x[i]);
}

void ScalarCodebook::decode(const uint8_t* codes, float* out, size_t n) const {
  if (regular(*this)) {
    simd::kernels().lookup(codes, n, centroids.data(), bits, out);
    return;
  }
  const float* c = centroids.data();
  for (size_t i = 0; i < n; ++i) out[i] = c[codes[i]];
}

}  // namespace tq
