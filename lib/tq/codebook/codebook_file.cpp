// Codebook files (codebook_file.h): deterministic TOML writer, strict toml++ reader.
#include "tq/codebook/codebook_file.h"

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "tq/core/error.h"
#include "tq/report/report.h"

namespace tq::codebook {

namespace {

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (u < 0x20 || u == 0x7F) {
      out += fmt::format("\\u{:04X}", static_cast<unsigned>(u));
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::string s = format_round_trip(v);
  // TOML floats need a '.' or an exponent.
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

std::string float_array(const std::vector<float>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    out += (i % 4 == 0) ? "\n  " : " ";
    out += number(static_cast<double>(v[i]));
    out += ",";
  }
  return out + "\n]";
}

struct Reader {
  const toml::table& t;
  const std::string& name;
  std::string prefix;
  std::set<std::string> used;

  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw Error(fmt::format("codebook file '{}': field '{}{}' {}", name, prefix, field, what));
  }
  const toml::node* node(const std::string& field) {
    used.insert(field);
    const toml::node* n = t.get(field);
    if (!n) fail(field, "is missing");
    return n;
  }
  std::string str(const std::string& field) {
    const auto v = node(field)->value_exact<std::string>();
    if (!v) fail(field, "must be a string");
    return *v;
  }
  int64_t integer(const std::string& field) {
    const auto v = node(field)->value_exact<int64_t>();
    if (!v) fail(field, "must be an integer");
    return *v;
  }
  double real(const std::string& field) {
    const toml::node* n = node(field);
    if (auto d = n->value_exact<double>()) return *d;
    if (auto i = n->value_exact<int64_t>()) return static_cast<double>(*i);
    fail(field, "must be a number");
  }
  std::vector<double> reals(const std::string& field) {
    const toml::array* a = node(field)->as_array();
    if (!a) fail(field, "must be an array of numbers");
    std::vector<double> out;
    for (size_t i = 0; i < a->size(); ++i) {
      const toml::node& e = *a->get(i);
      if (auto d = e.value_exact<double>()) {
        out.push_back(*d);
      } else if (auto k = e.value_exact<int64_t>()) {
        out.push_back(static_cast<double>(*k));
      } else {
        fail(field, fmt::format("entry {} is not a number", i));
      }
    }
    return out;
  }
  const toml::table& table(const std::string& field) {
    const toml::table* s = node(field)->as_table();
    if (!s) fail(field, "must be a table");
    return *s;
  }
  void no_unknown() const {
    for (auto&& [k, v] : t) {
      (void)v;
      const std::string key(k.str());
      if (!used.count(key)) throw Error(fmt::format("codebook file '{}': unknown field '{}{}'", name, prefix, key));
    }
  }
};

void check_one_of(Reader& r, const std::string& field, const std::string& v, std::initializer_list<const char*> allowed) {
  for (const char* a : allowed)
    if (v == a) return;
  std::string list;
  for (const char* a : allowed) {
    if (!list.empty()) list += ", ";
    list += a;
  }
  r.fail(field, fmt::format("is '{}', must be one of {}", v, list));
}

}  // namespace

std::string to_toml(const CodebookFile& f) {
  std::string s;
  s += "# tq scalar codebook (docs/codebooks.md)\n";
  s += fmt::format("format = {}\nversion = {}\n", quote(kCodebookFormat), kCodebookVersion);
  s += fmt::format("bits = {}\ndim = {}\n", f.cb.bits, f.dim);
  s += fmt::format("scope = {}\nsource = {}\nheldout = {}\n", quote(f.scope), quote(f.source), quote(f.heldout));
  s += fmt::format("layers = {}\nheads = {}\ntensor = {}\nrotation = {}\n", quote(f.layers), quote(f.heads), quote(f.tensor),
                   quote(f.rotation));
  s += fmt::format("solver = {}\nobjective = {}\nseed = {}\n", quote(f.solver), quote(f.objective), f.seed);
  s += "centroids = " + float_array(f.cb.centroids) + "\n";
  s += "boundaries = " + float_array(f.cb.boundaries) + "\n";
  s += fmt::format("\n[values]\ntrain = {}\nheldout = {}\nstart_train = {}\n", number(f.train), number(f.heldout_value),
                   number(f.start_train));
  s += fmt::format("\n[stats]\niterations = {}\nevaluations = {}\n", f.iterations, f.evaluations);
  s += fmt::format("\n[provenance]\ntq_version = {}\n", quote(f.tq_version));
  if (!f.created.empty()) s += fmt::format("created = {}\n", quote(f.created));
  return s;
}

