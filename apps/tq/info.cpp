// tq info: facts about this build and machine (version, commit, compiler, SIMD level, OpenMP
// threads, HDF5 library) and the list of subcommands.
#include <hdf5.h>
#include <omp.h>

#include <fmt/format.h>

#include "app.h"
#include "commands.h"
#include "tq/core/build_info.h"
#include "tq/simd/cpu_features.h"

namespace tq::app {

namespace {

std::string hdf5_version() {
  unsigned major = 0, minor = 0, release = 0;
  if (H5get_libversion(&major, &minor, &release) < 0) return "unknown";
  return fmt::format("{}.{}.{}", major, minor, release);
}

Report run_info_command(const Context& ctx, const RunContext& rc) {
  Report r;
  Table info{"info", {"property", "value"}, {}};
  info.add({"version", build::kVersion});
  info.add({"git_commit", build::kGitCommit});
  info.add({"build_type", build::kBuildType});
  info.add({"compiler", build::kCompiler});
  info.add({"simd", simd::level_name(simd::simd_level())});
  info.add({"simd_detected", simd::level_name(simd::detected_level())});
  info.add({"cpu_features", simd::feature_list()});
  info.add({"openmp_max_threads", static_cast<int64_t>(rc.threads)});
  info.add({"cpu_cores", static_cast<int64_t>(omp_get_num_procs())});
  info.add({"hdf5_version", hdf5_version()});
  r.tables.push_back(std::move(info));

  Table commands{"subcommands", {"name", "description"}, {}};
  for (const auto& cmd : ctx.commands()) commands.add({cmd->name(), cmd->description()});
  r.tables.push_back(std::move(commands));
  return r;
}

}  // namespace

void add_info_command(CLI::App& root, Context& ctx) {
  Command& cmd = ctx.add_command(root, "info", "Show version, build, SIMD level, OpenMP and HDF5 facts",
                                 CommandTraits{.seed = false});
  const Context* context = &ctx;
  cmd.on_run([context](const RunContext& rc) { return run_info_command(*context, rc); });
}

}  // namespace tq::app
