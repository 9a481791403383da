// tq benchmark: the main command. Codes the K/V tensors of dumps (or synthetic data) with a sweep
// of codecs and reports real bytes and error per (layer, head, tensor, codec), attention
// fidelity per (layer, query head, K codec, V codec), pooled summaries, Pareto fronts and the
// worst heads. The driver is lib/tq/bench; flags, columns and formulas: docs/benchmark.md.
#include <cstdio>
#include <filesystem>
#include <memory>

#include <fmt/format.h>

#include "app.h"
#include "commands.h"
#include "index_list.h"
#include "terminal.h"
#include "tq/bench/bench.h"
#include "tq/codec/codec.h"
#include "tq/core/error.h"

#ifndef TQ_DEFAULT_DATA_DIR
#define TQ_DEFAULT_DATA_DIR ""
#endif

namespace tq::app {

namespace {

struct BenchmarkCliConfig {
  std::vector<std::string> input;
  std::string synthetic;
  int head_dim = 128;
  int64_t n_vectors = 0;
  std::vector<int> bits_k{4};
  std::vector<int> bits_v;
  std::vector<std::string> codec, codec_k, codec_v;
  std::string pairs = "auto";
  int keep_sinks = 0;
  std::string codebook;
  // Index lists are bound as string lists so that both "--layers 0,2,5-7" and a TOML array
  // (layers = [0, 1, 2]) work; the items are joined with ',' and parsed by parse_index_list.
  std::vector<std::string> layers{"all"}, heads{"all"}, tokens{"all"};
  int seeds = 1;
  std::string metrics = "full";
  int64_t max_queries = 512;
  int64_t bootstrap = 1000;
  int64_t bootstrap_block = 0;
  int worst = 3;
  std::string tables = "auto";
  bool timing = false;
};

const char* const kTableNames[] = {"overview", "summary", "attn_summary", "pareto", "worst_heads", "rows", "attention"};

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& it : items) {
    if (!out.empty()) out += ',';
    out += it;
  }
  return out;
}

bench::BenchConfig make_config(const BenchmarkCliConfig& c, const RunContext& rc) {
  bench::BenchConfig b;
  b.inputs = c.input;
  if (b.inputs.empty() && c.synthetic.empty()) {
    const std::string dir = TQ_DEFAULT_DATA_DIR;
    std::error_code ec;
    if (dir.empty() || !std::filesystem::is_directory(dir, ec))
      throw Error(fmt::format("no --input given and the bundled data directory '{}' is missing; pass --input "
                              "FILE|DIR|GLOB or --synthetic PROFILE",
                              dir));
    b.inputs.push_back(dir);
  }
  b.synthetic = c.synthetic;
  b.head_dim = c.head_dim;
  b.n_vectors = c.n_vectors;
  b.bits_k = c.bits_k;
  b.bits_v = c.bits_v;
  b.codecs = c.codec;
  b.codecs_k = c.codec_k;
  b.codecs_v = c.codec_v;
  b.pairing = bench::parse_pairing(c.pairs);
  b.keep_sinks = c.keep_sinks;
  b.codebook = c.codebook;
  b.layers = parse_index_list(joined(c.layers), "--layers");
  b.heads = parse_index_list(joined(c.heads), "--heads");
  b.tokens = parse_index_list(joined(c.tokens), "--tokens");
  b.seed = rc.common.seed;
  b.seeds = c.seeds;
  b.metrics = bench::parse_metric_set(c.metrics);
  b.max_queries = c.max_queries;
  b.bootstrap = c.bootstrap;
  b.bootstrap_block = c.bootstrap_block;
  b.worst = c.worst;
  if (c.tables != "auto" && c.tables != "all") {
    b.tables = parse_name_list(c.tables, "--tables");
    for (const auto& t : b.tables) {
      bool known = false;
      for (const char* n : kTableNames) known |= t == n;
      if (!known)
        throw UsageError(fmt::format("--tables: unknown table '{}' (overview, summary, attn_summary, pareto, "
                                     "worst_heads, rows, attention, all, auto)",
                                     t));
    }
  }
  b.compact = c.tables == "auto" && rc.common.format == "table";
  return b;
}

Report run(const BenchmarkCliConfig& c, const RunContext& rc) {
  const bench::BenchConfig b = make_config(c, rc);
  std::unique_ptr<Progress> bar;
  bench::BenchTiming tm;
  Report r = bench::run_benchmark(
      b,
      [&](size_t done, size_t total) {
        if (!bar) bar = std::make_unique<Progress>(rc, "benchmark: layers", total);
        bar->advance(1);
        (void)done;
      },
      &tm);
  if (bar) bar->finish();
  if (c.input.empty() && c.synthetic.empty()) r.config["input"] = b.inputs;  // the default, resolved
  if (c.timing)
    std::fprintf(stderr, "tq benchmark: read %.3f s, code %.3f s, ip+attention %.3f s, pooling %.3f s (%d threads)\n",
                 tm.read, tm.code, tm.metrics, tm.pool, rc.threads);
  return r;
}

