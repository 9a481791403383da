#pragma once
// Reports: what every subcommand emits. A report is a few named tables of rows (one row per
// (layer, head, tensor, codec), say) plus metadata, rendered as an aligned text table, GitHub
// Markdown, CSV or JSON. Rendering happens only after all work is done, so a failed run never
// leaves partial output (stdout gets nothing, --out is never created).
//
// Formats:
//   table  aligned columns for people: numbers right-aligned, doubles to 6 significant digits,
//          a heading per table when there is more than one, notes underneath.
//   md     GitHub Markdown pipe tables ('|' escaped as '\|', numeric columns right-aligned).
//   csv    RFC 4180 quoting (fields with , " CR LF or edge spaces are quoted, " doubled), LF line
//          ends, doubles in shortest round-trip form; several tables are separated by one empty
//          line, each with its own header row.
//   json   the layout below (2-space indent, UTF-8; invalid UTF-8 bytes become U+FFFD).
//
// JSON layout (schema_version 1), keys in this order:
//   { "schema_version": 1, "tool": "tq", "version": "0.1.0", "command": "benchmark",
//     "config": {resolved config: defaults + --config file + flags},
//     "inputs": [{path, attributes...}],
//     "<table name>": [ {column: value, ...}, ... ], ...   (one key per table, in order)
//     <extra sections>, "notes": [...] (only when there are notes),
//     "run": {started, finished, wall_s, host, threads, git_commit, argv} }
// Everything outside "run" is byte-identical between runs with the same inputs, config and seed
// (fixed key order, round-trip double formatting, no timestamps, no thread count). Doubles that
// are NaN or +-Inf become null.
#include <chrono>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace tq {

using Json = nlohmann::ordered_json;

/// One cell: empty, integer, real, text or flag. Unsigned sizes must be cast to int64_t
/// (std::variant refuses the narrowing conversion at compile time).
using Cell = std::variant<std::monostate, int64_t, double, std::string, bool>;

struct Table {
  std::string name;                  ///< JSON key and table heading ("rows", "summary", ...)
  std::vector<std::string> columns;  ///< column names in output order
  std::vector<std::vector<Cell>> rows;
  /// Append a row; cells must match columns in order (std::logic_error otherwise).
  void add(std::vector<Cell> row);
};

// The enumerators Table and Json reuse the type names on purpose (OutputFormat::Json reads
// well); -Wshadow would flag them, so it is silenced for this one declaration.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
enum class OutputFormat { Table, Markdown, Csv, Json };
#pragma GCC diagnostic pop
/// "table", "md", "csv" or "json"; anything else throws UsageError naming --format.
OutputFormat parse_output_format(const std::string& s);
/// The inverse of parse_output_format.
const char* output_format_name(OutputFormat f);

struct Report {
  std::string command;
  Json config = Json::object();   ///< the resolved config (flags + --config file + defaults)
  Json inputs = Json::array();    ///< input metadata: one object per input file
  std::vector<Table> tables;
  Json extra = Json::object();    ///< further top-level JSON sections (e.g. "pareto"); JSON only
  std::vector<std::string> notes; ///< human-readable notes printed under text/md tables
  /// Keys added to the JSON "run" object by the subcommand (timings: the only values allowed
  /// to differ between identical runs). Merged by the app framework (apps/tq/app.cpp).
  Json run_extra = Json::object();
};

/// Options every subcommand shares (the CLI wiring is apps/tq/app.h).
struct OutputOptions {
  OutputFormat format = OutputFormat::Table;
  std::string out;     ///< file path; empty -> stdout
  bool force = false;  ///< allow overwriting `out`
};

/// Render as text in the given format. JSON adds schema_version, tool, version and `run_info`
/// as the final "run" key. Throws std::logic_error when a table or extra section uses a
/// reserved top-level key (schema_version, tool, version, command, config, inputs, notes, run)
/// or two sections share a name.
std::string render_report(const Report& r, OutputFormat f, const Json& run_info);

/// Render and write to stdout or atomically to options.out (see write_file_atomic).
void emit_report(const Report& r, const OutputOptions& options, const Json& run_info);

/// Throw tq::Error (one line naming the file) if `path` exists and force is false, if it is a
/// directory, or if its directory is missing or not writable. Subcommands run this before doing
/// any work so no time is wasted and nothing partial is left.
void check_output(const std::string& path, bool force);

/// Atomically write `content` to `path`: a temporary file in the same directory is written,
/// fsync'ed and then renamed over `path` (overwrite) or hard-linked to it (no overwrite, which
/// fails with tq::Error if `path` appeared meanwhile). On any failure the temporary file is
/// removed and `path` is untouched. The new file gets mode 0666 & ~umask.
void write_file_atomic(const std::string& path, const std::string& content, bool overwrite);

/// Cell -> JSON value (NaN/Inf -> null) / display text (doubles to 6 significant digits) /
/// CSV field text before quoting (doubles in shortest round-trip form).
Json cell_to_json(const Cell& c);
std::string cell_to_text(const Cell& c);
std::string cell_to_csv(const Cell& c);

/// A double to `significant` significant digits ("%.6g" style: 0.000123457, 1.5e+07, nan, inf).
std::string format_significant(double v, int significant = 6);
/// A double in the shortest form that parses back to the same value (std::to_chars).
std::string format_round_trip(double v);

/// Quote one CSV field per RFC 4180 when needed.
std::string csv_quote(const std::string& field);
/// Escape text for a GitHub Markdown table cell ('\' and '|' backslash-escaped, newlines -> <br>).
std::string markdown_escape(const std::string& text);

// ---- the "run" object ------------------------------------------------------------------------

/// When a run started: wall-clock time for the timestamp, steady clock for wall_s.
struct RunClock {
  std::chrono::system_clock::time_point wall = std::chrono::system_clock::now();
  std::chrono::steady_clock::time_point steady = std::chrono::steady_clock::now();
};

/// {started, finished, wall_s, host, threads, git_commit, argv}: timestamps are UTC ISO 8601
/// with milliseconds ("2025-01-31T12:34:56.789Z"), finished = now, git_commit from
/// tq/core/build_info.h. The only part of a report allowed to differ between identical runs.
Json run_info(const RunClock& started, int threads, const std::vector<std::string>& argv);

/// UTC ISO 8601 with milliseconds.
std::string format_utc(std::chrono::system_clock::time_point t);

}  // namespace tq
