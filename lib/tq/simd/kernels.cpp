// Kernel table selection (see kernels.h).
#include "tq/simd/kernels.h"

#include <atomic>

#include <fmt/format.h>

#include "tq/core/error.h"

namespace tq::simd {

namespace {

std::atomic<int> g_override{-1};

const Kernels& table(Level level) {
  switch (level) {
    case Level::Avx512: return avx512_kernels();
    case Level::Avx2: return avx2_kernels();
    case Level::Scalar: break;
  }
  return scalar_kernels();
}

Level cap(Level level) {
  const Level detected = detected_level();
  return static_cast<int>(level) < static_cast<int>(detected) ? level : detected;
}

}  // namespace

const Kernels& kernels() {
  const int o = g_override.load(std::memory_order_relaxed);
  if (o >= 0) return table(static_cast<Level>(o));
  static const Kernels& active = table(simd_level());
  return active;
}

const Kernels& kernels_for(Level level) {
  if (static_cast<int>(level) > static_cast<int>(detected_level()))
    throw Error(fmt::format("SIMD level {} is not supported by this CPU (best: {})", level_name(level),
                            level_name(detected_level())));
  return table(level);
}

ScopedLevel::ScopedLevel(Level level) : previous_(g_override.load()) { g_override.store(static_cast<int>(cap(level))); }

ScopedLevel::~ScopedLevel() { g_override.store(previous_); }

}  // namespace tq::simd
