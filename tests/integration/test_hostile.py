"""Hostile packages through the real CLI: each fails with a one-line error and exit 3 (or a
clean exit with correct bytes when a flip hits a field that no reader uses), never a crash or
hang, and never wrong bytes."""
import json
import os
import random
import struct
import sys
import unittest
import zipfile

sys.path.insert(0, os.path.dirname(__file__))
from helpers import (TORSHPKG, TempDirTest, max_rss_kib, read_bytes, random_bytes, run,  # noqa: E402
                     text_bytes, tpk)


class Hostile(TempDirTest):
    def setUp(self):
        super().setUp()
        self.data = {"a.bin": text_bytes(300_000, 1), "b/c.txt": random_bytes(50_000, 2)}
        args = []
        for rel, data in self.data.items():
            args += ["--add", f"{rel}=" + self.write("src/" + rel, data)]
        self.pkgs = {}
        for codec in ("none", "zstd", "gzip", "xz"):
            self.pkgs[codec] = self.path(f"{codec}.torshpkg")
            tpk("create", self.pkgs[codec], "--name", "demo", "--version", "1.0.0", "-q",
                "--compress", codec, "--chunk-size", "16K", "--dependency", "base:^1", *args)

    def bad(self, data, name="bad.torshpkg"):
        return self.write(name, data)

    def write_dir(self, path):
        os.makedirs(path, exist_ok=True)
        return path

    def expect_integrity_failure(self, pkg, cmd):
        """Runs `torshpkg CMD[0] PKG CMD[1:]`; expects exit 3 and one line; returns the line."""
        proc = tpk(*cmd[:1], pkg, *cmd[1:], check=False)
        self.assert_one_line_error(proc, 3)
        return proc.stderr.decode()

    def rebuild(self, src, transform, out="rebuilt.torshpkg"):
        """Copies a stored package entry by entry with zipfile, letting `transform` edit the list."""
        with zipfile.ZipFile(src) as z:
            items = [(i, z.read(i.filename)) for i in z.infolist()]
        items = transform(items)
        path = self.path(out)
        with zipfile.ZipFile(path, "w") as z:
            for info, data in items:
                z.writestr(info, data)
        return path

    def test_a_package_rewritten_by_another_zip_writer_still_reads(self):
        pkg = self.rebuild(self.pkgs["none"], lambda items: items)
        tpk("verify", "--full", pkg)
        self.assertEqual(tpk("cat", pkg, "resources/a.bin").stdout, self.data["a.bin"])

    def test_truncated_files(self):
        raw = read_bytes(self.pkgs["zstd"])
        for n in [0, 1, 21, 22, 100, len(raw) // 2, len(raw) - 23, len(raw) - 1]:
            with self.subTest(n=n):
                self.expect_integrity_failure(self.bad(raw[:n]), ["ls"])

    def test_random_bit_flips_never_crash_or_return_wrong_bytes(self):
        rng = random.Random(11)
        for codec in ("zstd", "xz"):
            raw = read_bytes(self.pkgs[codec])
            for i in range(60):
                data = bytearray(raw)
                pos = rng.randrange(len(data))
                data[pos] ^= 1 << rng.randrange(8)
                pkg = self.bad(bytes(data), f"flip-{codec}-{i}.torshpkg")
                proc = tpk("cat", pkg, "resources/a.bin", check=False, timeout=60)
                if proc.returncode == 0:
                    self.assertEqual(proc.stdout, self.data["a.bin"], f"flip at {pos}")
                else:
                    self.assert_one_line_error(proc)
                    self.assertIn(proc.returncode, (1, 3), proc.stderr)
                os.remove(pkg)

    def test_flipped_chunk_fails_with_its_name(self):
        raw = bytearray(read_bytes(self.pkgs["none"]))
        with zipfile.ZipFile(self.pkgs["none"]) as z:
            info = z.getinfo("resources/a.bin")
        name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
        start = info.header_offset + 30 + name_len + extra_len
        raw[start + 20000] ^= 0x10  # chunk 1 of 16 KiB chunks
        pkg = self.bad(bytes(raw))
        err = self.expect_integrity_failure(pkg, ["cat", "resources/a.bin"])
        self.assertIn("chunk 1 hash mismatch", err)
        # The chunk before it is still served.
        self.assertEqual(tpk("cat", pkg, "resources/a.bin", "--length", "16384").stdout,
                         self.data["a.bin"][:16384])
        tpk("verify", pkg)  # structure and indexes are intact
        self.expect_integrity_failure(pkg, ["verify", "--full"])

    def like_the_writer(self, items, name):
        """A ZipInfo for a new entry with every field as the writer sets it."""
        info = zipfile.ZipInfo(name, date_time=items[0][0].date_time)
        info.create_system, info.create_version = 3, 63
        info.extract_version = 20
        info.external_attr = 0o100644 << 16
        info.flag_bits = 0x800
        return info

    def test_entries_the_manifest_does_not_list(self):
        pkg = self.rebuild(self.pkgs["none"],
                           lambda items: items + [(self.like_the_writer(items, "extra.txt"), b"x")])
        self.assertIn("not listed", self.expect_integrity_failure(pkg, ["ls"]))

    def test_container_fields_the_signature_would_not_cover(self):
        """A signed package whose ZIP fields carry what its writer never writes: each is refused
        at open, so verify, mount and extraction never see it."""
        key = self.path("k")
        tpk("keygen", key)
        os.makedirs(self.path("trusted"))
        os.link(key + ".pub", self.path("trusted", "k.pub"))
        signed = self.path("signed.torshpkg")
        tpk("create", signed, "--name", "demo", "--version", "1.0.0", "-q", "--compress", "none",
            "--add", "a.bin=" + self.path("src/a.bin"), "--sign-key", key + ".key")
        # Rewritten by zipfile with every field kept, it still verifies: the checks below fail
        # only on the field they change.
        tpk("verify", "--full", "--trusted-keys", self.path("trusted"),
            self.rebuild(signed, lambda items: items, "same.torshpkg"))
        os.makedirs(self.path("mnt"))

        def edit(field, value, only="resources/a.bin"):
            def transform(items):
                for info, _ in items:
                    if info.filename == only:
                        setattr(info, field, value)
                return items
            return transform
        cases = {
            "setuid": (edit("external_attr", 0o104755 << 16), "attributes"),
            "executable": (edit("external_attr", 0o100755 << 16), "attributes"),
            "DOS attributes": (edit("create_system", 0), "attributes"),
            "internal attributes": (edit("internal_attr", 1), "internal attributes"),
            "an entry comment": (edit("comment", b"hello"), "comment"),
            "60 KiB in an extra field": (edit("extra", struct.pack("<HH", 0x7875, 60000)
                                              + bytes(60000)), "extra field"),
            "another time": (edit("date_time", (2001, 1, 1, 0, 0, 0)), "time"),
            "another version needed": (edit("extract_version", 10), "version needed"),
        }
        for why, (transform, says) in cases.items():
            with self.subTest(why=why):
                pkg = self.rebuild(signed, transform, "edited.torshpkg")
                err = self.expect_integrity_failure(pkg, ["verify", "--full", "--trusted-keys",
                                                          self.path("trusted")])
                self.assertIn(says, err)
                self.assertEqual(tpk("mount", pkg, self.path("mnt"), "--trusted-keys",
                                     self.path("trusted"), check=False).returncode, 3)
        # A 64 KiB archive comment after the end record.
        raw = bytearray(read_bytes(signed))
        struct.pack_into("<H", raw, len(raw) - 2, 0xffff)
        pkg = self.bad(bytes(raw) + bytes(0xffff), "commented.torshpkg")
        self.assertIn("comment", self.expect_integrity_failure(pkg, ["verify", "--trusted-keys",
                                                                     self.path("trusted")]))
        # Local headers: an extra field the central record lacks, padding that is not zeros.
        raw = read_bytes(signed)
        with zipfile.ZipFile(signed) as z:
            info = z.getinfo("resources/a.bin")
        name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:
                                                       info.header_offset + 30])
        extra_at = info.header_offset + 30 + name_len
        self.assertGreater(extra_len, 6)  # the stored entry's alignment record
        data = bytearray(raw)
        data[extra_at + extra_len - 1] = 0x41
        err = self.expect_integrity_failure(self.bad(bytes(data), "padded.torshpkg"), ["ls"])
        self.assertIn("alignment", err)
        data = bytearray(raw)
        struct.pack_into("<H", data, extra_at, 0x5455)  # "UT" timestamps in place of it
        err = self.expect_integrity_failure(self.bad(bytes(data), "ut.torshpkg"), ["ls"])
        self.assertIn("extra field", err)
        # Extraction of a valid package never makes anything but plain files.
        out = self.path("x")
        run("bsdtar", "-xf", signed, "-C", self.write_dir(out))
        mode = os.stat(os.path.join(out, "resources", "a.bin")).st_mode
        self.assertEqual(mode & 0o7000, 0)
        self.assertEqual(mode & 0o111, 0)

    def test_missing_entry(self):
        pkg = self.rebuild(self.pkgs["none"],
                           lambda items: [(i, d) for i, d in items if i.filename != "resources/b/c.txt"])
        self.assertIn("missing", self.expect_integrity_failure(pkg, ["ls"]))

    def test_duplicate_names(self):
        def dup(items):
            return items + [i for i in items if i[0].filename == "resources/a.bin"]
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pkg = self.rebuild(self.pkgs["none"], dup)
        self.assertIn("duplicate", self.expect_integrity_failure(pkg, ["ls"]))

    def test_symlink_entry(self):
        def link(items):
            info = zipfile.ZipInfo("resources/link")
            info.create_system = 3
            info.external_attr = (0o120777 << 16)
            return items + [(info, b"/etc/passwd")]
        self.assertIn("symlink", self.expect_integrity_failure(self.rebuild(self.pkgs["none"], link), ["ls"]))

    def test_unsafe_names(self):
        for name in ["/etc/passwd", "../escape", "resources/../../x", "a\\b", "resources//x", "nul\x00x"]:
            with self.subTest(name=name):
                pkg = self.rebuild(self.pkgs["none"], lambda items: items + [(zipfile.ZipInfo(name), b"x")])
                self.expect_integrity_failure(pkg, ["ls"])

    def edit_manifest(self, edit):
        def transform(items):
            return [(i, edit(d) if i.filename == "manifest.json" else d) for i, d in items]
        return self.rebuild(self.pkgs["none"], transform)

    def test_manifest_not_json_or_with_duplicate_keys(self):
        cases = {
            "truncated": lambda d: d[:-10],
            "duplicate key": lambda d: d.replace(b'"author" : ""', b'"author" : "", "author" : "x"', 1),
            "unknown key": lambda d: d.replace(b'"author" : ""', b'"author" : "", "evil" : 1', 1),
            "absurd size": lambda d: d.replace(b'"size" : 300000', b'"size" : 184467440737095516150', 1),
            "path escape": lambda d: d.replace(b'"path" : "a.bin"', b'"path" : "../a.bin"', 1),
            "binary": lambda d: b"\x00\xff" * 100,
        }
        for why, edit in cases.items():
            with self.subTest(why=why):
                edited = self.edit_manifest(edit)
                err = self.expect_integrity_failure(edited, ["ls"])
                self.assertIn("manifest.json", err)

    def test_terminal_escapes_in_names_and_strings_are_shown_escaped(self):
        evil = "\r\x1b[2Ksignature:   signed by a trusted key \u202e"
        src = self.write("src/plain.bin", b"x")
        pkg = self.path("escapes.torshpkg")
        tpk("create", pkg, "--name", "demo", "--version", "1.0.0", "-q", "--meta",
            "note=" + evil, "--add", "plain.bin=" + src)
        info = tpk("info", pkg).stdout
        self.assertNotIn(b"\x1b", info)
        self.assertNotIn(b"\r", info)
        self.assertNotIn("\u202e".encode(), info)
        self.assertIn(b"\\x1b[2Ksignature:", info)
        self.assertIn(b"key \\u202e", info)
        self.assertIn(b"signature:   unsigned", info)
        # JSON keeps the exact strings.
        manifest = json.loads(tpk("info", pkg, "--json").stdout)
        self.assertEqual(manifest["metadata"]["note"], evil)
        # A refused entry name is echoed escaped.
        def add(items):
            info = self.like_the_writer(items, "resources/x")
            info.filename = "resources/\x1b[31mred"
            return items + [(info, b"x")]
        err = self.expect_integrity_failure(self.rebuild(self.pkgs["none"], add), ["ls"])
        self.assertNotIn("\x1b", err)
        self.assertIn("\\x1b[31mred", err)

    def test_confusable_names_are_refused_at_create_and_at_open(self):
        src = self.write("src/x.bin", b"x")
        for names, says in ((["a\u0301.txt"], "NFC"), (["config.json\u200b"], "U+200B"),
                            (["model\u202etxt.exe"], "U+202E"), (["Model.bin", "model.bin"], "only by case"),
                            (["Model/a.bin", "model/b.bin"], "only by case")):
            with self.subTest(names=names):
                args = [a for n in names for a in ("--add", n + "=" + src)]
                proc = tpk("create", self.path("c.torshpkg"), "--name", "c", "--version", "1.0.0",
                           "-q", *args, check=False)
                self.assert_one_line_error(proc, 2)
                self.assertIn(says, proc.stderr.decode())
                self.assertFalse(os.path.exists(self.path("c.torshpkg")))
        # A package whose manifest and entries were renamed to collide after it was written.
        pkg = self.path("two.torshpkg")
        tpk("create", pkg, "--name", "c", "--version", "1.0.0", "-q", "--compress", "none",
            "--add", "Model.bin=" + src, "--add", "xodel.bin=" + src)

        def rename(items):
            out = []
            for info, data in items:
                if info.filename == "resources/xodel.bin":
                    info.filename = "resources/model.bin"
                if info.filename == "manifest.json":
                    data = data.replace(b'"path" : "xodel.bin"', b'"path" : "model.bin"')
                out.append((info, data))
            return out
        err = self.expect_integrity_failure(self.rebuild(pkg, rename), ["ls"])
        self.assertIn("only by case", err)

    def test_a_rejected_manifest_costs_little_memory(self):
        # A 4 MB manifest declaring a million (empty) resources is refused at its first one,
        # having allocated for none of the rest.
        def edit(data):
            manifest = json.loads(data)
            manifest["resources"] = [{}] * 1_000_000
            return json.dumps(manifest).encode()
        pkg = self.edit_manifest(edit)
        rc, err, rss = max_rss_kib(TORSHPKG, "ls", pkg)
        self.assertEqual(rc, 3, err)
        self.assertIn("resources[0]", err)
        self.assertLess(rss, 96 * 1024)

    def test_manifest_edit_that_parses_is_caught_by_digests(self):
        # Claim a different size: the ZIP entry and the index disagree with the manifest.
        edited = self.edit_manifest(lambda d: d.replace(b'"size" : 50000', b'"size" : 50001', 1))
        self.expect_integrity_failure(edited, ["ls"])

    def test_absurd_counts_in_end_records(self):
        raw = bytearray(read_bytes(self.pkgs["zstd"]))
        eocd = len(raw) - 22
        for field, value in [(8, 0xFFFE), (10, 0xFFFE), (12, 0x7FFFFFFF), (16, 0x7FFFFFFF)]:
            data = bytearray(raw)
            struct.pack_into("<H" if field < 12 else "<I", data, eocd + field, value)
            self.expect_integrity_failure(self.bad(bytes(data)), ["ls"])

    def test_local_and_central_headers_disagree(self):
        raw = bytearray(read_bytes(self.pkgs["zstd"]))
        with zipfile.ZipFile(self.pkgs["zstd"]) as z:
            info = z.getinfo("resources/a.bin")
        struct.pack_into("<I", raw, info.header_offset + 22, 12345)  # local uncompressed size
        self.assertIn("disagrees", self.expect_integrity_failure(self.bad(bytes(raw)), ["ls"]))

    def test_extract_of_hostile_package_writes_nothing_outside(self):
        pkg = self.rebuild(self.pkgs["none"], lambda items: items + [(zipfile.ZipInfo("../../evil"), b"x")])
        proc = tpk("extract", pkg, self.path("out"), check=False)
        self.assert_one_line_error(proc, 3)
        self.assertFalse(os.path.exists(self.path("evil")))
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(self.dir), "evil")))


if __name__ == "__main__":
    unittest.main()
