#!/usr/bin/env python3
"""How fast a Python serving process gets a model's weights into torch tensors.

The input is a torch.save checkpoint of --size-mib MiB (bf16 and f32 tensors of a transformer's
shapes, made with PyTorch), converted by `torshpkg convert` into a stored and a zstd:3 package;
the plain safetensors file is the stored package's weights resource, extracted. Each way of
loading runs in a Python process of its own (Debian's /usr/bin/python3 with its python3-torch),
and is timed to two ends:

  touch   the tensors made and one byte of every 4 KiB page of them read, so that a lazy mmap
          reader pays for the pages it has not read yet (the least any use of the weights costs)
  copy    the tensors made and copied into a model's parameters allocated beforehand, as
          load_state_dict and vLLM's weight loaders do (every byte read once more)

The ways of loading:

  torch.load        torch.load(checkpoint) of the original file
  mmap reader       a safetensors-style reader over the plain file: the 8-byte header length, the
                    JSON header, torch.frombuffer over one mmap of the file (what the safetensors
                    library does for framework="pt")
  mmap via mount    the same reader over the file inside a mount of the stored package
  load_file plain   torshpkg.load_file(plain file)
  load_file stored  torshpkg.load_file(stored package): every chunk verified as it streams in
  load_file zstd    torshpkg.load_file(zstd package): every chunk decoded and verified
  load_file mount   torshpkg.load_file(the file inside a mount of the stored package)

"cold" drops the page cache first (sync; echo 3 > /proc/sys/vm/drop_caches) and mounts afresh;
"warm" is a second process right after, with the page cache (and the mount) as the first left
them. Runs alternate between the ways, every figure is the median of --runs runs, and the ratios
are of figures of this run. Needs root and /dev/fuse. Usage:

  bench/python_bench.py [--build build] [--size-mib 512] [--runs 3] [--threads N]
                        [--dir /var/tmp] [--only a,b,...] [--ends touch,copy] [--json-out FILE]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mount_bench import Mounter, drop_caches, run  # noqa: E402

PYTHON = "/usr/bin/python3"  # Debian's, with python3-torch
MIB = 1 << 20

# What each child process runs: argv = [way, path, threads, end, shapes.json]; prints
# {"bytes", "seconds"}.
CHILD = r"""
import json, mmap, struct, sys, time
import torch
way, path, threads, end, shapes = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], \
    sys.argv[5]
DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32,
          "F64": torch.float64, "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8}

def mmap_reader(path):
    f = open(path, "rb")
    (n,) = struct.unpack("<Q", f.read(8))
    header = json.loads(f.read(n))
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    base, out = 8 + n, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtype = DTYPES[info["dtype"]]
        count = (end - begin) // torch.empty(0, dtype=dtype).element_size()
        t = torch.frombuffer(m, dtype=dtype, count=count, offset=base + begin) if count else \
            torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"])
    return out

