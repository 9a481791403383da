// The example config files under configs/ are valid TOML and follow the flag-mirroring rule
// (flat tables, keys spelled like long flag names).
#include <doctest/doctest.h>

#include <set>

#include <toml++/toml.h>

#ifndef TQ_SOURCE_DIR
#define TQ_SOURCE_DIR "."
#endif

TEST_CASE("configs/benchmark.toml parses and uses the documented keys") {
  const toml::table t = toml::parse_file(TQ_SOURCE_DIR "/configs/benchmark.toml");
  std::set<std::string> keys;
  // Long-flag spelling: lower-case words joined by single '-' (no std::regex: GCC 12 warns
  // falsely about it under -fsanitize=address with -Werror).
  auto flag_like = [](const std::string& k) {
    if (k.empty() || k.front() < 'a' || k.front() > 'z' || k.back() == '-') return false;
    for (size_t i = 0; i < k.size(); ++i) {
      const char c = k[i];
      const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && k[i - 1] != '-');
      if (!ok) return false;
    }
    return true;
  };
  for (auto&& [key, node] : t) {
    const std::string k(key.str());
    CHECK_MESSAGE(flag_like(k), k);
    CHECK_MESSAGE(!node.is_table(), k);
    keys.insert(k);
  }
  CHECK(keys == std::set<std::string>{"input", "codec", "bits-k", "bits-v", "layers", "heads", "seed", "seeds",
                                      "threads", "format"});
  CHECK(t["format"].value<std::string>() == "json");
  CHECK(t["bits-k"].as_array()->size() == 3);
}
