"""torshpkg tensors on safetensors files laid out by hand from the format's description (struct +
json, independent of our writer), directly and through a real mount; hostile files refused."""
import hashlib
import json
import os
import struct
import sys
import unittest
import zipfile

sys.path.insert(0, os.path.dirname(__file__))
from helpers import TempDirTest, random_bytes, read_bytes, tpk  # noqa: E402

BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8,
        "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32,
        "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, bytes)] -> file bytes, header padded to 8 with spaces."""
    header, data, at = {}, b"", 0
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, blob in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + len(blob)]}
        data += blob
        at += len(blob)
    text = json.dumps(header).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


class Tensors(TempDirTest):
    def setUp(self):
        super().setUp()
        self.tensors = []
        for i, (dtype, bits) in enumerate(BITS.items()):
            shape = [2, 4]
            self.tensors.append((f"layer.{i}.{dtype.lower()}", dtype, shape,
                                 random_bytes(8 * bits // 8, i)))
        self.tensors.append(("scalar", "F32", [], random_bytes(4, 99)))
        self.tensors.append(("empty", "BF16", [0, 3], b""))
        self.file = self.write("model.safetensors",
                               safetensors(self.tensors, {"format": "pt", "source": "hand"}))

    def expected(self):
        return {"metadata": {"format": "pt", "source": "hand"},
                "tensors": [{"name": n, "dtype": d, "shape": s,
                             "data_offsets": [sum(len(t[3]) for t in self.tensors[:i]),
                                              sum(len(t[3]) for t in self.tensors[:i + 1])],
                             "sha256": hashlib.sha256(b).hexdigest()}
                            for i, (n, d, s, b) in enumerate(self.tensors)]}

    def test_json_listing_with_digests_matches_the_file(self):
        out = json.loads(tpk("tensors", self.file, "--json", "--sha256").stdout)
        self.assertEqual(out, self.expected())
        text = tpk("tensors", self.file).stdout.decode()
        self.assertIn("layer.11.bf16  BF16  [2, 4]", text)
        self.assertIn("# format: pt", text)

    def test_through_a_mounted_package(self):
        pkg = self.path("m.torshpkg")
        tpk("create", pkg, "--name", "m", "--version", "1.0.0", "-q", "--chunk-size", "4K",
            "--add", "ModelWeights:model.safetensors=" + self.file)
        mnt = self.path("mnt")
        os.makedirs(mnt)
        tpk("mount", pkg, mnt, "--allow-unsigned", "--standalone")
        try:
            out = json.loads(tpk("tensors", os.path.join(mnt, "resources", "model.safetensors"),
                                 "--json", "--sha256").stdout)
            self.assertEqual(out, self.expected())
        finally:
            tpk("umount", mnt)

    def test_hostile_files_are_one_line_errors(self):
        good = safetensors([("a", "U8", [4], b"abcd")])
        n = struct.unpack("<Q", good[:8])[0]
        cases = {
            "truncated": good[:-1],
            "extra byte": good + b"x",
            "size past end": struct.pack("<Q", 1 << 40) + good[8:],
            "not json": struct.pack("<Q", n) + b"{" + b"x" * (n - 1) + good[8 + n:],
            "wrong size": safetensors([("a", "U16", [4], b"abcd")]),
            "tiny": b"\x01\x00",
        }
        for why, data in cases.items():
            with self.subTest(why=why):
                proc = tpk("tensors", self.write("bad.safetensors", data), check=False)
                self.assert_one_line_error(proc, 3)
                self.assertIn(b"safetensors", proc.stderr)


class NotSafetensors(TempDirTest):
    """Files of other formats are named as such (exit 1), not reported as damaged (exit 3)."""

    def test_packages_checkpoints_arrays_and_pickles(self):
        weights = self.write("w.safetensors", safetensors([("a", "U8", [4], b"abcd")]))
        pkg = self.path("m.torshpkg")
        tpk("create", pkg, "--name", "m", "--version", "1.0.0", "-q", "--add",
            "ModelWeights:model.safetensors=" + weights)
        zipped = self.path("model.pt")
        with zipfile.ZipFile(zipped, "w") as z:
            z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }"
        header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
        npy = self.write("a.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header
                         + bytes(4))
        pickle = self.write("legacy.pt", b"\x80\x02\x8a\x0alo\x00" + bytes(100))
        for path, says in ((pkg, b"it is a torshpkg package"), (zipped, b"ZIP archive"),
                           (npy, b"NumPy .npy"), (pickle, b"pickle")):
            for command in ("tensors", "load"):
                with self.subTest(file=os.path.basename(path), command=command):
                    proc = tpk(command, path, check=False)
                    self.assert_one_line_error(proc, 1)
                    self.assertIn(b"not a safetensors file", proc.stderr)
                    self.assertIn(says, proc.stderr)
        self.assertIn(b"--resource PATH", tpk("load", pkg, check=False).stderr)
        self.assertIn(b"--resource PATH", tpk("tensors", pkg, check=False).stderr)
        # The package's weights, named: fine.
        tpk("load", pkg, "--resource", "resources/model.safetensors")


class Load(TempDirTest):
    """torshpkg load: every tensor lands in memory exactly, from a file, a mount or a package."""

    def setUp(self):
        super().setUp()
        self.tensors = [(f"blocks.{i}.weight", dtype, [64, 1000], random_bytes(64 * 1000 * bits // 8, i))
                        for i, (dtype, bits) in enumerate(
                            [("BF16", 16), ("F32", 32), ("F16", 16), ("I64", 64), ("U8", 8)] * 4)]
        self.tensors.append(("scalar", "F64", [], random_bytes(8, 77)))
        self.file = self.write("model.safetensors", safetensors(self.tensors, {"format": "pt"}))
        self.digests = {n: hashlib.sha256(b).hexdigest() for n, _, _, b in self.tensors}
        self.data_bytes = sum(len(b) for *_, b in self.tensors)

    def load(self, *args):
        out = json.loads(tpk("load", *args, "--json", "--sha256").stdout)
        self.assertEqual({t["name"]: t["sha256"] for t in out["tensors"]}, self.digests)
        self.assertEqual(out["bytes"], self.data_bytes)
        self.assertEqual(out["device"], "cpu")
        self.assertEqual(out["tensor_count"], len(self.tensors))
        self.assertGreater(out["seconds"], 0)
        self.assertEqual(set(out["stages"]), {"init_s", "setup_s", "staging_s", "read_s", "copy_s", "wait_s"})
        return out

    def package(self, *extra):
        pkg = self.path("m.torshpkg")
        tpk("create", pkg, "--name", "m", "--version", "1.0.0", "-q", "--chunk-size", "64K",
            "--add", "ModelWeights:model.safetensors=" + self.file, "--force", *extra)
        return pkg

    def test_plain_file_any_threads_and_pieces(self):
        for threads, piece in (("1", "4K"), ("3", "64K"), ("8", "8M")):
            with self.subTest(threads=threads, piece=piece):
                out = self.load(self.file, "--threads", threads, "--piece-size", piece)
                self.assertLessEqual(out["threads"], int(threads))
        text = tpk("load", self.file, "--sha256").stdout.decode()
        self.assertIn("loaded 21 tensors", text)
        self.assertIn(f"{self.digests['scalar']}  scalar", text)

    def test_through_a_mount_first_read_and_warm(self):
        pkg = self.package("--compress", "zstd")
        mnt = self.path("mnt")
        os.makedirs(mnt)
        tpk("mount", pkg, mnt, "--allow-unsigned", "--standalone")
        try:
            inside = os.path.join(mnt, "resources", "model.safetensors")
            self.load(inside, "--threads", "4")
            self.load(inside, "--threads", "4", "--piece-size", "1M")
        finally:
            tpk("umount", mnt)

    def test_straight_from_a_package_compressed_or_encrypted(self):
        self.write("pw", b"correct horse battery staple\n")
        for extra in (["--compress", "none"], ["--compress", "zstd"],
                      ["--compress", "gzip", "--encrypt", "aes-256-gcm", "--password-file", self.path("pw")]):
            with self.subTest(extra=extra):
                pkg = self.package(*extra)
                secret = ["--password-file", self.path("pw")] if "--encrypt" in extra else []
                out = self.load(pkg, "--resource", "resources/model.safetensors", "--threads", "3",
                                *secret)
                self.assertEqual(out["resource"], "resources/model.safetensors")
                self.assertEqual(out["piece_bytes"] % 65536, 0)  # whole chunks

    def test_damage_and_misuse_are_one_line_errors(self):
        pkg = self.package("--compress", "none")
        data = bytearray(read_bytes(pkg))
        at = data.find(self.tensors[10][3][:64])
        self.assertGreater(at, 0)
        data[at + 5] ^= 1
        self.write("bad.torshpkg", bytes(data))
        proc = tpk("load", self.path("bad.torshpkg"), "--resource", "resources/model.safetensors",
                   check=False)
        self.assert_one_line_error(proc, 3)
        self.assert_one_line_error(tpk("load", pkg, "--resource", "resources/none", check=False), 1)
        self.assert_one_line_error(tpk("load", self.file, "--device", "tpu", check=False), 2)
        proc = tpk("load", self.file, "--threads", "0", check=False)
        self.assertEqual(proc.returncode, 2)  # a usage error, as CLI11 reports it
        self.assertIn(b"--threads", proc.stderr)
        proc = tpk("load", self.file, "--device", "cuda", "--json", "--sha256", check=False)
        if proc.returncode == 0:  # a GPU is visible: the digests must match
            got = json.loads(proc.stdout)
            self.assertEqual({t["name"]: t["sha256"] for t in got["tensors"]}, self.digests)
            self.assertEqual(got["device"], "cuda:0")
        else:
            self.assert_one_line_error(proc, 1)
            self.assertIn(b"CUDA", proc.stderr)


if __name__ == "__main__":
    unittest.main()
