#pragma once
// Codebook files: a solved scalar codebook plus how it was made, as TOML (docs/codebooks.md).
//
//   format = "tq-codebook"          version = 1
//   bits = 2                        dim = 64            (0: not tied to a head dim, e.g. N(0,1))
//   centroids = [...]               2^bits finite, strictly increasing (fp32 values, written in
//   boundaries = [...]              2^bits - 1, c_i <= t_i <= c_{i+1}    shortest round-trip form)
//   scope = "analytic" | "shared" | "tensor"
//   source = "beta:64" | "gaussian" | "gaussian:D" | "dump:PATH"
//   heldout = "samples" | "tokens" | "dump:PATH"
//   layers = "all" | "0,3-5"   heads = "all" | "1"   tensor = "k" | "v"   rotation = "haar"
//   solver = "lloyd-max" | "cma-es" | "fuzzy"      objective = "mse" | "ip" | "attention"
//   seed = 0                        (integer, < 2^63)
//   [values]      train = ..., heldout = ..., start_train = ...   (objective values; nan allowed)
//   [stats]       iterations = ..., evaluations = ...
//   [provenance]  tq_version = "0.1.0", created = "..." (optional; ignored by comparisons)
//
// scope "tensor" = a data codebook solved for exactly one (layer, KV head, tensor): a codec
// using it writes its centroids (fp32) into every encoding as side bytes. "shared" data
// codebooks (several layers/heads) and "analytic" ones are model-wide constants: no bytes.
//
// The loader is strict: any missing or mistyped field, unknown key, wrong version, count that
// does not match the bits, unsorted or non-finite centroid throws tq::Error with ONE line naming
// the file and the field.
#include <cstdint>
#include <limits>
#include <string>

#include "tq/codebook/scalar_codebook.h"

namespace tq::codebook {

inline constexpr const char* kCodebookFormat = "tq-codebook";
inline constexpr int kCodebookVersion = 1;

struct CodebookFile {
  ScalarCodebook cb;  ///< bits, centroids, boundaries (law = source)
  int dim = 0;
  std::string scope = "analytic";
  std::string source, heldout = "samples";
  std::string layers = "all", heads = "all", tensor = "k", rotation = "haar";
  std::string solver = "lloyd-max", objective = "mse";
  uint64_t seed = 0;
  double train = std::numeric_limits<double>::quiet_NaN();
  double heldout_value = std::numeric_limits<double>::quiet_NaN();
  double start_train = std::numeric_limits<double>::quiet_NaN();  ///< objective of the solver's start
  int64_t iterations = 0, evaluations = 0;
  std::string tq_version;
  std::string created;  ///< optional, never compared

  bool data_source() const { return source.rfind("dump:", 0) == 0; }
  bool per_tensor() const { return scope == "tensor"; }
};

/// The TOML text (deterministic: no date unless `created` is set).
std::string to_toml(const CodebookFile& f);

/// Parse TOML text; `name` (the file path) prefixes every error message.
CodebookFile parse_codebook(const std::string& text, const std::string& name);

/// Read and parse a file (errors name the file).
CodebookFile load_codebook_file(const std::string& path);

/// Write atomically (refuses to overwrite an existing file unless `force`).
void save_codebook_file(const std::string& path, const CodebookFile& f, bool force);

}  // namespace tq::codebook
