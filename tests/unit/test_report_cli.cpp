// Tests of the apps/tq subcommand framework (common options, --config merging, required options,
// Report::config) on a demo subcommand. The framework sources are compiled into this test
// directly because CMake builds apps/tq/*.cpp only into the tq executable.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "../../apps/tq/app.cpp"          // NOLINT(bugprone-suspicious-include)
#include "../../apps/tq/config_file.cpp"  // NOLINT(bugprone-suspicious-include)
#include "../../apps/tq/terminal.cpp"     // NOLINT(bugprone-suspicious-include)

namespace fs = std::filesystem;

namespace {

struct DemoConfig {
  std::string input;
  std::vector<int> bits_k{4};
  std::string codec = "tq-mse";
  double scale = 1.0;
  bool verbose = false;
};

// One fresh CLI with a `demo` subcommand; parse() runs CLI11 only, execute() the whole sequence.
struct DemoCli {
  std::vector<std::string> args;
  CLI::App root{"test", "tq"};
  std::unique_ptr<tq::app::Context> ctx;
  std::shared_ptr<DemoConfig> cfg = std::make_shared<DemoConfig>();
  tq::app::Command* cmd = nullptr;
  int runs = 0;

  explicit DemoCli(std::vector<std::string> a) : args(std::move(a)) {
    args.insert(args.begin(), {"tq", "demo"});
    std::vector<const char*> argv;
    for (const auto& s : args) argv.push_back(s.c_str());
    ctx = std::make_unique<tq::app::Context>(static_cast<int>(argv.size()), argv.data());
    tq::app::Command& c = ctx->add_command(root, "demo", "a demo");
    c.option("input", cfg->input, "input file");
    c.require("input");
    c.option("--bits-k", cfg->bits_k, "key bits");
    c.option("--codec", cfg->codec, "codec spec");
    c.option("--scale", cfg->scale, "a real");
    c.flag("--verbose", cfg->verbose, "a flag");
    c.on_run([this](const tq::app::RunContext& rc) {
      ++runs;
      tq::Report r;
      tq::Table t{"rows", {"seed", "threads"}, {}};
      t.add({static_cast<int64_t>(rc.common.seed), static_cast<int64_t>(rc.threads)});
      r.tables.push_back(t);
      return r;
    });
    cmd = &c;
  }
  void parse() {
    std::vector<const char*> argv;
    for (const auto& s : args) argv.push_back(s.c_str());
    root.parse(static_cast<int>(argv.size()), argv.data());
    REQUIRE(ctx->selected(root) == cmd);
  }
};

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("tq_test_cli_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name, const std::string& content = "") const {
    const std::string p = (path / name).string();
    if (!content.empty()) std::ofstream(p) << content;
    return p;
  }
};

std::string slurp(const std::string& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string error_of(DemoCli& cli, const std::string& path) {
  try {
    cli.cmd->apply_config_file(path);
  } catch (const tq::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("cli framework: config file fills options, flags win, Report::config is resolved") {
  TempDir dir;
  const std::string toml = dir.file("c.toml",
                                    "input = \"dump.h5\"\n"
                                    "bits_k = [2, 3]\n"
                                    "codec = \"q4_0\"\n"
                                    "scale = 0.1\n"
                                    "verbose = true\n"
                                    "seed = 9\n"
                                    "format = \"json\"\n");
  const std::string out = dir.file("r.json");
  const int threads_before = omp_get_max_threads();
  DemoCli cli({"--config", toml, "--codec", "kivi", "--out", out, "--threads", "1"});
  cli.parse();
  CHECK(cli.ctx->selected(cli.root)->execute(*cli.ctx) == 0);
  CHECK(cli.runs == 1);
  CHECK(cli.cfg->input == "dump.h5");
  CHECK(cli.cfg->bits_k == std::vector<int>{2, 3});
  CHECK(cli.cfg->codec == "kivi");  // the flag beats the file
  CHECK(cli.cfg->scale == 0.1);     // round-trip text: the very same double
  CHECK(cli.cfg->verbose);
  const tq::Json j = tq::Json::parse(slurp(out));
  CHECK(j["command"] == "demo");
  CHECK(j["config"].dump() ==
        R"({"input":"dump.h5","bits-k":[2,3],"codec":"kivi","scale":0.1,"verbose":true,"seed":9})");
  CHECK(j["rows"][0]["seed"] == 9);
  CHECK(j["rows"][0]["threads"] == 1);
  CHECK(j["run"]["threads"] == 1);
  omp_set_num_threads(threads_before);  // --threads 1 changed this process's OpenMP default
}

TEST_CASE("cli framework: a flag given on the command line keeps the file from adding to it") {
  TempDir dir;
  DemoCli cli({"x.h5", "--bits-k", "8"});
  cli.parse();
  CHECK(error_of(cli, dir.file("c.toml", "bits-k = [2, 3]\n")) == "");
  CHECK(cli.cfg->bits_k == std::vector<int>{8});
  CHECK(cli.cfg->input == "x.h5");
}

TEST_CASE("cli framework: config errors name the file, line and key") {
  TempDir dir;
  DemoCli cli({"x.h5"});
  cli.parse();
  const std::string dup = dir.file("dup.toml", "bits_k = [2]\nbits-k = [3]\n");
  CHECK(error_of(cli, dup).find("is given twice") != std::string::npos);
  DemoCli cli2({"x.h5"});
  cli2.parse();
  const std::string bad = dir.file("bad.toml", "codec = \"a\"\nbits-k = [\"x\"]\n");
  const std::string msg = error_of(cli2, bad);
  CHECK(msg.rfind(bad + ":2: key 'bits-k': ", 0) == 0);
  DemoCli cli3({"x.h5"});
  cli3.parse();
  CHECK(error_of(cli3, dir.file("u.toml", "\n\nbitsk = 3\n")) ==
        dir.file("u.toml") + ":3: unknown key 'bitsk' (tq demo has no option --bitsk)");
  DemoCli cli4({"x.h5"});
  cli4.parse();
  CHECK(error_of(cli4, dir.file("t.toml", "[demo]\ncodec = \"x\"\n")).find("unknown key 'demo'") != std::string::npos);
  DemoCli cli5({"x.h5"});
  cli5.parse();
  CHECK(error_of(cli5, dir.file("cfg.toml", "config = \"other.toml\"\n")).find("cannot be set") != std::string::npos);
}

TEST_CASE("cli framework: required options may come from the file, else a CLI11 RequiredError") {
  TempDir dir;
  {
    DemoCli cli({"--out", dir.file("a.csv"), "--format", "csv"});
    cli.parse();
    CHECK_THROWS_AS(cli.cmd->execute(*cli.ctx), CLI::RequiredError);
    CHECK(cli.runs == 0);
    CHECK(!fs::exists(dir.path / "a.csv"));
  }
  {
    DemoCli cli({"--config", dir.file("in.toml", "input = \"y.h5\"\n"), "--out", dir.file("b.csv"), "--format",
                 "csv"});
    cli.parse();
    CHECK(cli.cmd->execute(*cli.ctx) == 0);
    CHECK(slurp(dir.file("b.csv")) == "seed,threads\n0," + std::to_string(omp_get_max_threads()) + "\n");
  }
}

TEST_CASE("cli framework: an existing --out is refused before the run function is called") {
  TempDir dir;
  const std::string out = dir.file("exists.json", "old");
  DemoCli cli({"x.h5", "--out", out});
  cli.parse();
  CHECK_THROWS_AS(cli.cmd->execute(*cli.ctx), tq::Error);
  CHECK(cli.runs == 0);
  CHECK(slurp(out) == "old");
}
