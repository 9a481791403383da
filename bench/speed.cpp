// tq_bench: encode / decode throughput of tq's codecs, and the machine's copy bandwidth measured
// in the same run (a benchmark program, not a test; bench/run_speed.sh runs it).
//
// For d in {64, 128}, b in {2, 3, 4}, rotation in {hr, haar}, codecs tq-mse, eden, tq-prod (with
// the rotation), kivi and q4_0 (no rotation; q4_0 is 4-bit only): throughput in M vectors/s at 1
// and 2 OpenMP threads on
//   * an L2-resident batch of 1024 vectors (encode and decode repeated until >= --min-time s), and
//   * a DRAM batch of --dram-n vectors (default 1M; best of --dram-reps runs).
// "both" is N / (t_encode + t_decode). For the DRAM batch the bytes moved are counted as
// N (4 d + E) for encode (read fp32, write the encoding of E bytes per vector) and N (E + 4 d) for
// decode, and compared with the same-run stream copy (memcpy of a 256 MiB buffer per thread
// count, counting read + write bytes).
//
// Targets (issue 6) for hr,tq-mse:4 at d = 128: L2 batch, 1 thread, N / (t_enc + t_dec) >= 10 M/s;
// DRAM batch, encode + decode at >= 50% of the copy bandwidth.
//
// Options: --quick (d = 128, b = 4 only, smaller DRAM batch), --dram-n N, --min-time S,
// --threads 1,2, --no-dram, --filter SUBSTRING (only specs containing it), --simd-compare (the
// target codec on every SIMD level this CPU runs). TQ_SIMD=scalar|avx2|avx512 caps the level.
#include <malloc.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tq/codec/codec.h"
#include "tq/core/error.h"
#include "tq/simd/cpu_features.h"
#include "tq/simd/kernels.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Options {
  bool quick = false;
  bool dram = true;
  bool simd_compare = false;
  size_t dram_n = size_t{1} << 20;
  int dram_reps = 2;
  double min_time = 0.15;
  std::vector<int> threads = {1, 2};
  std::string filter;
};

/// Copy bandwidth in GB/s (read + write bytes) with `threads` threads, best of 5.
double copy_bandwidth(int threads) {
  const size_t bytes = size_t{256} << 20;
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  double best = 0.0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = Clock::now();
#pragma omp parallel num_threads(threads)
    {
      const size_t nt = static_cast<size_t>(omp_get_num_threads());
      const size_t id = static_cast<size_t>(omp_get_thread_num());
      const size_t chunk = bytes / nt;
      std::memcpy(dst.data() + id * chunk, src.data() + id * chunk, chunk);
    }
    const double t = seconds_since(t0);
    best = std::max(best, 2.0 * static_cast<double>(bytes) / t / 1e9);
  }
  if (dst[bytes / 2] != 1) std::printf("(copy check failed)\n");
  return best;
}

/// A float buffer on 64-byte (cache line) boundaries, as a real KV cache would be allocated: the
/// decoders write whole lines with non-temporal stores only to aligned outputs.
struct Floats {
  std::unique_ptr<float[], decltype(&std::free)> p{nullptr, &std::free};
  size_t n = 0;
  Floats() = default;
  explicit Floats(size_t count) : p(static_cast<float*>(std::aligned_alloc(64, (count * sizeof(float) + 63) / 64 * 64)), &std::free), n(count) {
    if (!p) throw std::bad_alloc();
    std::fill(p.get(), p.get() + n, 0.0f);
  }
  float* data() const { return p.get(); }
  auto begin() const { return p.get(); }
  auto end() const { return p.get() + n; }
};

Floats gaussian(size_t n, uint64_t seed) {
  Floats x(n);
  std::mt19937_64 g(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& v : x) v = nd(g);
  return x;
}

struct Timing {
  double enc = 0.0, dec = 0.0;  // seconds per vector
  size_t bytes_per_vec = 0;     // encoding size / N (rounded)
};

/// Best per-vector encode and decode time on x [n, d].
Timing time_codec(const tq::Codec& codec, const float* x, size_t n, float* out, double min_time, int min_reps) {
  Timing t;
  t.enc = t.dec = 1e30;
  const size_t d = codec.dim();
  double spent = 0.0;
  for (int rep = 0; rep < 5000 && (rep < min_reps || spent < min_time); ++rep) {
    auto t0 = Clock::now();
    tq::Encoded e = codec.encode(x, n, nullptr);
    const double te = seconds_since(t0);
    t0 = Clock::now();
    codec.decode(e, out);
    const double td = seconds_since(t0);
    spent += te + td;
    t.enc = std::min(t.enc, te / static_cast<double>(n));
    t.dec = std::min(t.dec, td / static_cast<double>(n));
    t.bytes_per_vec = (e.bytes.size() + n / 2) / n;
  }
  (void)d;
  return t;
}

