// tq apply: OPEN-LOOP reconstruction of a dump. Every head's K and V of the input dump is
// encoded and decoded by one codec (seeded per (layer, head, tensor) exactly like every other
// subcommand) and written to a new dump; q, k_pre, q_pre, grad2_k, grad2_v and the tokens are
// copied unchanged. The K/V were produced by the uncompressed model, so the error of one layer
// does not reach the next one, nor later tokens: this is the open-loop view. The closed-loop
// effect on the model's predictions is measured by `scripts/dump_kv.py --replay` (docs/replay.md).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <set>

#include <fmt/format.h>

#include "app.h"
#include "commands.h"
#include "dump_input.h"
#include "index_list.h"
#include "tq/codec/codec.h"
#include "tq/core/build_info.h"
#include "tq/core/error.h"
#include "tq/core/rng.h"
#include "tq/io/dump.h"

namespace tq::app {

namespace {

struct ApplyConfig {
  std::string codec;
  std::string input;
  std::string out;
  bool force = false;
  std::string layers = "all";
  std::string dtype = "f32";
  int deflate = 0;
};

DType parse_dtype(const std::string& s) {
  if (s == "f32" || s == "fp32" || s == "float32") return DType::F32;
  if (s == "f16" || s == "fp16" || s == "float16") return DType::F16;
  if (s == "bf16" || s == "bfloat16") return DType::BF16;
  throw UsageError(fmt::format("--dtype: '{}' is not f32, f16 or bf16", s));
}

void validate(const ApplyConfig& c) {
  if (c.codec.empty()) throw UsageError("--codec SPEC is required (e.g. tq-mse:4, kivi:2, q4_0)");
  if (c.input.empty()) throw UsageError("--input DUMP is required: the dump whose K and V are reconstructed");
  if (c.out.empty()) throw UsageError("--out FILE.h5 is required: where to write the reconstructed dump");
  if (c.deflate < 0 || c.deflate > 9) throw UsageError(fmt::format("--deflate: {} is not in 0-9", c.deflate));
  parse_dtype(c.dtype);
  std::error_code ec;
  if (std::filesystem::exists(c.out, ec) && std::filesystem::equivalent(c.input, c.out, ec)) {
    throw UsageError(fmt::format("--out {}: is the input dump; tq apply never modifies its input", c.out));
  }
}

/// Per (layer, tensor) totals.
struct Totals {
  ByteCount bytes;
  size_t elements = 0;
  double err2 = 0.0, x2 = 0.0;
};

Report run(const ApplyConfig& c, const RunContext& rc) {
  const DType dtype = parse_dtype(c.dtype);
  DumpReader reader(c.input);
  const DumpInfo& info = reader.info();
  if (info.layers.empty()) throw Error(fmt::format("{}: the dump has no layers", c.input));
  // Layers: all present ones, or the listed ones (each must be present); the others are copied.
  std::set<int> wanted;
  if (c.layers == "all") {
    for (const auto& l : info.layers) wanted.insert(l.index);
  } else {
    for (int l : parse_index_list(c.layers, "--layers")) {
      info.layer(l);  // throws naming the file when absent
      wanted.insert(l);
    }
  }
  // Build (and so validate) the codec once before anything is written.
  std::string canonical;
  {
    const LayerInfo& l0 = info.layers.front();
    CodecContext cx{static_cast<size_t>(l0.head_dim), seed_for(rc.common.seed, l0.index, 0, "k"), "k", ""};
    auto probe = make_codec(c.codec, cx);
    if (probe->needs_training()) {
      throw UsageError(fmt::format("--codec '{}': data-trained codecs are not supported by tq apply", c.codec));
    }
    canonical = probe->spec();
  }
  check_output(c.out, c.force);

  DumpMeta meta;
  meta.model_name = info.model_name;
  meta.model_source = info.model_source;
  meta.weight_precision = info.weight_precision;
  meta.creator = fmt::format("tq apply {}", build::kVersion);
  meta.n_layers = info.n_layers;
  meta.token_ids = info.token_ids;
  meta.positions = info.positions;
  static const std::set<std::string> kOwn = {"format", "format_version", "model_name", "model_source",
                                             "weight_precision", "n_layers", "n_tokens", "creator", "created"};
  for (const auto& [key, value] : info.attributes) {
    if (kOwn.count(key) == 0) meta.extra_attributes[key] = value;
  }
  if (!info.created.empty()) meta.extra_attributes["source_created"] = info.created;
  meta.extra_attributes["source_creator"] = info.creator;

  std::map<std::pair<int, std::string>, Totals> totals;
  Totals all;
  std::vector<int32_t> positions = info.positions;
  if (positions.size() != static_cast<size_t>(info.n_tokens)) {
    positions.resize(static_cast<size_t>(info.n_tokens));
    for (size_t t = 0; t < positions.size(); ++t) positions[t] = static_cast<int32_t>(t);
  }

  // The byte accounting goes into the root attributes, which the writer needs up front: it comes
  // from byte_count(T) (the codec contract: equal to what encode() produces, checked below).
  ByteCount expect;
  size_t expect_elements = 0;
  for (const LayerInfo& li : info.layers) {
    if (wanted.count(li.index) == 0) continue;
    for (const char* tensor : {"k", "v"}) {
      for (int h = 0; h < li.n_kv_heads; ++h) {
        CodecContext cx{static_cast<size_t>(li.head_dim), seed_for(rc.common.seed, li.index, h, tensor), tensor, ""};
        expect += make_codec(c.codec, cx)->byte_count(static_cast<size_t>(info.n_tokens));
        expect_elements += static_cast<size_t>(info.n_tokens) * static_cast<size_t>(li.head_dim);
      }
    }
  }
  std::string layer_list;
  for (int l : wanted) layer_list += (layer_list.empty() ? "" : ",") + std::to_string(l);
  auto& ea = meta.extra_attributes;
  ea["tq_apply_loop"] = "open";
  ea["tq_apply_codec"] = canonical;
  ea["tq_apply_codec_arg"] = c.codec;
  ea["tq_apply_seed"] = std::to_string(rc.common.seed);
  ea["tq_apply_layers"] = layer_list;
  ea["tq_apply_bytes"] = std::to_string(expect.total());
  ea["tq_apply_payload_bytes"] = std::to_string(expect.payload);
  ea["tq_apply_side_bytes"] = std::to_string(expect.side);
  ea["tq_apply_window_bytes"] = std::to_string(expect.window);
  ea["tq_apply_bits_per_element"] =
      fmt::format("{:.6f}", expect_elements ? static_cast<double>(expect.total()) * 8.0 / static_cast<double>(expect_elements) : 0.0);
  ea["tq_apply_source"] = std::filesystem::path(c.input).filename().string();
  ea["tq_apply_provenance"] = fmt::format(
      "OPEN-LOOP reconstruction by tq apply {} (git {}): k and v of layers [{}] of {} encoded and decoded by '{}' "
      "(seed {}, per layer/head/tensor seeds tq::seed_for); every other dataset copied unchanged. The K/V come "
      "from the uncompressed model, so errors do not propagate to later layers or tokens.",
      build::kVersion, build::kGitCommit, layer_list, std::filesystem::path(c.input).filename().string(), canonical,
      rc.common.seed);

  DumpWriter writer(c.out, meta, dtype, c.deflate);
  for (const LayerInfo& li : info.layers) {
    std::map<std::string, Tensor3> data;
    for (const auto& [name, dt] : li.datasets) {
      (void)dt;
      data[name] = reader.read(li.index, name);
    }
    if (wanted.count(li.index) != 0) {
      for (const char* tensor : {"k", "v"}) {
        Tensor3& x = data.at(tensor);
        Totals& tot = totals[{li.index, tensor}];
        std::vector<float> out(x.n1 * x.n2);
        for (size_t h = 0; h < x.n0; ++h) {
          CodecContext cx{x.n2, seed_for(rc.common.seed, li.index, static_cast<int64_t>(h), tensor), tensor, ""};
          auto codec = make_codec(c.codec, cx);
          const Encoded e = codec->encode(x.at(h), x.n1, positions.data());
          codec->decode(e, out.data());
          for (size_t i = 0; i < out.size(); ++i) {
            const double xi = static_cast<double>(x.at(h)[i]);
            const double d = static_cast<double>(out[i]) - xi;
            tot.err2 += d * d;
            tot.x2 += xi * xi;
          }
          std::copy(out.begin(), out.end(), x.at(h));
          tot.bytes += e.count;
          tot.elements += x.n1 * x.n2;
        }
        all.bytes += tot.bytes;
        all.elements += tot.elements;
        all.err2 += tot.err2;
        all.x2 += tot.x2;
      }
    }
    std::map<std::string, const Tensor3*> ptrs;
    for (const auto& [name, t] : data) ptrs[name] = &t;
    writer.write_layer(li, ptrs);
  }
  if (all.bytes.payload != expect.payload || all.bytes.side != expect.side || all.bytes.window != expect.window) {
    throw Error(fmt::format("codec '{}': encoded {} bytes but byte_count() promised {} (internal error; nothing written)",
                            canonical, all.bytes.total(), expect.total()));
  }
  writer.close();

  Report r;
  r.inputs.push_back(dump_input_json(info));
  Table t{"apply", {"layer", "tensor", "bytes", "payload", "side", "window", "bits_per_element", "nmse"}, {}};
  for (const auto& [key, tot] : totals) {
    t.add({int64_t{key.first}, key.second, static_cast<int64_t>(tot.bytes.total()), static_cast<int64_t>(tot.bytes.payload),
           static_cast<int64_t>(tot.bytes.side), static_cast<int64_t>(tot.bytes.window),
           static_cast<double>(tot.bytes.total()) * 8.0 / static_cast<double>(tot.elements),
           tot.x2 > 0 ? tot.err2 / tot.x2 : 0.0});
  }
  t.add({"all", "k+v", static_cast<int64_t>(all.bytes.total()), static_cast<int64_t>(all.bytes.payload),
         static_cast<int64_t>(all.bytes.side), static_cast<int64_t>(all.bytes.window),
         all.elements ? static_cast<double>(all.bytes.total()) * 8.0 / static_cast<double>(all.elements) : 0.0,
         all.x2 > 0 ? all.err2 / all.x2 : 0.0});
  r.tables.push_back(std::move(t));
  r.notes.push_back("open-loop: K/V of the uncompressed model were encoded and decoded; errors do not propagate to later "
                    "layers or tokens (closed loop: scripts/dump_kv.py --replay, docs/replay.md)");
  r.notes.push_back(fmt::format("codec {} (seed {}), written to {}", canonical, rc.common.seed, c.out));
  return r;
}

}  // namespace

void add_apply_command(CLI::App& root, Context& ctx) {
  auto cfg = std::make_shared<ApplyConfig>();
  Command& cmd = ctx.add_command(root, "apply",
                                 "Open-loop: write a dump whose K and V are a codec's reconstructions",
                                 CommandTraits{.seed = true, .report_out = false});
  cmd.option("--codec", cfg->codec, "Codec spec (docs/codec-spec.md), e.g. tq-mse:4, kivi:2, hr,q4_0")->type_name("SPEC");
  cmd.option("--input", cfg->input, "KV dump to read (never modified)")->type_name("DUMP");
  cmd.option("--out", cfg->out, "Reconstructed dump to write (HDF5, atomically)")->type_name("FILE.h5");
  cmd.flag("--force", cfg->force, "Allow --out to overwrite an existing file (never the input)");
  cmd.option("--layers", cfg->layers, "Layers to reconstruct: all, or a list such as 0,2,5-7 (others copied)");
  cmd.option("--dtype", cfg->dtype, "Storage dtype of the output: f32, f16, bf16");
  cmd.option("--deflate", cfg->deflate, "HDF5 deflate level 0-9 (0 = uncompressed)");
  cmd.on_run([cfg](const RunContext& rc) {
    validate(*cfg);
    return run(*cfg, rc);
  });
}

}  // namespace tq::app