CodebookFile parse_codebook(const std::string& text, const std::string& name) {
  toml::table t;
  try {
    t = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    const auto& src = e.source();
    throw Error(fmt::format("codebook file '{}': TOML error at line {}: {}", name, src.begin.line, e.description()));
  }
  Reader r{t, name, "", {}};
  CodebookFile f;
  const std::string format = r.str("format");
  if (format != kCodebookFormat) r.fail("format", fmt::format("is '{}', expected '{}'", format, kCodebookFormat));
  const int64_t version = r.integer("version");
  if (version != kCodebookVersion)
    r.fail("version", fmt::format("is {}, this tq reads version {}", version, kCodebookVersion));
  const int64_t bits = r.integer("bits");
  if (bits < 1 || bits > 8) r.fail("bits", fmt::format("is {}, must be 1..8", bits));
  f.cb.bits = static_cast<int>(bits);
  const int64_t dim = r.integer("dim");
  if (dim < 0 || dim > (int64_t{1} << 20)) r.fail("dim", fmt::format("is {}, must be 0 or a head dimension", dim));
  f.dim = static_cast<int>(dim);
  f.scope = r.str("scope");
  check_one_of(r, "scope", f.scope, {"analytic", "shared", "tensor"});
  f.source = r.str("source");
  f.heldout = r.str("heldout");
  if (f.scope == "analytic" && f.data_source()) r.fail("scope", "is 'analytic' but the source is a dump");
  if (f.scope != "analytic" && !f.data_source()) r.fail("scope", fmt::format("is '{}' but the source '{}' is a law", f.scope, f.source));
  f.layers = r.str("layers");
  f.heads = r.str("heads");
  f.tensor = r.str("tensor");
  check_one_of(r, "tensor", f.tensor, {"k", "v"});
  f.rotation = r.str("rotation");
  check_one_of(r, "rotation", f.rotation, {"haar", "hr", "id"});
  f.solver = r.str("solver");
  check_one_of(r, "solver", f.solver, {"lloyd-max", "cma-es", "fuzzy"});
  f.objective = r.str("objective");
  check_one_of(r, "objective", f.objective, {"mse", "ip", "attention"});
  const int64_t seed = r.integer("seed");
  if (seed < 0) r.fail("seed", "must be >= 0");
  f.seed = static_cast<uint64_t>(seed);

  const size_t k = size_t{1} << bits;
  const std::vector<double> c = r.reals("centroids");
  if (c.size() != k) r.fail("centroids", fmt::format("has {} entries, {} bits need {}", c.size(), bits, k));
  for (size_t i = 0; i < k; ++i) {
    if (!std::isfinite(c[i]) || !std::isfinite(static_cast<float>(c[i]))) r.fail("centroids", fmt::format("entry {} is not finite", i));
    if (i > 0 && !(static_cast<float>(c[i]) > static_cast<float>(c[i - 1])))
      r.fail("centroids", fmt::format("are not strictly increasing at entry {}", i));
  }
  const std::vector<double> b = r.reals("boundaries");
  if (b.size() != k - 1) r.fail("boundaries", fmt::format("has {} entries, {} bits need {}", b.size(), bits, k - 1));
  for (size_t i = 0; i + 1 < k; ++i) {
    if (!std::isfinite(b[i])) r.fail("boundaries", fmt::format("entry {} is not finite", i));
    const auto bi = static_cast<float>(b[i]);
    if (bi < static_cast<float>(c[i]) || bi > static_cast<float>(c[i + 1]))
      r.fail("boundaries", fmt::format("entry {} is not between centroids {} and {}", i, i, i + 1));
  }
  std::vector<float> cf(k), bf(k - 1);
  for (size_t i = 0; i < k; ++i) cf[i] = static_cast<float>(c[i]);
  for (size_t i = 0; i + 1 < k; ++i) bf[i] = static_cast<float>(b[i]);
  f.cb.centroids = std::move(cf);
  f.cb.boundaries = std::move(bf);
  f.cb.law = f.source;

  {
    Reader v{r.table("values"), name, "values.", {}};
    f.train = v.real("train");
    f.heldout_value = v.real("heldout");
    f.start_train = v.real("start_train");
    v.no_unknown();
  }
  {
    Reader s{r.table("stats"), name, "stats.", {}};
    f.iterations = s.integer("iterations");
    f.evaluations = s.integer("evaluations");
    s.no_unknown();
  }
  {
    Reader p{r.table("provenance"), name, "provenance.", {}};
    f.tq_version = p.str("tq_version");
    if (p.t.get("created")) f.created = p.str("created");
    p.no_unknown();
  }
  r.no_unknown();
  return f;
}

CodebookFile load_codebook_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("codebook file '{}': cannot be read", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_codebook(ss.str(), path);
}

void save_codebook_file(const std::string& path, const CodebookFile& f, bool force) {
  check_output(path, force);
  write_file_atomic(path, to_toml(f), force);
}

}  // namespace tq::codebook
