#pragma once
// The hot loops of tq's codecs behind one table of function pointers, one table per instruction
// set: kernels_scalar.cpp (baseline x86-64, the reference), kernels_avx2.cpp (AVX2 + FMA + F16C
// + BMI2) and kernels_avx512.cpp (plus AVX-512 F/BW/DQ/VL). Each ISA file is compiled with its own
// flags (CMakeLists.txt); shared code never tests an ISA macro, it calls simd::kernels().
//
// Bit identity. Every table computes exactly the same bits as the scalar table, for every input
// (NaN payloads included), so codes and decoded values never depend on the machine or on
// TQ_SIMD. This holds because every floating-point result is defined by a fixed sequence of
// IEEE operations that each path performs in the same order:
//   * reductions (sum_squares, dot; dot_rows_f64 likewise with 8 double lanes) use a canonical order that does not depend on the vector
//     width: 16 partial sums, lane j accumulating the terms i = j mod 16 in ascending i (a missing
//     tail term counts as +0, which leaves a sum of squares unchanged), then folded 16 -> 8 -> 4 ->
//     2 -> 1 by adding the upper half onto the lower half. AVX-512 keeps the 16 lanes in one
//     register, AVX2 in two, scalar in an array.
//   * products and sums are separate roundings everywhere: the kernel files are compiled with
//     -ffp-contract=off and the SIMD code uses explicit mul + add (never FMA), so no path fuses.
//   * the FWHT performs the butterflies stage by stage (h = 1, 2, 4, ...) with a + b / a - b
//     exactly as the scalar loop; the order of independent butterflies within a stage is free.
//   * matmul_rows sums over k in ascending order starting from +0, like the scalar loop.
//   * boundary search is an integer result (branchless binary search, probing the same
//     boundaries), packing is integer work, lookups copy values.
//   * fp16 conversions are exact operations; the hardware's NaN handling differs from the scalar
//     one (payload, quieting), so SIMD paths patch NaN lanes to the scalar result.
// tests/unit/test_simd.cpp checks every kernel of every available table against the scalar one.
#include <cstddef>
#include <cstdint>

#include "tq/simd/cpu_features.h"

namespace tq::simd {

struct Kernels {
  Level level;

