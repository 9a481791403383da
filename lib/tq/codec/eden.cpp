// eden:b - EDEN (Vargaftik et al., ICML 2022): the tq-mse codes with the scale
// s = |x| / <y, c> (y = R x / |x|, c the chosen centroids) instead of |x|, which makes the
// reconstruction unbiased, E_R[xhat] = x over a Haar rotation R, hence unbiased inner products.
#include "tq/codec/factories.h"
#include "tq/codec/rotated_scalar.h"

namespace tq {

std::unique_ptr<Codec> make_eden(const CodecArgs& args, const CodecContext& ctx) {
  return make_rotated_scalar(args, ctx, /*eden=*/true);
}

}  // namespace tq
