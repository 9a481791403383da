// CodecArgs: typed access to a parsed spec element's key=value options.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <string>

#include <fmt/format.h>

#include "tq/codec/codec.h"
#include "tq/core/error.h"

namespace tq {

namespace {
const std::string* find_option(const CodecArgs& a, const std::string& key) {
  for (const auto& [k, v] : a.options) {
    if (k == key) {
      if (std::find(a.consumed.begin(), a.consumed.end(), key) == a.consumed.end()) a.consumed.push_back(key);
      return &v;
    }
  }
  return nullptr;
}
}  // namespace

bool CodecArgs::has(const std::string& key) const {
  return std::any_of(options.begin(), options.end(), [&](const auto& kv) { return kv.first == key; });
}

std::string CodecArgs::get_string(const std::string& key, const std::string& fallback) const {
  const std::string* v = find_option(*this, key);
  return v ? *v : fallback;
}

long CodecArgs::get_int(const std::string& key, long fallback) const {
  const std::string* v = find_option(*this, key);
  if (!v) return fallback;
  long out = 0;
  const auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec != std::errc() || ptr != v->data() + v->size())
    throw UsageError(fmt::format("codec spec '{}': option {}={} is not an integer", spec, key, *v));
  return out;
}

double CodecArgs::get_double(const std::string& key, double fallback) const {
  const std::string* v = find_option(*this, key);
  if (!v) return fallback;
  try {
    size_t used = 0;
    const double out = std::stod(*v, &used);
    if (used != v->size() || !std::isfinite(out)) throw std::invalid_argument("");
    return out;
  } catch (const std::exception&) {
    throw UsageError(fmt::format("codec spec '{}': option {}={} is not a finite number", spec, key, *v));
  }
}

int CodecArgs::require_bits(int lo, int hi) const {
  if (bits < 0) throw UsageError(fmt::format("codec spec '{}': {} needs a bit width, e.g. {}:{}", spec, name, name, hi > 4 ? 4 : hi));
  if (bits < lo || bits > hi)
    throw UsageError(fmt::format("codec spec '{}': {} supports {}..{} bits, not {}", spec, name, lo, hi, bits));
  return bits;
}

}  // namespace tq
