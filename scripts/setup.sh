#!/usr/bin/env bash
# Installs the Debian 12 packages torshpkg needs to build, test and benchmark, when missing,
# then configures and builds it in ./build. Run as root (or with sudo available).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_PACKAGES=(g++ meson ninja-build pkg-config libarchive-dev libarchive-tools libjsoncpp-dev libsimdjson-dev libgnutls28-dev
  libzstd-dev liblzma-dev zlib1g-dev libdeflate-dev libargon2-dev libfuse3-dev fuse3 libcli11-dev libgtest-dev
  libsystemd-dev libcurl4-gnutls-dev libunistring-dev python3-dev pybind11-dev libdlpack-dev)
TEST_PACKAGES=(p7zip-full 7zip unzip zip python3 zstd xz-utils gzip openssl clang
  libclang-rt-14-dev docker-registry apache2-utils nginx-light python3-torch python3-numpy)
# The peers and codec CLIs the benchmarks in bench/ compare against.
BENCH_PACKAGES=(squashfuse squashfs-tools fuse-zip zip zstd xz-utils gzip)

missing_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

install_packages() {
  local missing
  missing=$(missing_packages "$@")
  [ -z "$missing" ] && return 0
  echo "installing:" $missing >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -q
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
}

wanted=("${BUILD_PACKAGES[@]}")
for arg in "$@"; do
  case "$arg" in
    --with-tests) wanted+=("${TEST_PACKAGES[@]}") ;;
    --with-bench) wanted+=("${BENCH_PACKAGES[@]}") ;;
    *) echo "usage: scripts/setup.sh [--with-tests] [--with-bench]" >&2; exit 2 ;;
  esac
done
install_packages "${wanted[@]}"

werror=false
[ "${CI:-}" = "true" ] && werror=true
if [ ! -f build/build.ninja ]; then
  meson setup build -Dwerror="$werror" -Dpython_module=enabled >/dev/null
else
  meson configure build -Dwerror="$werror" -Dpython_module=enabled >/dev/null
fi
ninja -C build >/dev/null
echo "built: build/tools/torshpkg" >&2
