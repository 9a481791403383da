// Rotation stages `haar`, `hr`, `id` around a codec that does not own a rotation: the rows are
// rotated (x -> R x) before the inner codec and rotated back (R^T) after decoding. The rotation
// comes from the seed, so the stage adds no bytes. (tq-mse and eden own their rotation: the
// spec parser hands them the stage as their `rotation=` option instead of wrapping them.)
#include <vector>

#include <fmt/format.h>

#include "tq/codec/factories.h"
#include "tq/codec/rotated_scalar.h"
#include "tq/core/error.h"
#include "tq/rotation/rotation.h"

namespace tq {

namespace {

class RotationStage final : public Codec {
 public:
  RotationStage(std::unique_ptr<Rotation> rot, std::unique_ptr<Codec> inner, const CodecContext& ctx)
      : Codec(ctx), rot_(std::move(rot)), inner_(std::move(inner)) {}

  std::string spec() const override { return rot_->name() + "," + inner_->spec(); }
  bool needs_training() const override { return inner_->needs_training(); }
  void train(const float* x, size_t n) override {
    const std::vector<float> y = rotated(x, n);
    inner_->train(y.data(), n);
  }
  Encoded encode(const float* x, size_t n, const int32_t* positions) const override {
    const std::vector<float> y = rotated(x, n);
    return inner_->encode(y.data(), n, positions);
  }
  void decode(const Encoded& e, float* out) const override {
    inner_->decode(e, out);
    rot_->inverse(out, out, e.n_tokens);
  }
  ByteCount byte_count(size_t n) const override { return inner_->byte_count(n); }

 private:
  std::vector<float> rotated(const float* x, size_t n) const {
    std::vector<float> y(n * dim());
    rot_->forward(x, y.data(), n);
    return y;
  }
  std::unique_ptr<Rotation> rot_;
  std::unique_ptr<Codec> inner_;
};

}  // namespace

std::unique_ptr<Codec> make_rotation_stage(const CodecArgs& stage, std::unique_ptr<Codec> inner, const CodecContext& ctx) {
  if (stage.bits != -1)
    throw UsageError(fmt::format("codec spec '{}': stage '{}' takes no ':N' parameter", stage.spec, stage.name));
  return std::make_unique<RotationStage>(make_rotation(stage.name, ctx.dim, rotation_seed(ctx)), std::move(inner), ctx);
}

}  // namespace tq
