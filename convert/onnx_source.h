// ONNX models: every initializer of the main graph (raw_data, the typed *_data fields, or
// external data in files next to the model) becomes a safetensors tensor; the model file is kept
// byte for byte. The protobuf is read by a small bounds-checked wire-format reader; nothing of
// the ONNX library is needed.
#pragma once

#include <memory>
#include <string>

#include "plan.h"

namespace torshpkg::convert {

// Whether `source` starts like a ModelProto (field 1, ir_version, as a varint).
bool looks_like_onnx(const ByteSource& source);

// `model_dir` is where external data files are looked up (the model's folder); locations must be
// relative paths inside it.
Plan plan_onnx(std::shared_ptr<const ByteSource> source, const std::string& file_name,
               const std::string& model_dir);

}  // namespace torshpkg::convert
