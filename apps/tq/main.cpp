// tq: entry point. Registers every subcommand from one list, parses, runs, and maps failures to
// exit codes: 0 success; 1 runtime/input error ("tq: <message>"); CLI11's codes (100-127) for
// usage errors; any other exception -> "tq: internal error: ..." and 1. Never an abort.
#include <cstdio>
#include <exception>
#include <new>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "app.h"
#include "commands.h"
#include "tq/core/build_info.h"
#include "tq/core/error.h"

namespace {

using AddCommand = void (*)(CLI::App&, tq::app::Context&);

// The subcommands, in `tq --help` order. A new apps/tq/<name>.cpp adds one line here and one
// declaration in commands.h.
constexpr AddCommand kCommands[] = {
    &tq::app::add_benchmark_command,
    &tq::app::add_info_command,
    &tq::app::add_inspect_command,
    &tq::app::add_synth_command,
    &tq::app::add_codebook_command,
    &tq::app::add_apply_command,
};

constexpr const char* kDescription =
    "tq: offline KV-cache compression research toolkit.\n"
    "Reads K/V/Q tensors dumped from a real LLM (HDF5) and measures how well codecs compress them.";

constexpr const char* kFooter =
    "Run 'tq <command> --help' for a command's options.\n"
    "Exit status: 0 success, 1 error (message on stderr), 100-127 usage error.";

std::string version_text() {
  return fmt::format("tq {} (git {}, {}, {})", tq::build::kVersion, tq::build::kGitCommit, tq::build::kBuildType,
                     tq::build::kCompiler);
}

int run(int argc, char** argv) {
  tq::app::Context ctx(argc, argv);
  CLI::App app(kDescription, "tq");
  app.set_version_flag("--version", version_text());
  // No require_subcommand(): CLI11 would then report `tq typo` as "A subcommand is required";
  // without it the typo is an ExtrasError naming the word, and a bare `tq` is caught below.
  app.footer(kFooter);
  for (AddCommand add : kCommands) add(app, ctx);

  try {
    app.parse(argc, argv);
    tq::app::Command* cmd = ctx.selected(app);
    if (cmd == nullptr) throw CLI::RequiredError("tq needs a subcommand (see tq --help)", CLI::ExitCodes::RequiredError);
    return cmd->execute(ctx);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const tq::Error& e) {
    tq::app::print_error(e.what());
  } catch (const std::bad_alloc&) {
    tq::app::print_error("out of memory");
  } catch (const std::exception& e) {
    tq::app::print_error(std::string("internal error: ") + e.what());
  } catch (...) {
    tq::app::print_error("internal error: unknown exception");
  }
  return 1;
}
