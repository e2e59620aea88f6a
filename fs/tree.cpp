#include "tree.h"

#include <algorithm>

namespace torshpkg::fs {

Tree::Tree(const Package& package) {
  const std::vector<FileNode>& files = package.files();
  nodes_.reserve(files.size() + 1);
  nodes_.push_back(Node{kRootIno, kRootIno, "", true, nullptr, {}, 0});
  // Files come sorted by path, and in that order everything under a folder is one run of
  // neighbours: a folder on a file's path either is the one made last in its parent or is new.
  for (const FileNode& f : files) {
    const std::string_view path = f.path;
    uint64_t dir = kRootIno;
    size_t start = 0;
    for (size_t slash = path.find('/'); slash != std::string_view::npos;
         slash = path.find('/', start)) {
      const std::string_view part = path.substr(start, slash - start);
      const std::vector<uint64_t>& siblings = nodes_[dir - 1].children;
      if (!siblings.empty() && nodes_[siblings.back() - 1].is_dir &&
          nodes_[siblings.back() - 1].name == part) {
        dir = siblings.back();
      } else {
        dir = add(dir, part, nullptr);
      }
      start = slash + 1;
    }
    add(dir, path.substr(start), &f);
  }
  // Path order is not quite name order within a folder ("a.txt" < "a/x" puts the file "a.txt"
  // before the folder "a"): sort the children where it differs.
  const auto by_name = [&](uint64_t a, uint64_t b) {
    return nodes_[a - 1].name < nodes_[b - 1].name;
  };
  for (Node& node : nodes_) {
    if (!std::is_sorted(node.children.begin(), node.children.end(), by_name)) {
      std::sort(node.children.begin(), node.children.end(), by_name);
    }
  }
}

uint64_t Tree::add(uint64_t parent, std::string_view name, const FileNode* file) {
  const uint64_t ino = nodes_.size() + 1;
  nodes_.push_back(Node{ino, parent, std::string(name), file == nullptr, file, {}, 0});
  Node& dir = nodes_[parent - 1];
  dir.children.push_back(ino);
  if (file == nullptr) ++dir.folders;
  return ino;
}

const Node* Tree::get(uint64_t ino) const {
  return ino >= 1 && ino <= nodes_.size() ? &nodes_[ino - 1] : nullptr;
}

const Node* Tree::lookup(uint64_t parent, std::string_view name) const {
  const Node* dir = get(parent);
  if (dir == nullptr || !dir->is_dir) return nullptr;
  const auto it = std::lower_bound(
      dir->children.begin(), dir->children.end(), name,
      [&](uint64_t child, std::string_view n) { return nodes_[child - 1].name < n; });
  return it == dir->children.end() || nodes_[*it - 1].name != name ? nullptr : &nodes_[*it - 1];
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
