// Tests of lib/tq/report output: atomic file writing, --out checks, the run object.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tq/core/build_info.h"
#include "tq/core/error.h"
#include "tq/report/report.h"

namespace fs = std::filesystem;

namespace {

// A fresh directory removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("tq_test_report_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  size_t entries() const {
    return static_cast<size_t>(std::distance(fs::directory_iterator(path), fs::directory_iterator()));
  }
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string error_message(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const tq::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("write_file_atomic: writes, refuses to overwrite, overwrites with force, leaves no temp files") {
  TempDir dir;
  const std::string file = (dir.path / "out.json").string();
  tq::write_file_atomic(file, "first\n", false);
  CHECK(slurp(file) == "first\n");
  CHECK(dir.entries() == 1);

  const std::string msg = error_message([&] { tq::write_file_atomic(file, "second\n", false); });
  CHECK(msg.find(file) != std::string::npos);
  CHECK(msg.find("already exists") != std::string::npos);
  CHECK(slurp(file) == "first\n");  // untouched
  CHECK(dir.entries() == 1);        // the temporary file is gone

  tq::write_file_atomic(file, "second\n", true);
  CHECK(slurp(file) == "second\n");
  CHECK(dir.entries() == 1);

  // Large content survives intact (several write() calls may be needed).
  std::string big(3 << 20, 'x');
  for (size_t i = 0; i < big.size(); i += 4097) big[i] = static_cast<char>('a' + i % 26);
  tq::write_file_atomic(file, big, true);
  CHECK(slurp(file) == big);
}

TEST_CASE("write_file_atomic: file mode follows the umask, failures name the file") {
  TempDir dir;
  const mode_t old = ::umask(022);
  const std::string file = (dir.path / "m.csv").string();
  tq::write_file_atomic(file, "a\n", false);
  ::umask(old);
  struct stat st {};
  REQUIRE(::stat(file.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0644);

  const std::string missing = (dir.path / "no_such_dir" / "x.json").string();
  const std::string msg = error_message([&] { tq::write_file_atomic(missing, "x", true); });
  CHECK(msg.find(missing) != std::string::npos);
  CHECK(!fs::exists(dir.path / "no_such_dir"));
}

TEST_CASE("check_output: existing file, directory, missing directory") {
  TempDir dir;
  const std::string file = (dir.path / "r.json").string();
  CHECK_NOTHROW(tq::check_output("", false));
  CHECK_NOTHROW(tq::check_output(file, false));  // does not exist yet
  std::ofstream(file) << "old";
  const std::string msg = error_message([&] { tq::check_output(file, false); });
  CHECK(msg == "output file '" + file + "' already exists (use --force to overwrite it)");
  CHECK(msg.find('\n') == std::string::npos);
  CHECK_NOTHROW(tq::check_output(file, true));
  CHECK_THROWS_AS(tq::check_output(dir.path.string(), true), tq::Error);
  const std::string nested = (dir.path / "missing" / "r.json").string();
  CHECK(error_message([&] { tq::check_output(nested, false); }).find("does not exist") != std::string::npos);
  CHECK(slurp(file) == "old");
}

TEST_CASE("emit_report writes the rendered report to --out") {
  TempDir dir;
  tq::Report r;
  r.command = "demo";
  tq::Table t{"rows", {"a"}, {}};
  t.add({int64_t{1}});
  r.tables.push_back(t);
  tq::OutputOptions o;
  o.format = tq::OutputFormat::Csv;
  o.out = (dir.path / "r.csv").string();
  tq::emit_report(r, o, tq::Json::object());
  CHECK(slurp(o.out) == "a\n1\n");
  CHECK_THROWS_AS(tq::emit_report(r, o, tq::Json::object()), tq::Error);
  o.force = true;
  o.format = tq::OutputFormat::Json;
  tq::emit_report(r, o, tq::Json::object());
  CHECK(tq::Json::parse(slurp(o.out))["rows"][0]["a"] == 1);
}

TEST_CASE("run_info: UTC timestamps, keys in order, argv kept") {
  using namespace std::chrono;
  CHECK(tq::format_utc(system_clock::time_point{}) == "1970-01-01T00:00:00.000Z");
  CHECK(tq::format_utc(system_clock::time_point{milliseconds{1700000000123LL}}) == "2023-11-14T22:13:20.123Z");
  CHECK(tq::format_utc(system_clock::time_point{milliseconds{-1}}) == "1969-12-31T23:59:59.999Z");

  const tq::RunClock start;
  const tq::Json j = tq::run_info(start, 3, {"tq", "info"});
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  CHECK(keys == std::vector<std::string>{"started", "finished", "wall_s", "host", "threads", "git_commit", "argv"});
  // Shape "YYYY-MM-DDTHH:MM:SS.mmmZ" (no std::regex: GCC 12 + ASan warns falsely about it).
  auto iso = [](const std::string& s) {
    const std::string shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (s.size() != shape.size()) return false;
    for (size_t i = 0; i < s.size(); ++i) {
      if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i]) return false;
    }
    return true;
  };
  CHECK(iso(j["started"].get<std::string>()));
  CHECK(iso(j["finished"].get<std::string>()));
  CHECK(j["started"].get<std::string>() <= j["finished"].get<std::string>());
  CHECK(j["wall_s"].get<double>() >= 0.0);
  CHECK(j["threads"] == 3);
  CHECK(j["git_commit"] == tq::build::kGitCommit);
  CHECK(j["argv"] == tq::Json::array({"tq", "info"}));
  CHECK(!j["host"].get<std::string>().empty());
}
