"""Encrypted packages through the CLI: round trips, wrong secrets, what other tools see."""
import json
import os
import struct
import sys
import unittest
import zipfile

sys.path.insert(0, os.path.dirname(__file__))
from helpers import TempDirTest, read_bytes, run, text_bytes, tpk  # noqa: E402


class Encryption(TempDirTest):
    def setUp(self):
        super().setUp()
        self.data = text_bytes(300_000, 3)
        self.write("w.txt", self.data)
        self.write("pw", b"correct horse battery staple\n")
        self.write("wrong", b"not it\n")
        self.write("key.bin", os.urandom(32))
        tpk("keygen", self.path("k"))
        os.makedirs(self.path("trusted"))
        os.link(self.path("k.pub"), self.path("trusted", "k.pub"))

    def create(self, name, *extra):
        pkg = self.path(name)
        tpk("create", pkg, "--name", "secret-model", "--version", "1.0.0", "-q", "--chunk-size", "16K",
            "--add", "w.txt=" + self.path("w.txt"), *extra)
        return pkg

    def test_signed_encrypted_compressed_round_trip(self):
        for cipher in ("aes-256-gcm", "chacha20-poly1305"):
            with self.subTest(cipher=cipher):
                pkg = self.create(f"{cipher}.torshpkg", "--compress", "zstd", "--encrypt", cipher,
                                  "--password-file", self.path("pw"), "--key-file", self.path("key.bin"),
                                  "--sign-key", self.path("k.key"))
                for secret in (["--password-file", self.path("pw")], ["--key-file", self.path("key.bin")]):
                    self.assertEqual(tpk("cat", pkg, "resources/w.txt", *secret).stdout, self.data)
                    got = tpk("cat", pkg, "resources/w.txt", "--offset", "100000", "--length", "5000",
                              *secret).stdout
                    self.assertEqual(got, self.data[100000:105000])
                    tpk("verify", pkg, "--full", "--trusted-keys", self.path("trusted"), *secret)
                out = self.path(f"x-{cipher}")
                tpk("extract", pkg, out, "-q", "--password-file", self.path("pw"))
                self.assertEqual(read_bytes(os.path.join(out, "resources", "w.txt")), self.data)

    def test_wrong_or_missing_secret_exits_4_and_writes_nothing(self):
        pkg = self.create("p.torshpkg", "--encrypt", "aes-256-gcm", "--password-file", self.path("pw"))
        proc = tpk("cat", pkg, "resources/w.txt", "--password-file", self.path("wrong"), check=False)
        self.assert_one_line_error(proc, 4)
        self.assertEqual(proc.stdout, b"")
        proc = tpk("cat", pkg, "resources/w.txt", check=False)
        self.assert_one_line_error(proc, 4)
        self.assertEqual(proc.stdout, b"")
        proc = tpk("extract", pkg, self.path("out"), "--key-file", self.path("key.bin"), check=False)
        self.assert_one_line_error(proc, 4)
        self.assertFalse(os.path.exists(self.path("out", "resources", "w.txt")))
        # Listing and integrity checks need no key.
        self.assertIn(b"resources/w.txt", tpk("ls", pkg).stdout)
        self.assertIn(b"not decrypted", tpk("verify", "--full", pkg).stdout)

    def test_other_tools_see_only_ciphertext(self):
        pkg = self.create("p.torshpkg", "--compress", "none", "--encrypt", "aes-256-gcm",
                          "--password-file", self.path("pw"))
        run("bsdtar", "-xf", pkg, "-C", self.dir)
        stored = read_bytes(self.path("resources", "w.txt"))
        self.assertEqual(len(stored), len(self.data) + 16 * 19)  # one tag per 16 KiB chunk
        self.assertNotIn(self.data[:64], stored)
        self.assertNotIn(self.data[:64], read_bytes(pkg))
        self.assertEqual(tpk("cat", pkg, "resources/w.txt", "--password-file", self.path("pw")).stdout,
                         self.data)

    def test_chunks_transplanted_between_packages_fail(self):
        a = self.create("a.torshpkg", "--compress", "none", "--encrypt", "aes-256-gcm",
                        "--password-file", self.path("pw"))
        b = self.create("b.torshpkg", "--compress", "none", "--encrypt", "aes-256-gcm",
                        "--password-file", self.path("pw"))
        raw_a, raw_b = bytearray(read_bytes(a)), read_bytes(b)

        def data_offset(raw, pkg):
            with zipfile.ZipFile(pkg) as z:
                info = z.getinfo("resources/w.txt")
            n, e = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
            return info.header_offset + 30 + n + e

        oa, ob = data_offset(raw_a, a), data_offset(raw_b, b)
        raw_a[oa:oa + 16400] = raw_b[ob:ob + 16400]
        bad = self.write("bad.torshpkg", bytes(raw_a))
        proc = tpk("cat", bad, "resources/w.txt", "--password-file", self.path("pw"), check=False)
        self.assert_one_line_error(proc, 3)
        self.assertIn(b"chunk 0 hash mismatch", proc.stderr)

    def test_per_resource_choice(self):
        self.write("config.json", b'{"a": 1}')
        pkg = self.create("p.torshpkg", "--add", "config.json=" + self.path("config.json"),
                          "--encrypt-for", "*.txt=chacha20-poly1305", "--password-file", self.path("pw"))
        info = json.loads(tpk("info", "--json", pkg).stdout)
        ciphers = {r["path"]: r["encryption"] for r in info["resources"]}
        self.assertEqual(ciphers, {"w.txt": "chacha20-poly1305", "config.json": "none"})
        self.assertEqual(tpk("cat", pkg, "resources/config.json").stdout, b'{"a": 1}')
        self.assert_one_line_error(tpk("cat", pkg, "resources/w.txt", check=False), 4)
        self.assertEqual(tpk("cat", pkg, "resources/w.txt", "--password-file", self.path("pw")).stdout,
                         self.data)
        # And the reverse: everything encrypted except the config.
        pkg2 = self.create("q.torshpkg", "--add", "config.json=" + self.path("config.json"),
                           "--encrypt", "aes-256-gcm", "--encrypt-for", "config.json=none",
                           "--key-file", self.path("key.bin"))
        self.assertEqual(tpk("cat", pkg2, "resources/config.json").stdout, b'{"a": 1}')
        self.assert_one_line_error(tpk("cat", pkg2, "resources/w.txt", check=False), 4)

    def test_usage_errors(self):
        proc = tpk("create", self.path("x.torshpkg"), "--name", "d", "--version", "1.0.0",
                   "--encrypt", "aes-256-gcm", check=False)
        self.assert_one_line_error(proc, 2)
        proc = tpk("create", self.path("x.torshpkg"), "--name", "d", "--version", "1.0.0",
                   "--encrypt", "rot13", "--password-file", self.path("pw"), check=False)
        self.assert_one_line_error(proc, 2)
        self.write("short.key", b"12345")
        proc = tpk("create", self.path("x.torshpkg"), "--name", "d", "--version", "1.0.0",
                   "--encrypt", "aes-256-gcm", "--key-file", self.path("short.key"), check=False)
        self.assert_one_line_error(proc, 2)
        self.assertFalse(os.path.exists(self.path("x.torshpkg")))


if __name__ == "__main__":
    unittest.main()
