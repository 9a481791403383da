#pragma once
// Run-time CPU feature detection for SIMD dispatch.
//
// Kernels come in three builds: scalar (baseline x86-64), AVX2 (lib/tq/simd/*_avx2.cpp, compiled
// with -mavx2 -mfma -mf16c -mbmi2) and AVX-512 (*_avx512.cpp, additionally -mavx512f/bw/dq/vl).
// simd_level() names the best build this CPU and OS can run: a level requires every extension its
// files are compiled with. The environment variable TQ_SIMD=scalar|avx2|avx512 lowers the level
// (never raises it), so tests can exercise each path on one machine.
#include <string>

namespace tq::simd {

enum class Level { Scalar = 0, Avx2 = 1, Avx512 = 2 };

/// What the CPU supports (and the OS enables), from __builtin_cpu_supports.
struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool bmi2 = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512dq = false;
  bool avx512vl = false;
};

/// Detected once, then cached.
const CpuFeatures& cpu_features();

/// The best level the CPU supports, ignoring TQ_SIMD.
Level detected_level();

/// The level kernels should use: detected_level() capped by TQ_SIMD. Throws tq::Error naming
/// TQ_SIMD when its value is not scalar, avx2 or avx512.
Level simd_level();

/// "scalar", "avx2" or "avx512".
const char* level_name(Level level);

/// The supported extensions as a space-separated list ("avx2 fma f16c bmi2 avx512f ...").
std::string feature_list();

}  // namespace tq::simd
