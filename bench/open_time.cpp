// Where the time of opening a package for a mount goes: the ZIP directory, the manifest, the
// whole Package::open, the mount policy's admission (which adds the signature check) and the
// filesystem tree. Runs each step --runs times on a warm page cache and prints, one line per
// step, its name, the median and the fastest run in milliseconds.
//
//   open_time PKG [--runs N] [--trusted-keys DIR]   (unsigned packages are admitted as such)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "torshpkg/admission.h"
#include "torshpkg/byte_source.h"
#include "torshpkg/error.h"
#include "torshpkg/manifest.h"
#include "tree.h"
#include "zip_reader.h"

namespace {

std::string median_ms(int runs, const std::function<void()>& step) {
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    const auto start = std::chrono::steady_clock::now();
    step();
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
            .count());
  }
  std::sort(ms.begin(), ms.end());
  char text[64];
  std::snprintf(text, sizeof text, "%.2f %.2f", ms[ms.size() / 2], ms.front());
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: open_time PKG [--runs N] [--trusted-keys DIR]\n");
    return 2;
  }
  const std::string path = argv[1];
  int runs = 9;
  torshpkg::AdmissionPolicy policy;
  policy.allow_unsigned = true;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--runs") == 0) runs = std::max(1, std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--trusted-keys") == 0) {
      policy.trusted_keys_dir = argv[i + 1];
      policy.allow_unsigned = false;
    }
  }
  try {
    const auto source = torshpkg::open_file_source(path);
    std::vector<torshpkg::ZipEntry> entries;
    std::printf("zip_directory %s\n",
                median_ms(runs, [&] { entries = torshpkg::read_zip_directory(*source); }).c_str());
    const auto manifest = std::find_if(entries.begin(), entries.end(), [](const auto& e) {
      return e.name == "manifest.json";
    });
    if (manifest == entries.end()) throw std::runtime_error("no manifest.json");
    std::string bytes(manifest->uncompressed_size, '\0');
    source->read_at(manifest->data_offset,
                    std::span(reinterpret_cast<uint8_t*>(bytes.data()), bytes.size()));
    std::printf("manifest_bytes %zu\n", bytes.size());
    std::printf("parse_manifest %s\n",
                median_ms(runs, [&] { torshpkg::parse_manifest(bytes, path); }).c_str());
    std::printf("package_open %s\n", median_ms(runs, [&] { torshpkg::Package::open(path); }).c_str());
    torshpkg::AdmittedPackage admitted;
    std::printf("admit_package %s\n",
                median_ms(runs, [&] { admitted = torshpkg::admit_package(path, policy); }).c_str());
    std::printf("tree %s\n",
                median_ms(runs, [&] { torshpkg::fs::Tree tree(*admitted.package); }).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "open_time: %s\n", e.what());
    return 1;
  }
  return 0;
}