double mvps(double sec_per_vec) { return 1e-6 / sec_per_vec; }

/// DRAM batch of codecs slower than 1 M vectors/s in L2 (marked "*" in the table).
constexpr size_t kSlowDramN = size_t{1} << 17;

struct Row {
  std::string spec;
  size_t d = 0;
  int threads = 0;
  Timing l2, dram;
  bool has_dram = false;
  size_t dram_n = 0;
};

void print_header(bool dram) {
  std::printf("%-22s %4s %3s %5s | %8s %8s %8s", "codec", "d", "thr", "B/vec", "L2 enc", "L2 dec", "L2 both");
  if (dram) std::printf(" | %8s %8s %8s %7s %6s", "DRAM enc", "DRAM dec", "both", "GB/s", "%copy");
  std::printf("\n");
}

void print_row(const Row& r, const double* copy_bw) {
  std::printf("%-22s %4zu %3d %5zu | %8.2f %8.2f %8.2f", r.spec.c_str(), r.d, r.threads, r.l2.bytes_per_vec,
              mvps(r.l2.enc), mvps(r.l2.dec), mvps(r.l2.enc + r.l2.dec));
  if (r.has_dram) {
    const double moved = 2.0 * static_cast<double>(4 * r.d + r.dram.bytes_per_vec);  // enc + dec per vector
    const double gbs = moved / (r.dram.enc + r.dram.dec) / 1e9;
    std::printf(" | %8.2f %8.2f %8.2f %7.2f %5.1f%%%s", mvps(r.dram.enc), mvps(r.dram.dec), mvps(r.dram.enc + r.dram.dec),
                gbs, 100.0 * gbs / copy_bw[r.threads], r.dram_n < kSlowDramN * 2 ? " *" : "");
  }
  std::printf("\n");
  std::fflush(stdout);
}

std::vector<int> parse_list(const char* s) {
  std::vector<int> out;
  const std::string str(s);
  size_t p = 0;
  while (p <= str.size()) {
    const size_t q = str.find(',', p);
    out.push_back(std::atoi(str.substr(p, q - p).c_str()));
    if (q == std::string::npos) break;
    p = q + 1;
  }
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  bool dram_n_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "tq_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--quick") o.quick = true;
    else if (a == "--no-dram") o.dram = false;
    else if (a == "--simd-compare") o.simd_compare = true;
    else if (a == "--dram-n") {
      o.dram_n = static_cast<size_t>(std::atoll(next()));
      dram_n_given = true;
    }
    else if (a == "--dram-reps") o.dram_reps = std::atoi(next());
    else if (a == "--min-time") o.min_time = std::atof(next());
    else if (a == "--threads") o.threads = parse_list(next());
    else if (a == "--filter") o.filter = next();
    else {
      std::fprintf(stderr, "tq_bench: unknown option %s (see bench/speed.cpp)\n", a.c_str());
      std::exit(2);
    }
  }
  if (o.quick && !dram_n_given) o.dram_n = std::min<size_t>(o.dram_n, size_t{1} << 18);
  return o;
}

std::unique_ptr<tq::Codec> make(const std::string& spec, size_t d) {
  tq::CodecContext ctx;
  ctx.dim = d;
  ctx.seed = 42;
  ctx.tensor = "k";
  return tq::make_codec(spec, ctx);
}

}  // namespace

