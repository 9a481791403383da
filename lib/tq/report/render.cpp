// Report renderers: aligned text table, GitHub Markdown, CSV and JSON (layout in report.h).
#include <algorithm>
#include <set>
#include <stdexcept>

#include "tq/core/build_info.h"
#include "tq/report/report.h"

namespace tq {

namespace {

constexpr int kSchemaVersion = 1;
constexpr const char* kColumnGap = "  ";

// Top-level JSON keys owned by the renderer; tables and extra sections may not use them.
const std::set<std::string>& reserved_keys() {
  static const std::set<std::string> keys = {"schema_version", "tool", "version", "command",
                                             "config",         "inputs", "notes", "run"};
  return keys;
}

bool is_number(const Cell& c) {
  return std::holds_alternative<int64_t>(c) || std::holds_alternative<double>(c);
}

// A column is numeric (right-aligned) when every non-empty cell is a number and one exists.
std::vector<bool> numeric_columns(const Table& t) {
  std::vector<bool> numeric(t.columns.size(), false);
  for (size_t j = 0; j < t.columns.size(); ++j) {
    bool any = false, all = true;
    for (const auto& row : t.rows) {
      if (std::holds_alternative<std::monostate>(row[j])) continue;
      any = true;
      all = all && is_number(row[j]);
    }
    numeric[j] = any && all;
  }
  return numeric;
}

// Display width of UTF-8 text: the number of code points (continuation bytes 10xxxxxx skipped).
size_t display_width(const std::string& s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char ch) {
    return (static_cast<unsigned char>(ch) & 0xC0u) != 0x80u;
  }));
}

// Text tables are one line per row: control characters that would break alignment -> space.
std::string one_line(std::string s) {
  std::replace_if(s.begin(), s.end(), [](char ch) { return ch == '\n' || ch == '\r' || ch == '\t'; }, ' ');
  return s;
}

void pad(std::string& out, const std::string& cell, size_t width, bool right) {
  const size_t fill = width - display_width(cell);
  if (right) out.append(fill, ' ');
  out += cell;
  if (!right) out.append(fill, ' ');
}

void check_row_sizes(const Table& t) {
  for (const auto& row : t.rows) {
    if (row.size() != t.columns.size()) {
      throw std::logic_error("table '" + t.name + "': a row does not match its columns");
    }
  }
}

