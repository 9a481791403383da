// tq_dumptool: a test-only tool over the dump reader/writer, used by the h5py interop tests.
//
//   tq_dumptool copy IN OUT [--dtype f32|f16|bf16] [--deflate N]   read IN, write OUT
//   tq_dumptool dump IN          print root attributes, layers and every tensor value as JSON
//                                (small files only: values are printed as flat float lists)
//   tq_dumptool time-read IN     read every tensor (whole, then head by head) and print the time
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "tq/core/error.h"
#include "tq/io/dump.h"

namespace {

using Json = nlohmann::ordered_json;

tq::DType parse_dtype(const std::string& s) {
  if (s == "f32" || s == "float32") return tq::DType::F32;
  if (s == "f16" || s == "float16") return tq::DType::F16;
  if (s == "bf16" || s == "bfloat16") return tq::DType::BF16;
  throw tq::UsageError("--dtype: '" + s + "' is not one of f32, f16, bf16");
}

bool is_standard_root_attr(const std::string& name) {
  for (const char* s : {"format", "format_version", "model_name", "model_source",
                        "weight_precision", "n_layers", "n_tokens", "creator", "created"}) {
    if (name == s) return true;
  }
  return false;
}

void copy(const std::string& in, const std::string& out, tq::DType dtype, int deflate) {
  const tq::DumpReader r(in);
  const tq::DumpInfo& info = r.info();
  tq::DumpMeta meta;
  meta.model_name = info.model_name;
  meta.model_source = info.model_source;
  meta.weight_precision = info.weight_precision;
  meta.creator = info.creator;
  meta.created = info.created;
  meta.n_layers = info.n_layers;
  meta.token_ids = info.token_ids;
  meta.positions = info.positions;
  for (const auto& [k, v] : info.attributes) {
    if (!is_standard_root_attr(k)) meta.extra_attributes[k] = v;
  }
  tq::DumpWriter w(out, meta, dtype, deflate);
  for (const tq::LayerInfo& L : info.layers) {
    std::map<std::string, tq::Tensor3> tensors;  // one layer in memory at a time
    std::map<std::string, const tq::Tensor3*> ptrs;
    for (const auto& [name, stored] : L.datasets) {
      tensors[name] = r.read(L.index, name);
      ptrs[name] = &tensors[name];
    }
    w.write_layer(L, ptrs);
  }
  w.close();
}

void dump(const std::string& in) {
  const tq::DumpReader r(in);
  const tq::DumpInfo& info = r.info();
  Json j;
  j["path"] = info.path;
  j["attributes"] = info.attributes;
  j["format_version"] = info.format_version;
  j["n_layers"] = info.n_layers;
  j["n_tokens"] = info.n_tokens;
  j["token_ids"] = info.token_ids;
  j["positions"] = info.positions;
  Json layers = Json::array();
  for (const tq::LayerInfo& L : info.layers) {
    Json l;
    l["index"] = L.index;
    l["n_heads"] = L.n_heads;
    l["n_kv_heads"] = L.n_kv_heads;
    l["head_dim"] = L.head_dim;
    l["attn_scale"] = L.attn_scale;
    l["rope_theta"] = L.rope_theta;
    l["rope_pairing"] = L.rope_pairing;
    l["rotary_dim"] = L.rotary_dim;
    l["rope_scaling"] = L.rope_scaling;
    l["sliding_window"] = L.sliding_window ? Json(*L.sliding_window) : Json(nullptr);
    l["logit_softcap"] = L.logit_softcap ? Json(*L.logit_softcap) : Json(nullptr);
    Json ds = Json::object();
    for (const auto& [name, stored] : L.datasets) {
      const tq::Tensor3 t = r.read(L.index, name);
      Json values = Json::array();
      for (float x : t.data) values.push_back(static_cast<double>(x));  // exact in a double
      ds[name] = {{"dtype", tq::dtype_name(stored)},
                  {"shape", {t.n0, t.n1, t.n2}},
                  {"values", std::move(values)}};
    }
    l["datasets"] = std::move(ds);
    layers.push_back(std::move(l));
  }
  j["layers"] = std::move(layers);
  std::cout << j.dump() << "\n";
}

void time_read(const std::string& in) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const tq::DumpReader r(in);
  const auto t1 = clock::now();
  size_t values = 0;
  double checksum = 0.0;  // keeps the reads observable
  for (const tq::LayerInfo& L : r.info().layers) {
    for (const auto& [name, stored] : L.datasets) {
      const tq::Tensor3 t = r.read(L.index, name);
      values += t.size();
      checksum += static_cast<double>(t.data[0]);
    }
  }
  const auto t2 = clock::now();
  for (const tq::LayerInfo& L : r.info().layers) {
    for (const auto& [name, stored] : L.datasets) {
      const int heads = (name == "q" || name == "q_pre") ? L.n_heads : L.n_kv_heads;
      for (int h = 0; h < heads; ++h) {
        checksum += static_cast<double>(r.read_head(L.index, name, h)[0]);
      }
    }
  }
  const auto t3 = clock::now();
  auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  Json j{{"values", values},
         {"open_s", secs(t0, t1)},
         {"read_layers_s", secs(t1, t2)},
         {"read_heads_s", secs(t2, t3)},
         {"fp32_gb_per_s_layers", static_cast<double>(values) * 4e-9 / secs(t1, t2)},
         {"fp32_gb_per_s_heads", static_cast<double>(values) * 4e-9 / secs(t2, t3)},
         {"checksum", checksum}};
  std::cout << j.dump() << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tq_dumptool: copy / print tq KV dumps (test tool)"};
  app.require_subcommand(1);
  std::string in, out, dtype = "f32";
  int deflate = 0;
  auto* c = app.add_subcommand("copy", "read IN with DumpReader, write OUT with DumpWriter");
  c->add_option("IN", in)->required();
  c->add_option("OUT", out)->required();
  c->add_option("--dtype", dtype, "f32 | f16 | bf16");
  c->add_option("--deflate", deflate, "deflate level 0..9");
  auto* d = app.add_subcommand("dump", "print a dump as JSON, every value included");
  d->add_option("IN", in)->required();
  auto* t = app.add_subcommand("time-read", "time reading every tensor");
  t->add_option("IN", in)->required();
  CLI11_PARSE(app, argc, argv);
  try {
    if (c->parsed()) copy(in, out, parse_dtype(dtype), deflate);
    if (d->parsed()) dump(in);
    if (t->parsed()) time_read(in);
  } catch (const tq::Error& e) {
    std::fprintf(stderr, "tq_dumptool: %s\n", e.what());
    return 1;
  }
  return 0;
}