constexpr const char* kFooter =
    "Sweep: --bits-k/--bits-v lists expand the default codec family (tq-mse) or every --codec spec\n"
    "without ':BITS'; a spec with ':BITS' or one that takes no bits (fp16, q4_0, ...) is used as is.\n"
    "--codec applies to K and V; --codec-k/--codec-v set them separately. Several specs: repeat the\n"
    "flag or separate with ';' (specs contain commas). K and V codecs pair up for the attention\n"
    "metrics by --pairs (auto: zip equal-length lists, else every combination).\n"
    "Default input: the bundled real dumps in the source tree's data/ directory.\n"
    "Columns and formulas: docs/benchmark.md.\n\n";

}  // namespace

void add_benchmark_command(CLI::App& root, Context& ctx) {
  auto cfg = std::make_shared<BenchmarkCliConfig>();
  Command& cmd = ctx.add_command(root, "benchmark",
                                 "Code K/V of dumps with a sweep of codecs: real bytes, NMSE, inner-product and "
                                 "attention error, Pareto front");
  cmd.cli().footer(std::string(kFooter) + codec_spec_help());
  cmd.option("--input,-i", cfg->input,
             "Dump files, directories (every *.h5 inside, sorted) or globs; default: the bundled data/ dumps")
      ->type_name("PATH ...");
  cmd.option("--synthetic", cfg->synthetic,
             "Synthetic input instead of dumps: a tq synth profile (stories-like, smollm2-like, llama3-8b-like) "
             "generated in memory, or 'gaussian' (iid N(0,1), one layer, one head, no queries)");
  cmd.option("--head-dim", cfg->head_dim, "--synthetic gaussian: vector dimension d");
  cmd.option("--n-vectors", cfg->n_vectors,
             "--synthetic: number of vectors (tokens); 0 = the profile's default (gaussian: 4096)");
  cmd.option("--bits-k", cfg->bits_k, "Bit widths for K (list: 2,3,4)")->delimiter(',');
  cmd.option("--bits-v", cfg->bits_v, "Bit widths for V (list); default: the --bits-k list")->delimiter(',');
  cmd.option("--codec", cfg->codec, "Codec specs for K and V (repeat or separate with ';'); default tq-mse")
      ->delimiter(';')
      ->type_name("SPEC ...");
  cmd.option("--codec-k", cfg->codec_k, "Codec specs for K only (instead of --codec)")->delimiter(';')->type_name("SPEC ...");
  cmd.option("--codec-v", cfg->codec_v, "Codec specs for V only (instead of --codec)")->delimiter(';')->type_name("SPEC ...");
  cmd.option("--pairs", cfg->pairs, "How K and V codecs pair for attention: auto, zip, cross")
      ->check(CLI::IsMember({"auto", "zip", "cross"}));
  cmd.option("--keep-sinks", cfg->keep_sinks,
             "Keep the first N tokens at fp16 in every codec (appends sinks=N; counted as window bytes)");
  cmd.option("--codebook", cfg->codebook,
             "File or directory of trained codebooks for codecs with codebook=... (CodecContext::codebook_dir)")
      ->type_name("FILE|DIR");
  cmd.option("--layers", cfg->layers, "Layers: all, or a list such as 0,2,5-7");
  cmd.option("--heads", cfg->heads, "KV heads: all, or a list such as 0-3 (attention uses the query heads reading them)");
  cmd.option("--tokens", cfg->tokens, "Token rows: all, or a list such as 0-255 (attention among the selected tokens)");
  cmd.option("--seeds", cfg->seeds, "Repeat over N rotation seeds (seed, seed+1, ...): summary gives mean and sd");
  cmd.option("--metrics", cfg->metrics, "recon (reconstruction only, cheap), ip (+ inner products), full (+ attention)")
      ->check(CLI::IsMember({"recon", "cheap", "ip", "full"}));
  cmd.option("--max-queries", cfg->max_queries,
             "Query positions per head for inner-product and attention metrics (every ceil(T/N)-th); 0 = all");
  cmd.option("--bootstrap", cfg->bootstrap, "Block-bootstrap resamples for the nmse / attn_kl intervals; 0 = none");
  cmd.option("--bootstrap-block", cfg->bootstrap_block, "Tokens per bootstrap block; 0 = ceil(sqrt(T)) up to 64");
  cmd.option("--worst", cfg->worst, "Worst heads listed per (input, codec, tensor)");
  cmd.option("--tables", cfg->tables,
             "Tables to output: auto (compact for --format table, all otherwise), all, or a list of overview, "
             "summary, attn_summary, pareto, worst_heads, rows, attention");
  cmd.flag("--timing", cfg->timing,
           "Print wall seconds per stage (read, code, ip+attention, pooling) to stderr; not part of the report");
  cmd.on_run([cfg](const RunContext& rc) { return run(*cfg, rc); });
}

}  // namespace tq::app
