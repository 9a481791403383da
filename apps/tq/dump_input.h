#pragma once
// Report "inputs" metadata of a dump: {path, every root attribute}.
#include "tq/io/dump.h"
#include "tq/report/report.h"

namespace tq::app {

inline Json dump_input_json(const DumpInfo& info) {
  Json j = Json::object();
  j["path"] = info.path;
  for (const auto& [key, value] : info.attributes) j[key] = value;
  return j;
}

}  // namespace tq::app
