#!/usr/bin/env bash
# On the GPU machine, from the repository root: finds torshpkg (a bundle made by
# bench/gpu/bundle.sh, else a build made here when meson and the build dependencies are
# present) and runs bench/gpu/gpu_bench.py with the arguments given, under $PYTHON (default
# python3, which must have PyTorch).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -x bench/gpu/bundle/torshpkg ]; then
  torshpkg=bench/gpu/bundle/torshpkg
elif command -v meson >/dev/null && pkg-config --exists fuse3 jsoncpp gnutls libarchive libzstd \
    liblzma libargon2 libsystemd zlib; then
  [ -f build-gpu/build.ninja ] || meson setup build-gpu -Dcuda=enabled -Dtests=false \
    -Dbuildtype=release >/dev/null
  ninja -C build-gpu >/dev/null
  torshpkg=build-gpu/tools/torshpkg
else
  echo "run.sh: no torshpkg: run bench/gpu/bundle.sh on a Debian 12 build host and bring" \
       "bench/gpu/bundle, or install the build dependencies here" >&2
  exit 1
fi
# The Python module beside it, where it was built (gpu_bench.py's row for it needs it to import).
for dir in bench/gpu/bundle/python build-gpu/python; do
  if [ -d "$dir/torshpkg" ]; then
    export PYTHONPATH="$PWD/$dir${PYTHONPATH:+:$PYTHONPATH}"
    export LD_LIBRARY_PATH="$PWD/bench/gpu/bundle/lib:$PWD/build-gpu/libtorshpkg${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    break
  fi
done
exec "${PYTHON:-python3}" bench/gpu/gpu_bench.py --torshpkg "$torshpkg" "$@"
