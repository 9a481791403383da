// --config FILE.toml: option values from a TOML file, applied after the command line is parsed.
//
// Why toml++ rather than CLI11's own config reader: CLI11 2.1's reader is a loose INI/TOML
// subset that maps [sections] to subcommands, only reads a --config given to the root app, and
// reports unknown keys without the file name or line. toml++ is a complete TOML 1.0 parser with
// line:column positions, so every error here can name the file, the line and the key, and the
// values are fed through the same CLI11 options (validators and conversions included) as flags.
#include <set>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "app.h"
#include "tq/core/error.h"

namespace tq::app {

namespace {

// Keys that configure the file reading itself or only make sense interactively.
const std::set<std::string> kNotConfigurable = {"config", "help", "version"};

std::string where(const std::string& path, const toml::node& node) {
  const auto& src = node.source();
  return src.begin ? fmt::format("{}:{}", path, src.begin.line) : path;
}

// A TOML scalar as the text CLI11 would have seen on the command line.
bool scalar_text(const toml::node& node, std::string& out) {
  if (auto s = node.value_exact<std::string>()) {
    out = *s;
  } else if (auto i = node.value_exact<int64_t>()) {
    out = std::to_string(*i);
  } else if (auto d = node.value_exact<double>()) {
    out = format_round_trip(*d);
  } else if (auto b = node.value_exact<bool>()) {
    out = *b ? "true" : "false";
  } else {
    return false;  // dates, times, arrays, tables
  }
  return true;
}

}  // namespace

void Command::apply_config_file(const std::string& path) {
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    const auto& src = e.source();
    // toml++ reports a missing/unreadable file as a parse error without a position.
    if (!src.begin) throw Error(fmt::format("cannot read config file '{}': {}", path, e.description()));
    throw Error(fmt::format("{}:{}:{}: {}", path, src.begin.line, src.begin.column, e.description()));
  }

  // Options given on the command line, remembered before the file adds results of its own.
  std::set<const CLI::Option*> from_command_line;
  std::set<std::string> seen_keys;  // normalised, to catch `bits_k` next to `bits-k`

  for (auto&& [raw_key, node] : table) {
    const std::string key_text(raw_key.str());
    std::string key = key_text;
    for (char& ch : key) {
      if (ch == '_') ch = '-';
    }
    const std::string at = where(path, node);
    if (!seen_keys.insert(key).second) {
      throw Error(fmt::format("{}: key '{}' is given twice (with '-' and '_' spellings)", at, key_text));
    }
    if (kNotConfigurable.count(key) != 0) {
      throw Error(fmt::format("{}: key '{}' cannot be set in a config file", at, key_text));
    }
    CLI::Option* opt = cli_->get_option_no_throw("--" + key);
    if (opt == nullptr) {
      CLI::Option* positional = cli_->get_option_no_throw(key);
      if (positional != nullptr && positional->get_name(true) == key) opt = positional;
    }
    if (opt == nullptr || !opt->get_configurable()) {
      throw Error(fmt::format("{}: unknown key '{}' (tq {} has no option --{})", at, key_text, name_, key));
    }
    if (from_command_line.count(opt) != 0) continue;
    if (opt->count() > 0) {  // the command line wins
      from_command_line.insert(opt);
      continue;
    }

    std::vector<std::string> values;
    if (const toml::array* arr = node.as_array()) {
      for (const toml::node& elem : *arr) {
        std::string text;
        if (!scalar_text(elem, text)) {
          throw Error(fmt::format("{}: key '{}': array elements must be strings, numbers or booleans", at,
                                  key_text));
        }
        values.push_back(std::move(text));
      }
    } else {
      std::string text;
      if (!scalar_text(node, text)) {
        throw Error(fmt::format("{}: key '{}': expected a string, number, boolean or array of them (tq config "
                                "files are flat key = value lists)",
                                at, key_text));
      }
      values.push_back(std::move(text));
    }
    if (opt->get_expected_min() == 0) {  // a flag: only true / false make sense
      if (values.size() != 1 || (values[0] != "true" && values[0] != "false")) {
        throw Error(fmt::format("{}: key '{}' is a flag: expected true or false", at, key_text));
      }
    }
    try {
      opt->add_result(values);
      opt->run_callback();  // validators and conversion, exactly as for a command-line value
    } catch (const CLI::Error& e) {
      throw Error(fmt::format("{}: key '{}': {}", at, key_text, e.what()));
    }
  }
}

}  // namespace tq::app
