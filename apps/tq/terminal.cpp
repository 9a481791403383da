// Terminal detection, colour and progress output on stderr.
#include "terminal.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

#include "app.h"

namespace tq::app {

namespace {
constexpr auto kRedrawInterval = std::chrono::milliseconds(100);
constexpr double kPercent = 100.0;
}  // namespace

bool stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

bool color_allowed() {
  const char* no_color = std::getenv("NO_COLOR");
  const bool disabled = no_color != nullptr && *no_color != '\0';
  return !disabled && stderr_is_terminal();
}

std::string colorize(const std::string& text, const char* sgr, bool color) {
  if (!color) return text;
  return fmt::format("\033[{}m{}\033[0m", sgr, text);
}

Progress::Progress(const RunContext& rc, std::string label, uint64_t total)
    : enabled_(rc.progress), color_(rc.color), label_(std::move(label)), total_(total) {}

Progress::~Progress() { finish(); }

void Progress::advance(uint64_t n) {
  const uint64_t done = done_.fetch_add(n) + n;
  if (!enabled_) return;
  std::unique_lock<std::mutex> lock(draw_mutex_, std::try_to_lock);
  if (!lock.owns_lock()) return;  // another thread is drawing; skip this update
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_draw_ < kRedrawInterval && done < total_) return;
  last_draw_ = now;
  draw(done);
}

void Progress::draw(uint64_t done) {
  const double pct = total_ > 0 ? kPercent * static_cast<double>(done) / static_cast<double>(total_) : kPercent;
  const std::string line = fmt::format("{}: {}/{} ({:.0f}%)", colorize(label_, "1", color_), done, total_, pct);
  std::fprintf(stderr, "\r%s\033[K", line.c_str());  // \033[K erases the rest of the line
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::finish() {
  std::lock_guard<std::mutex> lock(draw_mutex_);
  if (!enabled_ || !drawn_) return;
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
  drawn_ = false;
}

}  // namespace tq::app
