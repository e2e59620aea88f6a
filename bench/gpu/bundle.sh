#!/usr/bin/env bash
# Builds torshpkg with the CUDA backend and gathers it, with the shared libraries it needs that a
# machine without Debian's packages may lack, into one folder (default bench/gpu/bundle) that
# bench/gpu/run.sh uses on a GPU machine. Run on a Debian 12 build host with the CUDA toolkit
# (scripts/setup.sh installs the rest). The CUDA runtime is linked statically; the GPU machine
# needs only its NVIDIA driver (one that supports this toolkit's CUDA version).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-bench/gpu/bundle}"
build=build-gpu

if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" -Dcuda=enabled -Dtests=false -Dbuildtype=release >/dev/null
fi
ninja -C "$build" >/dev/null

rm -rf "$out"
mkdir -p "$out/bin" "$out/lib"
cp "$build/tools/torshpkg" "$out/bin/"
# Everything ldd resolves except the C library itself and the dynamic loader, which the GPU
# machine has (in a newer, compatible version).
ldd "$build/tools/torshpkg" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*) ;;
    *) cp -L "$lib" "$out/lib/" ;;
  esac
done
cat > "$out/torshpkg" <<'WRAP'
#!/bin/sh
here="$(cd "$(dirname "$0")" && pwd)"
LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/bin/torshpkg" "$@"
WRAP
chmod +x "$out/torshpkg"
# The Python module, for a GPU machine whose Python is the one it was built for (the file name
# says which: _native.cpython-311-...); gpu_bench.py skips its row where it does not import.
if ls "$build"/python/torshpkg/_native*.so >/dev/null 2>&1; then
  mkdir -p "$out/python/torshpkg"
  cp "$build"/python/torshpkg/_native*.so "$build"/python/torshpkg/__init__.py "$out/python/torshpkg/"
  cp -L "$build"/libtorshpkg/libtorshpkg.so* "$out/lib/" 2>/dev/null || true
fi
echo "bundle: $out ($(du -sh "$out" | cut -f1)); on the GPU machine: bench/gpu/run.sh"
