// Codec spec grammar, the codec and stage registries, and make_codec.
//
// Grammar (docs/codec-spec.md):
//   spec   := item ("," item)*
//   item   := name [":" N]        a stage or the codec (the LAST bare item is the codec,
//                                 every bare item before it is a stage, applied outermost first)
//           | key "=" value       an option of the codec (any position)
// Examples: "tq-mse:4", "hr,tq-mse:3", "tq-mse:4,norm=fp32", "center,hr,tq-mse:2", "fp16".
//
// Codecs that own their rotation (tq-mse, eden) absorb a rotation stage (haar, hr, id) as their
// `rotation=` option (default haar); any other codec is wrapped by rotation stages.
// Every option must be consumed by the codec or a stage, else the spec is rejected.
#include <algorithm>
#include <cctype>
#include <charconv>

#include <fmt/format.h>

#include "tq/codec/codec.h"
#include "tq/codec/factories.h"
#include "tq/core/error.h"

namespace tq {

namespace {

using CodecFactory = std::unique_ptr<Codec> (*)(const CodecArgs&, const CodecContext&);
using StageFactory = std::unique_ptr<Codec> (*)(const CodecArgs&, std::unique_ptr<Codec>, const CodecContext&);

struct CodecEntry {
  const char* name;
  const char* help;
  CodecFactory factory;
  bool owns_rotation = false;  ///< takes a rotation stage as its `rotation=` option
};

struct StageEntry {
  const char* name;
  const char* help;
  StageFactory factory;
  bool is_rotation = false;
};

// The codec registry: one row per codec.
const CodecEntry kCodecs[] = {
    {"tq-mse", "TurboQuant-MSE: |x| (fp16) + b-bit Lloyd-Max codes of the rotated unit vector; b=1..8; options norm=fp16|fp32, law=beta|gaussian",
     make_tq_mse, true},
    {"eden", "EDEN: tq-mse codes with scale |x|/<y,c> (unbiased inner products); b=1..8; options as tq-mse", make_eden,
     true},
    {"tq-prod", "TurboQuant-prod: tq-mse:(b-1) + 1-bit QJL sketch of the residual (|r| fp16), unbiased <q, x^>; b=2..9; options sketch=gaussian|haar|hadamard, m=d, norm, law",
     make_tq_prod, true},
    {"qjl", "QJL: |x| (fp16) + m sign bits of a random sketch (m/d + 16/d bits); options sketch=gaussian|haar|hadamard, m=d", make_qjl},
    {"outlier", "channel split: n highest-RMS channels (d-bit bitmap) at tq-mse:hi, the rest at tq-mse:lo; options n=32, hi=3, lo=2",
     make_outlier, true},
    {"fp32", "uncompressed fp32 reference (32 bits/element)", make_fp32},
    {"fp16", "fp16 reference (16 bits/element)", make_fp16},
    {"kivi", "KIVI: asymmetric b-bit, K per channel over token groups, V per token over channel groups; options group=32, group-k, group-v, window=R, sinks=N, window-dtype=fp16|fp32",
     make_kivi},
    {"q8_0", "llama.cpp q8_0: blocks of 32, fp16 absmax scale, int8 codes (8.5 bits); option block=B", make_q8_0},
    {"q4_0", "llama.cpp q4_0: blocks of 32, fp16 scale, 4-bit codes (4.5 bits); option block=B", make_q4_0},
    {"q4_1", "llama.cpp q4_1: blocks of 32, fp16 scale + fp16 min, 4-bit codes (5.0 bits); option block=B", make_q4_1},
    {"iq4_nl", "llama.cpp iq4_nl: blocks of 32, fp16 scale, 4-bit indices into a fixed non-uniform table (4.5 bits); option block=B",
     make_iq4_nl},
};

// The stage registry.
const StageEntry kStages[] = {
    {"haar", "Haar-random rotation (QR of a seeded Gaussian matrix); default of tq-mse/eden", make_rotation_stage, true},
    {"hr", "randomized Hadamard rotation (signs + fast Walsh-Hadamard, O(d log d), any d)", make_rotation_stage, true},
    {"id", "no rotation (identity)", make_rotation_stage, true},
    {"center", "subtract the per-head mean row (d fp32 side values) before the codec", make_center_stage},
};

const CodecEntry* find_codec(const std::string& name) {
  for (const auto& c : kCodecs)
    if (name == c.name) return &c;
  return nullptr;
}

const StageEntry* find_stage(const std::string& name) {
  for (const auto& s : kStages)
    if (name == s.name) return &s;
  return nullptr;
}

std::string codec_names() {
  std::string out;
  for (const auto& c : kCodecs) out += (out.empty() ? "" : ", ") + std::string(c.name);
  return out;
}

std::string stage_names() {
  std::string out;
  for (const auto& s : kStages) out += (out.empty() ? "" : ", ") + std::string(s.name);
  return out;
}

std::string trim(const std::string& s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return s.substr(a, b - a);
}

/// "name" or "name:N" -> (name, N or -1).
std::pair<std::string, int> parse_name(const std::string& spec, const std::string& item) {
  const size_t colon = item.find(':');
  if (colon == std::string::npos) return {item, -1};
  const std::string name = item.substr(0, colon);
  const std::string num = item.substr(colon + 1);
  int v = 0;
  const auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
  if (name.empty() || num.empty() || ec != std::errc() || ptr != num.data() + num.size() || v < 0)
    throw UsageError(fmt::format("codec spec '{}': '{}' is not NAME or NAME:BITS", spec, item));
  return {name, v};
}

void merge_consumed(const CodecArgs& from, const CodecArgs& into) {
  for (const auto& k : from.consumed)
    if (std::find(into.consumed.begin(), into.consumed.end(), k) == into.consumed.end()) into.consumed.push_back(k);
}

}  // namespace

std::unique_ptr<Codec> make_codec(const std::string& spec, const CodecContext& ctx) {
  // 1. Split into names and options.
  std::vector<std::pair<std::string, int>> names;
  CodecArgs args;
  args.spec = spec;
  size_t start = 0;
  while (true) {
    const size_t comma = spec.find(',', start);
    const std::string item = trim(spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (item.empty()) throw UsageError(fmt::format("codec spec '{}': empty item", spec));
    if (const size_t eq = item.find('='); eq != std::string::npos) {
      const std::string key = trim(item.substr(0, eq));
      const std::string value = trim(item.substr(eq + 1));
      if (key.empty() || value.empty())
        throw UsageError(fmt::format("codec spec '{}': option '{}' is not key=value", spec, item));
      if (args.has(key)) throw UsageError(fmt::format("codec spec '{}': option '{}' given twice", spec, key));
      args.options.emplace_back(key, value);
    } else {
      names.push_back(parse_name(spec, item));
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (names.empty()) throw UsageError(fmt::format("codec spec '{}': no codec named (known: {})", spec, codec_names()));

  // 2. The last name is the codec, the others stages.
  const auto& [codec_name, codec_bits] = names.back();
  const CodecEntry* codec = find_codec(codec_name);
  if (!codec) {
    if (find_stage(codec_name))
      throw UsageError(fmt::format("codec spec '{}': '{}' is a stage and must be followed by a codec (known: {})", spec,
                                   codec_name, codec_names()));
    throw UsageError(fmt::format("codec spec '{}': unknown codec '{}' (known: {})", spec, codec_name, codec_names()));
  }
  std::vector<std::pair<const StageEntry*, int>> stages;
  for (size_t i = 0; i + 1 < names.size(); ++i) {
    const auto& [name, param] = names[i];
    if (find_codec(name))
      throw UsageError(fmt::format("codec spec '{}': two codecs ('{}' and '{}'); exactly one is allowed", spec, name, codec_name));
    const StageEntry* st = find_stage(name);
    if (!st) throw UsageError(fmt::format("codec spec '{}': unknown stage '{}' (known: {})", spec, name, stage_names()));
    stages.emplace_back(st, param);
  }

  // 3. A codec owning its rotation takes the rotation stage as its option.
  if (codec->owns_rotation) {
    const auto n_rot = std::count_if(stages.begin(), stages.end(), [](const auto& s) { return s.first->is_rotation; });
    if (n_rot > 1) throw UsageError(fmt::format("codec spec '{}': at most one rotation stage for {}", spec, codec_name));
    if (n_rot == 1) {
      const auto it = std::find_if(stages.begin(), stages.end(), [](const auto& s) { return s.first->is_rotation; });
      if (it->second != -1)
        throw UsageError(fmt::format("codec spec '{}': stage '{}' takes no ':N' parameter", spec, it->first->name));
      if (args.has("rotation"))
        throw UsageError(fmt::format("codec spec '{}': rotation given both as a stage and as rotation=", spec));
      args.options.emplace_back("rotation", it->first->name);
      stages.erase(it);
    }
  }

  // 4. Build the codec, then wrap the stages innermost first.
  args.name = codec_name;
  args.bits = codec_bits;
  std::unique_ptr<Codec> out = codec->factory(args, ctx);
  for (size_t i = stages.size(); i-- > 0;) {
    CodecArgs st;
    st.spec = spec;
    st.name = stages[i].first->name;
    st.bits = stages[i].second;
    st.options = args.options;
    out = stages[i].first->factory(st, std::move(out), ctx);
    merge_consumed(st, args);
  }

  // 4b. Sink tokens and a recent full-precision window apply to every codec; codecs that handle them
  //     themselves (kivi) have consumed the options already.
  const auto unconsumed = [&](const char* key) {
    return args.has(key) && std::find(args.consumed.begin(), args.consumed.end(), key) == args.consumed.end();
  };
  if (unconsumed("window")) {
    const long n = args.get_int("window", 0);
    if (n < 0) throw UsageError(fmt::format("codec spec '{}': window must be >= 0", spec));
    out = wrap_with_window(std::move(out), static_cast<int>(n), args.get_string("window-dtype", "fp16") == "fp32");
  }
  if (unconsumed("sinks")) {
    const long n = args.get_int("sinks", 0);
    if (n < 0) throw UsageError(fmt::format("codec spec '{}': sinks must be >= 0", spec));
    out = wrap_with_sinks(std::move(out), static_cast<int>(n), args.get_string("sinks-dtype", "fp16") == "fp32");
  }
  for (const char* key : {"window-dtype", "sinks-dtype"}) {
    if (unconsumed(key)) {
      const std::string v = args.get_string(key, "fp16");
      if (v != "fp16" && v != "fp32")
        throw UsageError(fmt::format("codec spec '{}': {} must be fp16 or fp32, not '{}'", spec, key, v));
    }
  }

  // 5. Every option must have been consumed.
  for (const auto& [key, value] : args.options)
    if (std::find(args.consumed.begin(), args.consumed.end(), key) == args.consumed.end())
      throw UsageError(fmt::format("codec spec '{}': unknown option '{}' for {}", spec, key, codec_name));
  return out;
}

std::vector<std::pair<std::string, std::string>> codec_list() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& c : kCodecs) out.emplace_back(c.name, c.help);
  return out;
}

std::vector<std::pair<std::string, std::string>> codec_stage_list() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& s : kStages) out.emplace_back(s.name, s.help);
  return out;
}

std::string codec_spec_help() {
  std::string out =
      "Codec spec: comma-separated items. Bare items are stages or the codec: the last bare item is\n"
      "the codec (NAME or NAME:BITS), the ones before it are stages applied outermost first;\n"
      "KEY=VALUE items are options of the codec. Examples: tq-mse:4  hr,tq-mse:3  tq-mse:4,norm=fp32\n"
      "eden:3  center,hr,tq-mse:2  fp16. tq-mse and eden rotate with haar unless a rotation stage\n"
      "(haar, hr, id) is given. Full reference: docs/codec-spec.md.\n\nCodecs:\n";
  for (const auto& c : kCodecs) out += fmt::format("  {:<10} {}\n", c.name, c.help);
  out += "\nStages:\n";
  for (const auto& s : kStages) out += fmt::format("  {:<10} {}\n", s.name, s.help);
  return out;
}

}  // namespace tq