void render_text_table(const Table& t, std::string& out) {
  const size_t ncol = t.columns.size();
  std::vector<std::vector<std::string>> cells;
  cells.reserve(t.rows.size());
  std::vector<size_t> width(ncol, 0);
  for (size_t j = 0; j < ncol; ++j) width[j] = display_width(one_line(t.columns[j]));
  for (const auto& row : t.rows) {
    auto& texts = cells.emplace_back();
    for (size_t j = 0; j < ncol; ++j) {
      texts.push_back(one_line(cell_to_text(row[j])));
      width[j] = std::max(width[j], display_width(texts.back()));
    }
  }
  const auto numeric = numeric_columns(t);
  auto emit_line = [&](const std::vector<std::string>& texts) {
    std::string line;
    for (size_t j = 0; j < ncol; ++j) {
      if (j > 0) line += kColumnGap;
      pad(line, texts[j], width[j], numeric[j]);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  };
  std::vector<std::string> header;
  for (const auto& c : t.columns) header.push_back(one_line(c));
  emit_line(header);
  std::vector<std::string> rule;
  for (size_t j = 0; j < ncol; ++j) rule.emplace_back(width[j], '-');
  emit_line(rule);
  for (const auto& texts : cells) emit_line(texts);
  if (t.rows.empty()) out += "(no rows)\n";
}

std::string render_text(const Report& r) {
  std::string out;
  const bool headings = r.tables.size() > 1;
  for (size_t i = 0; i < r.tables.size(); ++i) {
    if (i > 0) out += '\n';
    if (headings) out += r.tables[i].name + "\n\n";
    render_text_table(r.tables[i], out);
  }
  if (!r.notes.empty()) {
    out += '\n';
    for (const auto& note : r.notes) out += "note: " + note + '\n';
  }
  return out;
}

void render_markdown_table(const Table& t, std::string& out) {
  if (t.columns.empty()) return;
  const auto numeric = numeric_columns(t);
  out += '|';
  for (const auto& c : t.columns) out += ' ' + markdown_escape(c) + " |";
  out += "\n|";
  for (size_t j = 0; j < t.columns.size(); ++j) out += numeric[j] ? " ---: |" : " :--- |";
  out += '\n';
  for (const auto& row : t.rows) {
    out += '|';
    for (const auto& cell : row) out += ' ' + markdown_escape(cell_to_text(cell)) + " |";
    out += '\n';
  }
}

std::string render_markdown(const Report& r) {
  std::string out;
  const bool headings = r.tables.size() > 1;
  for (size_t i = 0; i < r.tables.size(); ++i) {
    if (i > 0) out += '\n';
    if (headings) out += "### " + markdown_escape(r.tables[i].name) + "\n\n";
    render_markdown_table(r.tables[i], out);
  }
  for (const auto& note : r.notes) out += '\n' + markdown_escape(note) + '\n';
  return out;
}

std::string render_csv(const Report& r) {
  std::string out;
  for (size_t i = 0; i < r.tables.size(); ++i) {
    const Table& t = r.tables[i];
    if (i > 0) out += '\n';
    for (size_t j = 0; j < t.columns.size(); ++j) {
      if (j > 0) out += ',';
      out += csv_quote(t.columns[j]);
    }
    out += '\n';
    for (const auto& row : t.rows) {
      for (size_t j = 0; j < row.size(); ++j) {
        if (j > 0) out += ',';
        out += csv_quote(cell_to_csv(row[j]));
      }
      out += '\n';
    }
  }
  return out;
}

// Claim a top-level key, refusing reserved names and duplicates (a programming error).
void claim_key(std::set<std::string>& used, const std::string& key, const char* what) {
  if (reserved_keys().count(key) != 0 || !used.insert(key).second) {
    throw std::logic_error(std::string("report ") + what + " '" + key +
                           "' clashes with another top-level JSON key");
  }
}

std::string render_json(const Report& r, const Json& run_info) {
  Json j = Json::object();
  j["schema_version"] = kSchemaVersion;
  j["tool"] = "tq";
  j["version"] = build::kVersion;
  j["command"] = r.command;
  j["config"] = r.config;
  j["inputs"] = r.inputs;
  std::set<std::string> used;
  for (const auto& t : r.tables) {
    claim_key(used, t.name, "table");
    std::set<std::string> seen;
    for (const auto& c : t.columns) {
      if (!seen.insert(c).second) throw std::logic_error("table '" + t.name + "': duplicate column '" + c + "'");
    }
    Json rows = Json::array();
    for (const auto& row : t.rows) {
      Json obj = Json::object();
      for (size_t k = 0; k < t.columns.size(); ++k) obj[t.columns[k]] = cell_to_json(row[k]);
      rows.push_back(std::move(obj));
    }
    j[t.name] = std::move(rows);
  }
  for (const auto& [key, value] : r.extra.items()) {
    claim_key(used, key, "section");
    j[key] = value;
  }
  if (!r.notes.empty()) j["notes"] = r.notes;
  j["run"] = run_info;
  // Invalid UTF-8 (say, a file name in another encoding) is replaced rather than thrown on.
  return j.dump(2, ' ', false, Json::error_handler_t::replace) + '\n';
}

}  // namespace

std::string render_report(const Report& r, OutputFormat f, const Json& run_info) {
  for (const auto& t : r.tables) check_row_sizes(t);
  switch (f) {
    case OutputFormat::Table: return render_text(r);
    case OutputFormat::Markdown: return render_markdown(r);
    case OutputFormat::Csv: return render_csv(r);
    case OutputFormat::Json: return render_json(r, run_info);
  }
  throw std::logic_error("unknown output format");
}

}  // namespace tq
