#!/usr/bin/env python3
"""How a serving framework reads weights from a mount, against the plain file and squashfuse_ll.

The input is a safetensors file of --size-mib MiB of bf16-like weights. Each variant serves the
same file: the plain file on disk, torshpkg stored (the README's layout for weights), torshpkg
zstd:3, squashfuse_ll of a stored image (mksquashfs -noD) and of a zstd level 3 image. Every
measurement runs in a process of its own, on a fresh mount with a cold page cache (sync; echo 3 >
/proc/sys/vm/drop_caches), and every figure is the median of --runs runs:

  read        the whole file in 1 MiB reads, cold, MB/s
  warm        the same again in a second process, on the same mount (what a restarted server
              sees), MB/s, and the CPU time the FUSE server spent meanwhile
  pages       mmap, 1000 seeded random 4 KiB pages touched one byte each, pages/s
  random adv  the same after madvise(MADV_RANDOM), pages/s
  scan        mmap, every page of the file touched in order, MB/s
  RSS         the FUSE server's peak resident set (VmHWM) after 16 threads read 32 random 1 MiB
              ranges each, MiB, beside its configured chunk cache (torshpkg's --cache-size)

--extras adds torshpkg variants that show what the format and the mount's settings are worth:
the format version 2 layout (--block-size 0), 64 KiB stored chunks, the kernel's own 128 KiB
readahead (--kernel-readahead 0), stored chunks read through the page cache (--buffered-reads)
and 64 KiB zstd chunks.
Needs root, /dev/fuse, squashfuse and squashfs-tools (scripts/setup.sh --with-bench). Usage:

  bench/serving_bench.py [--torshpkg build/tools/torshpkg] [--size-mib 512] [--runs 3]
                         [--dir /var/tmp] [--only read,pages,scan,rss] [--variants a,b,...]
                         [--extras] [--readahead-sweep 128,512,1024]
"""
import argparse
import json
import math
import mmap
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import bf16_like  # noqa: E402
from mount_bench import Mounter, drop_caches, peak_rss_mib, run, server_pid  # noqa: E402

MIB = 1 << 20
PAGE = 4096
PAGES = 1000
READERS, READS_PER_READER = 16, 32
CACHE_SIZE = "64M"  # torshpkg mount's default, given explicitly so the RSS column can quote it


# --- what runs in the child processes --------------------------------------------------------

