#include "tree.h"

namespace torshpkg::fs {

Tree::Tree(const Package& package) {
  nodes_.push_back(Node{kRootIno, kRootIno, "", true, nullptr, {}});
  for (const FileNode& f : package.files()) {
    uint64_t dir = kRootIno;
    size_t start = 0;
    for (size_t slash = f.path.find('/'); slash != std::string::npos;
         slash = f.path.find('/', start)) {
      const std::string part = f.path.substr(start, slash - start);
      const auto it = nodes_[dir - 1].children.find(part);
      if (it != nodes_[dir - 1].children.end()) {
        dir = it->second;
      } else {
        const uint64_t ino = nodes_.size() + 1;
        nodes_.push_back(Node{ino, dir, part, true, nullptr, {}});
        nodes_[dir - 1].children.emplace(part, ino);
        dir = ino;
      }
      start = slash + 1;
    }
    const uint64_t ino = nodes_.size() + 1;
    const std::string name = f.path.substr(start);
    nodes_.push_back(Node{ino, dir, name, false, &f, {}});
    nodes_[dir - 1].children.emplace(name, ino);
  }
}

const Node* Tree::get(uint64_t ino) const {
  return ino >= 1 && ino <= nodes_.size() ? &nodes_[ino - 1] : nullptr;
}

const Node* Tree::lookup(uint64_t parent, std::string_view name) const {
  const Node* dir = get(parent);
  if (dir == nullptr || !dir->is_dir) return nullptr;
  const auto it = dir->children.find(name);
  return it == dir->children.end() ? nullptr : get(it->second);
}

const Node* Tree::find(std::string_view path) const {
  const Node* node = get(kRootIno);
  size_t start = 0;
  while (node != nullptr && start <= path.size()) {
    const size_t slash = path.find('/', start);
    node = lookup(node->ino,
                  path.substr(start, slash == std::string_view::npos ? slash : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return node;
}

}  // namespace torshpkg::fs
