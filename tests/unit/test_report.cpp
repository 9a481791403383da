// Tests of lib/tq/report renderers: text table, Markdown, CSV quoting, JSON layout and values.
#include <doctest/doctest.h>

#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "tq/core/error.h"
#include "tq/core/rng.h"
#include "tq/report/report.h"

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// An independent RFC 4180 reader (quoted fields, doubled quotes, embedded newlines) used to
// check that what the renderer writes parses back to the original fields.
std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> records;
  std::vector<std::string> record;
  std::string field;
  bool quoted = false, field_started = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (quoted) {
      if (ch == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (ch == '"') {
        quoted = false;
      } else {
        field += ch;
      }
    } else if (ch == '"' && !field_started) {
      quoted = true;
      field_started = true;
    } else if (ch == ',') {
      record.push_back(field);
      field.clear();
      field_started = false;
    } else if (ch == '\n') {
      record.push_back(field);
      records.push_back(record);
      record.clear();
      field.clear();
      field_started = false;
    } else {
      field += ch;
      field_started = true;
    }
  }
  return records;
}

tq::Report sample_report() {
  tq::Report r;
  r.command = "demo";
  r.config = {{"bits-k", {4, 3}}, {"codec", "tq-mse"}, {"seed", 7}};
  r.inputs = tq::Json::array({{{"path", "dump.h5"}, {"model_name", "tiny"}}});
  tq::Table t{"rows", {"layer", "codec", "mse", "ok"}, {}};
  t.add({int64_t{0}, "tq-mse:4", 0.0123456789, true});
  t.add({int64_t{12}, "q4_0", kNaN, false});
  t.add({int64_t{3}, std::monostate{}, -kInf, std::monostate{}});
  r.tables.push_back(t);
  tq::Table s{"summary", {"codec", "mean"}, {}};
  s.add({"tq-mse:4", 1.5});
  r.tables.push_back(s);
  r.extra["pareto"] = tq::Json::array({"tq-mse:4"});
  return r;
}

const tq::Json kRun = {{"started", "x"}, {"threads", 1}};

}  // namespace

TEST_CASE("report: number formatting") {
  CHECK(tq::format_significant(1.0 / 3.0) == "0.333333");
  CHECK(tq::format_significant(1234567.0) == "1.23457e+06");
  CHECK(tq::format_significant(0.000123456789) == "0.000123457");
  CHECK(tq::format_significant(4.0) == "4");
  CHECK(tq::format_significant(kNaN) == "nan");
  CHECK(tq::format_significant(-kInf) == "-inf");
  CHECK(tq::format_significant(2.0 / 3.0, 3) == "0.667");
  CHECK(tq::format_round_trip(0.1) == "0.1");
  CHECK(tq::format_round_trip(100.0) == "100");
  CHECK(tq::format_round_trip(kInf) == "inf");
  // Shortest round trip: parsing the text gives back the identical double.
  tq::Rng rng(42);
  for (int i = 0; i < 2000; ++i) {
    const double v = (rng.uniform() - 0.5) * std::pow(10.0, static_cast<double>(rng.below(40)) - 20.0);
    const std::string s = tq::format_round_trip(v);
    double back = 0.0;
    std::from_chars(s.data(), s.data() + s.size(), back);
    REQUIRE(back == v);
  }
}

TEST_CASE("report: cells to JSON (NaN and Inf -> null)") {
  CHECK(tq::cell_to_json(tq::Cell{kNaN}).is_null());
  CHECK(tq::cell_to_json(tq::Cell{kInf}).is_null());
  CHECK(tq::cell_to_json(tq::Cell{-kInf}).is_null());
  CHECK(tq::cell_to_json(tq::Cell{}).is_null());
  CHECK(tq::cell_to_json(tq::Cell{int64_t{-5}}) == -5);
  CHECK(tq::cell_to_json(tq::Cell{0.25}) == 0.25);
  CHECK(tq::cell_to_json(tq::Cell{std::string("a")}) == "a");
  CHECK(tq::cell_to_json(tq::Cell{true}) == true);
  CHECK(tq::cell_to_text(tq::Cell{true}) == "true");
  CHECK(tq::cell_to_text(tq::Cell{}) == "");
  CHECK(tq::cell_to_csv(tq::Cell{0.1 + 0.2}) == "0.30000000000000004");
}

