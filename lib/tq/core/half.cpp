// Batch fp16 conversions: simd::kernels() (F16C on AVX2 / AVX-512 machines, NaN lanes patched to
// the scalar bits, so every path gives the same result as the inline conversions in half.h).
#include "tq/core/half.h"

#include "tq/simd/kernels.h"

namespace tq {

void fp16_to_float(const uint16_t* in, float* out, size_t n) { simd::kernels().f16_to_f32(in, out, n); }
void float_to_fp16(const float* in, uint16_t* out, size_t n) { simd::kernels().f32_to_f16(in, out, n); }
void bf16_to_float(const uint16_t* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = bf16_to_float(in[i]);
}

}  // namespace tq
