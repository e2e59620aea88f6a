"""torshpkg convert and diff on fixtures made by the real producers (tests/fixtures/convert,
made by make_fixtures.py with Debian's python3-torch, python3-numpy and python3-onnx): every
tensor must match, by dtype, shape and SHA-256, what the producer held; every file of the source
that is not a tensor must be kept byte for byte; hostile inputs fail cleanly."""
import glob
import hashlib
import json
import os
import struct
import sys
import unittest
import zipfile

sys.path.insert(0, os.path.dirname(__file__))
from helpers import TORSHPKG, TempDirTest, max_rss_kib, read_bytes, tpk  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "convert")
with open(os.path.join(FIXTURES, "expected.json")) as f:
    EXPECTED = json.load(f)["fixtures"]


class Convert(TempDirTest):
    def convert(self, fixture, *extra):
        out = self.path(os.path.basename(fixture.rstrip("/")) + ".torshpkg")
        tpk("convert", os.path.join(FIXTURES, fixture), "-o", out, "-q", "--force", *extra)
        return out

    def tensors_of(self, pkg):
        """name -> {dtype, shape, sha256} over every .safetensors file of the package."""
        dest = self.path("x-" + os.path.basename(pkg))
        tpk("extract", pkg, dest)
        found = {}
        for st in glob.glob(os.path.join(dest, "resources", "**", "*.safetensors"), recursive=True):
            listing = json.loads(tpk("tensors", st, "--json", "--sha256").stdout)
            for t in listing["tensors"]:
                self.assertNotIn(t["name"], found)
                found[t["name"]] = {"dtype": t["dtype"], "shape": t["shape"], "sha256": t["sha256"]}
        return found, dest

    def manifest(self, pkg):
        return json.loads(tpk("info", pkg, "--json").stdout)

    def check_fixture(self, fixture, *extra):
        pkg = self.convert(fixture, *extra)
        found, dest = self.tensors_of(pkg)
        self.assertEqual(found, EXPECTED[fixture], fixture)
        info = self.manifest(pkg)
        [record] = info["lineage"]
        self.assertEqual(record["relation"], "ConvertedFrom")
        prov = record["provenance"]
        self.assertEqual(prov["tensors"], str(len(EXPECTED[fixture])))
        self.assertTrue(prov["converter"].startswith("torshpkg convert "))
        src = os.path.join(FIXTURES, fixture)
        if os.path.isfile(src):
            self.assertEqual(record["parent"], os.path.basename(src))
            self.assertEqual(prov["source_sha256"], hashlib.sha256(read_bytes(src)).hexdigest())
            self.assertEqual(prov["source_size"], str(os.path.getsize(src)))
        self.assertEqual(tpk("diff", pkg, src).returncode, 0)
        return pkg, dest

    def test_torch_checkpoint_every_dtype_view_and_shared_storage(self):
        pkg, dest = self.check_fixture("checkpoint.pt")
        # Nothing else of the checkpoint is lost: every member but the storages is kept.
        with zipfile.ZipFile(os.path.join(FIXTURES, "checkpoint.pt")) as z:
            for name in z.namelist():
                if "/data/" in name:
                    continue
                self.assertEqual(read_bytes(os.path.join(dest, "resources", "source", name)),
                                 z.read(name), name)

    def test_pickled_whole_module_gets_state_dict_names(self):
        # A whole nn.Module: its pickle names the module classes torch.load would import.
        refused = tpk("convert", os.path.join(FIXTURES, "module.pt"), "-o", self.path("m.torshpkg"),
                      "-q", check=False)
        self.assert_one_line_error(refused, 1)
        self.assertIn(b"torch.nn.modules.linear.Linear", refused.stderr)
        self.assertIn(b"--keep-unsafe-pickles", refused.stderr)
        self.assertFalse(os.path.exists(self.path("m.torshpkg")))
        pkg, _ = self.check_fixture("module.pt", "--keep-unsafe-pickles")
        listed = self.manifest(pkg)["metadata"]["torshpkg.unsafe_pickle_callables"].split("\n")
        self.assertIn("module/data.pkl: torch.nn.modules.linear.Linear", listed)
        self.assertFalse(any("_rebuild_tensor" in c or "Storage" in c for c in listed), listed)
        self.assertIn(b"torshpkg.unsafe_pickle_callables", tpk("info", pkg).stdout)

    def test_torch_package_tensors_and_every_other_member_kept(self):
        pkg, dest = self.check_fixture("tiny.torchpkg", "--keep-unsafe-pickles")
        listed = self.manifest(pkg)["metadata"]["torshpkg.unsafe_pickle_callables"]
        self.assertIn("tiny_model.Tiny", listed)
        with zipfile.ZipFile(os.path.join(FIXTURES, "tiny.torchpkg")) as z:
            kept = 0
            for name in z.namelist():
                inner = name.split("/", 1)[1]
                if inner.startswith(".data/") and inner.endswith(".storage"):
                    continue
                self.assertEqual(read_bytes(os.path.join(dest, "resources", "torch_package", inner)),
                                 z.read(name), name)
                kept += 1
        self.assertGreaterEqual(kept, 7)
        types = {r["path"]: r["type"] for r in self.manifest(pkg)["resources"]}
        self.assertEqual(types["torch_package/tiny_model.py"], "Source")
        self.assertEqual(types["torch_package/.data/extern_modules"], "Text")
        self.assertEqual(types["models/tiny.safetensors"], "ModelWeights")
        self.assertEqual(types["weights/table.safetensors"], "ModelWeights")

    def test_numpy_npy_and_npz_stored_and_deflated(self):
        for fixture in ("weights.npy", "arrays.npz", "arrays_compressed.npz"):
            with self.subTest(fixture=fixture):
                self.check_fixture(fixture)

    def test_onnx_raw_typed_and_external_initializers(self):
        pkg, dest = self.check_fixture("model.onnx")
        self.assertEqual(read_bytes(os.path.join(dest, "resources", "model.onnx")),
                         read_bytes(os.path.join(FIXTURES, "model.onnx")))
        self.check_fixture("onnx_external/model.onnx")

    def test_hugging_face_folder_and_safetensors_file(self):
        pkg, dest = self.check_fixture("hf_model")
        src = os.path.join(FIXTURES, "hf_model")
        for name in os.listdir(src):
            self.assertEqual(read_bytes(os.path.join(dest, "resources", name)),
                             read_bytes(os.path.join(src, name)), name)
        types = {r["path"]: r["type"] for r in self.manifest(pkg)["resources"]}
        self.assertEqual(types["config.json"], "Config")
        self.assertEqual(types["tokenizer.json"], "Tokenizer")
        self.assertEqual(types["model-00001-of-00002.safetensors"], "ModelWeights")
        prov = self.manifest(pkg)["lineage"][0]["provenance"]
        listing = "".join(f"{hashlib.sha256(read_bytes(os.path.join(src, n))).hexdigest()}  {n}\n"
                          for n in sorted(os.listdir(src)))
        self.assertEqual(prov["source_sha256"], hashlib.sha256(listing.encode()).hexdigest())
        self.assertEqual(prov["source_files"], str(len(os.listdir(src))))
        self.check_fixture("single.safetensors")

    def test_inconsistent_shard_index_is_refused(self):
        src = os.path.join(FIXTURES, "hf_model")
        bad = self.path("bad_model")
        os.makedirs(bad)
        for name in os.listdir(src):
            with open(os.path.join(bad, name), "wb") as f:
                f.write(read_bytes(os.path.join(src, name)))
        index = json.loads(read_bytes(os.path.join(bad, "model.safetensors.index.json")))
        index["weight_map"]["layers.0.weight"] = "model-00002-of-00002.safetensors"
        self.write("bad_model/model.safetensors.index.json", json.dumps(index).encode())
        proc = tpk("convert", bad, "-o", self.path("bad.torshpkg"), "-q", check=False)
        self.assert_one_line_error(proc, 3)
        self.assertIn(b"layers.0.weight", proc.stderr)
        self.assertFalse(os.path.exists(self.path("bad.torshpkg")))

    def test_diff_reports_each_kind_of_difference(self):
        a = self.convert("arrays.npz")
        # B: the same arrays with one changed, one dropped and one added, made as a .npz by hand
        # (stored members, each a .npy file).
        with zipfile.ZipFile(os.path.join(FIXTURES, "arrays.npz")) as z:
            members = {n: z.read(n) for n in z.namelist()}
        f32 = bytearray(members["float32.npy"])
        f32[-1] ^= 1
        members["float32.npy"] = bytes(f32)
        del members["int8.npy"]
        members["extra.npy"] = members["uint8.npy"]
        b = self.path("b.npz")
        with zipfile.ZipFile(b, "w") as z:
            for n, data in members.items():
                z.writestr(n, data)
        proc = tpk("diff", a, b, check=False)
        self.assertEqual(proc.returncode, 3, proc.stderr)
        text = proc.stdout.decode()
        self.assertIn("differs: float32  bytes", text)
        self.assertIn("only in " + a + ": int8", text)
        self.assertIn("only in " + b + ": extra", text)
        out = json.loads(tpk("diff", a, b, "--json", check=False).stdout)
        self.assertFalse(out["identical"])
        self.assertEqual([d["name"] for d in out["different"]], ["float32"])
        self.assertEqual(out["only_in_a"], ["int8"])
        self.assertEqual(out["only_in_b"], ["extra"])
        self.assertEqual(tpk("diff", a, a).returncode, 0)

    def test_walkthrough_convert_mount_load(self):
        pkg = self.convert("tiny.torchpkg", "--keep-unsafe-pickles")
        mnt = self.path("mnt")
        os.makedirs(mnt)
        tpk("mount", pkg, mnt, "--allow-unsigned", "--standalone")
        try:
            out = json.loads(tpk("load", os.path.join(mnt, "resources", "models", "tiny.safetensors"),
                                 "--sha256", "--json").stdout)
            for t in out["tensors"]:
                self.assertEqual(t["sha256"], EXPECTED["tiny.torchpkg"][t["name"]]["sha256"])
            self.assertEqual(len(out["tensors"]), 3)
        finally:
            tpk("umount", mnt)


