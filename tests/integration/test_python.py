"""The Python module `torshpkg`, imported by Debian's Python with Debian's python3-torch and
python3-numpy: tensors from converted torch.save checkpoints and real models, from stored, zstd
and encrypted+signed packages, from mounts and plain files, with their errors, their lifetime and
their memory."""
import gc
import hashlib
import json
import os
import struct
import subprocess
import sys
import threading
import unittest
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(__file__))
from helpers import TempDirTest, read_bytes, run, tpk  # noqa: E402

BUILD_PYTHON = os.path.join(os.environ.get("BUILD_ROOT", "build"), "python")
sys.path.insert(0, BUILD_PYTHON)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torshpkg  # noqa: E402

# Every dtype torch 1.13 can save, and what a converted checkpoint holds for it.
TORCH_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64,
                torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool, torch.complex64,
                torch.complex128]


def every_dtype_checkpoint():
    g = torch.Generator().manual_seed(7)
    out = {}
    for dtype in TORCH_DTYPES:
        name = str(dtype).removeprefix("torch.")
        if dtype == torch.bool:
            t = torch.rand(6, 5, generator=g) > 0.5
        elif dtype.is_complex:
            t = torch.randn(4, 3, generator=g, dtype=dtype)
        elif dtype.is_floating_point:
            t = torch.randn(3, 4, 5, generator=g).to(dtype)
        else:
            t = torch.randint(-100 if dtype != torch.uint8 else 0, 100, (17,), generator=g,
                              dtype=dtype)
        out[name] = t
    out["scalar"] = torch.tensor(2.5)
    out["empty"] = torch.zeros(0, 4)
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    out["transposed_view"] = base.t()  # a view sharing storage with `shared_base`
    out["shared_base"] = base
    return out


def expected_from(original):
    """A tensor as a converted checkpoint holds it (complex128 as its float64 parts)."""
    if original.dtype == torch.complex128:
        return torch.view_as_real(original)
    return original


class TinyModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(50, 32)
        self.encoder = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        self.conv = torch.nn.Conv1d(32, 8, 3)

    def forward(self, ids):
        return self.conv(self.encoder(self.embed(ids)).transpose(1, 2))


def safetensors_file(path, tensors, sparse=False):
    """A safetensors file of (name, dtype, shape, bytes or a size for zeros) entries."""
    header, offset = {}, 0
    for name, dtype, shape, data in tensors:
        n = data if isinstance(data, int) else len(data)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for _, _, _, data in tensors:
            if isinstance(data, int):
                f.seek(data, os.SEEK_CUR)
            else:
                f.write(data)
        f.truncate(8 + len(head) + offset)
    return path