def touch(tensors):
    total = 0
    for t in tensors.values():
        flat = t.reshape(-1)
        if flat.numel():
            flat[::max(1, 4096 // t.element_size())].float().sum().item()
        total += t.numel() * t.element_size()
    return total

def copy(tensors):
    total = 0
    for name, t in tensors.items():
        params[name].copy_(t)
        total += t.numel() * t.element_size()
    return total

params = {}
if end == "copy":  # the model exists before its weights are loaded
    with open(shapes) as f:
        for name, (dtype, shape) in json.load(f).items():
            # Written, so that the parameters' pages exist before the clock starts.
            params[name] = torch.empty(shape, dtype=DTYPES[dtype]).fill_(0)

import warnings
warnings.filterwarnings("ignore")  # frombuffer over a read-only mmap
start = time.perf_counter()
if way == "torch.load":
    tensors = torch.load(path)
elif way.startswith("mmap"):
    tensors = mmap_reader(path)
else:
    import torshpkg
    options = {"allow_unsigned": True} if path.endswith(".torshpkg") else {}
    tensors = torshpkg.load_file(path, threads=threads or None, **options)
total = touch(tensors) if end == "touch" else copy(tensors)
print(json.dumps({"bytes": total, "seconds": time.perf_counter() - start}))
"""

MAKE_CHECKPOINT = r"""
import sys, torch
size, path = int(sys.argv[1]), sys.argv[2]
torch.manual_seed(0)
hidden, state, used, layer = 1024, {}, 0, 0
while used < size:
    for name, shape, dtype in [("attn.qkv.weight", (3 * hidden, hidden), torch.bfloat16),
                               ("attn.out.weight", (hidden, hidden), torch.bfloat16),
                               ("mlp.up.weight", (4 * hidden, hidden), torch.bfloat16),
                               ("mlp.down.weight", (hidden, 4 * hidden), torch.bfloat16),
                               ("norm.weight", (hidden,), torch.float32)]:
        t = (torch.randn(shape) * 0.02).to(dtype)
        state[f"layers.{layer}.{name}"] = t
        used += t.numel() * t.element_size()
    layer += 1
torch.save(state, path)
print(used)
"""

WAYS = ["torch.load", "mmap reader", "mmap via mount", "load_file plain", "load_file stored",
        "load_file zstd", "load_file mount"]


def child(args, way, path, end, shapes):
    env = dict(os.environ, PYTHONPATH=os.path.join(args.build, "python"))
    out = subprocess.run([PYTHON, "-c", CHILD, way, path, str(args.threads), end, shapes],
                         env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{way}: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout)


def build_inputs(args, tpk, work):
    ckpt = os.path.join(work, "model.pt")
    size = int(subprocess.run([PYTHON, "-c", MAKE_CHECKPOINT, str(args.size_mib * MIB), ckpt],
                              capture_output=True, text=True, check=True).stdout)
    stored = os.path.join(work, "stored.torshpkg")
    zstd = os.path.join(work, "zstd.torshpkg")
    run([tpk, "convert", ckpt, "-o", stored, "-q", "--compress", "none"])
    run([tpk, "convert", ckpt, "-o", zstd, "-q", "--compress", "zstd:3"])
    [resource] = [line for line in subprocess.run([tpk, "ls", stored], capture_output=True,
                                                  text=True, check=True).stdout.split()
                  if line.endswith(".safetensors")]
    plain = os.path.join(work, "plain.safetensors")
    with open(plain, "wb") as f:
        subprocess.run([tpk, "cat", stored, resource], stdout=f, check=True)
    with open(plain, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    shapes = os.path.join(work, "shapes.json")
    with open(shapes, "w") as f:
        json.dump({k: [v["dtype"], v["shape"]] for k, v in header.items() if k != "__metadata__"},
                  f)
    return {"ckpt": ckpt, "stored": stored, "zstd": zstd, "plain": plain, "shapes": shapes,
            "resource": resource, "bytes": size}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="load_file threads (default: its own)")
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--only", default=",".join(WAYS))
    ap.add_argument("--ends", default="touch,copy", help="touch, copy or both")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    tpk = os.path.join(args.build, "tools", "torshpkg")
    ways = [w.strip() for w in args.only.split(",")]
    for w in ways:
        if w not in WAYS:
            sys.exit(f"--only: {w!r} is none of: {', '.join(WAYS)}")
    work = tempfile.mkdtemp(prefix="python-bench-", dir=args.dir)
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    mounter = Mounter("torshpkg", lambda image, m: [tpk, "mount", image, m, "--allow-unsigned"],
                      lambda m: ["fusermount3", "-u", m])
    try:
        inputs = build_inputs(args, tpk, work)
        path_of = {"torch.load": inputs["ckpt"], "mmap reader": inputs["plain"],
                   "load_file plain": inputs["plain"], "load_file stored": inputs["stored"],
                   "load_file zstd": inputs["zstd"],
                   "mmap via mount": os.path.join(mnt, inputs["resource"]),
                   "load_file mount": os.path.join(mnt, inputs["resource"])}
        ends = [e.strip() for e in args.ends.split(",")]
        phases = [f"{p} {e}" for e in ends for p in ("cold", "warm")]
        figures = {w: {p: [] for p in phases} for w in ways}
        for _ in range(args.runs):
            for end in ends:
                for w in ways:
                    mounted = "mount" in w
                    if mounted:
                        mounter.mount(inputs["stored"], mnt)
                    try:
                        drop_caches()
                        for phase in ("cold", "warm"):
                            r = child(args, w, path_of[w], end, inputs["shapes"])
                            if r["bytes"] != inputs["bytes"]:
                                raise RuntimeError(f"{w}: {r['bytes']} bytes, not "
                                                   f"{inputs['bytes']}")
                            figures[w][f"{phase} {end}"].append(r["bytes"] / r["seconds"] / 1e9)
                    finally:
                        if mounted:
                            mounter.unmount(mnt)
        report(args, inputs, ways, phases, figures)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(args, inputs, ways, phases, figures):
    med = {w: {p: statistics.median(v) for p, v in f.items()} for w, f in figures.items()}
    print(f"{inputs['bytes'] / MIB:.0f} MiB of tensors, medians of {args.runs} runs: GB/s, "
          "and in brackets x the mmap reader / x torch.load")
    print("| load | " + " | ".join(phases) + " |")
    print("|---|" + "---:|" * len(phases))
    for w in ways:
        cells = []
        for p in phases:
            ratios = [f"{med[w][p] / med[b][p]:.2f}" if b in med else "-"
                      for b in ("mmap reader", "torch.load")]
            cells.append(f"{med[w][p]:.2f} ({' / '.join(ratios)})")
        print(f"| {w} | " + " | ".join(cells) + " |")
    targets = [("load_file stored", "mmap reader", "cold", 1.0),
               ("load_file zstd", "torch.load", "cold", 1.0),
               ("load_file stored", "mmap reader", "warm", 0.9)]
    for a, b, p, want in targets:
        for phase in (q for q in phases if q.startswith(p + " ")):
            if a in med and b in med:
                ratio = med[a][phase] / med[b][phase]
                print(f"target: {a} {phase} >= {want}x {b}: {ratio:.2f}x "
                      f"({'met' if ratio >= want else 'missed'})")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"bytes": inputs["bytes"], "runs": args.runs, "gb_per_s": figures,
                       "medians": med}, f, indent=1)

if __name__ == "__main__":
    main()
