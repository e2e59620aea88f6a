#!/usr/bin/env python3
"""Mounting a package from a web server (torshpkg mount https://...), against curl of the same
file from the same server and a mount of the same package from a local file.

nginx (Debian's) serves a signed, stored package of a --size-mib MiB weights file on loopback,
at full speed and through a proxy in this script that holds all its connections together to
--rate-mb MB/s (one slower link: nginx's limit_rate is per connection, and the kernel here has
no traffic shaping for loopback). Every
figure is the median of --runs runs, each on a fresh mount; the package file is in the page
cache (warmed first), so the figures are of the transfer and the mount, not the disk:

  mount       torshpkg mount URL DIR until it returns, ms, and the requests it made
  first byte  open the weights file of a fresh mount and read its first 4 KiB, ms
  sequential  dd bs=1M of the weights file through a fresh mount, MB/s, against `curl -o
              /dev/null` of the package (x curl) and dd through a mount of the local file
              (x local)
  random      100 seeded random 1 MiB preads through a fresh mount, MB/s, x local
  RSS         the remote mount's peak resident set after the sequential read (VmHWM), MiB,
              against its chunk cache (64 MiB) + 32 MiB
  version 2   a second version of the package with every tenth MiB of the weights changed,
              read whole through a mount with --disk-cache after version 1 was: MiB fetched,
              against the package's size

Needs root, /dev/fuse and nginx (scripts/setup.sh --with-tests). Usage:

  bench/remote_bench.py [--torshpkg build/tools/torshpkg] [--size-mib 1024] [--runs 3]
                        [--rate-mb 200] [--dir /var/tmp]
"""
import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from helpers import Nginx, free_port  # noqa: E402
sys.path.insert(0, HERE)
from mount_bench import peak_rss_mib, server_pid  # noqa: E402

MIB = 1 << 20


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, **kw)


def warm(path):
    with open(path, "rb", buffering=0) as f:
        while f.read(16 * MIB):
            pass


class Bench:
    def __init__(self, args, work):
        self.args, self.work = args, work
        self.tpk = os.path.abspath(args.torshpkg)
        self.mnt = os.path.join(work, "mnt")
        os.makedirs(self.mnt)
        self.extra = []  # more mount options

    def mount(self, source):
        start = time.perf_counter()
        run([self.tpk, "mount", source, self.mnt, "--trusted-keys", os.path.join(self.work, "trusted"),
             "--standalone", *self.extra])
        return time.perf_counter() - start

    def unmount(self):
        run([self.tpk, "umount", self.mnt])

    def weights(self):
        return os.path.join(self.mnt, "resources", "w.bin")

    def sequential(self, source, rss=None):
        self.mount(source)
        try:
            start = time.perf_counter()
            run(["dd", "if=" + self.weights(), "of=/dev/null", "bs=1M"])
            rate = self.args.size_mib * MIB / (time.perf_counter() - start) / 1e6
            if rss is not None:
                rss.append(peak_rss_mib(server_pid(self.mnt)))
            return rate
        finally:
            self.unmount()

    def random_reads(self, source):
        self.mount(source)
        try:
            rnd = random.Random(7)
            size = self.args.size_mib * MIB
            offsets = [rnd.randrange(0, size - MIB) for _ in range(100)]
            fd = os.open(self.weights(), os.O_RDONLY)
            try:
                start = time.perf_counter()
                for off in offsets:
                    if len(os.pread(fd, MIB, off)) != MIB:
                        raise RuntimeError("short read")
                return 100 * MIB / (time.perf_counter() - start) / 1e6
            finally:
                os.close(fd)
        finally:
            self.unmount()

    def first_byte(self, source):
        self.mount(source)
        try:
            start = time.perf_counter()
            with open(self.weights(), "rb") as f:
                f.read(4096)
            return (time.perf_counter() - start) * 1e3
        finally:
            self.unmount()


class SlowLink:
    """A TCP proxy on loopback from `port` to `target` whose replies share one token bucket of
    `rate` bytes a second, whatever the number of connections."""

    def __init__(self, port, target, rate):
        self.port, self.target, self.rate = port, target, rate
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.tokens, self.last = 0.0, time.monotonic()
        self.lock = asyncio.Lock()
        server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self.ready.set()
        self.loop.run_until_complete(server.serve_forever())

    async def _take(self, n):
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.rate * 0.05, self.tokens + (now - self.last) * self.rate)
                self.last = now
                if self.tokens >= n:
                    self.tokens -= n
                    return
                await asyncio.sleep((n - self.tokens) / self.rate)

    async def _pump(self, reader, writer, limited):
        try:
            while True:
                data = await reader.read(64 * 1024)
                if not data:
                    break
                if limited:
                    await self._take(len(data))
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _serve(self, client_r, client_w):
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(self._pump(client_r, server_w, False),
                             self._pump(server_r, client_w, True))


