#!/usr/bin/env python3
"""Reading through the mount, cold, against the raw file and against squashfuse and fuse-zip.

Every figure is the median of --runs runs, each with a fresh mount and a cold page cache
(sync; echo 3 > /proc/sys/vm/drop_caches), and every ratio compares figures of the same run:

  sequential  read a whole resource through the mount with `dd bs=1M`, against `dd` of the
              package file itself (raw) and against `zstd -d` / `gzip -d` / `xz -d` of the same
              data compressed at the same level (the single-threaded CLI decompressors)
  random      100 reads of 1 MiB at seeded random offsets in the resource, against the same
              reads on the plain data file
  mount       time from starting the mount command until a stat of the mount point answers,
              for the big package and for a package of --files small resources; and for a
              mount request sent to a running torshpkgd
  RSS         the FUSE server's peak resident set (VmHWM) after the sequential read, and any
              regular file it holds open besides the package (temp files)

Peers, on the same data: squashfuse and squashfuse_ll (mksquashfs images, 128 KiB blocks, same
codec and level where squashfs has it; stored = -noD) and fuse-zip (Info-ZIP archives; stored
and deflate only). Needs root, /dev/fuse and (scripts/setup.sh --with-bench): squashfuse fuse-zip squashfs-tools zip zstd xz-utils
gzip. Usage:

  bench/mount_bench.py [--torshpkg build/tools/torshpkg] [--torshpkgd build/daemon/torshpkgd]
                       [--size-mib 512] [--runs 3]
                       [--files 10000] [--dir /var/tmp] [--only seq,random,mount]
                       [--mounters torshpkg,squashfuse,...] [--codecs stored,zstd,...]
                       [--chunk-size 1M]  (default: torshpkg's, by codec)
"""
import argparse
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import bf16_like  # noqa: E402

MIB = 1 << 20
CODECS = ["stored", "zstd", "gzip", "xz"]
LEVELS = {"zstd": 3, "gzip": 6, "xz": 6}


def drop_caches():
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


def dd_seconds(path):
    start = time.perf_counter()
    run(["dd", f"if={path}", "of=/dev/null", "bs=1M"])
    return time.perf_counter() - start


def random_reads_seconds(path, offsets):
    fd = os.open(path, os.O_RDONLY)
    try:
        start = time.perf_counter()
        for off in offsets:
            if len(os.pread(fd, MIB, off)) != MIB:
                raise RuntimeError(f"short read at {off} in {path}")
        return time.perf_counter() - start
    finally:
        os.close(fd)


class Mounter:
    """One FUSE implementation: how to mount an image of it and unmount it again."""

    def __init__(self, name, mount_cmd, unmount_cmd):
        self.name = name
        self.mount_cmd = mount_cmd  # (image, mountpoint) -> argv
        self.unmount_cmd = unmount_cmd

    def mount(self, image, mnt):
        start = time.perf_counter()
        run(self.mount_cmd(image, mnt))
        os.stat(mnt)  # answers only once the kernel's INIT exchange is done
        return time.perf_counter() - start

    def unmount(self, mnt):
        """Unmounts, then waits for the server to exit, so that the next mount on the same folder
        is the only process serving it."""
        try:
            pid = server_pid(mnt)
        except RuntimeError:
            pid = None
        for _ in range(50):
            if subprocess.run(self.unmount_cmd(mnt), stderr=subprocess.DEVNULL).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"cannot unmount {mnt}")
        for _ in range(200):
            if pid is None or math.isnan(peak_rss_mib(pid)):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the server of {mnt} (pid {pid}) did not exit")


def server_pid(mnt):
    """The process serving `mnt`: the one whose command line names the mount point."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        # A process that is exiting has no memory left, so no VmHWM.
        pid = int(entry)
        if mnt.encode() in args and pid != os.getpid() and not math.isnan(peak_rss_mib(pid)):
            return pid
    raise RuntimeError(f"no server process for {mnt}")


def peak_rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def open_files(pid, image):
    """Regular files the server holds open other than its image: temp files, if any."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/") and not target.startswith("/dev/") and target != image:
            found.append(target)
    return found


