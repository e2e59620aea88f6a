#!/usr/bin/env python3
"""Runs one libFuzzer target for a bounded time: the seed corpus is read, new inputs go to a
scratch folder that is removed afterwards. Exits non-zero when the fuzzer finds a crash, leak,
timeout or out-of-memory."""
import os
import shutil
import subprocess
import sys
import tempfile

target, seeds, seconds = sys.argv[1], sys.argv[2], sys.argv[3]
scratch = tempfile.mkdtemp(prefix="torshpkg-fuzz-")
try:
    cmd = [target, f"-max_total_time={seconds}", "-timeout=10", "-rss_limit_mb=2048",
           "-malloc_limit_mb=1024", "-max_len=1048576", f"-artifact_prefix={scratch}/",
           "-print_final_stats=1", scratch, seeds]
    print(" ".join(cmd), flush=True)
    proc = subprocess.run(cmd)
    crashes = [f for f in os.listdir(scratch) if f.startswith(("crash-", "leak-", "timeout-", "oom-"))]
    for name in crashes:
        with open(os.path.join(scratch, name), "rb") as f:
            print(f"{name}: {f.read()[:512].hex()}", file=sys.stderr)
    # libFuzzer reports a crash with exit code 77, which meson would count as "skipped":
    # every failure exits 1 here.
    sys.exit(1 if proc.returncode != 0 or crashes else 0)
finally:
    shutil.rmtree(scratch, ignore_errors=True)
