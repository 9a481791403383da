// Expansion of the codec sweep of tq benchmark: --codec / --codec-k / --codec-v lists, the bit
// widths of --bits-k / --bits-v, --keep-sinks, and the (K, V) pairing.
#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "tq/bench/bench.h"
#include "tq/core/error.h"

namespace tq::bench {

namespace {

std::string trim(const std::string& s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return s.substr(a, b - a);
}

std::vector<std::string> split_items(const std::string& spec) {
  std::vector<std::string> items;
  size_t start = 0;
  while (true) {
    const size_t comma = spec.find(',', start);
    items.push_back(trim(spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start)));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return items;
}

/// Index of the codec item (last item without '='), or npos.
size_t codec_item(const std::vector<std::string>& items) {
  for (size_t i = items.size(); i-- > 0;)
    if (items[i].find('=') == std::string::npos) return i;
  return std::string::npos;
}

std::string join_items(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    out += items[i];
  }
  return out;
}

bool has_option(const std::vector<std::string>& items, const std::string& key) {
  return std::any_of(items.begin(), items.end(), [&](const std::string& it) {
    const size_t eq = it.find('=');
    return eq != std::string::npos && trim(it.substr(0, eq)) == key;
  });
}

/// The codec list of one tensor.
std::vector<std::string> expand_tensor(const std::vector<std::string>& specs, const std::vector<int>& bits,
                                       int keep_sinks, const char* tensor, const char* bits_flag) {
  for (int b : bits)
    if (b < 1 || b > 16) throw UsageError(fmt::format("{}: {} is not a bit width (1-16)", bits_flag, b));
  std::vector<std::string> out;
  const auto add = [&](std::string label) {
    if (keep_sinks > 0) {
      if (has_option(split_items(label), "sinks"))
        throw UsageError(fmt::format("codec spec '{}' sets sinks= and --keep-sinks is given; use one", label));
      label += fmt::format(",sinks={}", keep_sinks);
    }
    if (std::find(out.begin(), out.end(), label) == out.end()) out.push_back(std::move(label));
  };
  const CodecContext probe{128, 0, std::string(tensor), {}};
  for (const auto& raw : specs) {
    const std::string spec = trim(raw);
    if (spec.empty()) throw UsageError("--codec: empty codec spec");
    if (spec_has_bits(spec)) {
      add(spec);
      continue;
    }
    // No ":BITS": a complete spec (fp16, q4_0, ...) is used as is, otherwise every width.
    bool complete = true;
    try {
      (void)make_codec(spec, probe);
    } catch (const Error&) {
      complete = false;
    }
    if (complete) {
      add(spec);
      continue;
    }
    if (bits.empty()) throw UsageError(fmt::format("codec spec '{}' needs a bit width ({} is empty)", spec, bits_flag));
    for (int b : bits) {
      const std::string with = spec_with_bits(spec, b);
      (void)make_codec(with, probe);  // throws UsageError naming the spec (unknown codec, bits out of range)
      add(with);
    }
  }
  return out;
}

}  // namespace

bool spec_has_bits(const std::string& spec) {
  const auto items = split_items(spec);
  const size_t i = codec_item(items);
  return i != std::string::npos && items[i].find(':') != std::string::npos;
}

std::string spec_with_bits(const std::string& spec, int bits) {
  auto items = split_items(spec);
  const size_t i = codec_item(items);
  if (i == std::string::npos) throw UsageError(fmt::format("codec spec '{}': no codec named", spec));
  items[i] += fmt::format(":{}", bits);
  return join_items(items);
}

MetricSet parse_metric_set(const std::string& s) {
  if (s == "recon" || s == "cheap") return MetricSet::Recon;
  if (s == "ip") return MetricSet::Ip;
  if (s == "full" || s == "attn") return MetricSet::Full;
  throw UsageError(fmt::format("--metrics: '{}' is not recon, ip or full", s));
}

const char* metric_set_name(MetricSet m) {
  switch (m) {
    case MetricSet::Recon: return "recon";
    case MetricSet::Ip: return "ip";
    case MetricSet::Full: return "full";
  }
  return "full";
}

Pairing parse_pairing(const std::string& s) {
  if (s == "auto") return Pairing::Auto;
  if (s == "zip") return Pairing::Zip;
  if (s == "cross") return Pairing::Cross;
  throw UsageError(fmt::format("--pairs: '{}' is not auto, zip or cross", s));
}

Sweep expand_sweep(const BenchConfig& c) {
  if (c.keep_sinks < 0) throw UsageError(fmt::format("--keep-sinks: {} must be >= 0", c.keep_sinks));
  if (!c.codecs.empty() && (!c.codecs_k.empty() || !c.codecs_v.empty()))
    throw UsageError("--codec applies to K and V; with --codec-k/--codec-v give those two instead");
  const std::vector<std::string> family{"tq-mse"};
  const auto& specs_k = !c.codecs_k.empty() ? c.codecs_k : !c.codecs.empty() ? c.codecs : family;
  const auto& specs_v = !c.codecs_v.empty() ? c.codecs_v : !c.codecs.empty() ? c.codecs : family;
  const std::vector<int>& bits_v = c.bits_v.empty() ? c.bits_k : c.bits_v;
  Sweep s;
  s.k = expand_tensor(specs_k, c.bits_k, c.keep_sinks, "k", "--bits-k");
  s.v = expand_tensor(specs_v, bits_v, c.keep_sinks, "v", c.bits_v.empty() ? "--bits-k" : "--bits-v");
  Pairing p = c.pairing;
  if (p == Pairing::Auto) p = s.k.size() == s.v.size() ? Pairing::Zip : Pairing::Cross;
  if (p == Pairing::Zip) {
    if (s.k.size() != s.v.size())
      throw UsageError(fmt::format("--pairs zip: {} K codecs and {} V codecs; the lists must have the same length",
                                   s.k.size(), s.v.size()));
    for (size_t i = 0; i < s.k.size(); ++i) s.pairs.emplace_back(i, i);
  } else {
    for (size_t i = 0; i < s.k.size(); ++i)
      for (size_t j = 0; j < s.v.size(); ++j) s.pairs.emplace_back(i, j);
  }
  return s;
}

}  // namespace tq::bench
