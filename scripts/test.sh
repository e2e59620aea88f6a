#!/usr/bin/env bash
# Sets up (packages, build) and runs every test: unit and integration tests through meson test,
# then each libFuzzer target for a bounded time under ASan/UBSan. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-}"
scripts/setup.sh --with-tests

status=0
meson test -C build --print-errorlogs --num-processes 2 || status=1

# Fuzz targets need clang's libFuzzer; they get their own build folder.
if [ ! -f build-fuzz/build.ninja ]; then
  CXX=clang++ CC=clang meson setup build-fuzz -Dfuzzing=true -Dtests=false \
    -Db_sanitize=address,undefined -Db_lundef=false -Dcuda=disabled -Dpython_module=disabled >/dev/null
fi
ninja -C build-fuzz >/dev/null
meson test -C build-fuzz --suite fuzz --print-errorlogs --num-processes 1 || status=1

/usr/bin/python3 scripts/summarize_tests.py build/meson-logs/testlog.json \
  build-fuzz/meson-logs/testlog.json || status=1
exit $status
