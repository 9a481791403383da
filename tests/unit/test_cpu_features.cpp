// Tests of lib/tq/simd/cpu_features: the level agrees with the detected extensions, TQ_SIMD caps it.
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

#include "tq/core/error.h"
#include "tq/simd/cpu_features.h"

namespace {
// Sets TQ_SIMD for one scope, restoring the previous value.
struct ScopedSimdEnv {
  std::string old;
  bool had = false;
  explicit ScopedSimdEnv(const char* value) {
    if (const char* v = std::getenv("TQ_SIMD")) {
      had = true;
      old = v;
    }
    ::setenv("TQ_SIMD", value, 1);
  }
  ~ScopedSimdEnv() {
    if (had) {
      ::setenv("TQ_SIMD", old.c_str(), 1);
    } else {
      ::unsetenv("TQ_SIMD");
    }
  }
};
}  // namespace

TEST_CASE("cpu features: level matches the extensions it needs") {
  using tq::simd::Level;
  const auto& f = tq::simd::cpu_features();
  const Level level = tq::simd::detected_level();
  const bool avx2 = f.avx2 && f.fma && f.f16c && f.bmi2;
  const bool avx512 = avx2 && f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl;
  CHECK((level == Level::Avx512) == avx512);
  CHECK((level == Level::Avx2) == (avx2 && !avx512));
  CHECK((level == Level::Scalar) == !avx2);
  // The feature list names exactly the extensions that are present.
  const std::string list = tq::simd::feature_list();
  CHECK((list.find("avx512bw") != std::string::npos) == f.avx512bw);
  CHECK((list.find("f16c") != std::string::npos) == f.f16c);
}

TEST_CASE("cpu features: TQ_SIMD lowers the level but never raises it") {
  using tq::simd::Level;
  const Level detected = tq::simd::detected_level();
  {
    ScopedSimdEnv env("scalar");
    CHECK(tq::simd::simd_level() == Level::Scalar);
  }
  {
    ScopedSimdEnv env("avx512");
    CHECK(tq::simd::simd_level() == detected);
  }
  {
    ScopedSimdEnv env("avx2");
    CHECK(static_cast<int>(tq::simd::simd_level()) <= static_cast<int>(Level::Avx2));
  }
  {
    ScopedSimdEnv env("sse9");
    CHECK_THROWS_AS(tq::simd::simd_level(), tq::Error);
  }
  CHECK(std::string(tq::simd::level_name(Level::Avx512)) == "avx512");
  CHECK(std::string(tq::simd::level_name(Level::Scalar)) == "scalar");
}
