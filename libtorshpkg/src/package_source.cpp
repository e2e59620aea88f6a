// A package's file as a ByteSource (see torshpkg/package.h).
#include "torshpkg/error.h"
#include "torshpkg/package.h"

namespace torshpkg {
namespace {

class PackageFileSource final : public ByteSource {
 public:
  PackageFileSource(std::shared_ptr<const Package> package, const FileNode& file)
      : ByteSource(file.kind == FileNode::Kind::kResource
                       ? package->manifest().resources[file.item].chunk_size
                       : 0),
        package_(std::move(package)),
        file_(file),
        name_(package_->file_name() + ":" + file.path) {}
  uint64_t size() const override { return file_.size; }
  const std::string& name() const override { return name_; }
  void read_at(uint64_t offset, std::span<uint8_t> out, ReadOptions) const override {
    if (offset > file_.size || out.size() > file_.size - offset) {
      throw corrupt(name_, "read past end of file");
    }
    if (package_->read(file_, offset, out) != out.size()) {
      throw corrupt(name_, "short read");
    }
  }
  void advise(uint64_t offset, uint64_t length, Advice advice) const override {
    const uint64_t unit = read_unit();
    if (advice != Advice::kWillNeed || unit == 0 || length == 0) return;
    const ResourceEntry& r = package_->manifest().resources[file_.item];
    const uint64_t first = offset / unit;
    const uint64_t last = (offset + length - 1) / unit;
    package_->will_need(r, first, last - first + 1);
  }

 private:
  std::shared_ptr<const Package> package_;
  FileNode file_;
  std::string name_;
};

}  // namespace

std::shared_ptr<ByteSource> package_file_source(std::shared_ptr<const Package> package,
                                                const FileNode& file) {
  return std::make_shared<PackageFileSource>(std::move(package), file);
}

}  // namespace torshpkg