def bytes_read():
    """Bytes this process has read through read/pread calls (/proc/self/io rchar)."""
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def python(code, *args):
    """Runs code in a fresh Debian Python that imports the module from the build."""
    return subprocess.run(["/usr/bin/python3", "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, PYTHONPATH=BUILD_PYTHON))


class Python(TempDirTest):
    def checkpoint_package(self, name, *args, source=None):
        """A torch.save checkpoint of `source` (every dtype by default), converted."""
        ckpt = self.path(name + ".pt")
        torch.save(source if source is not None else every_dtype_checkpoint(), ckpt)
        pkg = self.path(name + ".torshpkg")
        tpk("convert", ckpt, "-o", pkg, "-q", *args)
        return ckpt, pkg

    def signed_encrypted(self, safetensors):
        """An encrypted package signed by a key of a trusted-keys folder, and its key file."""
        tpk("keygen", self.path("signer"))
        trusted = self.path("trusted")
        os.makedirs(trusted)
        os.rename(self.path("signer.pub"), os.path.join(trusted, "signer.pub"))
        key = self.write("model.key", os.urandom(32))
        pkg = self.path("sealed.torshpkg")
        tpk("create", pkg, "--name", "sealed", "--version", "1.0.0", "-q", "--compress", "zstd:3",
            "--add", "ModelWeights:model.safetensors=" + safetensors, "--encrypt", "aes-256-gcm",
            "--key-file", key, "--sign-key", self.path("signer.key"))
        return pkg, trusted, key

    def test_every_torch_dtype_of_a_converted_checkpoint_equals_torch_load(self):
        for compress in ("none", "zstd:3"):
            with self.subTest(compress=compress):
                ckpt, pkg = self.checkpoint_package("all-" + compress.replace(":", ""),
                                                    "--compress", compress)
                original = torch.load(ckpt)
                loaded = torshpkg.load_file(pkg, allow_unsigned=True)
                self.assertEqual(set(loaded), set(original))
                for name, t in original.items():
                    want = expected_from(t)
                    self.assertEqual(loaded[name].dtype, want.dtype, name)
                    self.assertEqual(loaded[name].shape, want.shape, name)
                    self.assertTrue(torch.equal(loaded[name], want), name)
                with torshpkg.safe_open(pkg, framework="pt", allow_unsigned=True) as f:
                    self.assertEqual(f.keys(), sorted(original))
                    for name, t in original.items():
                        self.assertTrue(torch.equal(f.get_tensor(name), expected_from(t)), name)

    def test_a_real_model_loads_strictly_and_computes_bit_identical_output(self):
        torch.manual_seed(1)
        model = TinyModel().eval()
        ids = torch.randint(0, 50, (2, 9))
        with torch.no_grad():
            want = model(ids)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        _, stored = self.checkpoint_package("stored", "--compress", "none", source=state)
        _, zstd = self.checkpoint_package("zstd", "--compress", "zstd:3", source=state)
        weights = self.path("model.safetensors")
        with open(weights, "wb") as f:
            f.write(torshpkg.Package(stored, allow_unsigned=True)
                    .open("model.safetensors").read())
        sealed, trusted, key = self.signed_encrypted(weights)
        mnt = self.path("mnt")
        os.makedirs(mnt)
        tpk("mount", zstd, mnt, "--allow-unsigned", "--standalone")
        try:
            sources = {
                "stored package": lambda: torshpkg.load_file(stored, allow_unsigned=True),
                "zstd package": lambda: torshpkg.load_file(zstd, allow_unsigned=True),
                "encrypted and signed": lambda: torshpkg.load_file(
                    sealed, trusted_keys=trusted, key_file=key),
                "mount": lambda: torshpkg.load_file(
                    os.path.join(mnt, "resources", "model.safetensors")),
                "plain file": lambda: torshpkg.load_file(weights),
                "safe_open of a package": lambda: self.safe_open_all(
                    sealed, trusted_keys=trusted, key_file=key),
            }
            for what, load in sources.items():
                with self.subTest(source=what):
                    torch.manual_seed(2)
                    fresh = TinyModel().eval()
                    fresh.load_state_dict(load(), strict=True)
                    with torch.no_grad():
                        got = fresh(ids)
                    self.assertTrue(torch.equal(got, want))
        finally:
            tpk("umount", mnt)

    @staticmethod
    def safe_open_all(source, **options):
        with torshpkg.safe_open(source, framework="pt", **options) as f:
            return {k: f.get_tensor(k) for k in f.keys()}

    def test_numpy_arrays_share_the_loaded_block(self):
        rng = np.random.default_rng(3)
        arrays = {"f32": rng.standard_normal((8, 3)).astype(np.float32),
                  "u16": rng.integers(0, 60000, 9).astype(np.uint16),
                  "u64": rng.integers(0, 2**63, 4, dtype=np.uint64),
                  "flags": rng.random(7) > 0.5, "c64": (rng.standard_normal(3) + 1j).astype(np.complex64)}
        names = {"f32": "F32", "u16": "U16", "u64": "U64", "flags": "BOOL", "c64": "C64"}
        path = safetensors_file(self.path("np.safetensors"),
                                [(k, names[k], list(a.shape), a.tobytes()) for k, a in arrays.items()])
        loaded = torshpkg.load_file(path, framework="np")
        for k, a in arrays.items():
            self.assertEqual(loaded[k].dtype, a.dtype, k)
            np.testing.assert_array_equal(loaded[k], a)
        with torshpkg.safe_open(path, framework="np") as f:
            np.testing.assert_array_equal(f.get_slice("f32")[2:5, 1], arrays["f32"][2:5, 1])
        # torch 1.13 has no uint16: a clear error before anything is loaded.
        with self.assertRaises(torshpkg.UnsupportedError) as caught:
            torshpkg.load_file(path, framework="pt")
        self.assertIn("u16: dtype U16: torch", str(caught.exception))
        bf16 = safetensors_file(self.path("bf16.safetensors"), [("w", "BF16", [2], b"\x80\x3f" * 2)])
        with self.assertRaises(torshpkg.UnsupportedError) as caught:
            torshpkg.load_file(bf16, framework="np")
        self.assertIn("w: dtype BF16: numpy", str(caught.exception))
        f8 = safetensors_file(self.path("f8.safetensors"), [("q", "F8_E4M3", [2], b"\x38\x40")])
        if not hasattr(torch, "float8_e4m3fn"):
            with self.assertRaises(torshpkg.UnsupportedError):
                torshpkg.load_file(f8)

    def test_safe_open_slices_and_metadata_match_the_tensor(self):
        t = torch.arange(6 * 5 * 4, dtype=torch.int32).reshape(6, 5, 4)
        path = self.path("slices.safetensors")
        head = {"t": {"dtype": "I32", "shape": [6, 5, 4], "data_offsets": [0, t.numel() * 4]},
                "__metadata__": {"format": "pt"}}
        head = json.dumps(head).encode()
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(head)) + head + t.numpy().tobytes())
        with torshpkg.safe_open(path, framework="pt") as f:
            self.assertEqual(f.metadata(), {"format": "pt"})
            s = f.get_slice("t")
            self.assertEqual(s.get_shape(), [6, 5, 4])
            self.assertEqual(s.get_dtype(), "I32")
            for key in [slice(1, 4), (slice(None), 2), 3, -1, (slice(0, 6, 2), slice(1, 3)),
                        (slice(4, 1), 0), Ellipsis, (slice(None), slice(None), 3)]:
                self.assertTrue(torch.equal(s[key], t[key]), key)
            with self.assertRaises(IndexError):
                s[6]
            with self.assertRaises(torshpkg.NotFoundError):
                f.get_tensor("missing")

    def test_a_damaged_chunk_raises_corrupt_and_yields_no_tensor(self):
        first = os.urandom(256 << 10)
        second = os.urandom(256 << 10)
        src = safetensors_file(self.path("w.safetensors"),
                               [("first", "U8", [len(first)], first),
                                ("second", "U8", [len(second)], second)])
        pkg = self.path("w.torshpkg")
        tpk("create", pkg, "--name", "w", "--version", "1.0.0", "-q", "--compress", "none",
            "--chunk-size", "64K", "--add", "model.safetensors=" + src)
        data = bytearray(read_bytes(pkg))
        at = data.find(second[:64]) + 100_000
        data[at] ^= 0x01
        with open(pkg, "wb") as f:
            f.write(data)
        with self.assertRaises(torshpkg.CorruptError) as caught:
            torshpkg.load_file(pkg, allow_unsigned=True)
        self.assertNotIn("\n", str(caught.exception))
        self.assertIn("w.torshpkg", str(caught.exception))
        with torshpkg.safe_open(pkg, framework="pt", allow_unsigned=True) as f:
            self.assertEqual(bytes(f.get_tensor("first").numpy()), first)
            with self.assertRaises(torshpkg.CorruptError):
                f.get_tensor("second")
            self.assertTrue(torch.equal(f.get_slice("second")[0:1000],
                                        torch.frombuffer(bytearray(second[:1000]), dtype=torch.uint8)))
        package = torshpkg.Package(pkg, allow_unsigned=True)
        with self.assertRaises(torshpkg.CorruptError):
            package.verify(full=True)
        with self.assertRaises(torshpkg.CorruptError):
            package.open("model.safetensors").read()

    def test_package_policy_and_errors_are_the_cli_kinds(self):
        src = safetensors_file(self.path("p.safetensors"), [("x", "F32", [2], b"\0" * 8)])
        sealed, trusted, key = self.signed_encrypted(src)
        plain = self.path("plain.torshpkg")
        tpk("create", plain, "--name", "plain", "--version", "2.1.0", "-q",
            "--add", "model.safetensors=" + src)
        with self.assertRaises(torshpkg.SignatureError) as caught:
            torshpkg.Package(plain)
        self.assertIn("allow_unsigned=True", str(caught.exception))
        with self.assertRaises(torshpkg.SignatureError):
            torshpkg.Package(sealed, trusted_keys=self.dir)  # no trusted key signed it
        with self.assertRaises(torshpkg.NotFoundError) as caught:
            torshpkg.Package(sealed, trusted_keys=self.path("nowhere"))
        self.assertIn("trusted_keys=DIR", str(caught.exception))
        with self.assertRaises(torshpkg.WrongKeyError) as caught:
            torshpkg.Package(sealed, trusted_keys=trusted)
        self.assertIn("password_file= or key_file=", str(caught.exception))
        with self.assertRaises(torshpkg.WrongKeyError):
            torshpkg.Package(sealed, trusted_keys=trusted, key_file=self.write("bad.key", os.urandom(32)))
        with self.assertRaises(FileNotFoundError):  # NotFoundError is one
            torshpkg.Package(self.path("missing.torshpkg"), allow_unsigned=True)
        with self.assertRaises(ValueError):  # InvalidArgumentError is one
            torshpkg.load_file(plain, allow_unsigned=True, device="tpu")
        for e in (torshpkg.CorruptError, torshpkg.SignatureError, torshpkg.WrongKeyError):
            self.assertTrue(issubclass(e, torshpkg.Error))
        p = torshpkg.Package(sealed, trusted_keys=trusted, key_file=key)
        self.assertEqual((p.name, p.version, p.signer is not None, p.encrypted),
                         ("sealed", "1.0.0", True, True))
        self.assertEqual(p.manifest["name"], "sealed")
        self.assertEqual(p.files(), ["manifest.json", "resources/model.safetensors"])
        p.verify(full=True)
        info = torshpkg.Package(plain, allow_unsigned=True)
        self.assertEqual((info.version, info.signer, info.encrypted), ("2.1.0", None, False))

    def test_package_files_read_seek_and_tell_and_decode_only_what_they_touch(self):
        big = os.urandom(8 << 20)
        src = self.write("blob.bin", big)
        pkg = self.path("blob.torshpkg")
        tpk("create", pkg, "--name", "blob", "--version", "1.0.0", "-q", "--compress", "none",
            "--add", "blob.bin=" + src, "--add", "note.txt=" + self.write("note.txt", b"hi\n"))
        p = torshpkg.Package(pkg, allow_unsigned=True)
        with p.open("blob.bin") as f:
            self.assertEqual(f.size, len(big))
            f.seek(5 << 20)
            before = bytes_read()
            self.assertEqual(f.read(4096), big[5 << 20:(5 << 20) + 4096])
            self.assertLess(bytes_read() - before, 64 << 10)  # its blocks and their hashes
            self.assertEqual(f.tell(), (5 << 20) + 4096)
            f.seek(-10, os.SEEK_END)
            buf = bytearray(20)
            self.assertEqual(f.readinto(buf), 10)
            self.assertEqual(bytes(buf[:10]), big[-10:])
            f.seek(0)
            self.assertEqual(f.read(), big)
        self.assertEqual(p.open("resources/note.txt").read(), b"hi\n")
        self.assertEqual(json.loads(p.open("manifest.json").read())["name"], "blob")
        with self.assertRaises(torshpkg.NotFoundError):
            p.open("nope.txt")

    def test_safe_open_reads_one_tensor_of_a_1gib_file_without_the_rest(self):
        size = 64 << 20
        tensors = [(f"t{i:02d}", "U8", [size], size) for i in range(16)]
        plain = safetensors_file(self.path("big.safetensors"), tensors)
        pkg = self.path("big.torshpkg")
        tpk("create", pkg, "--name", "big", "--version", "1.0.0", "-q", "--compress", "none",
            "--add", "model.safetensors=" + plain)
        for what, source in [("plain file", plain), ("package", pkg)]:
            with self.subTest(source=what):
                before = bytes_read()
                with torshpkg.safe_open(source, framework="pt", allow_unsigned=True) \
                        if source == pkg else torshpkg.safe_open(source, framework="pt") as f:
                    t = f.get_tensor("t07")
                    self.assertEqual(t.shape, (size,))
                    self.assertEqual(int(t.count_nonzero()), 0)
                # The tensor, its block hashes (32 bytes per 4 KiB) and the header and index.
                self.assertLess(bytes_read() - before, size + (4 << 20))
                self.assertGreaterEqual(bytes_read() - before, size)

    def test_tensors_outlive_their_package_and_mount_and_free_their_memory(self):
        payload = os.urandom(96 << 20)
        src = safetensors_file(self.path("m.safetensors"),
                               [("a", "U8", [len(payload) // 2], payload[:len(payload) // 2]),
                                ("b", "I32", [len(payload) // 8], payload[len(payload) // 2:])])
        pkg = self.path("m.torshpkg")
        tpk("create", pkg, "--name", "m", "--version", "1.0.0", "-q", "--compress", "zstd:1",
            "--add", "model.safetensors=" + src)
        digest = hashlib.sha256(payload).hexdigest()
        package = torshpkg.Package(pkg, allow_unsigned=True)
        loaded = torshpkg.load_file(package)
        del package
        gc.collect()
        self.assertEqual(hashlib.sha256(loaded["a"].numpy().tobytes() +
                                        loaded["b"].numpy().tobytes()).hexdigest(), digest)
        mnt = self.path("mnt")
        os.makedirs(mnt)
        tpk("mount", pkg, mnt, "--allow-unsigned", "--standalone")
        try:
            from_mount = torshpkg.load_file(os.path.join(mnt, "resources", "model.safetensors"))
        finally:
            tpk("umount", mnt)
        self.assertEqual(hashlib.sha256(from_mount["a"].numpy().tobytes() +
                                        from_mount["b"].numpy().tobytes()).hexdigest(), digest)
        # Resident memory, measured in a process of its own: up by the block while tensors
        # use it, back down once the last of them is gone (the other one kept it alive).
        out = python(r"""
import gc, sys, torch, torshpkg
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) << 10
base = rss()
d = torshpkg.load_file(sys.argv[1], allow_unsigned=True)
loaded = rss()
b = d["b"]
del d
gc.collect()
kept = rss()
del b
gc.collect()
freed = rss()
with torshpkg.safe_open(sys.argv[1], framework="pt", allow_unsigned=True) as f:
    t = f.get_tensor("a")
one = rss()
del t
gc.collect()
print(base, loaded, kept, freed, one, rss())
""", pkg)
        self.assertEqual(out.returncode, 0, out.stderr)
        base, loaded_rss, kept, freed, one, after = map(int, out.stdout.split())
        block = len(payload)
        self.assertGreater(loaded_rss - base, block * 0.9)
        self.assertGreater(kept - base, block * 0.9)  # one tensor holds the whole block
        self.assertLess(freed - base, 16 << 20)
        self.assertGreater(one - freed, block // 2 * 0.9)
        self.assertLess(after - base, 16 << 20)

    def test_loads_from_many_threads_at_once_release_the_gil(self):
        payload = os.urandom(32 << 20)
        src = safetensors_file(self.path("t.safetensors"), [("w", "U8", [len(payload)], payload)])
        pkg = self.path("t.torshpkg")
        tpk("create", pkg, "--name", "t", "--version", "1.0.0", "-q", "--compress", "zstd:1",
            "--add", "model.safetensors=" + src)
        package = torshpkg.Package(pkg, allow_unsigned=True)
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: torshpkg.load_file(package)["w"], range(8)))
        for r in results:
            self.assertEqual(bytes(r.numpy()), payload)
        # While a load runs in one thread, the main thread runs Python and sees the load's
        # bytes arrive: samples of this process's read count strictly between "not started"
        # and "done". A load that held the GIL would let no sample be taken until it returned.
        source = package._native.source("resources/model.safetensors")
        total = len(payload)
        base = bytes_read()
        loader = threading.Thread(target=lambda: source.load("cpu", 1))
        loader.start()
        between = 0
        while loader.is_alive():
            moved = bytes_read() - base
            if total // 8 < moved < total - total // 8:
                between += 1
        loader.join()
        self.assertGreater(bytes_read() - base, total - total // 8)
        self.assertGreater(between, 0)

    def test_cuda_devices_are_refused_with_the_reason_or_loaded_when_present(self):
        src = safetensors_file(self.path("c.safetensors"), [("x", "F32", [4], b"\0\0\x80\x3f" * 4)])
        if torch.cuda.is_available() and torshpkg.cuda_built():
            t = torshpkg.load_file(src, device="cuda:0")["x"]
            self.assertEqual(t.device.type, "cuda")
            self.assertTrue(torch.equal(t.cpu(), torch.ones(4)))
            return
        with self.assertRaises(torshpkg.UnsupportedError) as caught:
            torshpkg.load_file(src, device="cuda:0")
        message = str(caught.exception)
        self.assertTrue("CUDA" in message or "cuda" in message, message)
        self.assertNotIn("\n", message)

    def test_the_module_imports_without_torch_or_numpy(self):
        src = safetensors_file(self.path("n.safetensors"), [("x", "U8", [3], b"abc")])
        pkg = self.path("n.torshpkg")
        tpk("create", pkg, "--name", "n", "--version", "1.0.0", "-q",
            "--add", "model.safetensors=" + src)
        out = python("""
import sys
sys.modules["torch"] = None
sys.modules["numpy"] = None
import torshpkg
p = torshpkg.Package(sys.argv[1], allow_unsigned=True)
print(p.name, len(p.open("model.safetensors").read()))
try:
    torshpkg.load_file(p)
except ImportError:
    print("no torch")
""", pkg)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.split(), ["n", str(os.path.getsize(src)), "no", "torch"])

if __name__ == "__main__":
    unittest.main()
