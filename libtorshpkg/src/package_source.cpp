// A package's file as a ByteSource (see torshpkg/tensor_loader.h).
#include "torshpkg/error.h"
#include "torshpkg/tensor_loader.h"

namespace torshpkg {
namespace {

class PackageFileSource final : public ByteSource {
 public:
  PackageFileSource(std::shared_ptr<const Package> package, const FileNode& file)
      : package_(std::move(package)), file_(file), name_(package_->file_name() + ":" + file.path) {
    if (file_.kind == FileNode::Kind::kResource) {
      chunk_size_ = package_->manifest().resources[file_.item].chunk_size;
    }
  }
  uint64_t size() const override { return file_.size; }
  const std::string& name() const override { return name_; }
  void read_at(uint64_t offset, std::span<uint8_t> out) const override {
    if (offset > file_.size || out.size() > file_.size - offset) {
      throw corrupt(name_, "read past end of file");
    }
    if (package_->read(file_, offset, out) != out.size()) {
      throw corrupt(name_, "short read");
    }
  }
  void will_need(uint64_t offset, uint64_t length) const override {
    if (chunk_size_ == 0 || length == 0) return;
    const ResourceEntry& r = package_->manifest().resources[file_.item];
    const uint64_t first = offset / chunk_size_;
    const uint64_t last = (offset + length - 1) / chunk_size_;
    package_->will_need(r, first, last - first + 1);
  }
  uint64_t preferred_read_size() const override { return chunk_size_; }

 private:
  std::shared_ptr<const Package> package_;
  FileNode file_;
  std::string name_;
  uint64_t chunk_size_ = 0;  // the resource's chunk size; 0 for manifest and dependencies
};

}  // namespace

std::shared_ptr<ByteSource> package_file_source(std::shared_ptr<const Package> package,
                                                const FileNode& file) {
  return std::make_shared<PackageFileSource>(std::move(package), file);
}

}  // namespace torshpkg
