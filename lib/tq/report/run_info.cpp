// The "run" object of a JSON report: when, where and how a run happened.
#include <unistd.h>

#include <array>
#include <ctime>

#include <fmt/format.h>

#include "tq/core/build_info.h"
#include "tq/report/report.h"

namespace tq {

namespace {

constexpr size_t kHostNameMax = 256;

std::string host_name() {
  std::array<char, kHostNameMax + 1> buf{};
  if (::gethostname(buf.data(), kHostNameMax) != 0) return "unknown";
  return std::string(buf.data());  // buf is zero-filled, so a truncated name stays terminated
}

}  // namespace

std::string format_utc(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto ms_total = duration_cast<milliseconds>(t.time_since_epoch()).count();
  // floor division so times before 1970 keep a non-negative millisecond part
  const auto secs = static_cast<std::time_t>(ms_total >= 0 ? ms_total / 1000 : (ms_total - 999) / 1000);
  const auto ms = static_cast<int>(ms_total - static_cast<long long>(secs) * 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  return fmt::format("{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}.{:03d}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

Json run_info(const RunClock& started, int threads, const std::vector<std::string>& argv) {
  const RunClock now;
  const double wall_s = std::chrono::duration<double>(now.steady - started.steady).count();
  Json j = Json::object();
  j["started"] = format_utc(started.wall);
  j["finished"] = format_utc(now.wall);
  j["wall_s"] = wall_s;
  j["host"] = host_name();
  j["threads"] = threads;
  j["git_commit"] = build::kGitCommit;
  j["argv"] = argv;
  return j;
}

}  // namespace tq