def pickle_checkpoint(pkl, storages=None):
    """A torch.save-style zip with the given data.pkl bytes (and storage members)."""
    import io
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/version", "3\n")
        for key, data in (storages or {}).items():
            z.writestr("archive/data/" + key, data)
    return buf.getvalue()


def pickle_checkpoint_deflated(pkl):
    """pickle_checkpoint, its data.pkl deflated (how torch never writes it, but a ZIP may)."""
    import io
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pkl, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def deflated_zeros_npz(layout):
    """An .npz holding one deflated float32 array of 512 MiB of zeros with the given
    'fortran_order' and 'shape' header items: under a megabyte that inflates to half a GiB."""
    import io
    header = b"{'descr': '<f4', " + layout + b", }"
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    npz = io.BytesIO()
    with zipfile.ZipFile(npz, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("zeros.npy", "w") as member:
            member.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header)
            chunk = bytes(16 << 20)
            for _ in range(32):
                member.write(chunk)
    return npz.getvalue()


def onnx_model(tensor):
    """A hand-encoded ONNX ModelProto: ir_version 7 and a graph holding one initializer, the
    TensorProto fields given as (number, value) with bytes for length-delimited ones."""
    def varint(n):
        out = b""
        while n >= 0x80:
            out += bytes([n & 0x7F | 0x80])
            n >>= 7
        return out + bytes([n])

    def field(number, value):
        if isinstance(value, int):
            return varint(number << 3) + varint(value)
        return varint(number << 3 | 2) + varint(len(value)) + value
    init = b"".join(field(n, v) for n, v in tensor)
    return field(1, 7) + field(7, field(5, init))


