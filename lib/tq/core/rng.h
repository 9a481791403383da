#pragma once
// Deterministic random numbers, identical on every machine and standard library.
//
// * SplitMix64 mixes seeds: seed_for(run_seed, layer, head, tensor) gives every (layer, head,
//   tensor) its own stream, so a `--layers` subset reproduces the full run's rows exactly.
// * Xoshiro256** is the generator.
// * Gaussians come from our own polar (Marsaglia) sampler, because std::normal_distribution's
//   output is implementation-defined and differs between libstdc++ and libc++.
#include <cmath>
#include <cstdint>
#include <string_view>

namespace tq {

/// One step of SplitMix64 (Steele, Lea, Flood 2014): a bijective 64-bit mixer.
constexpr uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// FNV-1a of a short tag ("k", "v", "q", "rotation", "sketch", ...), for seed derivation.
constexpr uint64_t hash_tag(std::string_view tag) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : tag) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

/// Combine a parent seed with one more value (order matters).
constexpr uint64_t seed_combine(uint64_t seed, uint64_t value) {
  return splitmix64(seed ^ splitmix64(value + 0x632BE59BD9B4E019ull));
}

/// The seed of one (layer, head, tensor) stream derived from the run seed.
constexpr uint64_t seed_for(uint64_t run_seed, int64_t layer, int64_t head, std::string_view tensor) {
  uint64_t s = seed_combine(run_seed, static_cast<uint64_t>(layer));
  s = seed_combine(s, static_cast<uint64_t>(head));
  return seed_combine(s, hash_tag(tensor));
}

/// Xoshiro256** 1.0 (Blackman & Vigna), seeded through SplitMix64.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    uint64_t x = seed;
    for (auto& w : s_) {
      x += 0x9E3779B97F4A7C15ull;
      uint64_t z = x;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      w = z ^ (z >> 31);
    }
  }

  uint64_t next_u64() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  /// Uniform integer in [0, n) by rejection (exactly uniform).
  uint64_t below(uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
      x = next_u64();
    } while (x >= limit);
    return x % n;
  }

  /// A random sign, +1 or -1.
  float sign() { return (next_u64() >> 63) ? -1.0f : 1.0f; }

  /// Standard normal N(0, 1) by Marsaglia's polar method (uses only sqrt and log).
  double gaussian() {
    if (have_spare_) {
      have_spare_ = false;
      return spare_;
    }
    double u, v, s;
    do {
      u = 2.0 * uniform() - 1.0;
      v = 2.0 * uniform() - 1.0;
      s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    const double m = std::sqrt(-2.0 * std::log(s) / s);
    spare_ = v * m;
    have_spare_ = true;
    return u * m;
  }

 private:
  static constexpr uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4]{};
  double spare_ = 0.0;
  bool have_spare_ = false;
};

}  // namespace tq
