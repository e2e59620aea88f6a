#!/usr/bin/env python3
"""torshpkg benchmarks, each a ratio against a baseline measured in the same run.

  create      torshpkg create  vs  zstd -T0 / xz -T0 / gzip at the same level
  cat         torshpkg cat     vs  zstd -d / xz -d / gzip -d of the same data, and a raw read
  far read    the last 1 MiB of a resource: torshpkg cat --offset  vs  decompress-and-skip
  encrypted   torshpkg cat of a zstd + AES-256-GCM / ChaCha20 resource (SHA-256, decrypt,
              decode per chunk on all cores) vs the single-core GnuTLS ceilings (crypto_ceiling)

The input is bf16-like data (random mantissas, exponents concentrated like weights with a
standard deviation near 0.02), so codecs see what they would see in a model file. Every figure
is the median of --runs runs with a warm page cache. Usage:

  bench/bench.py [--torshpkg build/tools/torshpkg] [--size-mib 256] [--runs 5] [--only encrypted]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time


def bf16_like(n_bytes, seed=1234):
    # High byte: sign and top exponent bits drawn from a table; low byte: uniform.
    table = bytearray(256)
    for u in range(256):
        sign = 0x80 if u & 1 else 0
        bucket = u >> 1  # 0..127
        high = 59 if bucket < 13 else 60 if bucket < 70 else 61 if bucket < 115 else 62
        table[u] = sign | high
    rnd = __import__("random").Random(seed)
    half = n_bytes // 2
    out = bytearray(n_bytes)
    out[0::2] = rnd.randbytes(half)
    out[1::2] = rnd.randbytes(half).translate(bytes(table))
    return bytes(out)


def timed(cmd, runs, stdout=subprocess.DEVNULL):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=stdout, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def shell(cmd, runs):
    return timed(["bash", "-c", cmd], runs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--torshpkg", default="build/tools/torshpkg")
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", choices=["codecs", "encrypted"], help="run one part")
    args = ap.parse_args()
    tpk = os.path.abspath(args.torshpkg)
    work = tempfile.mkdtemp(prefix="torshpkg-bench-")
    try:
        data_path = os.path.join(work, "weights.bin")
        with open(data_path, "wb") as f:
            f.write(bf16_like(args.size_mib << 20))
        mib = args.size_mib
        print(f"input: {mib} MiB of bf16-like weights; {os.cpu_count()} cores; median of {args.runs} runs\n")
        subprocess.run(["cat", data_path], stdout=subprocess.DEVNULL, check=True)
        raw = shell(f"cat {data_path} > /dev/null", args.runs)
        print(f"raw read (cat): {mib / raw:.0f} MiB/s\n")

        if args.only != "encrypted":
            codec_table(args, tpk, work, data_path, mib, raw)
        if args.only != "codecs":
            encrypted_table(args, tpk, work, data_path, mib)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def encrypted_table(args, tpk, work, data_path, mib):
    ceiling = os.path.join(os.path.dirname(tpk), "..", "bench", "crypto_ceiling")
    lines = subprocess.run([ceiling], capture_output=True, check=True, text=True).stdout.split("\n")
    ceilings = {name: float(v) for name, v in (line.split() for line in lines if line)}
    print("\nsingle-core GnuTLS ceilings (MiB/s): " +
          ", ".join(f"{k} {v:.0f}" for k, v in ceilings.items()))
    with open(os.path.join(work, "key"), "wb") as f:
        f.write(os.urandom(32))
    print("\n| resource | torshpkg cat MiB/s | vs single-core SHA-256 | vs single-core cipher |")
    print("|---|---|---|---|")
    for cipher in ("none", "aes-256-gcm", "chacha20-poly1305"):
        pkg = os.path.join(work, f"enc-{cipher}.torshpkg")
        extra = [] if cipher == "none" else ["--encrypt", cipher, "--key-file", os.path.join(work, "key")]
        subprocess.run([tpk, "create", pkg, "--name", "bench", "--version", "1.0.0", "-q", "-f",
                        "--compress", "zstd:3", "--add", "weights.bin=" + data_path, *extra], check=True)
        read_extra = [] if cipher == "none" else ["--key-file", os.path.join(work, "key")]
        t = timed([tpk, "cat", pkg, "resources/weights.bin", *read_extra], args.runs)
        rate = mib / t
        vs_cipher = f"{rate / ceilings[cipher]:.2f}" if cipher in ceilings else "-"
        print(f"| zstd:3 + {cipher} | {rate:.0f} | {rate / ceilings['sha256']:.2f} | {vs_cipher} |")


def codec_table(args, tpk, work, data_path, mib, raw):
        rows = []
        codecs = [("zstd", 3, f"zstd -q -T0 -3 -f {data_path} -o {{out}}", "zstd -q -d -c {out}"),
                  ("zstd", 19, f"zstd -q -T0 -19 -f {data_path} -o {{out}}", "zstd -q -d -c {out}"),
                  ("xz", 6, f"xz -T0 -6 -c {data_path} > {{out}}", "xz -d -c {out}"),
                  ("gzip", 6, f"gzip -6 -c {data_path} > {{out}}", "gzip -d -c {out}")]
        for name, level, compress, decompress in codecs:
            spec = f"{name}:{level}"
            # The slow encoders (minutes per run on small machines) get fewer runs.
            slow = (name == "zstd" and level == 19) or name == "xz"
            runs = min(args.runs, 3) if slow else args.runs
            peer_out = os.path.join(work, f"peer.{name}")
            pkg = os.path.join(work, f"{name}{level}.torshpkg")
            t_peer = shell(compress.format(out=peer_out), runs)
            t_ours = timed([tpk, "create", pkg, "--name", "bench", "--version", "1.0.0", "-q", "-f",
                            "--compress", spec, "--add", "weights.bin=" + data_path], runs)
            ratio_peer = os.path.getsize(peer_out) / (mib << 20)
            ratio_ours = os.path.getsize(pkg) / (mib << 20)
            d_peer = shell(decompress.format(out=peer_out) + " > /dev/null", args.runs)
            d_ours = timed([tpk, "cat", pkg, "resources/weights.bin"], args.runs)
            # Far read: last MiB of the resource.
            off = (mib - 1) << 20
            f_peer = shell(decompress.format(out=peer_out) + f" | tail -c 1048576 > /dev/null", runs)
            f_ours = timed([tpk, "cat", pkg, "resources/weights.bin", "--offset", str(off),
                            "--length", "1048576"], args.runs)
            rows.append((spec, t_peer, t_ours, ratio_peer, ratio_ours, d_peer, d_ours, f_peer, f_ours))

        print("| codec | create: peer s | torshpkg s | peer/torshpkg | size peer | size torshpkg |"
              " cat: peer MiB/s | torshpkg MiB/s | torshpkg/peer | last MiB: peer s | torshpkg s | speed-up |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for spec, tp, to, rp, ro, dp, do, fp, fo in rows:
            print(f"| {spec} | {tp:.2f} | {to:.2f} | {tp / to:.2f} | {rp:.3f} | {ro:.3f} | "
                  f"{mib / dp:.0f} | {mib / do:.0f} | {dp / do:.2f} | {fp:.2f} | {fo:.3f} | {fp / fo:.0f}x |")

        stored = os.path.join(work, "none.torshpkg")
        subprocess.run([tpk, "create", stored, "--name", "bench", "--version", "1.0.0", "-q",
                        "--compress", "none", "--add", "weights.bin=" + data_path], check=True)
        t_stored = timed([tpk, "cat", stored, "resources/weights.bin"], args.runs)
        print(f"\nstored (none): torshpkg cat {mib / t_stored:.0f} MiB/s = {raw / t_stored:.2f} of the raw read"
              " (every chunk SHA-256-verified)")


if __name__ == "__main__":
    main()
