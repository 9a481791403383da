#pragma once
// Terminal conventions: stdout carries only the report; progress and colour go to stderr, and
// only when stderr is a terminal. Colour also obeys NO_COLOR (https://no-color.org: set to a
// non-empty value -> no ANSI colour).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace tq::app {

struct RunContext;

/// isatty(STDERR_FILENO).
bool stderr_is_terminal();

/// stderr is a terminal and NO_COLOR is unset or empty.
bool color_allowed();

/// `text` wrapped in an ANSI SGR sequence (e.g. "1;31" bold red) when `color`, else unchanged.
std::string colorize(const std::string& text, const char* sgr, bool color);

/// A one-line progress counter on stderr ("label: 12/40 (30%)"), redrawn at most every 100 ms
/// and cleared when finished. Does nothing unless RunContext::progress. advance() may be called
/// from OpenMP threads; only one thread draws at a time and none waits for another.
class Progress {
 public:
  Progress(const RunContext& rc, std::string label, uint64_t total);
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  ~Progress();

  void advance(uint64_t n = 1);
  /// Clear the line (also done by the destructor).
  void finish();

 private:
  void draw(uint64_t done);

  bool enabled_;
  bool color_;
  std::string label_;
  uint64_t total_;
  std::atomic<uint64_t> done_{0};
  std::mutex draw_mutex_;
  std::chrono::steady_clock::time_point last_draw_{};
  bool drawn_ = false;
};

}  // namespace tq::app