  /// sum_i x[i]^2 in the canonical 16-lane order (see above).
  float (*sum_squares)(const float* x, size_t n);
  /// sum_i a[i] b[i] in the canonical 16-lane order.
  float (*dot)(const float* a, const float* b, size_t n);
  /// out[i] = x[i] * s (out may equal x).
  void (*scale)(const float* x, float s, float* out, size_t n);
  /// out[i] = a[i] * b[i] (out may equal a or b).
  void (*mul)(const float* a, const float* b, float* out, size_t n);
  /// In-place unnormalised fast Walsh-Hadamard transform of x[0:p] (p a power of two, stages
  /// h = 1, 2, 4, ... with x[j] = a + b, x[j + h] = a - b), then x[i] *= scale.
  void (*fwht)(float* x, size_t p, float scale);
  /// out[t][j] = sum_k in[t][k] m[k][j] for n rows, m row-major d x d; each sum starts at +0 and
  /// adds the products in ascending k. in may equal out.
  void (*matmul_rows)(const float* in, float* out, size_t n, const float* m, size_t d);
  /// codes[i] = #{j : boundaries[j] < x[i]} found by the branchless binary search over the
  /// 2^bits - 1 sorted boundaries (NaN -> 0). bits in 1..8.
  void (*quantize)(const float* x, size_t n, const float* boundaries, int bits, uint8_t* codes);
  /// out[i] = table[codes[i]] (table of 2^bits entries, codes < 2^bits).
  void (*lookup)(const uint8_t* codes, size_t n, const float* table, int bits, float* out);
  /// LSB-first bit packing of n codes of `bits` (1..8) bits into ceil(n bits / 8) bytes (see
  /// tq/pack/bitpack.h); high code bits are dropped.
  void (*pack)(const uint8_t* codes, size_t n, int bits, uint8_t* out);
  void (*unpack)(const uint8_t* in, size_t n, int bits, uint8_t* codes);
  /// IEEE fp32 <-> fp16, exactly tq::float_to_fp16 / tq::fp16_to_float (tq/core/half.h).
  void (*f32_to_f16)(const float* in, uint16_t* out, size_t n);
  void (*f16_to_f32)(const uint16_t* in, float* out, size_t n);
  /// ggml q8_0 / q4_0 blocks of 32 elements (layouts in lib/tq/codec/block_formats.cpp):
  /// n_blocks consecutive blocks of x into n_blocks * 34 (q8_0) or 18 (q4_0) bytes, and back.
  /// `stream` (decode): as for rht_decode_rows, the SIMD tables may write `out` with non-temporal
  /// stores (when it is aligned); the values are the same.
  void (*q8_0_encode)(const float* x, size_t n_blocks, uint8_t* out);
  void (*q8_0_decode)(const uint8_t* in, size_t n_blocks, float* out, bool stream);
  void (*q4_0_encode)(const float* x, size_t n_blocks, uint8_t* out);
  void (*q4_0_decode)(const uint8_t* in, size_t n_blocks, float* out, bool stream);
  /// Fused one-round randomized Hadamard encode of n rows x[t] (row-major, p floats each) by their
  /// own norms, p a power of two >= 8 (so a row's p * bits bits are whole bytes). Row t is defined
  /// as the composition
  ///   ss = sum_squares(x[t], p);
  ///   if kRhtMinSumSquares <= ss <= FLT_MAX: norms[t] = sqrt(ss), m = 1 / norms[t]
  ///   else (tiny, huge, non-finite):        norms[t] = 0,        m = 0
  ///   y = scale(x[t], m); y = mul(y, signs); fwht(y, p, fs); quantize(y, bounds, bits) -> pack
  /// into out + t * p * bits / 8; signs must be exactly +-1. Rows with norms[t] == 0 are left to
  /// the caller (a zero row's codes are already right). When `ips` is not null (EDEN), also
  ///   ips[t] = dot(y, lookup(codes, centroids))   (y the rotated unit row, canonical dot order)
  /// AVX-512 and AVX2 keep a row in registers, set their constants up once per call and compute
  /// the next row's norm while transforming this one.
  void (*rht_encode_rows)(const float* x, size_t n, const float* signs, size_t p, float fs, const float* bounds,
                          int bits, uint8_t* out, float* norms, const float* centroids, float* ips);
  /// The inverse direction, row t: unpack(in + t * p * bits / 8) -> lookup(table) -> fwht(., p, fs)
  /// -> mul(signs) -> scale(sc[t]) into out + t * p. `stream`: the caller will not read `out` soon
  /// (a large batch), so AVX-512 may write it with non-temporal stores; values are the same.
  void (*rht_decode_rows)(const uint8_t* in, size_t n, const float* table, int bits, const float* signs, size_t p,
                          float fs, const float* sc, float* out, bool stream);

  /// Uniform (KIVI-style) grid quantization, element-wise with per-element grids:
  ///   codes[i] = 0 if scale[i] == 0, else clamp(floor((x[i] - zero[i]) / scale[i] + 0.5), 0, levels)
  /// (subtract, divide, add, floor: separate roundings; NaN -> 0). levels in 1..255.
  void (*uniform_quantize)(const float* x, size_t n, const float* zero, const float* scale, int levels,
                           uint8_t* codes);
  /// out[i] = zero[i] + float(codes[i]) * scale[i] (product, then sum).
  void (*uniform_dequantize)(const uint8_t* codes, size_t n, const float* zero, const float* scale, float* out);

