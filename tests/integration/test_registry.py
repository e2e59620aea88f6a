"""torshpkg push and pull against a real OCI registry (Debian's docker-registry, the CNCF
Distribution registry) started on loopback with a temporary config: round trips by tag and by
digest, chunked uploads, blobs not uploaded twice, --install into the store, a missing blob, a
registry serving wrong bytes, and basic authentication from a docker config.json."""
import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from helpers import TORSHPKG, TempDirTest, read_bytes, tpk  # noqa: E402

REGISTRY = shutil.which("docker-registry")
HTPASSWD = shutil.which("htpasswd")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    def __init__(self, root, auth=None):
        self.root = root
        self.port = free_port()
        self.data = os.path.join(root, "data")
        os.makedirs(self.data)
        lines = ["version: 0.1", "log:", "  level: warn", "storage:", "  filesystem:",
                 f"    rootdirectory: {self.data}", "  delete:", "    enabled: true", "http:",
                 f"  addr: 127.0.0.1:{self.port}", "  secret: test-secret"]
        if auth:
            lines += ["auth:", "  htpasswd:", "    realm: test", f"    path: {auth}"]
        config = os.path.join(root, "config.yml")
        with open(config, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log = open(os.path.join(root, "registry.log"), "wb")
        self.proc = subprocess.Popen([REGISTRY, "serve", config], stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=1)
                return
            except urllib.error.HTTPError:
                return  # 401: up, and asking for credentials
            except OSError:
                time.sleep(0.1)
        raise AssertionError("docker-registry did not start")

    def ref(self, path):
        return f"localhost:{self.port}/{path}"

    def blob_file(self, digest):
        hexd = digest.split(":")[1]
        return os.path.join(self.data, "docker", "registry", "v2", "blobs", "sha256", hexd[:2], hexd,
                            "data")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()


@unittest.skipUnless(REGISTRY, "docker-registry is not installed (scripts/setup.sh --with-tests)")
class Registries(TempDirTest):
    def setUp(self):
        super().setUp()
        self.registry = Registry(self.path("registry"))
        self.write("w.bin", os.urandom(300_000))
        tpk("keygen", self.path("k"))
        os.makedirs(self.path("trusted"))
        os.rename(self.path("k.pub"), self.path("trusted", "k.pub"))
        self.pkg = self.path("m.torshpkg")
        tpk("create", self.pkg, "--name", "m", "--version", "1.2.0", "-q", "--compress", "none",
            "--add", "w.bin=" + self.path("w.bin"), "--sign-key", self.path("k.key"))

    def tearDown(self):
        self.registry.stop()
        super().tearDown()

    def test_round_trip_by_tag_and_digest_with_chunked_upload(self):
        ref = self.registry.ref("models/m:1.2.0")
        out = tpk("push", self.pkg, ref, "--chunk-size", "64K").stdout.decode()
        digest = out.split("@")[1].split()[0]
        self.assertTrue(digest.startswith("sha256:"))
        self.assertIn("blob already there", tpk("push", self.pkg, self.registry.ref("models/m:latest")).stdout.decode())
        tpk("pull", ref, "-o", self.path("a.torshpkg"))
        self.assertEqual(read_bytes(self.path("a.torshpkg")), read_bytes(self.pkg))
        tpk("pull", self.registry.ref("models/m@" + digest), "-o", self.path("b.torshpkg"))
        self.assertEqual(read_bytes(self.path("b.torshpkg")), read_bytes(self.pkg))
        # The manifest, as any OCI client sees it.
        req = urllib.request.Request(f"http://127.0.0.1:{self.registry.port}/v2/models/m/manifests/1.2.0",
                                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        body = urllib.request.urlopen(req).read()
        self.assertEqual("sha256:" + hashlib.sha256(body).hexdigest(), digest)
        manifest = json.loads(body)
        self.assertEqual(manifest["layers"][0]["mediaType"], "application/vnd.torshpkg.package.v1+zip")
        self.assertEqual(manifest["layers"][0]["digest"],
                         "sha256:" + hashlib.sha256(read_bytes(self.pkg)).hexdigest())
        self.assertEqual(manifest["annotations"]["dev.torshpkg.name"], "m")
        self.assertEqual(manifest["annotations"]["dev.torshpkg.version"], "1.2.0")
        self.assertEqual(len(manifest["annotations"]["dev.torshpkg.signers"]), 64)
        # A digest that is not the manifest's: refused.
        wrong = self.registry.ref("models/m@sha256:" + "0" * 64)
        proc = tpk("pull", wrong, "-o", self.path("c.torshpkg"), check=False)
        self.assert_one_line_error(proc)
        self.assertFalse(os.path.exists(self.path("c.torshpkg")))

    def test_pull_install_into_the_store(self):
        tpk("push", self.pkg, self.registry.ref("models/m:1.2.0"), "-q")
        store = self.path("store")
        out = tpk("pull", self.registry.ref("models/m:1.2.0"), "--install", "--store", store,
                  "--trusted-keys", self.path("trusted")).stdout.decode()
        self.assertIn("installed m@1.2.0", out)
        listed = json.loads(tpk("list", "--store", store, "--json").stdout)["packages"]
        self.assertEqual([(p["name"], p["version"]) for p in listed], [("m", "1.2.0")])
        self.assertEqual(os.listdir(os.path.join(store, "tmp")), [])

    def test_missing_blob_and_wrong_bytes_are_caught(self):
        out = tpk("push", self.pkg, self.registry.ref("models/m:1.2.0")).stdout.decode()
        blob = self.registry.blob_file("sha256:" + hashlib.sha256(read_bytes(self.pkg)).hexdigest())
        data = bytearray(read_bytes(blob))
        data[1000] ^= 0xFF  # the registry now serves other bytes under the digest
        with open(blob, "wb") as f:
            f.write(data)
        proc = tpk("pull", self.registry.ref("models/m:1.2.0"), "-o", self.path("x.torshpkg"), check=False)
        self.assert_one_line_error(proc, 3)
        self.assertIn(b"digest", proc.stderr)
        self.assertFalse(os.path.exists(self.path("x.torshpkg")))
        self.assertEqual([f for f in os.listdir(self.dir) if f.startswith(".torshpkg-pull")], [])
        os.unlink(blob)
        proc = tpk("pull", self.registry.ref("models/m:1.2.0"), "-o", self.path("x.torshpkg"), check=False)
        self.assert_one_line_error(proc, 1)
        self.assertTrue(out)
        proc = tpk("pull", self.registry.ref("models/none:1"), "-o", self.path("x.torshpkg"), check=False)
        self.assert_one_line_error(proc, 1)
        self.assertIn(b"HTTP 404", proc.stderr)


    def test_replicate_between_two_registries_and_within_one(self):
        other = Registry(self.path("other"))
        try:
            digest = tpk("push", self.pkg, self.registry.ref("models/m:1.2.0")).stdout.decode().split("@")[1].split()[0]
            tpk("push", self.pkg, self.registry.ref("models/m:stable"), "-q")
            out = tpk("replicate", self.registry.ref("models/m:1.2.0"), other.ref("mirror/m")).stdout.decode()
            self.assertIn(f"mirror/m:1.2.0@{digest}", out)  # same manifest digest on both sides
            self.assertIn("2 blobs copied", out)
            again = tpk("replicate", self.registry.ref("models/m:1.2.0"), other.ref("mirror/m")).stdout.decode()
            self.assertIn("0 blobs copied", again)  # idempotent
            self.assertIn("2 already there", again)
            tpk("pull", other.ref("mirror/m@" + digest), "-o", self.path("r.torshpkg"))
            self.assertEqual(read_bytes(self.path("r.torshpkg")), read_bytes(self.pkg))
            # Within one registry, blobs are mounted across repositories, not copied.
            out = tpk("replicate", self.registry.ref("models/m"), self.registry.ref("team/m"),
                      "--all-tags").stdout.decode()
            self.assertIn("team/m:1.2.0@", out)
            self.assertIn("team/m:stable@", out)
            self.assertIn("0 blobs copied", out)
            self.assertIn("2 mounted", out)
            # A source that serves wrong bytes is caught before anything reaches the target.
            blob = self.registry.blob_file("sha256:" + hashlib.sha256(read_bytes(self.pkg)).hexdigest())
            data = bytearray(read_bytes(blob))
            data[-10] ^= 1
            with open(blob, "wb") as f:
                f.write(data)
            proc = tpk("replicate", self.registry.ref("models/m:1.2.0"), other.ref("fresh/m"), check=False)
            self.assert_one_line_error(proc, 3)
            proc = tpk("pull", other.ref("fresh/m:1.2.0"), "-o", self.path("f.torshpkg"), check=False)
            self.assertIn(b"HTTP 404", proc.stderr)
        finally:
            other.stop()


    def test_registry_mirror_with_wrong_bytes_is_skipped_for_the_origin(self):
        mirror = Registry(self.path("mirror"))
        try:
            tpk("push", self.pkg, self.registry.ref("models/m:1.2.0"), "-q")
            tpk("replicate", self.registry.ref("models/m:1.2.0"), mirror.ref("models/m"))
            proc = tpk("pull", self.registry.ref("models/m:1.2.0"), "-o", self.path("a.torshpkg"),
                       "--mirror", f"localhost:{mirror.port}")
            self.assertEqual(proc.stderr, b"")  # the mirror served it
            blob = mirror.blob_file("sha256:" + hashlib.sha256(read_bytes(self.pkg)).hexdigest())
            data = bytearray(read_bytes(blob))
            data[500] ^= 1
            with open(blob, "wb") as f:
                f.write(data)
            proc = tpk("pull", self.registry.ref("models/m:1.2.0"), "-o", self.path("b.torshpkg"),
                       "--mirror", f"localhost:{mirror.port}")
            self.assertEqual(read_bytes(self.path("b.torshpkg")), read_bytes(self.pkg))
            self.assertIn(f"warning: localhost:{mirror.port}".encode(), proc.stderr)
            self.assertIn(b"digest", proc.stderr)
        finally:
            mirror.stop()

    def version(self, version, name="m"):
        pkg = self.path(f"{name}-{version}.torshpkg")
        tpk("create", pkg, "--name", name, "--version", version, "-q", "--compress", "none",
            "--add", "w.bin=" + self.path("w.bin"), "--sign-key", self.path("k.key"), "--force")
        return pkg

    def test_a_mirror_serving_another_version_for_a_tag_is_skipped(self):
        mirror = Registry(self.path("mirror"))
        try:
            tpk("push", self.pkg, self.registry.ref("models/m:1.2.0"), "-q")
            # The mirror's 1.2.0 tag holds an older package a trusted key signed.
            tpk("push", self.version("1.1.0"), mirror.ref("models/m:1.2.0"), "-q")
            proc = tpk("pull", self.registry.ref("models/m:1.2.0"), "-o", self.path("a.torshpkg"),
                       "--mirror", f"localhost:{mirror.port}")
            self.assertEqual(read_bytes(self.path("a.torshpkg")), read_bytes(self.pkg))
            self.assertIn(f"warning: localhost:{mirror.port}".encode(), proc.stderr)
            self.assertIn(b"served m@1.1.0 for the tag 1.2.0", proc.stderr)
            # Alone, the mirror is refused as for wrong bytes.
            proc = tpk("pull", mirror.ref("models/m:1.2.0"), "-o", self.path("b.torshpkg"),
                       check=False)
            self.assert_one_line_error(proc, 3)
            self.assertFalse(os.path.exists(self.path("b.torshpkg")))
        finally:
            mirror.stop()

    def test_a_tag_that_rolls_back_or_changes_package_is_refused_by_the_store(self):
        store = self.path("store")
        latest = self.registry.ref("models/m:latest")

        def install(*extra):
            return tpk("pull", latest, "--install", "--store", store, "--trusted-keys",
                       self.path("trusted"), *extra, check=False)
        tpk("push", self.pkg, latest, "-q")  # m@1.2.0
        self.assertEqual(install().returncode, 0)
        tpk("push", self.version("1.1.0"), latest, "-q")
        proc = install()
        self.assert_one_line_error(proc, 3)
        self.assertIn(b"older than the 1.2.0", proc.stderr)
        self.assertIn(b"--allow-downgrade", proc.stderr)
        listed = json.loads(tpk("list", "--store", store, "--json").stdout)["packages"]
        self.assertEqual([p["version"] for p in listed], ["1.2.0"])  # nothing installed
        tpk("push", self.version("9.0.0", name="other"), latest, "-q")
        proc = install()
        self.assert_one_line_error(proc, 3)
        self.assertIn(b"where it gave the package m before", proc.stderr)
        tpk("push", self.version("1.1.0"), latest, "-q")
        self.assertEqual(install("--allow-downgrade").returncode, 0)  # told to
        tpk("push", self.version("1.3.0"), latest, "-q")
        self.assertEqual(install().returncode, 0)  # forward again


@unittest.skipUnless(REGISTRY and HTPASSWD, "docker-registry and htpasswd (apache2-utils) needed")
class Authenticated(TempDirTest):
    def test_basic_credentials_from_a_docker_config(self):
        htpasswd = self.path("htpasswd")
        subprocess.run([HTPASSWD, "-Bbc", htpasswd, "alice", "s3cret"], check=True, capture_output=True)
        registry = Registry(self.path("registry"), auth=htpasswd)
        try:
            self.write("w.bin", b"x" * 5000)
            pkg = self.path("m.torshpkg")
            tpk("create", pkg, "--name", "m", "--version", "1.0.0", "-q", "--add", "w.bin=" + self.path("w.bin"))
            ref = registry.ref("team/m:1.0.0")
            proc = tpk("push", pkg, ref, "--docker-config", self.path("none.json"), check=False)
            self.assert_one_line_error(proc, 1)
            self.assertIn(b"credentials", proc.stderr)
            auth = base64.b64encode(b"alice:s3cret").decode()
            config = self.write("docker/config.json", json.dumps(
                {"auths": {f"localhost:{registry.port}": {"auth": auth}}}).encode())
            tpk("push", pkg, ref, "--docker-config", config, "-q")
            # DOCKER_CONFIG names the folder, as for docker.
            proc = subprocess.run([TORSHPKG, "pull", ref, "-o", self.path("p.torshpkg")],
                                  env={**os.environ, "DOCKER_CONFIG": os.path.dirname(config)},
                                  capture_output=True)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertEqual(read_bytes(self.path("p.torshpkg")), read_bytes(pkg))
        finally:
            registry.stop()


if __name__ == "__main__":
    unittest.main()
