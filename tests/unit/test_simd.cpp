// Every SIMD kernel table against the scalar reference, bit for bit (random and edge inputs: odd
// lengths, non-powers of two, zeros, huge and tiny values, infinities, NaN payloads), and whole
// codecs encoded/decoded on every forced path and at 1 and 2 threads.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "tq/codec/codec.h"
#include "tq/core/error.h"
#include "tq/simd/kernels.h"

using tq::simd::Kernels;
using tq::simd::Level;

namespace {

/// The SIMD levels this CPU runs (the scalar table is the reference).
std::vector<Level> simd_levels() {
  std::vector<Level> out;
  for (Level l : {Level::Avx2, Level::Avx512})
    if (static_cast<int>(l) <= static_cast<int>(tq::simd::detected_level())) out.push_back(l);
  return out;
}

const Kernels& ref() { return tq::simd::scalar_kernels(); }

bool same_bits(const float* a, const float* b, size_t n) { return n == 0 || std::memcmp(a, b, n * sizeof(float)) == 0; }
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && same_bits(a.data(), b.data(), a.size());
}

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// Random floats of mixed magnitude with zeros, -0, huge and tiny (subnormal) values.
std::vector<float> mixed(size_t n, std::mt19937& g, bool specials) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> kind(0, 19);
  std::vector<float> v(n);
  for (auto& x : v) {
    switch (specials ? kind(g) : 0) {
      case 1: x = 0.0f; break;
      case 2: x = -0.0f; break;
      case 3: x = nd(g) * 1e30f; break;
      case 4: x = nd(g) * 1e-40f; break;  // subnormal
      case 5: x = nd(g) * 1e-20f; break;  // square underflows
      default: x = nd(g); break;
    }
  }
  return v;
}

const std::vector<size_t> kLengths = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 96, 100, 127, 128, 129, 257, 1000};

}  // namespace

TEST_CASE("simd: the dispatch table names its level and TQ_SIMD caps it") {
  CHECK(ref().level == Level::Scalar);
  for (Level l : simd_levels()) CHECK(tq::simd::kernels_for(l).level == l);
  {
    tq::simd::ScopedLevel forced(Level::Scalar);
    CHECK(tq::simd::kernels().level == Level::Scalar);
  }
  if (tq::simd::detected_level() != Level::Avx512)
    CHECK_THROWS_AS(tq::simd::kernels_for(Level::Avx512), tq::Error);
}

TEST_CASE("simd: sum_squares, dot, scale, mul are bit-identical to scalar") {
  std::mt19937 g(1);
  for (Level l : simd_levels()) {
    const Kernels& k = tq::simd::kernels_for(l);
    CAPTURE(tq::simd::level_name(l));
    for (size_t n : kLengths) {
      CAPTURE(n);
      for (int rep = 0; rep < 4; ++rep) {
        const auto a = mixed(n, g, rep > 0), b = mixed(n, g, rep > 1);
        const float s1 = ref().sum_squares(a.data(), n), s2 = k.sum_squares(a.data(), n);
        CHECK(same_bits(&s1, &s2, 1));
        const float d1 = ref().dot(a.data(), b.data(), n), d2 = k.dot(a.data(), b.data(), n);
        CHECK(same_bits(&d1, &d2, 1));
        std::vector<float> o1(n), o2(n);
        ref().scale(a.data(), 0.37f, o1.data(), n);
        k.scale(a.data(), 0.37f, o2.data(), n);
        CHECK(same_bits(o1, o2));
        ref().mul(a.data(), b.data(), o1.data(), n);
        k.mul(a.data(), b.data(), o2.data(), n);
        CHECK(same_bits(o1, o2));
      }
    }
    // overflow to inf and NaN propagate the same way
    std::vector<float> big(33, 3e38f);
    big[5] = std::numeric_limits<float>::quiet_NaN();
    const float b1 = ref().sum_squares(big.data(), big.size()), b2 = k.sum_squares(big.data(), big.size());
    CHECK(std::isnan(b1));
    CHECK(std::isnan(b2));
  }
}

