#pragma once
// Parsing of index selections such as --layers / --heads: "all" (or empty) = everything,
// otherwise comma-separated non-negative integers and inclusive ranges, e.g. "0,2,5-7".
#include <string>
#include <vector>

namespace tq::app {

/// Indices in ascending order without duplicates; empty for "all" / "". Throws tq::UsageError
/// naming `flag` on anything else (negative numbers, "3-1", "x", trailing commas).
std::vector<int> parse_index_list(const std::string& text, const std::string& flag);

/// Comma-separated names ("k,v,q"); empty items are an error naming `flag`.
std::vector<std::string> parse_name_list(const std::string& text, const std::string& flag);

}  // namespace tq::app
