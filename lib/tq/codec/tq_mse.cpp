// tq-mse:b - TurboQuant-MSE / PolarQuant (Zandieh et al. 2025; Han et al. 2025): store |x| and
// the b-bit Lloyd-Max codes of the randomly rotated unit vector x/|x| (rotated_scalar.h).
#include "tq/codec/factories.h"
#include "tq/codec/rotated_scalar.h"

namespace tq {

std::unique_ptr<Codec> make_tq_mse(const CodecArgs& args, const CodecContext& ctx) {
  return make_rotated_scalar(args, ctx, /*eden=*/false);
}

}  // namespace tq