TEST_CASE("report: Table::add and output format names") {
  tq::Table t{"t", {"a", "b"}, {}};
  CHECK_THROWS_AS(t.add({int64_t{1}}), std::logic_error);
  t.add({int64_t{1}, "x"});
  CHECK(t.rows.size() == 1);
  for (auto f : {tq::OutputFormat::Table, tq::OutputFormat::Markdown, tq::OutputFormat::Csv, tq::OutputFormat::Json}) {
    CHECK(tq::parse_output_format(tq::output_format_name(f)) == f);
  }
  CHECK_THROWS_AS(tq::parse_output_format("xml"), tq::UsageError);
}

TEST_CASE("report: CSV quoting follows RFC 4180") {
  CHECK(tq::csv_quote("plain") == "plain");
  CHECK(tq::csv_quote("") == "");
  CHECK(tq::csv_quote("a,b") == "\"a,b\"");
  CHECK(tq::csv_quote("say \"hi\"") == "\"say \"\"hi\"\"\"");
  CHECK(tq::csv_quote("two\nlines") == "\"two\nlines\"");
  CHECK(tq::csv_quote("cr\rhere") == "\"cr\rhere\"");
  CHECK(tq::csv_quote(" padded") == "\" padded\"");

  tq::Report r;
  tq::Table t{"rows", {"name", "value, units", "x"}, {}};
  t.add({"tq-mse:4,norm=fp32", 0.1, int64_t{3}});
  t.add({"he said \"no\"\nthen left", kNaN, std::monostate{}});
  r.tables.push_back(t);
  const auto records = parse_csv(tq::render_report(r, tq::OutputFormat::Csv, kRun));
  REQUIRE(records.size() == 3);
  CHECK(records[0] == std::vector<std::string>{"name", "value, units", "x"});
  CHECK(records[1] == std::vector<std::string>{"tq-mse:4,norm=fp32", "0.1", "3"});
  CHECK(records[2] == std::vector<std::string>{"he said \"no\"\nthen left", "nan", ""});
}

TEST_CASE("report: CSV with several tables separates them by an empty line") {
  const std::string csv = tq::render_report(sample_report(), tq::OutputFormat::Csv, kRun);
  CHECK(csv ==
        "layer,codec,mse,ok\n"
        "0,tq-mse:4,0.0123456789,true\n"
        "12,q4_0,nan,false\n"
        "3,,-inf,\n"
        "\n"
        "codec,mean\n"
        "tq-mse:4,1.5\n");
}

TEST_CASE("report: Markdown escapes '|' and right-aligns numeric columns") {
  CHECK(tq::markdown_escape("a|b") == "a\\|b");
  CHECK(tq::markdown_escape("back\\slash") == "back\\\\slash");
  CHECK(tq::markdown_escape("x\r\ny\nz") == "x<br>y<br>z");
  tq::Report r;
  tq::Table t{"rows", {"spec", "bits"}, {}};
  t.add({"a|b", 2.5});
  t.add({"c", int64_t{4}});
  r.tables.push_back(t);
  r.notes.push_back("pipes | here");
  CHECK(tq::render_report(r, tq::OutputFormat::Markdown, kRun) ==
        "| spec | bits |\n"
        "| :--- | ---: |\n"
        "| a\\|b | 2.5 |\n"
        "| c | 4 |\n"
        "\n"
        "pipes \\| here\n");
}

