#pragma once
// One declaration per subcommand file apps/tq/<name>.cpp; main.cpp registers them from kCommands.
#include <CLI/CLI.hpp>

#include "app.h"

namespace tq::app {

void add_benchmark_command(CLI::App& root, Context& ctx);
void add_apply_command(CLI::App& root, Context& ctx);
void add_info_command(CLI::App& root, Context& ctx);
void add_inspect_command(CLI::App& root, Context& ctx);
void add_synth_command(CLI::App& root, Context& ctx);
void add_codebook_command(CLI::App& root, Context& ctx);

}  // namespace tq::app
