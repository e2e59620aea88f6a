// torshpkg tensors: list the tensors of a safetensors file (a plain file or one inside a mount).
#include <json/json.h>

#include <iostream>
#include <memory>

#include "cli_util.h"
#include "commands.h"
#include "torshpkg/safetensors.h"

namespace torshpkg::cli {
Action add_tensors_command(CLI::App& app) {
  struct Args {
    std::string file;
    bool json = false;
    bool sha256 = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("tensors", "List the tensors of a safetensors file");
  sub->add_option("FILE", a->file, "A .safetensors file (also inside a mounted package)")
      ->required();
  sub->add_flag("--json", a->json,
                "One JSON object: {\"metadata\": {...}, \"tensors\": [{\"name\", \"dtype\", "
                "\"shape\", \"data_offsets\", \"sha256\"}]}");
  sub->add_flag("--sha256", a->sha256, "Also the SHA-256 of each tensor's bytes");
  return [a] {
    const auto source = open_file_source(a->file);
    SafetensorsHeader h;
    try {
      h = read_safetensors_header(*source);
    } catch (const Error& e) {
      const std::string what = e.what();
      if (e.kind() == ErrorKind::kUnsupported &&
          what.find("it is a torshpkg package") != std::string::npos) {
        throw Error(e.kind(), what +
                                  "; name a .safetensors file inside its mount, or use "
                                  "`torshpkg load FILE --resource PATH`");
      }
      throw;
    }
    if (a->json) {
      Json::Value out(Json::objectValue);
      out["metadata"] = Json::Value(Json::objectValue);
      for (const auto& [k, v] : h.metadata) out["metadata"][k] = v;
      out["tensors"] = Json::Value(Json::arrayValue);
      for (const TensorInfo& t : h.tensors) {
        Json::Value v(Json::objectValue);
        v["name"] = t.name;
        v["dtype"] = std::string(dtype_name(t.dtype));
        v["shape"] = Json::Value(Json::arrayValue);
        for (const uint64_t d : t.shape) v["shape"].append(Json::UInt64(d));
        v["data_offsets"] = Json::Value(Json::arrayValue);
        v["data_offsets"].append(Json::UInt64(t.begin));
        v["data_offsets"].append(Json::UInt64(t.end));
        if (a->sha256) v["sha256"] = tensor_sha256(*source, h, t);
        out["tensors"].append(v);
      }
      Json::StreamWriterBuilder w;
      w["indentation"] = "  ";
      std::cout << Json::writeString(w, out) << "\n";
      return kExitOk;
    }
    for (const auto& [k, v] : h.metadata) std::cout << "# " << k << ": " << v << "\n";
    for (const TensorInfo& t : h.tensors) {
      std::cout << t.name << "  " << dtype_name(t.dtype) << "  " << shape_text(t.shape) << "  ["
                << t.begin << ", " << t.end << ")";
      if (a->sha256) std::cout << "  " << tensor_sha256(*source, h, t);
      std::cout << "\n";
    }
    return kExitOk;
  };
}

}  // namespace torshpkg::cli