TEST_CASE("simd: the canonical summation order is the documented one") {
  // 16 partial sums by i mod 16, folded upper half onto lower half: check against an
  // independent evaluation of that tree, on data where the order changes the result.
  std::mt19937 g(2);
  std::vector<float> x(77);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& v : x) v = u(g) * std::pow(10.0f, static_cast<float>(static_cast<int>(g() % 9)) - 4.0f);
  float acc[16] = {};
  for (size_t i = 0; i < x.size(); ++i) acc[i % 16] = acc[i % 16] + x[i] * x[i];
  const float s8[8] = {acc[0] + acc[8], acc[1] + acc[9], acc[2] + acc[10], acc[3] + acc[11],
                       acc[4] + acc[12], acc[5] + acc[13], acc[6] + acc[14], acc[7] + acc[15]};
  const float s4[4] = {s8[0] + s8[4], s8[1] + s8[5], s8[2] + s8[6], s8[3] + s8[7]};
  const float expect = (s4[0] + s4[2]) + (s4[1] + s4[3]);
  for (Level l : {Level::Scalar, Level::Avx2, Level::Avx512}) {
    if (static_cast<int>(l) > static_cast<int>(tq::simd::detected_level())) continue;
    const float got = tq::simd::kernels_for(l).sum_squares(x.data(), x.size());
    CHECK(same_bits(&got, &expect, 1));
  }
}

TEST_CASE("simd: fwht and matmul_rows are bit-identical to scalar") {
  std::mt19937 g(3);
  for (Level l : simd_levels()) {
    const Kernels& k = tq::simd::kernels_for(l);
    CAPTURE(tq::simd::level_name(l));
    for (size_t p = 1; p <= 2048; p *= 2) {
      CAPTURE(p);
      auto a = mixed(p, g, true), b = a;
      ref().fwht(a.data(), p, 0.125f);
      k.fwht(b.data(), p, 0.125f);
      CHECK(same_bits(a, b));
    }
    for (size_t d : {1, 3, 8, 17, 31, 64, 96, 128, 130}) {
      for (size_t n : {1, 2, 3, 4, 5, 7, 9}) {
        CAPTURE(d);
        CAPTURE(n);
        const auto m = mixed(d * d, g, false);
        const auto in = mixed(n * d, g, true);
        std::vector<float> o1(n * d), o2(n * d);
        ref().matmul_rows(in.data(), o1.data(), n, m.data(), d);
        k.matmul_rows(in.data(), o2.data(), n, m.data(), d);
        CHECK(same_bits(o1, o2));
        auto inplace = in;  // in == out
        k.matmul_rows(inplace.data(), inplace.data(), n, m.data(), d);
        CHECK(same_bits(o1, inplace));
      }
    }
  }
}

TEST_CASE("simd: quantize (boundary search) and lookup are bit-identical to scalar") {
  std::mt19937 g(4);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  for (Level l : simd_levels()) {
    const Kernels& k = tq::simd::kernels_for(l);
    CAPTURE(tq::simd::level_name(l));
    for (int bits = 1; bits <= 8; ++bits) {
      CAPTURE(bits);
      const size_t K = size_t{1} << bits;
      std::vector<float> table(K);
      for (auto& c : table) c = nd(g);
      std::sort(table.begin(), table.end());
      std::vector<float> bounds(K - 1);
      for (size_t i = 0; i + 1 < K; ++i) bounds[i] = 0.5f * (table[i] + table[i + 1]);
      for (size_t n : kLengths) {
        auto x = mixed(n, g, true);
        for (auto& v : x) v *= 0.1f;
        // exact boundaries (ties), infinities and NaN
        for (size_t i = 0; i < n; i += 5) x[i] = bounds[(i / 5) % bounds.size()];
        if (n > 3) {
          x[1] = std::numeric_limits<float>::infinity();
          x[2] = -std::numeric_limits<float>::infinity();
          x[3] = std::numeric_limits<float>::quiet_NaN();
        }
        std::vector<uint8_t> c1(n), c2(n);
        ref().quantize(x.data(), n, bounds.data(), bits, c1.data());
        k.quantize(x.data(), n, bounds.data(), bits, c2.data());
        CHECK(c1 == c2);
        // the scalar reference is the count of boundaries strictly below x
        for (size_t i = 0; i < n; ++i) {
          size_t cnt = 0;
          for (float b : bounds) cnt += b < x[i] ? 1 : 0;
          if (c1[i] != cnt) {
            CHECK(c1[i] == cnt);
            break;
          }
        }
        std::vector<float> o1(n), o2(n);
        ref().lookup(c1.data(), n, table.data(), bits, o1.data());
        k.lookup(c1.data(), n, table.data(), bits, o2.data());
        CHECK(same_bits(o1, o2));
      }
    }
  }
}

