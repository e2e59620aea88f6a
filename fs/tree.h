// The directory tree a mounted package shows, built once from Package::files(): folders implied
// by paths, stable inode numbers (1 is the root; the rest follow the sorted path order, so the
// same package always gets the same numbers). Immutable after construction; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "torshpkg/package.h"

namespace torshpkg::fs {

struct Node {
  uint64_t ino = 0;
  uint64_t parent = 0;
  std::string name;
  bool is_dir = false;
  const FileNode* file = nullptr;  // files only
  // Folders only: the children's inode numbers in name order, and how many are folders.
  std::vector<uint64_t> children;
  uint64_t folders = 0;
};

class Tree {
 public:
  static constexpr uint64_t kRootIno = 1;

  explicit Tree(const Package& package);

  // nullptr when `ino` is not a node of this tree.
  const Node* get(uint64_t ino) const;
  const Node* lookup(uint64_t parent, std::string_view name) const;
  // Walks a '/'-separated path from the root ("resources/a/b.bin"); nullptr when absent.
  const Node* find(std::string_view path) const;
  size_t size() const { return nodes_.size(); }

 private:
  uint64_t add(uint64_t parent, std::string_view name, const FileNode* file);

  std::vector<Node> nodes_;  // index = ino - 1
};

}  // namespace torshpkg::fs
