// Synthetic dumps vs the real dumps their profiles were fitted to: the statistics of
// lib/tq/stats, computed the same way on both, must agree within a factor 1.5. Data-driven over
// every profile whose real dump is present in data/ (stories-like now; smollm2-like once a
// SmolLM2 dump lands as data/smollm2_*.h5).
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "tq/io/dump.h"
#include "tq/stats/dump_stats.h"
#include "tq/synth/generate.h"
#include "tq/synth/profile.h"

namespace fs = std::filesystem;

namespace {

constexpr double kMaxFactor = 1.5;

struct Fitted {
  std::string profile;
  std::string real;  ///< path of the real dump, empty when absent
};

std::vector<Fitted> fitted_profiles() {
  const fs::path data = fs::path(TQ_SOURCE_DIR) / "data";
  std::vector<Fitted> out;
  out.push_back({"stories-like", fs::exists(data / "stories260K.h5") ? (data / "stories260K.h5").string() : ""});
  std::string smol;
  if (fs::exists(data))
    for (const auto& e : fs::directory_iterator(data)) {
      const std::string n = e.path().filename().string();
      if (n.rfind("smollm2_", 0) == 0 && e.path().extension() == ".h5" && (smol.empty() || n < fs::path(smol).filename().string()))
        smol = e.path().string();
    }
  // Only once the smollm2-like profile has been refitted to that dump (fitted_to set).
  if (!smol.empty() && !tq::synth::make_profile("smollm2-like").fitted_to.empty()) out.push_back({"smollm2-like", smol});
  return out;
}

struct Named {
  std::string name;
  double real, synth;
};

std::vector<Named> compare(const tq::stats::DumpStats& r, const tq::stats::DumpStats& s) {
  std::vector<Named> v;
  for (const char* t : {"k", "k_pre", "v"}) {
    const auto a = r.summary(t), b = s.summary(t);
    v.push_back({fmt::format("{}.outlier_ratio", t), a.outlier_ratio, b.outlier_ratio});
    v.push_back({fmt::format("{}.channel_mean_spread", t), a.channel_mean_spread, b.channel_mean_spread});
    v.push_back({fmt::format("{}.kurtosis", t), a.kurtosis_pooled, b.kurtosis_pooled});
    v.push_back({fmt::format("{}.norm_mean", t), a.norm_mean, b.norm_mean});
  }
  v.push_back({"k.lag1_autocorr", r.summary("k").lag1_autocorr, s.summary("k").lag1_autocorr});
  v.push_back({"attn_entropy", r.mean_attention_entropy(), s.mean_attention_entropy()});
  return v;
}

}  // namespace

TEST_CASE("synth: fitted profiles reproduce the real dump's statistics within 1.5x") {
  for (const auto& f : fitted_profiles()) {
    if (f.real.empty()) {
      MESSAGE("skipping " << f.profile << ": its real dump is not in data/");
      continue;
    }
    CAPTURE(f.profile);
    const tq::DumpReader real(f.real);
    const tq::synth::Profile p = tq::synth::make_profile(f.profile);
    const std::string out = (fs::temp_directory_path() / fmt::format("tq-synth-fit-{}-{}.h5", ::getpid(), f.profile)).string();
    tq::synth::SynthOptions so;
    so.tokens = static_cast<size_t>(real.info().n_tokens);
    so.seed = 7;
    tq::synth::write_synth_dump(out, p, so);
    const tq::DumpReader syn(out);

    tq::stats::DumpStatsOptions o;
    o.tensors = {"k", "k_pre", "v", "q"};
    o.ks = false;
    const auto rs = tq::stats::dump_stats(real, o);
    const auto ss = tq::stats::dump_stats(syn, o);
    std::string table = fmt::format("{:<24} {:>10} {:>10} {:>7}\n", "statistic", "real", "synth", "ratio");
    for (const auto& n : compare(rs, ss)) {
      const double ratio = n.synth / n.real;
      table += fmt::format("{:<24} {:>10.4g} {:>10.4g} {:>7.3f}\n", n.name, n.real, n.synth, ratio);
    }
    MESSAGE(f.profile << " vs " << f.real << "\n" << table);
    for (const auto& n : compare(rs, ss)) {
      CAPTURE(n.name);
      CAPTURE(n.real);
      CAPTURE(n.synth);
      CHECK(n.real > 0.0);
      CHECK(n.synth / n.real <= kMaxFactor);
      CHECK(n.real / n.synth <= kMaxFactor);
    }
    fs::remove(out);
  }
}