def rebuild_tensor(storage_type, key, numel, offset, size, stride):
    """Protocol-2 pickle opcodes for torch._utils._rebuild_tensor_v2 over a storage."""
    def tup(items):
        return b"(" + b"".join(items) + b"t"

    def i(n):
        return b"J" + struct.pack("<i", n)
    pid = tup([b"X" + struct.pack("<I", 7) + b"storage",
               b"ctorch\n" + storage_type + b"\n",
               b"X" + struct.pack("<I", len(key)) + key.encode(),
               b"X\x03\x00\x00\x00cpu", i(numel)])
    return (b"ctorch._utils\n_rebuild_tensor_v2\n" +
            tup([pid + b"Q", i(offset), tup([i(x) for x in size]), tup([i(x) for x in stride]),
                 b"\x89", b"ccollections\nOrderedDict\n)R"]) + b"R")


class HostilePickles(TempDirTest):
    def convert_bytes(self, data, name="x.pt"):
        src = self.write(name, data)
        return tpk("convert", src, "-o", self.path("out.torshpkg"), "-q", "--force", check=False)

    def test_globals_are_never_imported_or_called(self):
        marker = self.path("pwned")
        evil = (b"\x80\x02}(X\x01\x00\x00\x00a" + b"cos\nsystem\n(X" +
                struct.pack("<I", len("touch " + marker)) + ("touch " + marker).encode() +
                b"tRu.")
        proc = self.convert_bytes(pickle_checkpoint(evil))
        # Kept under resources/source/, the next torch.load would run it: refused, named.
        self.assert_one_line_error(proc, 1)
        self.assertIn(b"archive/data.pkl: os.system", proc.stderr)
        self.assertFalse(os.path.exists(self.path("out.torshpkg")))
        src = self.write("x.pt", pickle_checkpoint(evil))
        proc = tpk("convert", src, "-o", self.path("out.torshpkg"), "-q", "--force",
                   "--keep-unsafe-pickles", check=False)
        self.assertEqual(proc.returncode, 0, proc.stderr)  # an opaque value, no tensors
        info = json.loads(tpk("info", self.path("out.torshpkg"), "--json").stdout)
        self.assertEqual(info["metadata"]["torshpkg.unsafe_pickle_callables"],
                         "archive/data.pkl: os.system")
        self.assertFalse(os.path.exists(marker))

    def test_hand_built_tensor_pickle_converts(self):
        data = struct.pack("<6f", *range(6))
        pkl = (b"\x80\x02}(X\x01\x00\x00\x00w" +
               rebuild_tensor(b"FloatStorage", "0", 6, 1, [2, 2], [1, 2]) + b"u.")
        proc = self.convert_bytes(pickle_checkpoint(pkl, {"0": data}))
        self.assertEqual(proc.returncode, 0, proc.stderr)
        found, _ = Convert.tensors_of(self, self.path("out.torshpkg"))
        # elements [1, 3; 2, 4] of 0..5, row-major
        self.assertEqual(found["w"]["sha256"],
                         hashlib.sha256(struct.pack("<4f", 1, 3, 2, 4)).hexdigest())

    def test_malformed_pickles_fail_with_one_line(self):
        good = rebuild_tensor(b"FloatStorage", "0", 6, 0, [2, 3], [3, 1])
        cases = {
            "unknown opcode": b"\x80\x02\xff.",
            "truncated": b"\x80\x02}(X\x05\x00\x00\x00ab",
            "stack underflow": b"\x80\x02t.",
            "missing memo": b"\x80\x02h\x05.",
            "no stop": b"\x80\x02}",
            "view past storage": b"\x80\x02}(X\x01\x00\x00\x00w" +
                                 rebuild_tensor(b"FloatStorage", "0", 6, 4, [2, 3], [3, 1]) + b"u.",
            "storage missing": b"\x80\x02}(X\x01\x00\x00\x00w" +
                               rebuild_tensor(b"FloatStorage", "9", 6, 0, [2, 3], [3, 1]) + b"u.",
            "storage short": b"\x80\x02}(X\x01\x00\x00\x00w" +
                             rebuild_tensor(b"FloatStorage", "0", 600, 0, [2, 3], [3, 1]) + b"u.",
            "bad storage key": b"\x80\x02}(X\x01\x00\x00\x00w" +
                               rebuild_tensor(b"FloatStorage", "../x", 6, 0, [2, 3], [3, 1]) + b"u.",
            "rank mismatch": b"\x80\x02}(X\x01\x00\x00\x00w" +
                             rebuild_tensor(b"FloatStorage", "0", 6, 0, [2, 3], [1]) + b"u.",
            "deep nesting": b"\x80\x02" + b"]" * 100000 + b"a" * 99999 + b".",
        }
        for why, pkl in cases.items():
            with self.subTest(why=why):
                proc = self.convert_bytes(pickle_checkpoint(pkl, {"0": bytes(24)}))
                self.assert_one_line_error(proc, 3)
                self.assertFalse(os.path.exists(self.path("out.torshpkg")))
        self.assertTrue(good)

    def test_tiny_inputs_cannot_exhaust_memory(self):
        """Bombs under 1 MB: each is refused (exit 1 for a limit, 3 for a lie) with the process
        staying small, measured by its peak resident size."""
        import io
        import zlib
        cases = {}
        # 1. A data.pkl that declares 4,000,000,000 bytes: the declared size is never allocated.
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("archive/data.pkl", b"\x80\x02N.")
            z.writestr("archive/version", "3\n")
        data = bytearray(buf.getvalue())
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
            info = z.getinfo("archive/data.pkl")
        at = data.index(b"PK\x01\x02")
        while True:  # the central record of data.pkl
            name_len = struct.unpack("<H", data[at + 28:at + 30])[0]
            if data[at + 46:at + 46 + name_len] == b"archive/data.pkl":
                break
            at = data.index(b"PK\x01\x02", at + 4)
        struct.pack_into("<I", data, at + 24, 4_000_000_000)
        struct.pack_into("<I", data, info.header_offset + 22, 4_000_000_000)
        cases["declared 4 GB"] = (bytes(data), (1, 3), b"data.pkl")
        # 2. Twenty million values that deflate to a few kilobytes.
        many = b"\x80\x02]" + (b"(" + b"N" * 100_000 + b"e") * 200 + b"."
        cases["20 million values"] = (pickle_checkpoint_deflated(many), (1,), b"limit")
        # 3. Nested dicts keyed by one memoized 200 KiB string: tensor paths would grow
        # quadratically.
        key = b"X" + struct.pack("<I", 200_000) + b"k" * 200_000 + b"q\x00"
        nested = b"\x80\x02}" + key + b"}" + b"h\x00}" * 1998 + b"h\x00N" + b"s" * 2000 + b"."
        cases["nested memoized keys"] = (pickle_checkpoint_deflated(nested), (1,), b"limit")
        # 4. An .npz whose deflated member inflates to 512 MiB of zeros (valid data, so it
        # converts), read a window at a time rather than inflated whole.
        cases["512 MiB of deflated zeros"] = (
            deflated_zeros_npz(b"'fortran_order': False, 'shape': (134217728,)"), (0,), b"")
        # Gathered out of order: inflated to a temporary file, then read a chunk of output
        # at a time, down the columns.
        cases["512 MiB of deflated zeros in Fortran order"] = (
            deflated_zeros_npz(b"'fortran_order': True, 'shape': (8192, 16384)"), (0,), b"")
        # 5. The same in a checkpoint whose tensor storage is deflated.
        n = 134217728
        pkl = (b"\x80\x02}(X\x01\x00\x00\x00w" +
               rebuild_tensor(b"FloatStorage", "0", n, 0, [n], [1]) + b"u.")
        pt = io.BytesIO()
        with zipfile.ZipFile(pt, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
            z.writestr("archive/data.pkl", pkl)
            z.writestr("archive/version", "3\n")
            with z.open("archive/data/0", "w") as member:
                chunk = bytes(16 << 20)
                for _ in range(32):
                    member.write(chunk)
        cases["a checkpoint with a deflated 512 MiB storage"] = (pt.getvalue(), (0,), b"")
        # 6. ONNX initializers that declare a terabyte: a megabyte of packed one-byte varints
        # (8 MB once decoded, checked against the shape after), and external data that the
        # file beside the model does not hold.
        cases["ONNX typed data short of its shape"] = (
            onnx_model([(1, 1 << 40), (2, 7), (8, b"w"), (7, b"\x01" * 1_000_000)]), (3,),
            b"typed data holds 8000000 bytes")
        self.write("w.bin", bytes(16))
        cases["ONNX external data short of its shape"] = (
            onnx_model([(1, 1 << 30), (2, 1), (8, b"w"), (13, b"\x0a\x08location\x12\x05w.bin"),
                        (14, 1)]), (3,), b"external data runs past the end")
        for why, (blob, codes, says) in cases.items():
            with self.subTest(why=why):
                self.assertLess(len(blob), 1 << 20)
                name = ("bomb.onnx" if "ONNX" in why else
                        "bomb.npz" if "npz" in why or "zeros" in why else "bomb.pt")
                src = self.write(name, blob)
                rc, err, rss = max_rss_kib(TORSHPKG, "convert", src, "-o", self.path("out.torshpkg"),
                                           "-q", "--force")
                self.assertIn(rc, codes, err)
                self.assertIn(says.decode(), err)
                self.assertLess(rss, 300 * 1024, why)
                self.assertEqual(os.path.exists(self.path("out.torshpkg")), rc == 0)
                if rc == 0:
                    os.unlink(self.path("out.torshpkg"))

    def test_unknown_storage_and_formats_are_unsupported(self):
        pkl = b"\x80\x02}(X\x01\x00\x00\x00w" + rebuild_tensor(b"QInt8Storage", "0", 6, 0, [6], [1]) + b"u."
        proc = self.convert_bytes(pickle_checkpoint(pkl, {"0": bytes(6)}))
        self.assert_one_line_error(proc, 1)
        self.assertIn(b"QInt8Storage", proc.stderr)
        for name, data, words in [("legacy.pt", b"\x80\x02\x8a\x0alo", b"legacy"),
                                  ("random.bin", os.urandom(100) + b"zz", b"not a model format"),
                                  ("other.zip", None, b"neither")]:
            if data is None:
                import io
                buf = io.BytesIO()
                with zipfile.ZipFile(buf, "w") as z:
                    z.writestr("a.txt", "x")
                data = buf.getvalue()
            proc = self.convert_bytes(data, name)
            self.assert_one_line_error(proc, 1)
            self.assertIn(words, proc.stderr)
        # A structured (record) array is valid NumPy that no tensor format holds: unsupported,
        # like a string array, not a damaged file.
        for descr in (b"[('x', '<f4'), ('y', '<i4')]", b"'<U3'"):
            with self.subTest(descr=descr):
                header = b"{'descr': " + descr + b", 'fortran_order': False, 'shape': (2,), }"
                header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
                npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + bytes(16 if b"x" in descr else 24)
                proc = self.convert_bytes(npy, "records.npy")
                self.assert_one_line_error(proc, 1)


if __name__ == "__main__":
    unittest.main()