def child_read(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        start = time.perf_counter()
        total = 0
        while True:
            n = len(os.read(fd, MIB))
            if n == 0:
                break
            total += n
        return total, time.perf_counter() - start
    finally:
        os.close(fd)


def child_pages(path, advice):
    size = os.path.getsize(path)
    rnd = random.Random(42)
    offsets = [rnd.randrange(0, size // PAGE) * PAGE for _ in range(PAGES)]
    with open(path, "rb") as f:
        start = time.perf_counter()
        mm = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        if advice == "random":
            mm.madvise(mmap.MADV_RANDOM)
        s = 0
        for off in offsets:
            s += mm[off]
        t = time.perf_counter() - start
        mm.close()
    return PAGES, t


def child_scan(path):
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        start = time.perf_counter()
        mm = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        s = 0
        for off in range(0, size, PAGE):
            s += mm[off]
        t = time.perf_counter() - start
        mm.close()
    return size, t


def child_readers(path):
    size = os.path.getsize(path)
    errors = []

    def reader(seed):
        rnd = random.Random(seed)
        fd = os.open(path, os.O_RDONLY)
        try:
            for _ in range(READS_PER_READER):
                off = rnd.randrange(0, size - MIB)
                if len(os.pread(fd, MIB, off)) != MIB:
                    errors.append(f"short read at {off}")
        finally:
            os.close(fd)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(READERS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return READERS * READS_PER_READER * MIB, time.perf_counter() - start


def child_main(mode, path, *rest):
    fn = {"read": child_read, "pages": child_pages, "scan": child_scan,
          "readers": child_readers}[mode]
    amount, seconds = fn(path, *rest)
    print(json.dumps({"amount": amount, "seconds": seconds}))


def measure(mode, path, *rest):
    """Runs one measurement in a new process; returns (amount, seconds)."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", mode, path, *rest],
                         check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    return r["amount"], r["seconds"]


# --- the variants ------------------------------------------------------------------------------

class Variant:
    """One way of serving the file: an image, how to mount it (None: the plain file) and where
    the file is inside the mount."""

    def __init__(self, name, image, mounter=None, inner=None, cache=""):
        self.name, self.image, self.mounter, self.inner, self.cache = name, image, mounter, inner, cache


def safetensors_file(path, size_mib):
    """A safetensors file of bf16 tensors of 8 MiB each (the last one smaller)."""
    tensors, offset, i = {}, 0, 0
    total = size_mib * MIB
    while offset < total:
        n = min(8 * MIB, total - offset)
        tensors[f"layers.{i}.weight"] = {"dtype": "BF16", "shape": [n // 2],
                                         "data_offsets": [offset, offset + n]}
        offset += n
        i += 1
    header = json.dumps(tensors, separators=(",", ":")).encode()
    header += b" " * (-(8 + len(header)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        for i in range(0, size_mib, 64):  # in pieces: randbytes has a size limit
            f.write(bf16_like(min(64, size_mib - i) * MIB, seed=1234 + i))


def build_variants(args, tpk, work, data):
    def tpk_mounter(extra):
        return Mounter("torshpkg", lambda i, m: [tpk, "mount", i, m, "--allow-unsigned",
                                                 "--cache-size", CACHE_SIZE, *extra],
                       lambda m: [tpk, "umount", m])

    squash = Mounter("squashfuse_ll", lambda i, m: ["squashfuse_ll", i, m],
                     lambda m: ["fusermount3", "-u", m])
    name = os.path.basename(data)

    def package(tag, *create_args):
        pkg = os.path.join(work, f"{tag}.torshpkg")
        run([tpk, "create", pkg, "--name", "bench", "--version", "1.0.0", "-q",
             "--add", f"ModelWeights:{name}={data}", *create_args])
        return pkg

    def image(tag, *comp):
        sq = os.path.join(work, f"{tag}.sqfs")
        run(["mksquashfs", data, sq, "-noappend", "-quiet", "-no-progress", *comp])
        return sq

    inner = f"resources/{name}"
    out = {}
    want = set(args.variants.split(","))
    if "plain" in want:
        out["plain"] = Variant("plain file", data)
    if "torshpkg-stored" in want or args.extras or args.readahead_sweep:
        out["torshpkg-stored"] = Variant("torshpkg stored", package("stored", "--compress", "none"),
                                         tpk_mounter([]), inner, CACHE_SIZE)
    if "torshpkg-zstd" in want:
        out["torshpkg-zstd"] = Variant("torshpkg zstd:3", package("zstd", "--compress", "zstd:3"),
                                       tpk_mounter([]), inner, CACHE_SIZE)
    if "squashfuse_ll-stored" in want:
        out["squashfuse_ll-stored"] = Variant("squashfuse_ll stored", image("stored", "-noD"),
                                              squash, name)
    if "squashfuse_ll-zstd" in want:
        out["squashfuse_ll-zstd"] = Variant(
            "squashfuse_ll zstd:3", image("zstd", "-comp", "zstd", "-Xcompression-level", "3"),
            squash, name)
    for kb in filter(None, args.readahead_sweep.split(",")):
        stored = out["torshpkg-stored"].image
        out[f"readahead-{kb}"] = Variant(f"torshpkg stored, --kernel-readahead {kb}", stored,
                                         tpk_mounter(["--kernel-readahead", kb]), inner,
                                         CACHE_SIZE)
    if args.extras:
        stored = out["torshpkg-stored"].image
        out["v2-blocks-off"] = Variant(
            "torshpkg stored, --block-size 0 (format 2)",
            package("noblocks", "--compress", "none", "--block-size", "0"), tpk_mounter([]),
            inner, CACHE_SIZE)
        out["chunks-64k"] = Variant(
            "torshpkg stored, --chunk-size 64K --block-size 0",
            package("chunk64k", "--compress", "none", "--chunk-size", "64K", "--block-size", "0"),
            tpk_mounter([]), inner, CACHE_SIZE)
        out["readahead-128k"] = Variant("torshpkg stored, --kernel-readahead 0 (128 KiB)", stored,
                                        tpk_mounter(["--kernel-readahead", "0"]), inner,
                                        CACHE_SIZE)
        out["buffered"] = Variant("torshpkg stored, --buffered-reads", stored,
                                  tpk_mounter(["--buffered-reads"]), inner, CACHE_SIZE)
        out["zstd-64k"] = Variant(
            "torshpkg zstd:3, --chunk-size 64K",
            package("zstd64k", "--compress", "zstd:3", "--chunk-size", "64K"), tpk_mounter([]),
            inner, CACHE_SIZE)
    return out


def cpu_seconds(pid):
    """User and system CPU time of a process so far."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- one run of one variant --------------------------------------------------------------------

def one_run(variant, mnt, parts):
    """Every measurement of a variant, each on a fresh mount with a cold cache. Returns a dict of
    figures."""
    figures = {}

    def on_mount(fn):
        if variant.mounter is None:
            drop_caches()
            return fn(variant.image, None)
        variant.mounter.mount(variant.image, mnt)
        try:
            drop_caches()
            return fn(os.path.join(mnt, variant.inner), server_pid(mnt))
        finally:
            variant.mounter.unmount(mnt)

    if "read" in parts:
        def read(path, pid):
            n, cold = measure("read", path)
            cpu = cpu_seconds(pid)
            n2, warm = measure("read", path)
            # What the server did for the warm read: nothing when the kernel's cache served it.
            figures["warm_cpu"] = (cpu_seconds(pid) - cpu) * 1000 if pid else float("nan")
            return n / cold / 1e6, n2 / warm / 1e6
        figures["read"], figures["warm"] = on_mount(read)
    if "pages" in parts:
        for key, advice in (("pages", "normal"), ("random", "random")):
            figures[key] = on_mount(lambda p, _pid, a=advice: (lambda r: r[0] / r[1])(
                measure("pages", p, a)))
    if "scan" in parts:
        figures["scan"] = on_mount(lambda p, _pid: (lambda r: r[0] / r[1] / 1e6)(
            measure("scan", p)))
    if "rss" in parts and variant.mounter is not None:
        def rss(path, pid):
            measure("readers", path)
            return peak_rss_mib(pid)
        figures["rss"] = on_mount(rss)
    return figures


COLUMNS = [("read", "whole file, 1 MiB reads, MB/s", "{:.0f}"),
           ("warm", "again, warm (second process), MB/s", "{:.0f}"),
           ("warm_cpu", "server CPU during the warm read, ms", "{:.0f}"),
           ("pages", "mmap, 1000 random 4 KiB pages, pages/s", "{:.0f}"),
           ("random", "the same with MADV_RANDOM, pages/s", "{:.0f}"),
           ("scan", "mmap, whole file page by page, MB/s", "{:.0f}"),
           ("rss", f"server peak RSS, {READERS} random readers, MiB", "{:.0f}")]


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(*sys.argv[2:])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--torshpkg", default="build/tools/torshpkg")
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default="/var/tmp", help="where the inputs go (a real disk, not tmpfs)")
    ap.add_argument("--only", default="read,pages,scan,rss")
    ap.add_argument("--variants", default="plain,torshpkg-stored,torshpkg-zstd,"
                                          "squashfuse_ll-stored,squashfuse_ll-zstd")
    ap.add_argument("--extras", action="store_true",
                    help="also the torshpkg variants that show what blocks, chunk size, "
                         "readahead and direct I/O are worth")
    ap.add_argument("--readahead-sweep", default="",
                    help="also torshpkg stored mounted with each of these --kernel-readahead "
                         "values (KiB, comma-separated)")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    if os.geteuid() != 0:
        sys.exit("serving_bench.py: needs root (mounts, drop_caches)")
    for tool in ("squashfuse_ll", "mksquashfs"):
        if shutil.which(tool) is None:
            sys.exit(f"serving_bench.py: {tool} is missing (scripts/setup.sh --with-bench)")
    tpk = os.path.abspath(args.torshpkg)
    work = tempfile.mkdtemp(prefix="torshpkg-serving-bench-", dir=args.dir)
    mnt = os.path.join(work, "mnt")
    os.makedirs(mnt)
    try:
        data = os.path.join(work, "model.safetensors")
        safetensors_file(data, args.size_mib)
        variants = build_variants(args, tpk, work, data)
        print(f"input: {args.size_mib} MiB bf16-like safetensors file; {os.cpu_count()} cores; "
              f"median of {args.runs} runs, each measurement in a new process on a fresh mount "
              f"with a cold page cache; torshpkg mounts with --cache-size {CACHE_SIZE}\n",
              flush=True)
        # Runs alternate between variants, so a noisy minute hits them all alike.
        results = {key: [] for key in variants}
        for _ in range(args.runs):
            for key, v in variants.items():
                results[key].append(one_run(v, mnt, parts))
        medians = {}
        for key, runs in results.items():
            medians[key] = {c: statistics.median(r[c] for r in runs) for c in runs[0]
                            if not any(math.isnan(r[c]) for r in runs)}
        print_table(variants, medians)
    finally:
        subprocess.run(["fusermount3", "-u", "-z", mnt], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


def print_table(variants, medians):
    cols = [c for c in COLUMNS if any(c[0] in m for m in medians.values())]
    keys = list(variants)
    print("| read | " + " | ".join(variants[k].name for k in keys) + " |")
    print("|---|" + "---|" * len(keys))
    for col, label, fmt in cols:
        cells = [fmt.format(medians[k][col]) if col in medians[k] else "-" for k in keys]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    # The ratios the targets are stated in.
    ratios = [("torshpkg-stored", "plain"), ("torshpkg-stored", "squashfuse_ll-stored"),
              ("torshpkg-zstd", "squashfuse_ll-zstd"), ("torshpkg-zstd", "plain")]
    ratio_cols = [c for c in cols if c[0] not in ("rss", "warm_cpu")]
    shown = [(a, b) for a, b in ratios if a in medians and b in medians]
    if shown:
        print("| ratio | " + " | ".join(label for _, label, _ in ratio_cols) + " |")
        print("|---|" + "---|" * len(ratio_cols))
        for a, b in shown:
            cells = [f"{medians[a][c] / medians[b][c]:.2f}" for c, _, _ in ratio_cols]
            print(f"| {variants[a].name} / {variants[b].name} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main()