def build_inputs(args, tpk, work, data):
    images = {}  # (mounter family, codec) -> (image path, path of the data inside the mount)
    for codec in CODECS:
        spec = "none" if codec == "stored" else f"{codec}:{LEVELS[codec]}"
        pkg = os.path.join(work, f"weights-{codec}.torshpkg")
        run([tpk, "create", pkg, "--name", "bench", "--version", "1.0.0", "--compress", spec,
             *(["--chunk-size", args.chunk_size] if args.chunk_size else []),
             "--add", f"ModelWeights:weights.bin={data}", "-q"])
        images[("torshpkg", codec)] = (pkg, "resources/weights.bin")
        sq = os.path.join(work, f"weights-{codec}.sqfs")
        comp = ["-noD"] if codec == "stored" else ["-comp", codec]
        if codec == "zstd":
            comp += ["-Xcompression-level", "3"]
        run(["mksquashfs", data, sq, "-noappend", "-quiet", "-no-progress", *comp])
        images[("squashfs", codec)] = (sq, "weights.bin")
    for codec, level in (("stored", "-0"), ("gzip", "-6")):
        z = os.path.join(work, f"weights-{codec}.zip")
        run(["zip", "-q", "-j", level, z, data])
        images[("zip", codec)] = (z, "weights.bin")
    if "seq" in args.only:  # the CLI decompressors' inputs, for the sequential baseline
        for codec, cmd in (("zstd", ["zstd", "-3", "-q", "-k"]), ("gzip", ["gzip", "-6", "-k"]),
                           ("xz", ["xz", "-6", "-k"])):
            run([*cmd, data])
    return images


