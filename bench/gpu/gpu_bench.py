#!/usr/bin/env python3
"""Loading safetensors weights into GPU memory: torshpkg's loader against the pinned-copy ceiling
and safetensors' own load_file, in one run on one machine.

Makes a multi-GiB safetensors file with PyTorch (bf16 matrices plus small tensors of other
dtypes), packages it (stored) with torshpkg, warms the page cache, then measures (median of
--runs):

  ceiling        PyTorch: a pinned host buffer copied to the device (non_blocking), GB/s
  safetensors    safetensors.torch.load_file(path, device=...) from the plain file
  plain file     torshpkg load FILE --device ...
  package        torshpkg load PKG --resource resources/model.safetensors (chunks verified)
  Python         torshpkg.load_file(PKG, device=...) in this process, tensors handed to torch by
                 DLPack (where the module imports: built for this Python)
  mount first    torshpkg load MOUNT/resources/model.safetensors right after mounting
  mount warm     the same again (the kernel's page cache holds the mounted file)

and checks every tensor loaded by torshpkg (plain, package, mount), digested from device memory,
against the SHA-256 of PyTorch's tensor. With --device cpu the ceiling is `dd bs=8M` of the
plain file to /dev/null. Targets: plain file and package >= 0.8x the ceiling; the Python
module from the package >= 2x safetensors' load_file; mount first read >= 5 GB/s; mount warm
>= 30 GB/s.

Run through bench/gpu/run.sh on the GPU machine as root (mounting needs /dev/fuse). With
--device cpu it runs everything but the CUDA parts (a dry run for machines without a GPU).
"""
import argparse
import hashlib
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import torch

MATRIX = (4096, 4096)  # bf16: 32 MiB each
# Small tensors of other dtypes and odd sizes, so that tensor boundaries fall off alignment.
SMALL = [("norm.scalar", torch.float32, ()), ("embed.positions", torch.int64, (1000,)),
         ("mask", torch.bool, (17,)), ("head.bias", torch.float16, (3, 5, 7)),
         ("rope.freqs", torch.float64, (129,))]
DTYPE_NAMES = {torch.bfloat16: "BF16", torch.float32: "F32", torch.int64: "I64",
               torch.bool: "BOOL", torch.float16: "F16", torch.float64: "F64"}
SAME_SIZE_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def tensor_bytes(t):
    """The tensor's bytes in memory order (what safetensors stores)."""
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.view(SAME_SIZE_INT[t.element_size()]).numpy().tobytes()


