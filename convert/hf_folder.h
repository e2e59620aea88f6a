// safetensors files and Hugging Face model folders: packaged as they are, after checking them.
#pragma once

#include <memory>
#include <string>

#include "plan.h"

namespace torshpkg::convert {

// A safetensors file, checked with every rule of the format and kept byte for byte.
Plan plan_safetensors_file(std::shared_ptr<const ByteSource> source, const std::string& file_name);

// A model folder: every regular file (hidden files and folders such as .git skipped) kept byte
// for byte under its relative path, typed by name: *.safetensors weights (each checked), config
// and generation config, tokenizer files, docs, licenses, code. A sharded checkpoint's
// model.safetensors.index.json must agree with its shards: every shard it names exists, every
// tensor it maps is in that shard, and every tensor of every shard is mapped. Throws
// Error(kCorrupt) naming the disagreement.
Plan plan_hf_folder(const std::string& folder);

struct FolderDigest {
  std::string sha256;  // of the listing "<sha256>  <relative path>\n", sorted by path
  uint64_t bytes = 0;
  uint64_t files = 0;
};
// The digest of the files plan_hf_folder keeps.
FolderDigest folder_digest(const std::string& folder);

}  // namespace torshpkg::convert
