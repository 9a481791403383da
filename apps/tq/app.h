#pragma once
// The tq command-line framework: how a subcommand is written, registered and run.
//
// ---- Adding a subcommand `foo` ----------------------------------------------------------------
//  1. Write apps/tq/foo.cpp defining
//         void add_foo_command(CLI::App& root, tq::app::Context& ctx);
//  2. Declare it in apps/tq/commands.h and add `&add_foo_command` to kCommands in
//     apps/tq/main.cpp (that list's order is the order of `tq --help`).
//
// Inside foo.cpp follow the hictk/MoDLE shape: a plain config struct, then make / validate / run.
//
//     namespace tq::app {
//     namespace {
//     struct FooConfig {                       // plain data with the defaults
//       std::string input;
//       std::vector<int> bits_k{4};
//     };
//     void validate(const FooConfig& c) {      // cross-flag checks; throw tq::UsageError
//       for (int b : c.bits_k) if (b < 1 || b > 8) throw UsageError("--bits-k: ...");
//     }
//     Report run(const FooConfig& c, const RunContext& rc) {  // the work; returns the report
//       Report r;  r.tables.push_back(...);  return r;
//     }
//     }  // namespace
//
//     void add_foo_command(CLI::App& root, Context& ctx) {   // "make": bind flags to the struct
//       auto cfg = std::make_shared<FooConfig>();             // lives as long as on_run's lambda
//       Command& cmd = ctx.add_command(root, "foo", "One line for tq --help");
//       cmd.option("input", cfg->input, "HDF5 KV dump to read");   // positional
//       cmd.require("input");            // NOT CLI11's ->required(): the file may supply it
//       cmd.option("--bits-k", cfg->bits_k, "Key bit widths");
//       cmd.on_run([cfg](const RunContext& rc) { validate(*cfg); return run(*cfg, rc); });
//     }
//     }  // namespace tq::app
//
// What the framework does for every subcommand (apps/tq/app.cpp):
//  * adds the common options (group "Common options" in --help):
//      --format table|md|csv|json   output format (default table)
//      --out FILE                   write the report to FILE (atomically) instead of stdout
//      --force                      allow --out to overwrite an existing file
//      --config FILE.toml           read option values from a TOML file
//      --threads N                  OpenMP threads, 0 = all cores (default)
//      --seed S                     run seed (only with CommandTraits::seed, the default)
//      -q,--quiet                   no progress output
//  * after parsing: applies the --config file (keys are the long flag names without "--", '_'
//    and '-' interchangeable, e.g. `bits-k = [4]` or `bits_k = [4]`; flags given on the command
//    line win; an unknown key or bad value is a one-line error naming the file, line and key),
//    checks require()d options, refuses an existing --out without --force, sets the OpenMP
//    thread count, then calls the on_run function;
//  * fills Report::command and Report::config (every option bound with option()/flag(), in
//    registration order, then "seed"; the presentation options format/out/force/config/threads/
//    quiet are left out so the JSON is identical at any thread count), then renders the report
//    with the `run` object (tq::run_info) to stdout or --out.
// Errors: throw tq::Error / tq::UsageError (one line, naming the file/flag) -> "tq: <message>",
// exit 1. CLI11 usage errors exit with CLI11's codes (100-127). Anything else is an internal
// error, also exit 1. Progress goes to stderr only (see terminal.h).
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "tq/report/report.h"

