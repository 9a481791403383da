// tq synth: write a synthetic KV dump from a profile (lib/tq/synth), or fit a profile's
// parameters to a real dump (--fit). Profiles and their sources: docs/synth-profiles.md.
#include <cmath>
#include <filesystem>
#include <memory>

#include <fmt/format.h>

#include "app.h"
#include "commands.h"
#include "dump_input.h"
#include "index_list.h"
#include "tq/core/error.h"
#include "tq/io/dump.h"
#include "tq/synth/fit.h"
#include "tq/synth/generate.h"
#include "tq/synth/profile.h"

namespace tq::app {

namespace {

struct SynthConfig {
  std::string profile;
  int64_t tokens = 0;
  std::string out;
  bool force = false;
  std::string layers = "all";
  std::string dtype = "f32";
  int head_dim = 128;
  int deflate = 0;
  std::string fit;
  std::string fit_name = "fitted";
  std::string fit_cpp;
};

DType parse_dtype(const std::string& s) {
  if (s == "f32" || s == "fp32" || s == "float32") return DType::F32;
  if (s == "f16" || s == "fp16" || s == "float16") return DType::F16;
  if (s == "bf16" || s == "bfloat16") return DType::BF16;
  throw UsageError(fmt::format("--dtype: '{}' is not f32, f16 or bf16", s));
}

void validate(const SynthConfig& c) {
  if (!c.fit.empty()) {
    if (!c.profile.empty()) throw UsageError("--fit and --profile are exclusive (fit a dump, or generate one)");
    if (!c.out.empty()) throw UsageError("--out writes a synthetic dump; with --fit use --fit-cpp FILE");
    return;
  }
  if (c.profile.empty()) throw UsageError("--profile is required (stories-like, smollm2-like, llama3-8b-like, gaussian), or --fit DUMP");
  if (c.out.empty()) throw UsageError("--out FILE.h5 is required: where to write the synthetic dump");
  if (c.tokens < 0) throw UsageError(fmt::format("--tokens: {} must be positive", c.tokens));
  if (c.deflate < 0 || c.deflate > 9) throw UsageError(fmt::format("--deflate: {} is not in 0-9", c.deflate));
}

Table channel_table(const std::string& name, const synth::Profile& p) {
  Table t{name,
          {"layer", "tensor", "scale", "scale_log_sd", "offset", "n_outliers", "outlier_offset", "outlier_scale", "rho",
           "tail", "q_align", "q_gain"},
          {}};
  for (size_t l = 0; l < p.layers.size(); ++l) {
    const auto& lp = p.layers[l];
    for (const auto& [tensor, m] : {std::pair<const char*, const synth::ChannelModel*>{"k", &lp.k}, {"v", &lp.v}, {"q", &lp.q}}) {
      const bool q = std::string(tensor) == "q";
      t.add({static_cast<int64_t>(l), std::string(tensor), m->scale, m->scale_log_sd, m->offset, int64_t{m->n_outliers},
             m->outlier_offset, m->outlier_scale, m->rho, m->tail, q ? Cell{lp.q_align} : Cell{},
             q ? Cell{lp.q_gain} : Cell{}});
    }
  }
  return t;
}

Report run_fit(const SynthConfig& c, const RunContext& rc) {
  if (!c.fit_cpp.empty()) check_output(c.fit_cpp, c.force);
  DumpReader reader(c.fit);
  synth::FitOptions fo;
  fo.seed = rc.common.seed;
  const synth::FitResult fr = synth::fit_profile(reader, c.fit_name, fo);
  Report r;
  r.inputs.push_back(dump_input_json(reader.info()));
  r.tables.push_back(channel_table("fit", fr.profile));
  Table ent{"entropy", {"layer", "real_entropy", "synth_entropy"}, {}};
  for (size_t l = 0; l < fr.real_entropy.size(); ++l)
    ent.add({static_cast<int64_t>(l), fr.real_entropy[l], fr.synth_entropy[l]});
  r.tables.push_back(std::move(ent));
  r.notes.push_back("k and q parameters describe pre-RoPE tensors; scale in the dump's units, offsets relative to scale");
  r.notes.push_back("entropy: mean causal attention entropy (nats) over every query head, positions t >= 16, strided");
  if (!c.fit_cpp.empty()) {
    write_file_atomic(c.fit_cpp, synth::profile_layers_cpp(fr.profile), true);
    r.notes.push_back("C++ layer list written to " + c.fit_cpp + " (paste into lib/tq/synth/profiles.cpp)");
  }
  return r;
}

Report run_generate(const SynthConfig& c, const RunContext& rc) {
  const synth::Profile p = synth::make_profile(c.profile, c.head_dim);
  synth::SynthOptions so;
  so.tokens = static_cast<size_t>(c.tokens);
  so.seed = rc.common.seed;
  so.layers = parse_index_list(c.layers, "--layers");
  so.dtype = parse_dtype(c.dtype);
  so.deflate = c.deflate;
  if (c.tokens == 0) so.tokens = static_cast<size_t>(p.default_tokens);
  check_output(c.out, c.force);
  synth::write_synth_dump(c.out, p, so);

  Report r;
  DumpReader written(c.out);  // re-open: the report describes what is on disk
  r.inputs.push_back(Json{{"profile", p.name}, {"fitted_to", p.fitted_to.empty() ? "none" : p.fitted_to},
                          {"source", p.source}});
  Table t{"synth", {"property", "value"}, {}};
  t.add({"out", c.out});
  t.add({"profile", p.name});
  t.add({"description", p.description});
  t.add({"tokens", static_cast<int64_t>(so.tokens)});
  t.add({"layers_written", static_cast<int64_t>(written.info().layers.size())});
  t.add({"n_layers", static_cast<int64_t>(p.layers.size())});
  t.add({"n_heads", int64_t{p.n_heads}});
  t.add({"n_kv_heads", int64_t{p.n_kv_heads}});
  t.add({"head_dim", int64_t{p.head_dim}});
  t.add({"rope", fmt::format("{} theta={:g}", p.rope_pairing, p.rope_theta)});
  t.add({"dtype", std::string(dtype_name(so.dtype))});
  t.add({"bytes", static_cast<int64_t>(std::filesystem::file_size(c.out))});
  r.tables.push_back(std::move(t));
  r.tables.push_back(channel_table("parameters", p));
  if (p.fitted_to.empty()) r.notes.push_back("profile " + p.name + " is not fitted to a real dump: " + p.source);
  return r;
}

}  // namespace

void add_synth_command(CLI::App& root, Context& ctx) {
  auto cfg = std::make_shared<SynthConfig>();
  Command& cmd = ctx.add_command(root, "synth", "Write a synthetic KV dump from a profile, or fit a profile to a dump",
                                 CommandTraits{.seed = true, .report_out = false});
  cmd.option("--profile", cfg->profile, "Profile: stories-like, smollm2-like, llama3-8b-like, gaussian");
  cmd.option("--tokens", cfg->tokens, "Sequence length (0 = the profile's default)");
  cmd.option("--out", cfg->out, "Synthetic dump to write (HDF5, atomically)")->type_name("FILE.h5");
  cmd.flag("--force", cfg->force, "Allow --out (or --fit-cpp) to overwrite an existing file");
  cmd.option("--layers", cfg->layers, "Layers to write: all, or a list such as 0,2,5-7");
  cmd.option("--dtype", cfg->dtype, "Storage dtype: f32, f16, bf16");
  cmd.option("--head-dim", cfg->head_dim, "Head dimension of the gaussian profile");
  cmd.option("--deflate", cfg->deflate, "HDF5 deflate level 0-9 (0 = uncompressed)");
  cmd.option("--fit", cfg->fit, "Fit a profile to this real dump and print its parameters")->type_name("DUMP");
  cmd.option("--name", cfg->fit_name, "Name of the fitted profile (with --fit)");
  cmd.option("--fit-cpp", cfg->fit_cpp, "With --fit: write the C++ layer list for lib/tq/synth/profiles.cpp")->type_name("FILE");
  cmd.on_run([cfg](const RunContext& rc) {
    validate(*cfg);
    return cfg->fit.empty() ? run_generate(*cfg, rc) : run_fit(*cfg, rc);
  });
}

}  // namespace tq::app