def curl_mb_s(url, size):
    start = time.perf_counter()
    run(["curl", "-sf", "-o", "/dev/null", url])
    return size / (time.perf_counter() - start) / 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--torshpkg", default="build/tools/torshpkg")
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate-mb", type=int, default=200)
    ap.add_argument("--dir", default="/var/tmp")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="remote-bench-", dir=args.dir)
    nginx = None
    try:
        www = os.path.join(work, "www")
        os.makedirs(www)
        weights = os.path.join(work, "w.bin")
        with open(weights, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(MIB))
        tpk = os.path.abspath(args.torshpkg)
        run([tpk, "keygen", os.path.join(work, "k")])
        os.makedirs(os.path.join(work, "trusted"))
        shutil.copy(os.path.join(work, "k.pub"), os.path.join(work, "trusted"))
        pkg = os.path.join(www, "m.torshpkg")
        run([tpk, "create", pkg, "--name", "m", "--version", "1.0.0", "-q", "--compress", "none",
             "--add", "w.bin=" + weights, "--sign-key", os.path.join(work, "k.key")])
        # Version 2: every tenth MiB changed (10% of the weights), the rest as in version 1.
        with open(weights, "r+b") as f:
            for mib in range(0, args.size_mib, 10):
                f.seek(mib * MIB)
                f.write(os.urandom(MIB))
        pkg2 = os.path.join(www, "m2.torshpkg")
        run([tpk, "create", pkg2, "--name", "m", "--version", "2.0.0", "-q", "--compress", "none",
             "--add", "w.bin=" + weights, "--sign-key", os.path.join(work, "k.key")])
        os.unlink(weights)
        warm(pkg)
        warm(pkg2)
        size = os.path.getsize(pkg)
        port = free_port()
        nginx = Nginx(os.path.join(work, "nginx"), f"""
  server {{ listen 127.0.0.1:{port}; root {www}; }}
""", port)
        nginx.start()
        link = SlowLink(free_port(), port, args.rate_mb * 1e6)
        fast = f"http://127.0.0.1:{port}/m.torshpkg"
        slow = f"http://127.0.0.1:{link.port}/m.torshpkg"
        b = Bench(args, work)
        fig = {k: [] for k in ("mount_ms", "mount_local_ms", "requests", "first_ms", "curl",
                               "seq", "seq_local", "curl_slow", "seq_slow", "rand", "rand_local",
                               "rss")}
        for _ in range(args.runs):
            before = len(nginx.access_log().splitlines())
            fig["mount_ms"].append(b.mount(fast) * 1e3)
            fig["requests"].append(len(nginx.access_log().splitlines()) - before)
            b.unmount()
            fig["mount_local_ms"].append(b.mount(pkg) * 1e3)
            b.unmount()
            fig["first_ms"].append(b.first_byte(fast))
            fig["curl"].append(curl_mb_s(fast, size))
            fig["seq"].append(b.sequential(fast, fig["rss"]))
            fig["seq_local"].append(b.sequential(pkg))
            fig["curl_slow"].append(curl_mb_s(slow, size))
            fig["seq_slow"].append(b.sequential(slow))
            fig["rand"].append(b.random_reads(fast))
            fig["rand_local"].append(b.random_reads(pkg))
        # The second version with the first in the disk cache: the bytes it fetches.
        cache = os.path.join(work, "chunks")
        b.extra = ["--disk-cache", cache]
        b.sequential(fast)
        before = len(nginx.access_log().splitlines())
        b.sequential(fast.replace("m.torshpkg", "m2.torshpkg"))
        b.extra = []
        fetched = sum(int(line.split('" 206 ')[1].split()[0])
                      for line in nginx.access_log().splitlines()[before:] if '" 206 ' in line)
        m = {k: statistics.median(v) for k, v in fig.items()}
        print(f"{args.size_mib} MiB weights, signed stored package, nginx on loopback, "
              f"median of {args.runs} runs")
        print("| measure | remote mount | baseline | ratio |")
        print("|---|---:|---:|---:|")
        print(f"| mount, ms (requests) | {m['mount_ms']:.0f} ({m['requests']:.0f}) | "
              f"local file {m['mount_local_ms']:.0f} | - |")
        print(f"| first 4 KiB of the weights after mounting, ms | {m['first_ms']:.1f} | - | - |")
        print(f"| sequential, MB/s | {m['seq']:.0f} | curl {m['curl']:.0f} | "
              f"{m['seq'] / m['curl']:.2f}x curl |")
        print(f"| sequential, MB/s | {m['seq']:.0f} | local mount {m['seq_local']:.0f} | "
              f"{m['seq'] / m['seq_local']:.2f}x local |")
        print(f"| sequential over a {args.rate_mb} MB/s link, MB/s | {m['seq_slow']:.0f} | "
              f"curl {m['curl_slow']:.0f} | {m['seq_slow'] / m['curl_slow']:.2f}x curl |")
        print(f"| the mount's peak RSS after the sequential read, MiB | {m['rss']:.0f} | "
              "cache 64 + 32 | - |")
        size2 = os.path.getsize(pkg2)
        print(f"| version 2 (10% of the weights changed) read whole with version 1 in the disk "
              f"cache, MiB fetched | {fetched / MIB:.1f} | package {size2 / MIB:.1f} | "
              f"{fetched / size2:.1%} |")
        print(f"| 100 random 1 MiB reads, MB/s | {m['rand']:.0f} | local mount "
              f"{m['rand_local']:.0f} | {m['rand'] / m['rand_local']:.2f}x local |")
    finally:
        if nginx:
            nginx.stop()
        subprocess.run(["umount", "-l", os.path.join(work, "mnt")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