namespace tq::app {

/// The seed used when --seed is not given.
inline constexpr uint64_t kDefaultSeed = 0;

/// Values of the options every subcommand shares.
struct CommonOptions {
  std::string format = "table";
  std::string out;
  bool force = false;
  std::string config_file;
  int threads = 0;  ///< 0 = all cores (omp_get_max_threads() at start-up)
  uint64_t seed = kDefaultSeed;
  bool quiet = false;
};

/// What a running subcommand is told about its environment.
struct RunContext {
  std::string command;          ///< subcommand name
  const CommonOptions& common;  ///< seed, quiet, output settings
  int threads = 1;              ///< OpenMP threads in effect (omp_set_num_threads already done)
  bool progress = false;        ///< draw progress on stderr (stderr is a terminal, not --quiet)
  bool color = false;           ///< ANSI colour allowed on stderr (terminal and NO_COLOR unset)
};

/// Which common options a subcommand takes.
struct CommandTraits {
  bool seed = true;  ///< add --seed (commands without randomness turn it off)
  /// add --out/--force for the report; a command whose --out names a data file it writes
  /// (tq synth) turns this off, binds its own --out/--force, and prints its report to stdout.
  bool report_out = true;
};

using RunFunction = std::function<Report(const RunContext&)>;

class Context;

/// One registered subcommand: its CLI11 app, bound options and run function.
class Command {
 public:
  Command(CLI::App& cli, std::string name, std::string description, CommandTraits traits);

  CLI::App& cli() { return *cli_; }
  const std::string& name() const { return name_; }
  const std::string& description() const { return description_; }
  const CommonOptions& common() const { return common_; }

  /// Add an option (or positional: a name without dashes) bound to `var`, with its default
  /// shown in --help, and record it for Report::config under its long name without "--".
  template <class T>
  CLI::Option* option(const std::string& flags, T& var, const std::string& help) {
    CLI::Option* opt = cli_->add_option(flags, var, help)->capture_default_str();
    record(opt, [&var] { return Json(var); });
    return opt;
  }

  /// Add a boolean flag bound to `var`, recorded like option().
  CLI::Option* flag(const std::string& flags, bool& var, const std::string& help);

  /// Record a value for Report::config under the option's config key (for options added
  /// directly through cli(), e.g. with a custom type): `to_json` is called after parsing.
  void record(CLI::Option* opt, std::function<Json()> to_json);

  /// The option (by config key: long name without "--", or positional name) must be given, on
  /// the command line or in the --config file; checked after the file is applied (CLI11's
  /// ->required() would fire before the file is read).
  void require(const std::string& key);

  /// The work: called once the options are final and the output is known to be writable.
  void on_run(RunFunction fn) { run_ = std::move(fn); }

  /// Report::config for this invocation: recorded options in order, then "seed".
  Json resolved_config() const;

  /// Apply a TOML config file (see the top of this file). Throws tq::Error naming the file.
  void apply_config_file(const std::string& path);

  /// Run the subcommand end to end (config file, checks, run, output); returns the exit code.
  int execute(const Context& ctx);

  /// The config key of an option: first long name, else the positional name, else short name.
  static std::string config_key(const CLI::Option& opt);

 private:
  struct Recorded {
    std::string key;
    std::function<Json()> to_json;
  };
  CLI::App* cli_;
  std::string name_;
  std::string description_;
  CommandTraits traits_;
  CommonOptions common_;
  std::vector<Recorded> recorded_;
  std::vector<std::string> required_;
  RunFunction run_;
};

/// Program-wide state: argv, start time and the registered subcommands.
class Context {
 public:
  Context(int argc, const char* const* argv);

  /// Create subcommand `name` of `root` with the common options; the Command lives as long as
  /// the Context.
  Command& add_command(CLI::App& root, const std::string& name, const std::string& description,
                       CommandTraits traits = {});

  /// The registered subcommands in registration order.
  const std::vector<std::unique_ptr<Command>>& commands() const { return commands_; }

  /// The subcommand CLI11 parsed, or nullptr.
  Command* selected(const CLI::App& root) const;

  const std::vector<std::string>& argv() const { return argv_; }
  const RunClock& started() const { return started_; }

 private:
  std::vector<std::string> argv_;
  RunClock started_;
  std::vector<std::unique_ptr<Command>> commands_;
};

/// Print "tq: <message>" as one line on stderr ("tq:" in bold red when colour is allowed).
void print_error(const std::string& message);

}  // namespace tq::app
