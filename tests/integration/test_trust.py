"""Signing and verification through the CLI, and key interoperability with the openssl CLI."""
import json
import os
import shutil
import stat
import sys
import unittest
import zipfile

sys.path.insert(0, os.path.dirname(__file__))
from helpers import TempDirTest, read_bytes, run, text_bytes, tpk  # noqa: E402

PAYLOAD_TYPE = "application/vnd.torshpkg.manifest.v1+json"


def pae(body):
    t = PAYLOAD_TYPE.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


class Trust(TempDirTest):
    def setUp(self):
        super().setUp()
        self.write("w.bin", text_bytes(200_000, 1))
        os.makedirs(self.path("trusted"))

    def create(self, name, *extra):
        pkg = self.path(name)
        tpk("create", pkg, "--name", "demo", "--version", "1.0.0", "-q", "--chunk-size", "16K",
            "--add", "w.bin=" + self.path("w.bin"), *extra)
        return pkg

    def keygen(self, prefix, trusted=False):
        tpk("keygen", self.path(prefix))
        if trusted:
            shutil.copy(self.path(prefix + ".pub"), self.path("trusted"))
        return self.path(prefix + ".key")

    def verify(self, pkg, *extra, check=True):
        return tpk("verify", pkg, "--trusted-keys", self.path("trusted"), *extra, check=check)

    def test_keygen_files(self):
        out = tpk("keygen", self.path("k")).stdout.decode()
        self.assertEqual(stat.S_IMODE(os.stat(self.path("k.key")).st_mode), 0o600)
        self.assertIn("BEGIN PRIVATE KEY", read_bytes(self.path("k.key")).decode())
        self.assertIn("BEGIN PUBLIC KEY", read_bytes(self.path("k.pub")).decode())
        self.assertIn("key id ", out)
        self.assert_one_line_error(tpk("keygen", self.path("k"), check=False), 2)

    def test_sign_at_create_and_verify(self):
        key = self.keygen("k", trusted=True)
        pkg = self.create("p.torshpkg", "--sign-key", key)
        out = self.verify(pkg, "--full").stdout.decode()
        self.assertIn("signed by trusted key", out)
        info = json.loads(tpk("info", "--json", pkg).stdout)
        self.assertTrue(info["signed"])
        self.assertEqual(len(info["signer_key_ids"]), 1)
        self.assertIn(info["signer_key_ids"][0], out)

    def test_failure_reasons_exit_3_with_one_line(self):
        trusted = self.keygen("trusted", trusted=True)
        stranger = self.keygen("stranger")
        pkg = self.create("p.torshpkg")
        self.assertIn(b"unsigned", self.verify(pkg, check=False).stderr)
        self.assert_one_line_error(self.verify(pkg, check=False), 3)
        tpk("sign", pkg, "--key", stranger)
        proc = self.verify(pkg, check=False)
        self.assert_one_line_error(proc, 3)
        self.assertIn(b"unknown keys", proc.stderr)
        tpk("sign", pkg, "--key", trusted)
        self.verify(pkg)
        # Without --trusted-keys, verify reports the signers but checks no signature.
        self.assertIn(b"not checked", tpk("verify", pkg).stdout)

    def rewrite(self, src, dst, edit):
        with zipfile.ZipFile(src) as z:
            items = [(i, z.read(i.filename)) for i in z.infolist()]
        with zipfile.ZipFile(dst, "w") as z:
            for info, data in edit(items):
                z.writestr(info, data)
        return dst

    def test_tampering_is_caught(self):
        key = self.keygen("k", trusted=True)
        pkg = self.create("p.torshpkg", "--compress", "none", "--sign-key", key)
        cases = {
            "strip signature": lambda items: [(i, d) for i, d in items if "signatures" not in i.filename],
            "edit manifest (description)": lambda items: [
                (i, d.replace(b'"description" : ""', b'"description" : "x"') if i.filename == "manifest.json" else d)
                for i, d in items],
            "edit manifest (license)": lambda items: [
                (i, d.replace(b'"license" : ""', b'"license" : "MIT"') if i.filename == "manifest.json" else d)
                for i, d in items],
            "damage signature": lambda items: [
                (i, d.replace(b'"sig" : "', b'"sig" : "AAAA') if "signatures" in i.filename else d)
                for i, d in items],
            "duplicate signature": lambda items: items + [x for x in items if "signatures" in x[0].filename],
            "extra entry": lambda items: items + [(zipfile.ZipInfo("resources/evil.py"), b"import os")],
            "truncated chunk table": lambda items: [
                (i, d[:-36] if i.filename == ".torshpkg/index/0" else d) for i, d in items],
            "chunk table of another size": lambda items: [
                (i, d + d[-36:] if i.filename == ".torshpkg/index/0" else d) for i, d in items],
        }
        import warnings
        for why, edit in cases.items():
            with self.subTest(why=why):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    bad = self.rewrite(pkg, self.path("bad.torshpkg"), edit)
                proc = self.verify(bad, check=False)
                self.assert_one_line_error(proc, 3)

    def test_openssl_keys_sign_and_openssl_reads_ours(self):
        run("openssl", "genpkey", "-algorithm", "ed25519", "-out", self.path("ossl.key"))
        run("openssl", "pkey", "-in", self.path("ossl.key"), "-pubout", "-out", self.path("trusted", "ossl.pub"))
        pkg = self.create("p.torshpkg", "--sign-key", self.path("ossl.key"))
        self.verify(pkg, "--full")
        # Our key files are read by openssl, and openssl verifies our signature over the PAE.
        ours = self.keygen("ours")
        pub_from_openssl = run("openssl", "pkey", "-in", ours, "-pubout").stdout
        self.assertEqual(pub_from_openssl, read_bytes(self.path("ours.pub")))
        pkg2 = self.create("q.torshpkg", "--sign-key", ours)
        with zipfile.ZipFile(pkg2) as z:
            manifest = z.read("manifest.json")
            sig_name = [n for n in z.namelist() if n.startswith(".torshpkg/signatures/")][0]
            envelope = json.loads(z.read(sig_name))
        import base64
        self.write("pae.bin", pae(manifest))
        self.write("sig.bin", base64.b64decode(envelope["signatures"][0]["sig"]))
        run("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", self.path("ours.pub"), "-rawin",
            "-in", self.path("pae.bin"), "-sigfile", self.path("sig.bin"))
        # The key id is the SHA-256 of the public key's DER encoding.
        der = run("openssl", "pkey", "-pubin", "-in", self.path("ours.pub"), "-outform", "DER").stdout
        import hashlib
        self.assertEqual(envelope["signatures"][0]["keyid"], hashlib.sha256(der).hexdigest())

    def test_signing_keeps_the_package_readable_by_peers(self):
        key = self.keygen("k", trusted=True)
        pkg = self.create("p.torshpkg", "--compress", "zstd")
        tpk("sign", pkg, "--key", key)
        run("bsdtar", "-xf", pkg, "-C", self.dir)
        self.assertEqual(read_bytes(self.path("resources", "w.bin")), text_bytes(200_000, 1))
        self.verify(pkg, "--full")


if __name__ == "__main__":
    unittest.main()