TEST_CASE("simd: fused RHT row kernels equal their composition and the scalar table, bit for bit") {
  // rht_encode_rows / rht_decode_rows against (a) the scalar table and (b) the composition of the
  // same table's own kernels, for every p the AVX-512 path keeps in registers (16..256), the
  // composed sizes around them (8, 512), bits 1..8. Rows: ordinary ones of different scales, a
  // zero row, a row whose squares underflow (norm 0 by the kernel's rule) and one whose sum of
  // squares overflows (norm 0 too); the norms must match bit for bit as well.
  std::mt19937 g(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (Level l : simd_levels()) {
    const Kernels& k = tq::simd::kernels_for(l);
    CAPTURE(tq::simd::level_name(l));
    for (size_t p : {8, 16, 32, 64, 128, 256, 512}) {
      std::vector<float> signs(p);
      for (auto& s : signs) s = (g() & 1u) != 0 ? 1.0f : -1.0f;
      const float fs = 1.0f / std::sqrt(static_cast<float>(p));
      for (int bits = 1; bits <= 8; ++bits) {
        CAPTURE(p);
        CAPTURE(bits);
        const size_t K = size_t{1} << bits;
        std::vector<float> table(K);
        for (auto& c : table) c = nd(g) / std::sqrt(static_cast<float>(p));
        std::sort(table.begin(), table.end());
        std::vector<float> bounds(K - 1);
        for (size_t i = 0; i + 1 < K; ++i) bounds[i] = 0.5f * (table[i] + table[i + 1]);
        const size_t n = 7;
        auto x = mixed(n * p, g, false);
        const std::vector<float> row_scale = {1.0f, 0.0f, 1e-25f, 1e25f, 3.0f, 1e-3f, 40.0f};
        for (size_t t = 0; t < n; ++t)
          for (size_t i = 0; i < p; ++i) x[t * p + i] *= row_scale[t];
        const size_t rb = p * static_cast<size_t>(bits) / 8;
        std::vector<uint8_t> e1(n * rb + 4, 0xCD), e2(n * rb + 4, 0xCD), e3(n * rb + 4, 0xCD);
        std::vector<float> r1(n, -1.0f), r2(n, -2.0f), r3(n, -3.0f), i1(n, -1.0f), i2(n, -2.0f), i3(n, -3.0f);
        ref().rht_encode_rows(x.data(), n, signs.data(), p, fs, bounds.data(), bits, e1.data(), r1.data(), nullptr,
                              nullptr);
        k.rht_encode_rows(x.data(), n, signs.data(), p, fs, bounds.data(), bits, e2.data(), r2.data(), nullptr, nullptr);
        tq::simd::rht_encode_rows_composed(k, x.data(), n, signs.data(), p, fs, bounds.data(), bits, e3.data(),
                                           r3.data(), nullptr, nullptr);
        CHECK(e1 == e2);  // guard bytes past the end included
        CHECK(e2 == e3);
        CHECK(same_bits(r1, r2));
        CHECK(same_bits(r2, r3));
        // with EDEN's <y, c>: the same codes and norms, and the inner products bit for bit
        std::vector<uint8_t> f1(n * rb + 4, 0xCD), f2(n * rb + 4, 0xCD);
        ref().rht_encode_rows(x.data(), n, signs.data(), p, fs, bounds.data(), bits, f1.data(), r3.data(), table.data(),
                              i1.data());
        k.rht_encode_rows(x.data(), n, signs.data(), p, fs, bounds.data(), bits, f2.data(), r3.data(), table.data(),
                          i2.data());
        tq::simd::rht_encode_rows_composed(k, x.data(), n, signs.data(), p, fs, bounds.data(), bits, f2.data(),
                                           r3.data(), table.data(), i3.data());
        CHECK(f1 == e1);
        CHECK(f2 == e1);
        CHECK(same_bits(i1, i2));
        CHECK(same_bits(i1, i3));
        CHECK(r1[1] == 0.0f);  // zero, underflowing and overflowing rows are left to the caller
        CHECK(r1[2] == 0.0f);
        CHECK(r1[3] == 0.0f);
        CHECK(r1[0] > 0.0f);
        const std::vector<float> sc = {1.0f, 0.25f, 3.0f, -2.0f, 1e-3f, 0.0f, 7.0f};
        std::vector<float> d1(n * p);
        ref().rht_decode_rows(e1.data(), n, table.data(), bits, signs.data(), p, fs, sc.data(), d1.data(), false);
        for (bool stream : {false, true}) {
          CAPTURE(stream);
          // 64-byte aligned output (non-temporal stores need whole lines) and a misaligned one
          std::vector<float> buf(n * p + 32);
          float* aligned = buf.data() + (64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64 / sizeof(float);
          for (float* out : {aligned, aligned + 1}) {
            k.rht_decode_rows(e1.data(), n, table.data(), bits, signs.data(), p, fs, sc.data(), out, stream);
            CHECK(same_bits(d1.data(), out, n * p));
          }
        }
        std::vector<float> d3(n * p);
        tq::simd::rht_decode_rows_composed(k, e1.data(), n, table.data(), bits, signs.data(), p, fs, sc.data(),
                                           d3.data());
        CHECK(same_bits(d1, d3));
      }
    }
  }
}

TEST_CASE("simd: uniform grid (KIVI) quantize / dequantize are bit-identical to scalar and to the rule") {
  std::mt19937 g(13);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (Level l : simd_levels()) {
    const Kernels& k = tq::simd::kernels_for(l);
    CAPTURE(tq::simd::level_name(l));
    for (int levels : {1, 3, 7, 15, 255}) {
      for (size_t n : kLengths) {
        CAPTURE(levels);
        CAPTURE(n);
        std::vector<float> x(n), zero(n), scale(n);
        for (size_t i = 0; i < n; ++i) {
          zero[i] = nd(g);
          scale[i] = std::fabs(nd(g)) * 0.3f;
          x[i] = zero[i] + scale[i] * (nd(g) * static_cast<float>(levels) * 0.5f + static_cast<float>(levels) * 0.5f);
          switch (i % 11) {
            case 1: scale[i] = 0.0f; break;   // degenerate group: code 0
            case 2: scale[i] = -0.0f; break;
            case 3: x[i] = std::numeric_limits<float>::quiet_NaN(); break;
            case 4: x[i] = std::numeric_limits<float>::infinity(); break;
            case 5: x[i] = -std::numeric_limits<float>::infinity(); break;
            case 6: x[i] = zero[i] + 2.5f * scale[i]; break;  // near a tie
            default: break;
          }
        }
        std::vector<uint8_t> c1(n), c2(n);
        ref().uniform_quantize(x.data(), n, zero.data(), scale.data(), levels, c1.data());
        k.uniform_quantize(x.data(), n, zero.data(), scale.data(), levels, c2.data());
        CHECK(c1 == c2);
        for (size_t i = 0; i < n; ++i) {  // the rule, written out
          double want = 0.0;
          if (scale[i] != 0.0f) {
            const float v = std::floor((x[i] - zero[i]) / scale[i] + 0.5f);
            want = v > 0.0f ? std::min<double>(v, levels) : 0.0;
          }
          if (c1[i] != static_cast<uint8_t>(want)) {
            CHECK(static_cast<int>(c1[i]) == static_cast<int>(want));
            break;
          }
        }
        std::vector<float> o1(n), o2(n);
        ref().uniform_dequantize(c1.data(), n, zero.data(), scale.data(), o1.data());
        k.uniform_dequantize(c1.data(), n, zero.data(), scale.data(), o2.data());
        CHECK(same_bits(o1, o2));
      }
    }
  }
}

TEST_CASE("simd: double-precision metric kernels (dot_rows[4]_f64, axpy_rows[4]_f64) are bit-identical to scalar") {
  std::mt19937 g(12);
  for (Level l : simd_levels()) {
    const Kernels& k = tq::simd::kernels_for(l);
    CAPTURE(tq::simd::level_name(l));
    for (size_t d : {1, 3, 7, 8, 9, 15, 64, 100, 128, 130, 256}) {
      for (size_t n : {1, 2, 3, 4, 5, 8, 9}) {
        CAPTURE(d);
        CAPTURE(n);
        const auto qf = mixed(d, g, true);
        std::vector<double> q(qf.begin(), qf.end());
        const auto rows = mixed(n * d, g, true);
        std::vector<double> o1(n, -1.0), o2(n, -2.0);
        ref().dot_rows_f64(q.data(), rows.data(), n, d, o1.data());
        k.dot_rows_f64(q.data(), rows.data(), n, d, o2.data());
        CHECK(std::memcmp(o1.data(), o2.data(), n * sizeof(double)) == 0);
        // and the scalar reference is the canonical order written out
        double acc[8] = {};
        for (size_t i = 0; i < d; ++i) acc[i % 8] += q[i] * static_cast<double>(rows[i]);
        const double c = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
        if (std::isfinite(c)) CHECK(o1[0] == c);
        std::vector<double> w(n);
        for (size_t j = 0; j < n; ++j) w[j] = 0.37 / static_cast<double>(j + 1);
        std::vector<double> a1(q), a2(q), a3(q);
        ref().axpy_rows_f64(a1.data(), w.data(), rows.data(), n, d);
        k.axpy_rows_f64(a2.data(), w.data(), rows.data(), n, d);
        CHECK(std::memcmp(a1.data(), a2.data(), d * sizeof(double)) == 0);
        for (size_t j = 0; j < n; ++j)  // row by row, in order: the definition
          for (size_t i = 0; i < d; ++i) a3[i] += w[j] * static_cast<double>(rows[j * d + i]);
        CHECK(std::memcmp(a1.data(), a3.data(), d * sizeof(double)) == 0);
        // four queries at once equal the single-query kernels, pair by pair and bit for bit
        std::vector<double> q4(4 * d), w4(4 * (n + 3));
        for (size_t i = 0; i < 4 * d; ++i) q4[i] = static_cast<double>(mixed(1, g, true)[0]);
        for (auto& v : w4) v = static_cast<double>(mixed(1, g, false)[0]);
        const size_t ld = n + 3;
        std::vector<double> r4(4 * ld, -7.0), r1(n);
        k.dot_rows4_f64(q4.data(), rows.data(), n, d, r4.data(), ld);
        std::vector<double> o4(4 * d, 0.5), os(d);
        k.axpy_rows4_f64(o4.data(), w4.data(), ld, rows.data(), n, d);
        for (size_t gq = 0; gq < 4; ++gq) {
          ref().dot_rows_f64(q4.data() + gq * d, rows.data(), n, d, r1.data());
          CHECK(std::memcmp(r4.data() + gq * ld, r1.data(), n * sizeof(double)) == 0);
          CHECK(r4[gq * ld + n] == -7.0);  // nothing written past n
          std::fill(os.begin(), os.end(), 0.5);
          ref().axpy_rows_f64(os.data(), w4.data() + gq * ld, rows.data(), n, d);
          CHECK(std::memcmp(o4.data() + gq * d, os.data(), d * sizeof(double)) == 0);
        }
      }
    }
  }
}

TEST_CASE("simd: bit pack/unpack are identical to scalar for 1..8 bits") {
  std::mt19937 g(5);
  for (Level l : simd_levels()) {
    const Kernels& k = tq::simd::kernels_for(l);
    CAPTURE(tq::simd::level_name(l));
    for (int bits = 1; bits <= 8; ++bits) {
      for (size_t n = 0; n < 80; ++n) {
        CAPTURE(bits);
        CAPTURE(n);
        std::vector<uint8_t> codes(n);
        for (auto& c : codes) c = static_cast<uint8_t>(g());  // high bits must be dropped
        const size_t nb = (n * static_cast<size_t>(bits) + 7) / 8;
        std::vector<uint8_t> p1(nb + 8, 0xAB), p2(nb + 8, 0xAB);
        ref().pack(codes.data(), n, bits, p1.data());
        k.pack(codes.data(), n, bits, p2.data());
        CHECK(p1 == p2);  // including the guard bytes past the end: untouched
        std::vector<uint8_t> u1(n), u2(n);
        ref().unpack(p1.data(), n, bits, u1.data());
        k.unpack(p1.data(), n, bits, u2.data());
        CHECK(u1 == u2);
        for (size_t i = 0; i < n; ++i) CHECK(u1[i] == (codes[i] & ((1u << bits) - 1u)));
      }
    }
  }
}

TEST_CASE("simd: fp16 conversions are bit-identical to scalar (every fp16, NaN payloads)") {
  std::vector<uint16_t> all(65536 + 5);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  std::mt19937 g(6);
  std::vector<float> f(100003);
  for (auto& v : f) v = from_bits(static_cast<uint32_t>(g()));  // every class, incl. NaN payloads
  const float special[] = {65504.0f, 65519.99f, 65520.0f, 1e-8f, 5.96e-8f, 2.98e-8f, -0.0f, 6.1e-5f,
                           std::numeric_limits<float>::infinity(), from_bits(0x7F800001u), from_bits(0xFFC12345u)};
  std::copy(std::begin(special), std::end(special), f.begin());
  for (Level l : simd_levels()) {
    const Kernels& k = tq::simd::kernels_for(l);
    CAPTURE(tq::simd::level_name(l));
    std::vector<float> a(all.size()), b(all.size());
    ref().f16_to_f32(all.data(), a.data(), all.size());
    k.f16_to_f32(all.data(), b.data(), all.size());
    CHECK(same_bits(a, b));
    std::vector<uint16_t> h1(f.size()), h2(f.size());
    ref().f32_to_f16(f.data(), h1.data(), f.size());
    k.f32_to_f16(f.data(), h2.data(), f.size());
    CHECK(h1 == h2);
  }
}

TEST_CASE("simd: q8_0 and q4_0 block kernels are bit-identical to scalar") {
  std::mt19937 g(7);
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (Level l : simd_levels()) {
    const Kernels& k = tq::simd::kernels_for(l);
    CAPTURE(tq::simd::level_name(l));
    const size_t nb = 64;
    auto x = mixed(nb * 32, g, true);
    // edge blocks: all zero, all -0, ties of magnitude, huge (fp16 scale saturates), NaN, inf,
    // values that land exactly on .5 after scaling
    for (size_t j = 0; j < 32; ++j) {
      x[0 * 32 + j] = 0.0f;
      x[1 * 32 + j] = -0.0f;
      x[2 * 32 + j] = (j % 2 ? -1.0f : 1.0f) * static_cast<float>(j % 3);
      x[3 * 32 + j] = 1e12f * static_cast<float>(j) - 3e12f;
      x[4 * 32 + j] = j == 7 ? nan : static_cast<float>(j);
      x[5 * 32 + j] = j == 9 ? -inf : static_cast<float>(j);
      x[6 * 32 + j] = nan;
      x[7 * 32 + j] = static_cast<float>(j) * 0.5f - 8.0f;
      x[8 * 32 + j] = 127.0f * (static_cast<float>(j) + 0.5f) / 32.0f;
    }
    std::vector<uint8_t> e1(nb * tq::simd::kQ8_0BlockBytes), e2(e1.size());
    ref().q8_0_encode(x.data(), nb, e1.data());
    k.q8_0_encode(x.data(), nb, e2.data());
    CHECK(e1 == e2);
    std::vector<float> d1(nb * 32), d2(nb * 32);
    ref().q8_0_decode(e1.data(), nb, d1.data(), false);
    k.q8_0_decode(e1.data(), nb, d2.data(), false);
    CHECK(same_bits(d1, d2));
    // streaming stores into a 64-byte aligned output and into a misaligned one: the same values
    std::vector<float> buf(nb * 32 + 32);
    float* al = buf.data() + (64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64 / sizeof(float);
    for (float* o : {al, al + 1}) {
      k.q8_0_decode(e1.data(), nb, o, true);
      CHECK(same_bits(d1.data(), o, nb * 32));
    }
    std::vector<uint8_t> f1(nb * tq::simd::kQ4_0BlockBytes), f2(f1.size());
    ref().q4_0_encode(x.data(), nb, f1.data());
    k.q4_0_encode(x.data(), nb, f2.data());
    CHECK(f1 == f2);
    ref().q4_0_decode(f1.data(), nb, d1.data(), false);
    k.q4_0_decode(f1.data(), nb, d2.data(), false);
    CHECK(same_bits(d1, d2));
    for (float* o : {al, al + 1}) {
      k.q4_0_decode(f1.data(), nb, o, true);
      CHECK(same_bits(d1.data(), o, nb * 32));
    }
    // decoding arbitrary bytes (NaN / signalling-NaN scales included) agrees too
    std::vector<uint8_t> junk(nb * tq::simd::kQ8_0BlockBytes);
    for (auto& c : junk) c = static_cast<uint8_t>(g());
    junk[0] = 0x01;
    junk[1] = 0x7C;  // fp16 sNaN scale
    ref().q8_0_decode(junk.data(), nb, d1.data(), false);
    k.q8_0_decode(junk.data(), nb, d2.data(), true);
    CHECK(same_bits(d1, d2));
  }
}

namespace {

struct Coded {
  std::vector<uint8_t> bytes;
  std::vector<float> decoded;
};

Coded run_codec(const std::string& spec, size_t d, const std::vector<float>& x) {
  tq::CodecContext ctx;
  ctx.dim = d;
  ctx.seed = 12345;
  ctx.tensor = "k";
  auto codec = tq::make_codec(spec, ctx);
  const size_t n = x.size() / d;
  if (codec->needs_training()) codec->train(x.data(), n);
  Coded c;
  const tq::Encoded e = codec->encode(x.data(), n, nullptr);
  c.bytes = e.bytes;
  c.decoded.resize(n * d);
  codec->decode(e, c.decoded.data());
  return c;
}

/// Rows with norms across the whole range: escapes (fp16 cannot hold), zero rows, tiny rows.
std::vector<float> codec_input(size_t n, size_t d, std::mt19937& g) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(n * d);
  for (size_t t = 0; t < n; ++t) {
    float s = 1.0f;
    switch (t % 11) {
      case 3: s = 1e6f; break;     // norm > 65504: escaped fp16 scale
      case 5: s = 0.0f; break;     // zero row
      case 7: s = 1e-25f; break;   // squares underflow: slow normalisation path
      case 9: s = 1e19f; break;    // sum of squares overflows float
      default: s = 1.0f + static_cast<float>(t % 4); break;
    }
    for (size_t i = 0; i < d; ++i) x[t * d + i] = nd(g) * s;
  }
  return x;
}

}  // namespace

TEST_CASE("simd: codecs encode and decode identically on every forced path and thread count") {
  const std::vector<std::string> specs = {"tq-mse:4",         "hr,tq-mse:4",   "hr,tq-mse:2",    "tq-mse:3,rotation=hr",
                                          "eden:3",           "hr,eden:4",     "tq-mse:8,norm=fp32", "tq-mse:1",
                                          "tq-mse:5,law=gaussian", "tq-prod:3", "q4_0",          "q8_0",
                                          "hr,q4_0",          "kivi:2,group=8"};
  std::mt19937 g(8);
  for (size_t d : {64, 128, 96, 40}) {
    const size_t n = 203;  // not a multiple of the codec's row blocks
    const auto x = codec_input(n, d, g);
    for (const auto& spec : specs) {
      CAPTURE(spec);
      CAPTURE(d);
      if ((spec.find("q4_0") != std::string::npos || spec.find("q8_0") != std::string::npos) && d % 32 != 0) continue;
      Coded base;
      {
        tq::simd::ScopedLevel forced(Level::Scalar);
        base = run_codec(spec, d, x);
      }
      for (Level l : simd_levels()) {
        CAPTURE(tq::simd::level_name(l));
        tq::simd::ScopedLevel forced(l);
        const Coded c = run_codec(spec, d, x);
        CHECK(c.bytes == base.bytes);
        CHECK(same_bits(c.decoded, base.decoded));
      }
    }
  }
  // large batch (parallel path) at 1 and 2 threads
  const size_t d = 128, n = 4099;
  const auto x = codec_input(n, d, g);
  const int saved = omp_get_max_threads();
  for (const std::string spec : {"hr,tq-mse:4", "eden:2", "q4_0", "q8_0"}) {
    CAPTURE(spec);
    omp_set_num_threads(1);
    const Coded one = run_codec(spec, d, x);
    omp_set_num_threads(2);
    const Coded two = run_codec(spec, d, x);
    CHECK(one.bytes == two.bytes);
    CHECK(same_bits(one.decoded, two.decoded));
  }
  omp_set_num_threads(saved);
}

TEST_CASE("simd: an error inside a parallel encode reaches the caller, naming the first bad row") {
  const size_t d = 128, n = 5000;
  std::mt19937 g(9);
  auto x = codec_input(n, d, g);
  x[4321 * d + 5] = std::numeric_limits<float>::quiet_NaN();
  x[1234 * d + 7] = std::numeric_limits<float>::infinity();
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    tq::CodecContext ctx;
    ctx.dim = d;
    ctx.seed = 1;
    auto codec = tq::make_codec("hr,tq-mse:4", ctx);
    std::string msg;
    try {
      (void)codec->encode(x.data(), n, nullptr);
    } catch (const tq::Error& e) {
      msg = e.what();
    }
    CHECK(msg.find("row 1234 ") != std::string::npos);
  }
  omp_set_num_threads(saved);
}