def many_files_inputs(args, tpk, work):
    src = os.path.join(work, "many")
    os.makedirs(src)
    rnd = random.Random(7)
    for i in range(args.files):
        sub = os.path.join(src, f"d{i % 100:02d}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"f{i:05d}.json"), "wb") as f:
            f.write(b'{"value": %d, "pad": "%s"}\n' % (i, rnd.randbytes(200).hex().encode()))
    pkg = os.path.join(work, "many.torshpkg")
    run([tpk, "create", pkg, "--name", "many", "--version", "1.0.0", "--add-dir", f"files={src}",
         "-q"])
    sq = os.path.join(work, "many.sqfs")
    run(["mksquashfs", src, sq, "-noappend", "-quiet", "-no-progress", "-comp", "zstd"])
    z = os.path.join(work, "many.zip")
    run(["zip", "-q", "-r", z, "."], cwd=src)
    return {"torshpkg": pkg, "squashfs": sq, "zip": z}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--torshpkg", default="build/tools/torshpkg")
    ap.add_argument("--torshpkgd", default="build/daemon/torshpkgd")
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--dir", default="/var/tmp", help="where the inputs go (a real disk, not tmpfs)")
    ap.add_argument("--only", default="seq,random,mount")
    ap.add_argument("--mounters", default="torshpkg,squashfuse,squashfuse_ll,fuse-zip")
    ap.add_argument("--codecs", default=",".join(CODECS))
    ap.add_argument("--chunk-size", default="",
                    help="torshpkg's chunk size for the big package (default: create's default)")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    if os.geteuid() != 0:
        sys.exit("mount_bench.py: needs root (mounts, drop_caches)")
    for tool in ("squashfuse", "squashfuse_ll", "fuse-zip", "mksquashfs", "zip", "zstd", "xz"):
        if shutil.which(tool) is None:
            sys.exit(f"mount_bench.py: {tool} is missing (scripts/setup.sh --with-bench)")
    tpk = os.path.abspath(args.torshpkg)
    mounters = {
        "torshpkg": Mounter("torshpkg", lambda i, m: [tpk, "mount", i, m, "--allow-unsigned"],
                            lambda m: [tpk, "umount", m]),
        "squashfuse": Mounter("squashfuse", lambda i, m: ["squashfuse", i, m],
                              lambda m: ["fusermount3", "-u", m]),
        "squashfuse_ll": Mounter("squashfuse_ll", lambda i, m: ["squashfuse_ll", i, m],
                                 lambda m: ["fusermount3", "-u", m]),
        "fuse-zip": Mounter("fuse-zip", lambda i, m: ["fuse-zip", "-r", i, m],
                            lambda m: ["fusermount3", "-u", m]),
    }
    mounters = {k: v for k, v in mounters.items() if k in args.mounters.split(",")}
    family = {"torshpkg": "torshpkg", "squashfuse": "squashfs", "squashfuse_ll": "squashfs",
              "fuse-zip": "zip"}
    work = tempfile.mkdtemp(prefix="torshpkg-mount-bench-", dir=args.dir)
    mnt = os.path.join(work, "mnt")
    os.makedirs(mnt)
    try:
        data = os.path.join(work, "weights.bin")
        with open(data, "wb") as f:
            for i in range(0, args.size_mib, 64):  # in pieces: randbytes has a size limit
                f.write(bf16_like(min(64, args.size_mib - i) * MIB, seed=1234 + i))
        CODECS[:] = [c for c in CODECS if c in args.codecs.split(",")]
        images = build_inputs(args, tpk, work, data)
        size = args.size_mib * MIB
        rnd = random.Random(42)
        offsets = [rnd.randrange(0, size - MIB) for _ in range(100)]
        print(f"input: {args.size_mib} MiB of bf16-like weights; {os.cpu_count()} cores; "
              f"median of {args.runs} runs, each with a fresh mount and a cold page cache\n")

        if "seq" in parts:
            sequential(args, mounters, family, images, mnt, data)
        if "random" in parts:
            random_table(args, mounters, family, images, mnt, data, offsets)
        if "mount" in parts:
            mount_table(args, tpk, mounters, family, images, mnt, work)
    finally:
        subprocess.run(["fusermount3", "-u", "-z", mnt], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


def cases(mounters, family, images):
    """(codec, mounter name, mounter, image, path inside the mount) for every image a mounter has."""
    for codec in CODECS:
        for name, m in mounters.items():
            key = (family[name], codec)
            if key in images:
                yield (codec, name, m, *images[key])


def median_of(args, fn):
    return statistics.median(fn() for _ in range(args.runs))


def sequential(args, mounters, family, images, mnt, data):
    mib = args.size_mib
    raw_pkg = images[("torshpkg", "stored")][0]

    def cold(fn):
        def once():
            drop_caches()
            return fn()
        return once

    raw = median_of(args, cold(lambda: dd_seconds(raw_pkg)))
    cli = {"stored": raw}
    for codec, cmd in (("zstd", "zstd -d -c"), ("gzip", "gzip -d -c"), ("xz", "xz -d -c")):
        src = f"{data}.{ {'zstd': 'zst', 'gzip': 'gz', 'xz': 'xz'}[codec]}"

        def decompress(cmd=cmd, src=src):
            start = time.perf_counter()
            subprocess.run(f"{cmd} {src} > /dev/null", shell=True, check=True)
            return time.perf_counter() - start
        cli[codec] = median_of(args, cold(decompress))
    print("## Sequential read, cold (dd bs=1M through the mount)\n")
    print(f"raw read of the stored package file: {mib / raw:.0f} MiB/s\n")
    print("| codec | mounter | MiB/s | / raw file | / CLI decompressor | peak RSS MiB | temp files |")
    print("|---|---|---|---|---|---|---|")
    for codec, name, m, image, inner in cases(mounters, family, images):
        rss, temps, secs = [], [], []
        for _ in range(args.runs):
            m.mount(image, mnt)
            try:
                drop_caches()
                secs.append(dd_seconds(os.path.join(mnt, inner)))
                pid = server_pid(mnt)
                rss.append(peak_rss_mib(pid))
                temps += open_files(pid, image)
            finally:
                m.unmount(mnt)
        s = statistics.median(secs)
        vs_cli = "" if codec == "stored" else f"{cli[codec] / s:.2f}"
        print(f"| {codec} | {name} | {mib / s:.0f} | {raw / s:.2f} | {vs_cli} | "
              f"{max(rss):.0f} | {len(set(temps))} |", flush=True)
    print("\nCLI decompressors, cold: " + ", ".join(
        f"{c} {mib / cli[c]:.0f} MiB/s" for c in ("zstd", "gzip", "xz")) + "\n")


def random_table(args, mounters, family, images, mnt, data, offsets):
    def raw_once():
        drop_caches()
        return random_reads_seconds(data, offsets)
    raw = median_of(args, raw_once)
    print("## 100 random 1 MiB reads, cold\n")
    print(f"same reads on the plain data file: {raw:.3f} s\n")
    print("| codec | mounter | seconds | / raw file |")
    print("|---|---|---|---|")
    for codec, name, m, image, inner in cases(mounters, family, images):
        secs = []
        for _ in range(args.runs):
            m.mount(image, mnt)
            try:
                drop_caches()
                secs.append(random_reads_seconds(os.path.join(mnt, inner), offsets))
            finally:
                m.unmount(mnt)
        s = statistics.median(secs)
        print(f"| {codec} | {name} | {s:.3f} | {s / raw:.2f} |", flush=True)
    print()


def big_image(images, fam):
    """The big package of a family for mount times: compressed when there is one."""
    for codec in ("zstd", "gzip", "stored", "xz"):
        if (fam, codec) in images:
            return images[(fam, codec)][0]
    raise RuntimeError(f"no image for {fam}")


def mount_table(args, tpk, mounters, family, images, mnt, work):
    many = many_files_inputs(args, tpk, work)
    print("## Mount time (mount command until the mount point answers a stat)\n")
    print("All cold: page cache dropped, so the figure includes loading the program and its "
          "libraries. Program warm: dropped, then the program run once with --help, so only "
          "the package is cold.\n")
    print(f"| mounter | {args.size_mib} MiB package, all cold | program warm | "
          f"{args.files} resources, all cold | program warm |")
    print("|---|---|---|---|---|")
    for name, m in mounters.items():
        row = []
        for image in (big_image(images, family[name]), many[family[name]]):
            for warm_program in (False, True):
                def once(image=image, warm_program=warm_program):
                    drop_caches()
                    if warm_program:
                        subprocess.run([m.mount_cmd(image, mnt)[0], "--help"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    t = m.mount(image, mnt)
                    m.unmount(mnt)
                    return t
                row.append(median_of(args, once) * 1000)
        print(f"| {name} | " + " | ".join(f"{ms:.0f} ms" for ms in row) + " |", flush=True)
        if name == "torshpkg" and os.path.exists(args.torshpkgd):
            row = daemon_mount_times(args, big_image(images, "torshpkg"), many["torshpkg"],
                                     mnt, work)
            print("| torshpkg through a running torshpkgd | " +
                  " | ".join(f"{ms:.0f} ms" for ms in row) + " |", flush=True)
    print()


def daemon_mount_times(args, big, many, mnt, work):
    """Mount requests sent straight to a running torshpkgd's control socket (no program to
    start): package cold, daemon resident. Returns [big, big, many, many] medians in ms."""
    import json
    import socket
    config = os.path.join(work, "torshpkgd.json")
    sock = os.path.join(work, "torshpkgd.sock")
    with open(config, "w") as f:
        json.dump({"control_socket": sock, "lineage_journal": os.path.join(work, "lineage.jsonl"),
                   "mounts": []}, f)
    daemon = subprocess.Popen([os.path.abspath(args.torshpkgd), "--config", config],
                              stderr=subprocess.DEVNULL)

    def request(body):
        for _ in range(100):
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(sock)
                break
            except OSError:
                time.sleep(0.05)
        s.sendall((json.dumps(body) + "\n").encode())
        reply = json.loads(s.makefile().readline())
        s.close()
        if not reply["ok"]:
            raise RuntimeError(reply["error"])

    try:
        request({"op": "status"})
        out = []
        for image in (big, many):
            def once(image=image):
                drop_caches()
                start = time.perf_counter()
                request({"op": "mount", "package": image, "mountpoint": mnt,
                         "allow_unsigned": True})
                os.stat(mnt)
                t = time.perf_counter() - start
                request({"op": "umount", "mountpoint": mnt, "lazy": True})
                return t
            ms = median_of(args, once) * 1000
            out += [ms, ms]
        return out
    finally:
        daemon.terminate()
        daemon.wait()


if __name__ == "__main__":
    main()