int main(int argc, char** argv) try {
  const Options opt = parse(argc, argv);
  // Keep freed blocks in the heap (no mmap, no trimming): every encode allocates its output, and
  // fresh mmap'ed pages would charge page faults to the codec instead of measuring it.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 0x7FFFFFFF);

  std::printf("tq_bench: simd %s (detected %s), cpu cores %d\n", tq::simd::level_name(tq::simd::kernels().level),
              tq::simd::level_name(tq::simd::detected_level()), omp_get_num_procs());
  double copy_bw[64] = {};
  for (int t : opt.threads) {
    copy_bw[t] = copy_bandwidth(t);
    std::printf("stream copy bandwidth, %d thread(s): %.2f GB/s (read + write)\n", t, copy_bw[t]);
  }

  std::vector<size_t> dims = {64, 128};
  std::vector<int> bits = {2, 3, 4};
  if (opt.quick) {
    dims = {128};
    bits = {4};
  }
  constexpr size_t kL2N = 1024;
  const size_t max_d = 128;
  const Floats l2x = gaussian(kL2N * max_d, 1);
  Floats l2out(kL2N * max_d);
  Floats dramx, dramout;
  if (opt.dram) {
    dramx = gaussian(opt.dram_n * max_d, 2);
    dramout = Floats(opt.dram_n * max_d);
  }

  Row target_row;
  bool have_target = false;
  std::printf("\nthroughput in M vectors/s (best of repeated runs); B/vec = encoded bytes per vector; GB/s and %%copy count\n"
              "4d + B/vec bytes per vector for encode and for decode; * = DRAM batch of %zu vectors, 1 run (codec below 1 M/s)\n",
              kSlowDramN);
  for (size_t d : dims) {
    std::vector<std::string> specs;
    for (int b : bits)
      for (const char* rot : {"hr", "haar"})
        for (const char* c : {"tq-mse", "eden", "tq-prod"}) specs.push_back(std::string(rot) + "," + c + ":" + std::to_string(b));
    for (int b : bits) specs.push_back("kivi:" + std::to_string(b));
    specs.push_back("q4_0");
    specs.push_back("hr,q4_0");
    std::printf("\n");
    print_header(opt.dram);
    for (const auto& spec : specs) {
      if (!opt.filter.empty() && spec.find(opt.filter) == std::string::npos) continue;
      const auto codec = make(spec, d);
      for (int t : opt.threads) {
        omp_set_num_threads(t);
        Row r;
        r.spec = spec;
        r.d = d;
        r.threads = t;
        // L2: the same 1024 vectors (view the d = 128 buffer as [1024, d])
        r.l2 = time_codec(*codec, l2x.data(), kL2N, l2out.data(), opt.min_time, 3);
        if (opt.dram) {
          // Codecs that run below 1 M vectors/s even in L2 are compute-bound: time them on a
          // smaller (still DRAM-sized) batch, once, so that the whole sweep fits in minutes.
          const bool slow = mvps(r.l2.enc + r.l2.dec) < 1.0;
          r.dram_n = slow ? std::min(opt.dram_n, kSlowDramN) : opt.dram_n;
          r.dram = time_codec(*codec, dramx.data(), r.dram_n, dramout.data(), 0.0, slow ? 1 : opt.dram_reps);
          r.has_dram = true;
        }
        print_row(r, copy_bw);
        if (spec == "hr,tq-mse:4" && d == 128 && t == 1) {
          target_row = r;
          have_target = true;
        }
      }
    }
  }

  if (have_target) {
    std::printf("\ntargets for hr,tq-mse:4 at d = 128:\n");
    const double l2 = mvps(target_row.l2.enc + target_row.l2.dec);
    std::printf("  L2 batch (1024 vectors), 1 thread, N/(t_enc + t_dec): %.2f M vec/s of 10 M/s target = %.0f%% (%s)\n", l2,
                10.0 * l2, l2 >= 10.0 ? "met" : "NOT met");
    if (target_row.has_dram) {
      const double moved = static_cast<double>(512 + 66 + 66 + 512);
      const double gbs = moved / (target_row.dram.enc + target_row.dram.dec) / 1e9;
      const double frac = gbs / copy_bw[1];
      std::printf("  DRAM batch (%zu vectors), 1 thread: %.2f GB/s counting 512+66 B encode, 66+512 B decode = %.0f%% of "
                  "copy %.2f GB/s (target 50%%: %s)\n",
                  opt.dram_n, gbs, 100.0 * frac, copy_bw[1], frac >= 0.5 ? "met" : "NOT met");
    }
  }

  if (opt.simd_compare) {
    std::printf("\nhr,tq-mse:4, d = 128, L2 batch, 1 thread, per SIMD level:\n");
    omp_set_num_threads(1);
    const auto codec = make("hr,tq-mse:4", 128);
    for (tq::simd::Level l : {tq::simd::Level::Scalar, tq::simd::Level::Avx2, tq::simd::Level::Avx512}) {
      if (static_cast<int>(l) > static_cast<int>(tq::simd::detected_level())) continue;
      tq::simd::ScopedLevel forced(l);
      const Timing t = time_codec(*codec, l2x.data(), kL2N, l2out.data(), opt.min_time, 3);
      std::printf("  %-7s encode %6.2f  decode %6.2f  both %6.2f M vec/s\n", tq::simd::level_name(l), mvps(t.enc),
                  mvps(t.dec), mvps(t.enc + t.dec));
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "tq_bench: %s\n", e.what());
  return 1;
}