def make_tensors(size_bytes, device):
    """Yields (name, tensor), matrices first, ~size_bytes in all; deterministic."""
    gen_device = device if device.startswith("cuda") else "cpu"
    torch.manual_seed(0)
    count = max(1, size_bytes // (MATRIX[0] * MATRIX[1] * 2))
    for i in range(count):
        yield f"layers.{i}.weight", torch.randn(MATRIX, device=gen_device).to(torch.bfloat16)
    for name, dtype, shape in SMALL:
        if dtype == torch.bool:
            t = torch.rand(shape) > 0.5
        elif dtype == torch.int64:
            t = torch.randint(-2**40, 2**40, shape, dtype=dtype)
        else:
            t = torch.randn(shape, dtype=torch.float64).to(dtype)
        yield name, t


def write_safetensors(path, size_bytes, device):
    """Writes the file as the format describes it; returns {name: sha256} of PyTorch's bytes."""
    specs, digests, at = {}, {}, 0
    tensors = list(make_tensors(size_bytes, device))
    for name, t in tensors:
        n = t.numel() * t.element_size()
        specs[name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape),
                       "data_offsets": [at, at + n]}
        at += n
    header = json.dumps({"__metadata__": {"format": "pt"}, **specs}).encode()
    header += b" " * ((8 - (8 + len(header)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        for name, t in tensors:
            data = tensor_bytes(t)
            digests[name] = hashlib.sha256(data).hexdigest()
            f.write(data)
    return digests


def warm(path):
    buf = bytearray(16 << 20)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def ceiling_gbps(device, runs):
    """Pinned host -> device copy of 1 GiB, GB/s (median)."""
    n = 1 << 30
    host = torch.empty(n, dtype=torch.uint8, pin_memory=True)
    dev = torch.empty(n, dtype=torch.uint8, device=device)
    dev.copy_(host, non_blocking=True)
    torch.cuda.synchronize(device)
    rates = []
    for _ in range(max(runs, 5)):
        start = time.perf_counter()
        dev.copy_(host, non_blocking=True)
        torch.cuda.synchronize(device)
        rates.append(n / (time.perf_counter() - start) / 1e9)
    del host, dev
    torch.cuda.empty_cache()
    return statistics.median(rates)


def raw_read_gbps(path, runs):
    """`dd bs=8M` of the file to /dev/null from the page cache (the --device cpu ceiling)."""
    size = os.path.getsize(path)
    rates = []
    for _ in range(max(runs, 3)):
        start = time.perf_counter()
        subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=8M"], check=True,
                       capture_output=True)
        rates.append(size / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def safetensors_gbps(path, device, runs, data_bytes):
    try:
        from safetensors.torch import load_file
    except ImportError:
        return None
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        loaded = load_file(path, device=device)
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        rates.append(data_bytes / (time.perf_counter() - start) / 1e9)
        del loaded
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return statistics.median(rates)


def python_module_gbps(pkg, device, threads, runs, data_bytes, digests):
    """torshpkg.load_file(package, device=...) in this process, when the module imports here
    (built for this Python: bench/gpu/bundle/python, or a build made on this machine)."""
    try:
        import torshpkg
    except ImportError as e:
        print(f"  torshpkg Python module: not importable by this Python ({e})")
        return None
    if device.startswith("cuda") and not torshpkg.cuda_built():
        print("  torshpkg Python module: built without CUDA")
        return None
    loaded = torshpkg.load_file(pkg, device=device, threads=threads, allow_unsigned=True)
    bad = [n for n in digests if hashlib.sha256(tensor_bytes(loaded[n])).hexdigest() != digests[n]]
    if bad or len(loaded) != len(digests):
        sys.exit(f"torshpkg.load_file: {len(bad)} tensor(s) differ from PyTorch's, e.g. {bad[:3]}")
    print(f"  torshpkg.load_file: all {len(digests)} tensors match PyTorch's (from {device})")
    del loaded
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        loaded = torshpkg.load_file(pkg, device=device, threads=threads, allow_unsigned=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        rates.append(data_bytes / (time.perf_counter() - start) / 1e9)
        del loaded
    return statistics.median(rates)


class Torshpkg:
    def __init__(self, exe, device, threads, piece):
        self.exe, self.device, self.threads, self.piece = exe, device, threads, piece

    def run(self, *args):
        proc = subprocess.run([self.exe, *args], capture_output=True)
        if proc.returncode != 0:
            sys.exit(f"torshpkg {' '.join(args)}: exit {proc.returncode}: "
                     f"{proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout

    def load(self, *args, sha256=False):
        extra = ["--sha256"] if sha256 else []
        return json.loads(self.run("load", *args, "--device", self.device, "--threads",
                                   str(self.threads), "--piece-size", self.piece, "--json", *extra))

    def check(self, what, out, digests):
        got = {t["name"]: t["sha256"] for t in out["tensors"]}
        bad = [n for n in digests if got.get(n) != digests[n]]
        if bad or len(got) != len(digests):
            sys.exit(f"{what}: {len(bad)} tensor(s) differ from PyTorch's, e.g. {bad[:3]}")
        print(f"  {what}: all {len(digests)} tensors match PyTorch's (SHA-256 from "
              f"{out['device']} memory)")


def median_of(fn, runs):
    outs = [fn() for _ in range(runs)]
    rates = sorted(o["gb_per_s"] for o in outs)
    return statistics.median(rates), outs[-1]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--torshpkg", required=True)
    p.add_argument("--device", default="cuda:0", help="cuda:N, or cpu for a dry run")
    p.add_argument("--size-gib", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--piece-size", default="8M")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--work", help="folder for the file, package and mount (default: a temp dir)")
    p.add_argument("--json-out", help="also write the results here")
    a = p.parse_args()
    cuda = a.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        sys.exit("gpu_bench: PyTorch sees no CUDA device (use --device cpu for a dry run)")
    work = a.work or tempfile.mkdtemp(prefix="torshpkg-gpu-")
    os.makedirs(work, exist_ok=True)
    try:
        bench(a, work)
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)


def bench(a, work):
    cuda = a.device.startswith("cuda")
    tpk = Torshpkg(os.path.abspath(a.torshpkg), a.device, a.threads, a.piece_size)

    path = os.path.join(work, "model.safetensors")
    print(f"making {a.size_gib} GiB of tensors with PyTorch {torch.__version__} in {path}")
    digests = write_safetensors(path, int(a.size_gib * (1 << 30)), a.device)
    pkg = os.path.join(work, "model.torshpkg")
    if os.path.exists(pkg):
        os.unlink(pkg)
    tpk.run("create", pkg, "--name", "gpu-bench", "--version", "1.0.0", "-q", "--compress", "none",
            "--add", "ModelWeights:model.safetensors=" + path)
    warm(path)
    warm(pkg)
    data_bytes = os.path.getsize(path) - 8 - struct.unpack("<Q", open(path, "rb").read(8))[0]

    results = {"device": a.device, "bytes": data_bytes, "threads": a.threads,
               "piece_size": a.piece_size, "runs": a.runs, "torch": torch.__version__}
    if cuda:
        results["gpu"] = torch.cuda.get_device_name(a.device)
        results["ceiling"] = ceiling_gbps(a.device, a.runs)
    else:
        results["ceiling"] = raw_read_gbps(path, a.runs)
    results["safetensors"] = safetensors_gbps(path, a.device, a.runs, data_bytes)

    print("checking every tensor")
    tpk.check("plain file", tpk.load(path, sha256=True), digests)
    tpk.check("package", tpk.load(pkg, "--resource", "resources/model.safetensors", sha256=True),
              digests)
    results["plain"], last = median_of(lambda: tpk.load(path), a.runs)
    results["plain_stages"] = last["stages"]
    results["package"], last = median_of(
        lambda: tpk.load(pkg, "--resource", "resources/model.safetensors"), a.runs)
    results["package_stages"] = last["stages"]
    results["python_package"] = python_module_gbps(pkg, a.device, a.threads, a.runs, data_bytes,
                                                   digests)

    mnt = os.path.join(work, "mnt")
    os.makedirs(mnt, exist_ok=True)
    inside = os.path.join(mnt, "resources", "model.safetensors")
    first, warm_rates = [], []
    for run in range(a.runs):
        tpk.run("mount", pkg, mnt, "--allow-unsigned", "--standalone")
        try:
            first.append(tpk.load(inside)["gb_per_s"])
            out = tpk.load(inside, sha256=(run == 0))
            warm_rates.append(out["gb_per_s"])
            if run == 0:
                tpk.check("mount", out, digests)
        finally:
            tpk.run("umount", mnt)
    results["mount_first"] = statistics.median(first)
    results["mount_warm"] = statistics.median(warm_rates)

    ceiling = results.get("ceiling")
    print(f"\n{data_bytes / 2**30:.2f} GiB, {len(digests)} tensors, {a.device}"
          f"{' (' + results['gpu'] + ')' if cuda else ''}, {a.threads} threads, "
          f"{a.piece_size} pieces, median of {a.runs}")
    rows = [("pinned copy ceiling (PyTorch)" if cuda else "raw read ceiling (dd, 1 thread)", ceiling,
             None),
            ("safetensors load_file, plain file", results["safetensors"], None),
            ("torshpkg load, plain file", results["plain"], ("x ceiling", 0.8)),
            ("torshpkg load, straight from package", results["package"], ("x ceiling", 0.8)),
            ("torshpkg.load_file (Python), package", results["python_package"],
             ("x safetensors", 2.0)),
            ("torshpkg load, mount first read", results["mount_first"], ("GB/s", 5.0)),
            ("torshpkg load, mount warm", results["mount_warm"], ("GB/s", 30.0))]
    print(f"{'':40} {'GB/s':>8} {'x ceiling':>10}  target")
    for name, rate, target in rows:
        if rate is None:
            print(f"{name:40} {'n/a':>8}")
            continue
        ratio = f"{rate / ceiling:.2f}" if ceiling else "n/a"
        verdict = ""
        if target and cuda:
            unit, goal = target
            value = {"x ceiling": rate / ceiling if ceiling else None,
                     "x safetensors": rate / results["safetensors"]
                     if results["safetensors"] else None}.get(unit, rate)
            verdict = "n/a" if value is None else \
                f"{'met' if value >= goal else 'MISSED'} (>= {goal} {unit}: {value:.2f})"
        print(f"{name:40} {rate:8.2f} {ratio:>10}  {verdict}")
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
