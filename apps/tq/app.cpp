// The subcommand framework: common options, registration, and the run sequence
// (config file -> required options -> output check -> threads -> run -> render).
#include "app.h"

#include <omp.h>

#include <algorithm>
#include <cstdio>

#include "terminal.h"
#include "tq/core/error.h"

namespace tq::app {

namespace {
constexpr const char* kCommonGroup = "Common options";
// Upper bound for --threads (only there to give the range check a readable message).
constexpr int kMaxThreads = 65536;
}  // namespace

// ---- Command ----------------------------------------------------------------------------------

Command::Command(CLI::App& cli, std::string name, std::string description, CommandTraits traits)
    : cli_(&cli), name_(std::move(name)), description_(std::move(description)), traits_(traits) {
  cli_->add_option("--format", common_.format, "Output format")
      ->check(CLI::IsMember({"table", "md", "csv", "json"}))
      ->capture_default_str()
      ->group(kCommonGroup);
  if (traits_.report_out) {
    cli_->add_option("--out", common_.out, "Write the report to FILE (atomically) instead of stdout")
        ->type_name("FILE")
        ->group(kCommonGroup);
    cli_->add_flag("--force", common_.force, "Allow --out to overwrite an existing file")->group(kCommonGroup);
  }
  cli_->add_option("--config", common_.config_file,
                   "TOML file of option values (keys = long flag names); flags given here win")
      ->type_name("FILE.toml")
      ->configurable(false)
      ->group(kCommonGroup);
  cli_->add_option("--threads", common_.threads, "OpenMP threads; 0 = all cores")
      ->check(CLI::Range(0, kMaxThreads))
      ->capture_default_str()
      ->group(kCommonGroup);
  if (traits_.seed) {
    cli_->add_option("--seed", common_.seed, "Run seed (every random choice derives from it)")
        ->capture_default_str()
        ->group(kCommonGroup);
  }
  cli_->add_flag("-q,--quiet", common_.quiet, "No progress output on stderr")->group(kCommonGroup);
}

CLI::Option* Command::flag(const std::string& flags, bool& var, const std::string& help) {
  CLI::Option* opt = cli_->add_flag(flags, var, help);
  record(opt, [&var] { return Json(var); });
  return opt;
}

std::string Command::config_key(const CLI::Option& opt) {
  return opt.get_single_name();  // first long name, else positional name, else short name
}

void Command::record(CLI::Option* opt, std::function<Json()> to_json) {
  recorded_.push_back({config_key(*opt), std::move(to_json)});
}

void Command::require(const std::string& name) {
  const std::string key = name.substr(std::min(name.find_first_not_of('-'), name.size()));  // "--input" -> "input"
  if (key.empty() || (cli_->get_option_no_throw("--" + key) == nullptr && cli_->get_option_no_throw(key) == nullptr)) {
    throw std::logic_error("tq " + name_ + ": require(\"" + name + "\") names no option");
  }
  required_.push_back(key);
}

Json Command::resolved_config() const {
  Json config = Json::object();
  for (const auto& r : recorded_) config[r.key] = r.to_json();
  if (traits_.seed) config["seed"] = common_.seed;
  return config;
}

int Command::execute(const Context& ctx) {
  if (!common_.config_file.empty()) apply_config_file(common_.config_file);
  for (const auto& key : required_) {
    const CLI::Option* opt = cli_->get_option_no_throw("--" + key);
    if (opt == nullptr) opt = cli_->get_option_no_throw(key);
    if (opt != nullptr && opt->count() == 0) {
      throw CLI::RequiredError(opt->get_name() + " is required (give it on the command line or as '" + key +
                                   "' in the --config file)",
                               CLI::ExitCodes::RequiredError);
    }
  }
  OutputOptions output;
  output.format = parse_output_format(common_.format);
  output.out = common_.out;
  output.force = common_.force;
  check_output(output.out, output.force);  // before any work: fail fast, leave nothing behind

  if (common_.threads > 0) omp_set_num_threads(common_.threads);
  RunContext rc{name_, common_, omp_get_max_threads(), stderr_is_terminal() && !common_.quiet, color_allowed()};

  if (!run_) throw std::logic_error("tq " + name_ + " has no run function");
  Report report = run_(rc);
  report.command = name_;
  // The recorded options first; keys the subcommand set itself are kept (and override).
  Json config = resolved_config();
  for (const auto& [key, value] : report.config.items()) config[key] = value;
  report.config = std::move(config);

  Json run = run_info(ctx.started(), rc.threads, ctx.argv());
  for (const auto& [key, value] : report.run_extra.items()) run[key] = value;  // timings: not reproducible
  emit_report(report, output, run);
  if (!output.out.empty() && rc.progress) {
    std::fprintf(stderr, "tq: wrote %s\n", output.out.c_str());
  }
  return 0;
}

// ---- Context ----------------------------------------------------------------------------------

Context::Context(int argc, const char* const* argv) {
  for (int i = 0; i < argc; ++i) argv_.emplace_back(argv[i]);
}

Command& Context::add_command(CLI::App& root, const std::string& name, const std::string& description,
                              CommandTraits traits) {
  CLI::App* sub = root.add_subcommand(name, description);
  // A command of a command group (tq codebook solve) is named "codebook solve" in reports.
  const bool grouped = root.get_parent() != nullptr;
  commands_.push_back(std::make_unique<Command>(*sub, grouped ? root.get_name() + " " + name : name, description, traits));
  return *commands_.back();
}

Command* Context::selected(const CLI::App& root) const {
  for (const auto& cmd : commands_) {
    if (!cmd->cli().parsed()) continue;
    for (const CLI::App* p = cmd->cli().get_parent(); p != nullptr; p = p->get_parent())
      if (p == &root) return cmd.get();
  }
  return nullptr;
}

void print_error(const std::string& message) {
  std::string line = message;
  for (char& ch : line) {
    if (ch == '\n' || ch == '\r') ch = ' ';  // the one-line promise holds for every message
  }
  std::fprintf(stderr, "%s %s\n", colorize("tq:", "1;31", color_allowed()).c_str(), line.c_str());
}

}  // namespace tq::app
