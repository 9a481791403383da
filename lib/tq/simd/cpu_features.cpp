// Run-time CPU feature detection (GCC/Clang __builtin_cpu_supports, which also checks that the
// OS saves the AVX/AVX-512 register state).
#include "tq/simd/cpu_features.h"

#include <cstdlib>
#include <string_view>

#include "tq/core/error.h"

namespace tq::simd {

namespace {

CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.f16c = __builtin_cpu_supports("f16c");
  f.bmi2 = __builtin_cpu_supports("bmi2");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512dq = __builtin_cpu_supports("avx512dq");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
#endif
  return f;
}

Level parse_level(std::string_view s) {
  if (s == "scalar") return Level::Scalar;
  if (s == "avx2") return Level::Avx2;
  if (s == "avx512") return Level::Avx512;
  throw Error("environment variable TQ_SIMD='" + std::string(s) + "' is not one of scalar, avx2, avx512");
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

Level detected_level() {
  const CpuFeatures& f = cpu_features();
  const bool avx2 = f.avx2 && f.fma && f.f16c && f.bmi2;
  if (avx2 && f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl) return Level::Avx512;
  if (avx2) return Level::Avx2;
  return Level::Scalar;
}

Level simd_level() {
  const Level detected = detected_level();
  const char* env = std::getenv("TQ_SIMD");
  if (env == nullptr || *env == '\0') return detected;
  const Level wanted = parse_level(env);
  return static_cast<int>(wanted) < static_cast<int>(detected) ? wanted : detected;
}

const char* level_name(Level level) {
  switch (level) {
    case Level::Scalar: return "scalar";
    case Level::Avx2: return "avx2";
    case Level::Avx512: return "avx512";
  }
  return "scalar";
}

std::string feature_list() {
  const CpuFeatures& f = cpu_features();
  const std::pair<bool, const char*> all[] = {
      {f.avx2, "avx2"},         {f.fma, "fma"},           {f.f16c, "f16c"},
      {f.bmi2, "bmi2"},         {f.avx512f, "avx512f"},   {f.avx512bw, "avx512bw"},
      {f.avx512dq, "avx512dq"}, {f.avx512vl, "avx512vl"},
  };
  std::string out;
  for (const auto& [present, name] : all) {
    if (!present) continue;
    if (!out.empty()) out += ' ';
    out += name;
  }
  return out;
}

}  // namespace tq::simd
