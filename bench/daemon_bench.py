#!/usr/bin/env python3
"""Many mounts in one torshpkgd: memory and threads against its memory_budget.

Starts torshpkgd with --mounts mounts (alternately a stored and a zstd:3 package of --size-mib
MiB of random bytes), reads the first --read-mib MiB of each mount in turn, and reports what the
daemon's status says of the shared budget and what the kernel says of the process (VmRSS,
VmHWM, threads): once every mount is up, after the reads, after 12 s without reads (decoding
threads end after 10 s idle) and after --idle-release-s more (idle mounts give their chunks
back). Needs root and /dev/fuse. Usage:

  bench/daemon_bench.py [--torshpkg build/tools/torshpkg] [--torshpkgd build/daemon/torshpkgd]
                        [--mounts 200] [--memory-budget 256M] [--size-mib 32] [--read-mib 16]
                        [--idle-release-s 20] [--dir /var/tmp]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--torshpkg", default="build/tools/torshpkg")
    ap.add_argument("--torshpkgd", default="build/daemon/torshpkgd")
    ap.add_argument("--mounts", type=int, default=200)
    ap.add_argument("--memory-budget", default="256M")
    ap.add_argument("--size-mib", type=int, default=32)
    ap.add_argument("--read-mib", type=int, default=16)
    ap.add_argument("--idle-release-s", type=int, default=20)
    ap.add_argument("--dir", default="/var/tmp")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("daemon_bench.py: needs root (mounts)")
    tpk, tpkd = os.path.abspath(args.torshpkg), os.path.abspath(args.torshpkgd)
    work = tempfile.mkdtemp(prefix="torshpkg-daemon-bench-", dir=args.dir)
    proc = None
    try:
        data = os.path.join(work, "w.bin")
        with open(data, "wb") as f:
            f.write(os.urandom(args.size_mib << 20))
        packages = []
        for codec in ("none", "zstd:3"):
            pkg = os.path.join(work, codec.replace(":", "") + ".torshpkg")
            subprocess.run([tpk, "create", pkg, "--name", "m", "--version", "1.0.0", "-q",
                            "--compress", codec, "--add", f"w.bin={data}"], check=True)
            packages.append(pkg)
        mounts = []
        for i in range(args.mounts):
            point = os.path.join(work, "mnt", f"{i:04d}")
            os.makedirs(point)
            mounts.append({"package": packages[i % 2], "mountpoint": point,
                           "allow_unsigned": True})
        sock = os.path.join(work, "torshpkgd.sock")
        config = os.path.join(work, "torshpkgd.json")
        with open(config, "w") as f:
            json.dump({"control_socket": sock, "lineage_journal": os.path.join(work, "l.jsonl"),
                       "trusted_keys_dir": work, "mounts": mounts,
                       "memory_budget": args.memory_budget,
                       "idle_release_s": args.idle_release_s}, f)
        proc = subprocess.Popen([tpkd, "--config", config], stderr=subprocess.DEVNULL)

        def status():
            out = subprocess.run([tpk, "status", "--json", "--socket", sock],
                                 capture_output=True).stdout
            return json.loads(out) if out else {}

        def report(when):
            s = status()
            with open(f"/proc/{proc.pid}/status") as f:
                p = {k: (v.split() or [""])[0] for k, v in (line.split(":", 1) for line in f)}
            print(f"| {when} | {s['memory_used'] >> 20} of {s['memory_budget'] >> 20} | "
                  f"{int(p['VmRSS']) >> 10} | {int(p['VmHWM']) >> 10} | {p['Threads']} | "
                  f"{s['decode_threads_running']} |", flush=True)

        deadline = time.monotonic() + 600
        while len(status().get("mounts", [])) < args.mounts:
            if time.monotonic() > deadline or proc.poll() is not None:
                sys.exit("daemon_bench.py: the mounts did not come up")
            time.sleep(0.2)
        print(f"{args.mounts} mounts (half stored, half zstd:3, {args.size_mib} MiB each), "
              f"memory_budget {args.memory_budget}; {os.cpu_count()} cores\n")
        print("| when | chunks, MiB of budget | RSS MiB | peak RSS MiB | threads | decode threads |")
        print("|---|---|---|---|---|---|")
        report("all mounted")
        start = time.monotonic()
        for m in mounts:
            with open(os.path.join(m["mountpoint"], "resources", "w.bin"), "rb") as f:
                f.read(args.read_mib << 20)
        report(f"{args.read_mib} MiB read from each ({time.monotonic() - start:.0f} s)")
        time.sleep(12)
        report("12 s later")
        time.sleep(args.idle_release_s)
        report(f"{12 + args.idle_release_s} s later (idle_release_s {args.idle_release_s})")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