  // ---- double-precision metric loops (attention and inner-product metrics) ----
  /// out[j] = sum_i q[i] * double(rows[j d + i]) for n rows of d floats, in the canonical 8-lane
  /// double order: lane l accumulates the terms i = l mod 8 in ascending i (product, then sum:
  /// two roundings), then folded 8 -> 4 -> 2 -> 1 (upper half onto lower half).
  void (*dot_rows_f64)(const double* q, const float* rows, size_t n, size_t d, double* out);
  /// o[i] = o[i] + p[j] * double(rows[j d + i]) for rows j = 0, 1, ..., n - 1 in that order (each
  /// a product, then a sum), for every i < d: the attention output sum_j p_j v_j.
  void (*axpy_rows_f64)(double* o, const double* p, const float* rows, size_t n, size_t d);
  /// Four queries at once (q: 4 x d, row-major): out[g ldo + j] = dot_rows_f64(q + g d, row j),
  /// bit for bit (the same canonical order per pair); each row is loaded once for the four.
  void (*dot_rows4_f64)(const double* q, const float* rows, size_t n, size_t d, double* out, size_t ldo);
  /// Four outputs at once (o: 4 x d): for g < 4, o[g d + i] += p[g ldp + j] * double(rows[j d + i])
  /// for rows j ascending, bit for bit axpy_rows_f64 on each g; each row is loaded once.
  void (*axpy_rows4_f64)(double* o, const double* p, size_t ldp, const float* rows, size_t n, size_t d);
};

/// rht_encode_rows / rht_decode_rows as the plain composition of a table's kernels, row by row
/// (used by the scalar and AVX2 tables, and by AVX-512 outside the sizes it keeps in registers).
void rht_encode_rows_composed(const Kernels& k, const float* x, size_t n, const float* signs, size_t p, float fs,
                              const float* bounds, int bits, uint8_t* out, float* norms, const float* centroids,
                              float* ips);
void rht_decode_rows_composed(const Kernels& k, const uint8_t* in, size_t n, const float* table, int bits,
                              const float* signs, size_t p, float fs, const float* sc, float* out);

/// Squared norms below this are not normalised by rht_encode_rows (squares of the entries may
/// have underflowed, so the float sum is not accurate); callers rescale such rows exactly first.
inline constexpr float kRhtMinSumSquares = 0x1.0p-60f;

/// rht_encode_rows' norm rule for one row: norm = sqrt(ss) and the multiplier 1 / norm when ss is
/// in [kRhtMinSumSquares, FLT_MAX], else norm = multiplier = 0 (NaN fails both comparisons).
/// Inline so every ISA file computes the same two IEEE operations.
inline float rht_row_multiplier(float ss, float* norm) {
  if (ss >= kRhtMinSumSquares && ss <= 0x1.fffffep127f) {
    const float r = __builtin_sqrtf(ss);
    *norm = r;
    return 1.0f / r;
  }
  *norm = 0.0f;
  return 0.0f;
}

/// Block size and bytes per block of the q8_0 / q4_0 kernels.
inline constexpr size_t kQBlock = 32;
inline constexpr size_t kQ8_0BlockBytes = 2 + kQBlock;
inline constexpr size_t kQ4_0BlockBytes = 2 + kQBlock / 2;

/// The table of the current level: simd_level() (the best the CPU runs, capped by TQ_SIMD,
/// read once) unless a ScopedLevel is active. Throws tq::Error on a bad TQ_SIMD value.
const Kernels& kernels();

/// The table of one level; throws tq::Error when this CPU cannot run it.
const Kernels& kernels_for(Level level);

/// Forces kernels() to `level` (capped by detected_level()) for its lifetime, process-wide. For
/// tests and benchmarks that compare paths in one process; not for use while codecs run.
class ScopedLevel {
 public:
  explicit ScopedLevel(Level level);
  ~ScopedLevel();
  ScopedLevel(const ScopedLevel&) = delete;
  ScopedLevel& operator=(const ScopedLevel&) = delete;

 private:
  int previous_;
};

// The per-ISA tables (each defined in its own translation unit).
const Kernels& scalar_kernels();
const Kernels& avx2_kernels();
const Kernels& avx512_kernels();

}  // namespace tq::simd
