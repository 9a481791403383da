// Tests of codebook files (lib/tq/codebook/codebook_file.h): round trip and strict rejection.
#include <doctest/doctest.h>

#include <cstring>
#include <string>

#include "tq/codebook/codebook_file.h"
#include "tq/codebook/scalar_codebook.h"
#include "tq/core/error.h"
#include "tq/report/report.h"

namespace cb = tq::codebook;

namespace {

cb::CodebookFile sample_file() {
  cb::CodebookFile f;
  f.cb = tq::lloyd_max_sphere(64, 3);
  f.dim = 64;
  f.source = std::string("dump:data/smollm2_a.h5");
  f.scope = std::string("tensor");
  f.heldout = std::string("dump:data/smollm2_b.h5");
  f.layers = std::string("3");
  f.heads = std::string("1");
  f.solver = std::string("cma-es");
  f.objective = std::string("attention");
  f.seed = 42;
  f.train = 0.0123;
  f.heldout_value = 0.0145;
  f.start_train = 0.013;
  f.iterations = 12;
  f.evaluations = 130;
  f.tq_version = std::string("0.1.0");
  return f;
}

/// Replace the first occurrence of `from` in `s` (which must occur).
std::string replaced(std::string s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  REQUIRE(at != std::string::npos);
  return s.replace(at, from.size(), to);
}

void check_rejected(const std::string& text, const std::string& field) {
  CAPTURE(field);
  try {
    (void)cb::parse_codebook(text, "bad.toml");
    FAIL("accepted a bad file");
  } catch (const tq::Error& e) {
    const std::string msg = e.what();
    CAPTURE(msg);
    CHECK(msg.find("bad.toml") != std::string::npos);
    CHECK(msg.find(field) != std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);
  }
}

}  // namespace

TEST_CASE("codebook file: round trip keeps every field and every centroid bit; text is deterministic") {
  const cb::CodebookFile f = sample_file();
  const std::string text = cb::to_toml(f);
  const cb::CodebookFile g = cb::parse_codebook(text, "x.toml");
  CHECK(g.cb.bits == 3);
  REQUIRE(g.cb.centroids.size() == 8);
  CHECK(std::memcmp(g.cb.centroids.data(), f.cb.centroids.data(), 8 * sizeof(float)) == 0);
  CHECK(std::memcmp(g.cb.boundaries.data(), f.cb.boundaries.data(), 7 * sizeof(float)) == 0);
  CHECK(g.dim == 64);
  CHECK(g.source == f.source);
  CHECK(g.scope == "tensor");
  CHECK(g.per_tensor());
  CHECK(g.heldout == f.heldout);
  CHECK(g.layers == "3");
  CHECK(g.heads == "1");
  CHECK(g.tensor == "k");
  CHECK(g.rotation == "haar");
  CHECK(g.solver == "cma-es");
  CHECK(g.objective == "attention");
  CHECK(g.seed == 42);
  CHECK(g.train == 0.0123);
  CHECK(g.heldout_value == 0.0145);
  CHECK(g.start_train == 0.013);
  CHECK(g.iterations == 12);
  CHECK(g.evaluations == 130);
  CHECK(g.tq_version == "0.1.0");
  CHECK(cb::to_toml(g) == text);  // byte-identical re-serialisation
  CHECK(text.find("created") == std::string::npos);
  // a created date is accepted and kept, but it is the only extra
  cb::CodebookFile h = g;
  h.created = std::string("2026-01-01");
  CHECK(cb::parse_codebook(cb::to_toml(h), "y.toml").created == "2026-01-01");
  // nan values (not computed) survive
  h.heldout_value = std::nan("");
  CHECK(std::isnan(cb::parse_codebook(cb::to_toml(h), "y.toml").heldout_value));
}

TEST_CASE("codebook file: each bad file is rejected with one line naming the file and field") {
  const std::string good = cb::to_toml(sample_file());
  REQUIRE_NOTHROW(cb::parse_codebook(good, "bad.toml"));
  check_rejected(replaced(good, "dim = 64\n", ""), "dim");                       // missing field
  check_rejected(replaced(good, "solver = \"cma-es\"\n", ""), "solver");         // missing field
  check_rejected(replaced(good, "[values]\ntrain = 0.0123\n", "[values]\n"), "values.train");
  check_rejected(replaced(good, "version = 1", "version = 2"), "version");       // wrong version
  check_rejected(replaced(good, "format = \"tq-codebook\"", "format = \"other\""), "format");
  check_rejected(replaced(good, "bits = 3", "bits = 2"), "centroids");           // wrong count for the bits
  check_rejected(replaced(good, "bits = 3", "bits = 9"), "bits");
  // unsorted: swap the sign of the first centroid
  const tq::ScalarCodebook& law = tq::lloyd_max_sphere(64, 3);
  const std::string first = tq::format_round_trip(static_cast<double>(law.centroids[0]));
  check_rejected(replaced(good, first + ",", first.substr(1) + ","), "centroids");
  check_rejected(replaced(good, first + ",", "nan,"), "centroids");              // non-finite
  check_rejected(replaced(good, first + ",", "inf,"), "centroids");
  check_rejected(replaced(good, "seed = 42", "seed = \"42\""), "seed");           // wrong type
  check_rejected(replaced(good, "scope = \"tensor\"", "scope = \"analytic\""), "scope");  // dump source
  check_rejected(replaced(good, "seed = 42", "seed = 42\nsede = 1"), "sede");     // unknown key (typo)
  check_rejected(replaced(good, "tensor = \"k\"", "tensor = \"q\""), "tensor");
  check_rejected("format = \"tq-codebook\"\nversion = [", "bad.toml");             // TOML syntax
  CHECK_THROWS_WITH_AS(cb::load_codebook_file("/nonexistent/cb.toml"), doctest::Contains("/nonexistent/cb.toml"), tq::Error);
}
