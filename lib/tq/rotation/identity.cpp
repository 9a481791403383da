// The identity rotation and the make_rotation factory.
#include <cstring>

#include <fmt/format.h>

#include "tq/core/error.h"
#include "tq/rotation/rotation.h"

namespace tq {

namespace {
class IdentityRotation final : public Rotation {
 public:
  explicit IdentityRotation(size_t d) : Rotation(d) {}
  void forward(const float* in, float* out, size_t n) const override { copy(in, out, n); }
  void inverse(const float* in, float* out, size_t n) const override { copy(in, out, n); }
  std::string name() const override { return "id"; }

 private:
  void copy(const float* in, float* out, size_t n) const {
    if (in != out && n > 0) std::memmove(out, in, n * dim_ * sizeof(float));
  }
};
}  // namespace

std::unique_ptr<Rotation> make_identity_rotation(size_t d) { return std::make_unique<IdentityRotation>(d); }

bool is_rotation_kind(const std::string& kind) {
  for (const char* k : kRotationKinds)
    if (kind == k) return true;
  return false;
}

std::unique_ptr<Rotation> make_rotation(const std::string& kind, size_t d, uint64_t seed) {
  if (d == 0) throw UsageError(fmt::format("rotation '{}': dimension must be positive", kind));
  if (kind == "haar") return make_haar_rotation(d, seed);
  if (kind == "hr") return make_hadamard_rotation(d, seed);
  if (kind == "id") return make_identity_rotation(d);
  throw UsageError(fmt::format("unknown rotation '{}' (known: haar, hr, id)", kind));
}

}  // namespace tq
