// Inputs of tq benchmark: dump files (files, directories, globs), tq synth profiles generated in
// memory one layer at a time, and iid Gaussian vectors.
#include <glob.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include <fmt/format.h>

#include "tq/bench/bench.h"
#include "tq/core/error.h"
#include "tq/core/rng.h"
#include "tq/synth/generate.h"
#include "tq/synth/profile.h"

namespace tq::bench {

namespace fs = std::filesystem;

namespace {

bool has_glob_chars(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

std::vector<std::string> glob_paths(const std::string& pattern) {
  glob_t g{};
  const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
  std::vector<std::string> out;
  if (rc == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  }
  globfree(&g);
  std::sort(out.begin(), out.end());
  return out;
}

std::string stem_of(const std::string& path) { return fs::path(path).stem().string(); }

// ---- a dump file ------------------------------------------------------------------------------

class DumpSource final : public Source {
 public:
  explicit DumpSource(const std::string& path) : reader_(path) {}
  std::string name() const override { return stem_of(reader_.info().path); }
  Json input_json() const override {
    Json j = Json::object();
    j["path"] = reader_.info().path;
    for (const auto& [key, value] : reader_.info().attributes) j[key] = value;
    return j;
  }
  const std::vector<LayerInfo>& layers() const override { return reader_.info().layers; }
  size_t n_tokens() const override { return static_cast<size_t>(reader_.info().n_tokens); }
  std::vector<int32_t> positions() const override { return reader_.info().positions; }
  LayerData read_layer(int layer, bool want_q) const override {
    LayerData d;
    d.info = reader_.info().layer(layer);
    d.k = reader_.read(layer, "k");
    d.v = reader_.read(layer, "v");
    if (want_q && d.info.has("q")) d.q = reader_.read(layer, "q");
    return d;
  }

 private:
  DumpReader reader_;
};

// ---- a synth profile ---------------------------------------------------------------------------

class SynthSource final : public Source {
 public:
  SynthSource(synth::Profile p, size_t T, uint64_t seed) : p_(std::move(p)), T_(T), seed_(seed) {
    for (int l = 0; l < static_cast<int>(p_.layers.size()); ++l) infos_.push_back(synth::layer_info(p_, l));
  }
  std::string name() const override { return "synthetic:" + p_.name; }
  Json input_json() const override {
    return Json{{"synthetic", p_.name},
                {"n_tokens", T_},
                {"n_layers", p_.layers.size()},
                {"head_dim", p_.head_dim},
                {"data_seed", seed_},
                {"fitted_to", p_.fitted_to.empty() ? "none" : p_.fitted_to},
                {"source", p_.source}};
  }
  const std::vector<LayerInfo>& layers() const override { return infos_; }
  size_t n_tokens() const override { return T_; }
  std::vector<int32_t> positions() const override {
    std::vector<int32_t> pos(T_);
    for (size_t t = 0; t < T_; ++t) pos[t] = static_cast<int32_t>(t);
    return pos;
  }
  LayerData read_layer(int layer, bool want_q) const override {
    synth::LayerTensors lt = synth::generate_layer(p_, p_.layers.at(static_cast<size_t>(layer)), layer, T_, seed_);
    LayerData d;
    d.info = infos_.at(static_cast<size_t>(layer));
    d.k = std::move(lt.k);
    d.v = std::move(lt.v);
    if (want_q) d.q = std::move(lt.q);
    return d;
  }
  std::string note() const override {
    return fmt::format("{}: tq synth profile '{}' generated in memory ({} tokens, data seed {}){}", name(), p_.name, T_,
                       seed_, p_.fitted_to.empty() ? "" : ", fitted to " + p_.fitted_to);
  }

 private:
  synth::Profile p_;
  size_t T_;
  uint64_t seed_;
  std::vector<LayerInfo> infos_;
};

// ---- iid Gaussian ------------------------------------------------------------------------------

class GaussianSource final : public Source {
 public:
  GaussianSource(size_t d, size_t T, uint64_t seed) : d_(d), T_(T), seed_(seed) {
    LayerInfo li;
    li.index = 0;
    li.n_heads = 1;
    li.n_kv_heads = 1;
    li.head_dim = static_cast<int>(d);
    li.attn_scale = 1.0 / std::sqrt(static_cast<double>(d));
    li.rotary_dim = static_cast<int>(d);
    li.datasets = {{"k", DType::F32}, {"v", DType::F32}};
    infos_.push_back(li);
  }
  std::string name() const override { return "gaussian"; }
  Json input_json() const override {
    return Json{{"synthetic", "gaussian"}, {"n_tokens", T_}, {"n_layers", 1}, {"head_dim", d_}, {"data_seed", seed_},
                {"description", "iid N(0,1) vectors, one layer, one head, no queries; k and v are the same draw"}};
  }
  const std::vector<LayerInfo>& layers() const override { return infos_; }
  size_t n_tokens() const override { return T_; }
  std::vector<int32_t> positions() const override {
    std::vector<int32_t> pos(T_);
    for (size_t t = 0; t < T_; ++t) pos[t] = static_cast<int32_t>(t);
    return pos;
  }
  LayerData read_layer(int layer, bool) const override {
    LayerData d;
    d.info = infos_.at(static_cast<size_t>(layer));
    d.k = Tensor3{1, T_, d_, std::vector<float>(T_ * d_)};
    Rng rng(seed_for(seed_, 0, 0, "gaussian"));
    for (float& x : d.k.data) x = static_cast<float>(rng.gaussian());
    d.v = d.k;
    return d;
  }
  std::string note() const override {
    return fmt::format("gaussian: {} iid N(0,1) vectors of dimension {} (data seed {}); k and v are the same draw",
                       T_, d_, seed_);
  }

 private:
  size_t d_, T_;
  uint64_t seed_;
  std::vector<LayerInfo> infos_;
};

}  // namespace

std::vector<std::string> resolve_input_paths(const std::vector<std::string>& items) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  const auto add = [&](const std::string& p) {
    if (seen.insert(p).second) out.push_back(p);
  };
  for (const auto& item : items) {
    std::error_code ec;
    if (fs::is_directory(item, ec)) {
      std::vector<std::string> files;
      for (const auto& e : fs::directory_iterator(item, ec)) {
        if (e.path().extension() == ".h5" && !fs::is_directory(e.path(), ec)) files.push_back(e.path().string());
      }
      if (ec) throw Error(fmt::format("--input: cannot list directory {}: {}", item, ec.message()));
      if (files.empty()) throw Error(fmt::format("--input: directory {} holds no *.h5 files", item));
      std::sort(files.begin(), files.end());
      for (const auto& f : files) add(f);
    } else if (fs::exists(item, ec)) {
      add(item);
    } else if (has_glob_chars(item)) {
      const auto matches = glob_paths(item);
      if (matches.empty()) throw Error(fmt::format("--input: pattern '{}' matches no file", item));
      for (const auto& m : matches) add(m);
    } else {
      throw Error(fmt::format("{}: no such file or directory (--input)", item));
    }
  }
  return out;
}

std::unique_ptr<Source> gaussian_source(size_t d, size_t T, uint64_t seed) {
  return std::make_unique<GaussianSource>(d, T, seed);
}

std::vector<std::unique_ptr<Source>> open_sources(const BenchConfig& c) {
  std::vector<std::unique_ptr<Source>> out;
  if (!c.synthetic.empty()) {
    if (!c.inputs.empty()) throw UsageError("--synthetic and --input are exclusive");
    if (c.n_vectors < 0) throw UsageError(fmt::format("--n-vectors: {} must be positive", c.n_vectors));
    if (c.synthetic == "gaussian") {
      if (c.head_dim < 2) throw UsageError(fmt::format("--head-dim: {} must be at least 2", c.head_dim));
      const size_t T = c.n_vectors > 0 ? static_cast<size_t>(c.n_vectors) : 4096;
      out.push_back(gaussian_source(static_cast<size_t>(c.head_dim), T, c.seed));
      return out;
    }
    synth::Profile p = synth::make_profile(c.synthetic, c.head_dim);
    const size_t T = c.n_vectors > 0 ? static_cast<size_t>(c.n_vectors) : static_cast<size_t>(p.default_tokens);
    out.push_back(std::make_unique<SynthSource>(std::move(p), T, c.seed));
    return out;
  }
  if (c.inputs.empty()) throw UsageError("no input: give --input FILE|DIR|GLOB or --synthetic PROFILE");
  for (const auto& path : resolve_input_paths(c.inputs)) out.push_back(std::make_unique<DumpSource>(path));
  return out;
}

}  // namespace tq::bench
