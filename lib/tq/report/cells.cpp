// Cell conversion and number/text formatting shared by the report renderers.
#include <array>
#include <charconv>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "tq/core/error.h"
#include "tq/report/report.h"

namespace tq {

namespace {
// Helper for std::visit with one lambda per alternative.
template <class... Fs>
struct Overloaded : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
Overloaded(Fs...) -> Overloaded<Fs...>;
}  // namespace

void Table::add(std::vector<Cell> row) {
  if (row.size() != columns.size()) {
    throw std::logic_error(fmt::format("table '{}': row has {} cells for {} columns", name, row.size(),
                                       columns.size()));
  }
  rows.push_back(std::move(row));
}

OutputFormat parse_output_format(const std::string& s) {
  if (s == "table") return OutputFormat::Table;
  if (s == "md") return OutputFormat::Markdown;
  if (s == "csv") return OutputFormat::Csv;
  if (s == "json") return OutputFormat::Json;
  throw UsageError("--format: '" + s + "' is not one of table, md, csv, json");
}

const char* output_format_name(OutputFormat f) {
  switch (f) {
    case OutputFormat::Table: return "table";
    case OutputFormat::Markdown: return "md";
    case OutputFormat::Csv: return "csv";
    case OutputFormat::Json: return "json";
  }
  return "table";
}

std::string format_significant(double v, int significant) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return fmt::format("{:.{}g}", v, significant);
}

std::string format_round_trip(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  // The longest shortest-round-trip double ("-2.2250738585072014e-308") has 24 characters.
  std::array<char, 32> buf{};
  const auto res = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  return std::string(buf.data(), res.ptr);
}

Json cell_to_json(const Cell& c) {
  return std::visit(Overloaded{[](std::monostate) { return Json(nullptr); },
                               [](int64_t v) { return Json(v); },
                               [](double v) { return std::isfinite(v) ? Json(v) : Json(nullptr); },
                               [](const std::string& v) { return Json(v); },
                               [](bool v) { return Json(v); }},
                    c);
}

std::string cell_to_text(const Cell& c) {
  return std::visit(Overloaded{[](std::monostate) { return std::string(); },
                               [](int64_t v) { return std::to_string(v); },
                               [](double v) { return format_significant(v); },
                               [](const std::string& v) { return v; },
                               [](bool v) { return std::string(v ? "true" : "false"); }},
                    c);
}

std::string cell_to_csv(const Cell& c) {
  if (const double* d = std::get_if<double>(&c)) return format_round_trip(*d);
  return cell_to_text(c);
}

std::string csv_quote(const std::string& field) {
  const bool edge_space = !field.empty() && (field.front() == ' ' || field.back() == ' ');
  if (!edge_space && field.find_first_of(",\"\r\n") == std::string::npos) return field;
  std::string out = "\"";
  for (char ch : field) {
    if (ch == '"') out += '"';  // RFC 4180: a quote inside a quoted field is doubled
    out += ch;
  }
  out += '"';
  return out;
}

std::string markdown_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (ch == '\\' || ch == '|') {
      out += '\\';
      out += ch;
    } else if (ch == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
      // CR LF -> one line break (the LF is handled on the next iteration)
    } else if (ch == '\n' || ch == '\r') {
      out += "<br>";
    } else {
      out += ch;
    }
  }
  return out;
}

}  // namespace tq
