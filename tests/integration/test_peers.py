"""ZIP compatibility with real peers, and format conformance checked by an independent reader."""
import json
import os
import subprocess
import sys
import unittest
import zipfile

sys.path.insert(0, os.path.dirname(__file__))
import format_reader  # noqa: E402
from helpers import CODECS, TempDirTest, run, tpk  # noqa: E402

# Which peers extract which codecs (unzip and zipfile know neither zstd nor xz).
PEERS = {
    "bsdtar": CODECS,
    "7z": CODECS,
    "7zz": CODECS,
    "unzip": ["none", "gzip"],
    "zipfile": ["none", "gzip"],
}


def extract_with(peer, pkg, dest):
    os.makedirs(dest)
    if peer == "bsdtar":
        run("bsdtar", "-xf", pkg, "-C", dest)
    elif peer in ("7z", "7zz"):
        run(peer, "x", "-y", "-o" + dest, pkg)
    elif peer == "unzip":
        run("unzip", "-q", pkg, "-d", dest)
    elif peer == "zipfile":
        with zipfile.ZipFile(pkg) as z:
            z.extractall(dest)


def entry_data(pkg, name):
    """The raw (compressed) data of one ZIP entry, located through its local header."""
    with zipfile.ZipFile(pkg) as z:
        info = z.getinfo(name)
    with open(pkg, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
        f.seek(info.header_offset + 30 + name_len + extra_len)
        return f.read(info.compress_size)


class Peers(TempDirTest):
    def setUp(self):
        super().setUp()
        self.files = self.make_model()
        self.packages = {}
        for codec in CODECS:
            pkg = self.path(f"{codec}.torshpkg")
            tpk("create", pkg, "--name", "demo", "--version", "1.0.0", "-q", "--compress", codec,
                "--chunk-size", "256K", "--add-dir", "=" + self.path("model"),
                "--dependency", "base:^1")
            self.packages[codec] = pkg

    def test_peers_extract_every_resource_bit_exact(self):
        for peer, codecs in PEERS.items():
            for codec in codecs:
                with self.subTest(peer=peer, codec=codec):
                    dest = self.path(f"x-{peer}-{codec}")
                    extract_with(peer, self.packages[codec], dest)
                    for rel, data in self.files.items():
                        with open(os.path.join(dest, "resources", rel), "rb") as f:
                            self.assertEqual(f.read(), data, rel)
                    ours = tpk("cat", self.packages[codec], "manifest.json").stdout
                    with open(os.path.join(dest, "manifest.json"), "rb") as f:
                        self.assertEqual(f.read(), ours)

    def test_peers_integrity_checks_pass(self):
        for codec in CODECS:
            with self.subTest(codec=codec):
                run("7zz", "t", self.packages[codec])
                run("bsdtar", "-tf", self.packages[codec])
                if codec in ("none", "gzip"):
                    run("unzip", "-tq", self.packages[codec])
                    with zipfile.ZipFile(self.packages[codec]) as z:
                        self.assertIsNone(z.testzip())

    def test_unsupported_codecs_are_reported_not_garbled_by_unzip(self):
        proc = subprocess.run(["unzip", "-tq", self.packages["zstd"]], capture_output=True)
        self.assertNotEqual(proc.returncode, 0)

    def test_independent_reader_accepts_every_codec(self):
        for codec in CODECS:
            with self.subTest(codec=codec):
                tree = format_reader.check_package(self.packages[codec], self.files)
                listed = tpk("ls", self.packages[codec]).stdout.decode().splitlines()
                self.assertEqual(sorted(tree), listed)

    def test_independent_reader_accepts_version_2_with_executables(self):
        script = self.write("model/bin/run.sh", b"#!/bin/sh\necho ok\n")
        os.chmod(script, 0o755)
        pkg = self.path("exec.torshpkg")
        tpk("create", pkg, "--name", "demo", "--version", "1.0.0", "-q", "--add-dir",
            "=" + self.path("model"))
        tree = format_reader.check_package(pkg, {**self.files, "bin/run.sh": b"#!/bin/sh\necho ok\n"})
        manifest = json.loads(tree["manifest.json"])
        self.assertEqual(manifest["format_version"], 2)
        self.assertEqual([r["path"] for r in manifest["resources"] if r.get("executable")],
                         ["bin/run.sh"])
        # Without an executable file the package stays version 1.
        self.assertEqual(json.loads(format_reader.check_package(self.packages["zstd"])["manifest.json"])
                         ["format_version"], 1)

    def test_xz_entry_is_one_stream_that_xz_itself_verifies(self):
        stream = entry_data(self.packages["xz"], "resources/tokenizer/vocab.txt")
        out = run("xz", "-d", "-c", input_bytes=stream).stdout
        self.assertEqual(out, self.files["tokenizer/vocab.txt"])
        xz_file = self.write("vocab.txt.xz", stream)
        blocks = run("xz", "--robot", "-lvv", xz_file).stdout.decode()
        self.assertEqual(sum(1 for line in blocks.splitlines() if line.startswith("block\t")), 3)

    def test_zstd_entry_is_a_valid_multi_frame_stream(self):
        stream = entry_data(self.packages["zstd"], "resources/model.safetensors")
        self.assertEqual(run("zstd", "-d", "-c", input_bytes=stream).stdout,
                         self.files["model.safetensors"])


if __name__ == "__main__":
    unittest.main()
