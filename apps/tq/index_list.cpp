#include "index_list.h"

#include <algorithm>
#include <charconv>

#include "tq/core/error.h"

namespace tq::app {

namespace {

// Largest index accepted (a guard against typos such as 10000000000).
constexpr int kMaxIndex = 1 << 20;

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> items;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    items.push_back(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return items;
}

int parse_index(const std::string& s, const std::string& flag, const std::string& text) {
  int v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size() || v < 0 || v > kMaxIndex)
    throw UsageError(flag + ": '" + text + "' is not a list of indices such as 0,2,5-7 (or 'all')");
  return v;
}

}  // namespace

std::vector<int> parse_index_list(const std::string& text, const std::string& flag) {
  if (text.empty() || text == "all") return {};
  std::vector<int> out;
  for (const std::string& item : split(text)) {
    const size_t dash = item.find('-');
    if (dash == std::string::npos) {
      out.push_back(parse_index(item, flag, text));
      continue;
    }
    const int lo = parse_index(item.substr(0, dash), flag, text);
    const int hi = parse_index(item.substr(dash + 1), flag, text);
    if (hi < lo) throw UsageError(flag + ": range '" + item + "' is empty");
    for (int i = lo; i <= hi; ++i) out.push_back(i);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<std::string> parse_name_list(const std::string& text, const std::string& flag) {
  std::vector<std::string> out;
  for (const std::string& item : split(text)) {
    if (item.empty()) throw UsageError(flag + ": '" + text + "' has an empty item");
    if (std::find(out.begin(), out.end(), item) == out.end()) out.push_back(item);
  }
  return out;
}

}  // namespace tq::app