TEST_CASE("report: text table aligns columns, numbers to the right, 6 significant digits") {
  tq::Report r;
  tq::Table t{"rows", {"codec", "mse", "n"}, {}};
  t.add({"tq-mse:4", 0.0123456789, int64_t{7}});
  t.add({"q4_0", 12345.678, int64_t{1024}});
  t.add({"x", std::monostate{}, std::monostate{}});
  r.tables.push_back(t);
  r.notes.push_back("a note");
  CHECK(tq::render_report(r, tq::OutputFormat::Table, kRun) ==
        "codec           mse     n\n"
        "--------  ---------  ----\n"
        "tq-mse:4  0.0123457     7\n"
        "q4_0        12345.7  1024\n"
        "x\n"
        "\n"
        "note: a note\n");
  // Several tables get headings; an empty table says so.
  tq::Report two = sample_report();
  two.tables[1].rows.clear();
  const std::string text = tq::render_report(two, tq::OutputFormat::Table, kRun);
  CHECK(text.rfind("rows\n\n", 0) == 0);
  CHECK(text.find("\nsummary\n\ncodec  mean\n-----  ----\n(no rows)\n") != std::string::npos);
  // Multi-byte UTF-8 counts as one column per code point.
  tq::Report u;
  tq::Table ut{"rows", {"name", "v"}, {}};
  ut.add({"\xCE\xB5", int64_t{1}});  // Greek epsilon: 2 bytes, 1 column
  ut.add({"ab", int64_t{2}});
  u.tables.push_back(ut);
  CHECK(tq::render_report(u, tq::OutputFormat::Table, kRun) == "name  v\n----  -\n\xCE\xB5     1\nab    2\n");
}

TEST_CASE("report: JSON key order, rows keyed by column, NaN -> null, run last") {
  const std::string text = tq::render_report(sample_report(), tq::OutputFormat::Json, kRun);
  const tq::Json j = tq::Json::parse(text);
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  CHECK(keys == std::vector<std::string>{"schema_version", "tool", "version", "command", "config", "inputs", "rows",
                                         "summary", "pareto", "run"});
  CHECK(j["schema_version"] == 1);
  CHECK(j["tool"] == "tq");
  CHECK(j["command"] == "demo");
  CHECK(j["config"]["bits-k"] == tq::Json::array({4, 3}));
  std::vector<std::string> config_keys;
  for (const auto& [k, v] : j["config"].items()) config_keys.push_back(k);
  CHECK(config_keys == std::vector<std::string>{"bits-k", "codec", "seed"});
  REQUIRE(j["rows"].size() == 3);
  std::vector<std::string> row_keys;
  for (const auto& [k, v] : j["rows"][0].items()) row_keys.push_back(k);
  CHECK(row_keys == std::vector<std::string>{"layer", "codec", "mse", "ok"});
  CHECK(j["rows"][0]["mse"] == 0.0123456789);  // round trip: the very same double
  CHECK(j["rows"][1]["mse"].is_null());
  CHECK(j["rows"][2]["mse"].is_null());
  CHECK(j["rows"][2]["codec"].is_null());
  CHECK(text.find("NaN") == std::string::npos);
  CHECK(j["run"] == kRun);
  CHECK(text.back() == '\n');

  // Notes appear just before run.
  tq::Report with_notes = sample_report();
  with_notes.notes = {"n1"};
  const tq::Json jn = tq::Json::parse(tq::render_report(with_notes, tq::OutputFormat::Json, kRun));
  CHECK(jn.contains("notes"));
  CHECK(std::prev(jn.end()).key() == "run");
  CHECK(std::prev(jn.end(), 2).key() == "notes");
}

TEST_CASE("report: JSON refuses reserved or duplicate section names") {
  tq::Report r = sample_report();
  r.tables[1].name = "run";
  CHECK_THROWS_AS(tq::render_report(r, tq::OutputFormat::Json, kRun), std::logic_error);
  r = sample_report();
  r.extra["rows"] = 1;
  CHECK_THROWS_AS(tq::render_report(r, tq::OutputFormat::Json, kRun), std::logic_error);
  r = sample_report();
  r.tables[0].columns[1] = "layer";
  CHECK_THROWS_AS(tq::render_report(r, tq::OutputFormat::Json, kRun), std::logic_error);
}

TEST_CASE("report: JSON replaces invalid UTF-8 instead of throwing") {
  tq::Report r;
  r.inputs.push_back({{"path", std::string("bad\xFF.h5")}});
  const std::string text = tq::render_report(r, tq::OutputFormat::Json, kRun);
  CHECK(tq::Json::parse(text)["inputs"][0]["path"] == "bad\xEF\xBF\xBD.h5");
}

TEST_CASE("report: identical reports render identically (determinism)") {
  for (auto f : {tq::OutputFormat::Table, tq::OutputFormat::Markdown, tq::OutputFormat::Csv, tq::OutputFormat::Json}) {
    CHECK(tq::render_report(sample_report(), f, kRun) == tq::render_report(sample_report(), f, kRun));
  }
}
