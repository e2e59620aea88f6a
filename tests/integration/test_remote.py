"""torshpkg mount of a package on a web server (Debian's nginx on loopback): the package is read
with HTTP range requests and never downloaded whole; the trust policy is the local one; wrong
bytes from the server are caught per chunk; a server that goes away makes reads fail with EIO,
not hang, and the mount serves again once it is back; a server without range support is refused
with one line."""
import base64
import errno
import json
import os
import shutil
import signal
import subprocess
import struct
import sys
import time
import unittest
import zipfile

sys.path.insert(0, os.path.dirname(__file__))
from helpers import NGINX, Nginx, TempDirTest, free_port, read_bytes, tpk  # noqa: E402
from test_daemon import TORSHPKGD, DaemonTest  # noqa: E402
from test_registry import HTPASSWD, REGISTRY, Registry  # noqa: E402

WEIGHTS = 6 << 20


def data_start(pkg, name):
    """Where the entry's data starts in the ZIP file (after its local header)."""
    with zipfile.ZipFile(pkg) as z:
        at = z.getinfo(name).header_offset
    with open(pkg, "rb") as f:
        f.seek(at)
        header = f.read(30)
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return at + 30 + name_len + extra_len


def mounted(path):
    path = os.path.realpath(path)
    with open("/proc/mounts") as f:
        return any(line.split()[1] == path for line in f)


@unittest.skipUnless(NGINX, "nginx is not installed (scripts/setup.sh --with-tests)")
class RemoteMount(TempDirTest):
    def setUp(self):
        super().setUp()
        self.port = free_port()
        os.makedirs(self.path("www", "models"))
        os.makedirs(self.path("www", "bad"))
        self.weights = os.urandom(WEIGHTS)
        self.write("w.bin", self.weights)
        self.write("config.json", b'{"hidden": 64}\n')
        tpk("keygen", self.path("k"))
        os.makedirs(self.path("trusted"))
        shutil.copy(self.path("k.pub"), self.path("trusted"))
        self.pkg = self.path("www", "models", "m.torshpkg")
        tpk("create", self.pkg, "--name", "m", "--version", "1.0.0", "-q", "--compress", "none",
            "--add", "w.bin=" + self.path("w.bin"), "--add", "config.json=" + self.path("config.json"),
            "--sign-key", self.path("k.key"))
        tpk("create", self.path("www", "models", "u.torshpkg"), "--name", "u", "--version", "1.0.0",
            "-q", "--add", "config.json=" + self.path("config.json"))
        # The same package with one byte of the weights' data flipped, 200 KiB into the file.
        data = bytearray(read_bytes(self.pkg))
        data[data_start(self.pkg, "resources/w.bin") + (200 << 10)] ^= 0x01
        self.write("www/bad/m.torshpkg", bytes(data))
        # A mirror (same path, another host) that serves the flipped copy.
        os.makedirs(self.path("liar", "models"))
        self.write("liar/models/m.torshpkg", bytes(data))
        self.liar = free_port()
        root = self.path("www")
        self.nginx = Nginx(self.path("nginx"), f"""
  server {{ listen 127.0.0.1:{self.port}; root {root};
           location /noranges/ {{ alias {root}/models/; max_ranges 0; }} }}
  server {{ listen 127.0.0.1:{self.liar}; root {self.path('liar')};
           access_log {self.path('liar.log')}; }}
""", self.port)
        self.nginx.start()
        self.mounts = []

    def tearDown(self):
        for m in self.mounts:
            if mounted(m):
                subprocess.run(["umount", "-l", m])
        self.nginx.stop()
        super().tearDown()

    def url(self, path="models/m.torshpkg"):
        return f"http://127.0.0.1:{self.port}/{path}"

    def mount(self, url, *extra, check=True):
        mnt = self.path("mnt")
        os.makedirs(mnt, exist_ok=True)
        proc = tpk("mount", url, mnt, "--trusted-keys", self.path("trusted"), *extra, check=check)
        if proc.returncode == 0:
            self.mounts.append(mnt)
        return mnt, proc

    def requests(self, path="/models/m.torshpkg"):
        return [line for line in self.nginx.access_log().splitlines() if f"GET {path} " in line]

    def test_a_signed_package_mounts_with_range_requests_and_reads_byte_exact(self):
        mnt, proc = self.mount(self.url())
        self.assertIn(b"(signed by", proc.stdout)
        opened = self.requests()
        # Opening: the tail (ZIP directory, manifest, signature) and the local headers.
        self.assertLess(len(opened), 5, opened)
        self.assertTrue(all('" 206 ' in line for line in opened), opened)
        self.assertEqual(sorted(os.listdir(os.path.join(mnt, "resources"))), ["config.json", "w.bin"])
        self.assertEqual(read_bytes(os.path.join(mnt, "resources", "config.json")), b'{"hidden": 64}\n')
        self.assertEqual(read_bytes(os.path.join(mnt, "resources", "w.bin")), self.weights)
        # Ranges, never the whole file: the bytes sent are about the package's size once.
        sent = sum(int(line.split('" 206 ')[1].split()[0]) for line in self.requests())
        self.assertLess(sent, os.path.getsize(self.pkg) * 1.2)
        tpk("umount", mnt)
        self.assertFalse(mounted(mnt))

    def test_the_local_trust_policy_applies_and_refusals_are_one_line(self):
        mnt, proc = self.mount(self.url("models/u.torshpkg"), check=False)
        self.assert_one_line_error(proc, 3)
        self.assertIn(b"unsigned package", proc.stderr)
        self.assertFalse(mounted(mnt))
        mnt, proc = self.mount(self.url("models/none.torshpkg"), check=False)
        self.assert_one_line_error(proc, 1)
        self.assertIn(b"HTTP 404", proc.stderr)
        mnt, proc = self.mount(self.url("noranges/m.torshpkg"), check=False)
        self.assert_one_line_error(proc, 1)
        self.assertIn(b"does not answer range requests", proc.stderr)
        self.assertFalse(mounted(mnt))
        proc = tpk("mount", self.url(), self.path("mnt"), "--with-deps", check=False)
        self.assert_one_line_error(proc, 2)

    def test_wrong_bytes_from_the_server_fail_the_read_of_that_chunk_only(self):
        mnt, _ = self.mount(self.url("bad/m.torshpkg"))
        with open(os.path.join(mnt, "resources", "w.bin"), "rb") as f:
            self.assertEqual(f.read(64 << 10), self.weights[:64 << 10])
            f.seek(200 << 10)
            with self.assertRaises(OSError) as caught:
                f.read(4096)
            self.assertEqual(caught.exception.errno, errno.EIO)
            f.seek(4 << 20)
            self.assertEqual(f.read(4096), self.weights[4 << 20:(4 << 20) + 4096])
        self.assertEqual(read_bytes(os.path.join(mnt, "resources", "config.json")), b'{"hidden": 64}\n')
        self.assertTrue(mounted(mnt))

    def test_a_mirror_that_serves_wrong_bytes_is_passed_over_for_the_next_copy(self):
        down = free_port()  # nothing listens there
        mnt, _ = self.mount(self.url(), "--mirror", f"http://127.0.0.1:{down}",
                            "--mirror", f"http://127.0.0.1:{self.liar}",
                            "--mirrors-file", self.path("none.json"))
        # The dead mirror was skipped at open; the liar is the first choice, and the block it
        # serves wrong comes from the origin instead.
        self.assertEqual(read_bytes(os.path.join(mnt, "resources", "w.bin")), self.weights)
        liar = [x for x in read_bytes(self.path("liar.log")).decode().splitlines()
                if '" 206 ' in x]
        origin = [x for x in self.requests() if '" 206 ' in x]
        self.assertTrue(liar)
        self.assertEqual(len(origin), 1, origin)  # the re-read of the bad block alone
        self.assertLessEqual(int(origin[0].split('" 206 ')[1].split()[0]), 1 << 20)

    def test_a_disk_cache_shares_unchanged_chunks_between_versions(self):
        # Version 2 changes one MiB of the six; with version 1 in the disk cache, mounting and
        # reading version 2 fetches about that MiB of weights.
        changed = bytearray(self.weights)
        for i in range(1000):
            changed[(2 << 20) + i * 1000] ^= 0xff
        self.write("w2.bin", bytes(changed))
        v2 = self.path("www", "models", "m2.torshpkg")
        tpk("create", v2, "--name", "m", "--version", "2.0.0", "-q", "--compress", "none",
            "--add", "w.bin=" + self.path("w2.bin"), "--add", "config.json=" + self.path("config.json"),
            "--sign-key", self.path("k.key"))
        cache = self.path("cache")
        mnt, _ = self.mount(self.url(), "--disk-cache", cache, "--disk-cache-size", "64M")
        self.assertEqual(read_bytes(os.path.join(mnt, "resources", "w.bin")), self.weights)
        tpk("umount", mnt)
        self.assertGreater(sum(len(f) for _, _, f in os.walk(cache)), 0)
        mnt, _ = self.mount(self.url("models/m2.torshpkg"), "--disk-cache", cache)
        self.assertEqual(read_bytes(os.path.join(mnt, "resources", "w.bin")), bytes(changed))
        tpk("umount", mnt)
        sent = sum(int(x.split('" 206 ')[1].split()[0])
                   for x in self.requests("/models/m2.torshpkg") if '" 206 ' in x)
        # The tail (1 MiB, with the directory and manifest), the changed chunk (1 MiB) and the
        # block hashes; the whole package is 6 MiB more.
        self.assertLess(sent, (3 << 20) + (512 << 10), sent)
        proc = tpk("mount", self.pkg, self.path("mnt"), "--disk-cache", cache, check=False)
        self.assert_one_line_error(proc, 2)

    def test_prefetch_all_fills_the_disk_cache_in_the_background(self):
        cache = self.path("cache")
        mnt, _ = self.mount(self.url(), "--disk-cache", cache, "--prefetch", "all")
        chunks = WEIGHTS >> 20  # 1 MiB chunks of the weights; config.json is one more
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if sum(len(f) for _, _, f in os.walk(cache)) >= chunks + 1:
                break
            time.sleep(0.05)
        self.assertGreaterEqual(sum(len(f) for _, _, f in os.walk(cache)), chunks + 1)
        # Nothing was read through the mount; now a whole read costs only the block hashes.
        before = len(self.requests())
        self.assertEqual(read_bytes(os.path.join(mnt, "resources", "w.bin")), self.weights)
        sent = sum(int(x.split('" 206 ')[1].split()[0])
                   for x in self.requests()[before:] if '" 206 ' in x)
        self.assertLess(sent, (chunks + 1) * 8192 + 4096, sent)
        tpk("umount", mnt)
        proc = tpk("mount", self.url(), self.path("mnt"), "--prefetch", "all", check=False)
        self.assert_one_line_error(proc, 2)
        proc = tpk("mount", self.url(), self.path("mnt"), "--disk-cache", cache,
                   "--prefetch", "some", check=False)
        self.assert_one_line_error(proc, 2)

    def test_a_server_that_goes_away_fails_reads_with_eio_and_the_mount_recovers(self):
        mnt, _ = self.mount(self.url())
        self.nginx.stop()
        with open(os.path.join(mnt, "resources", "w.bin"), "rb") as f:
            with self.assertRaises(OSError) as caught:
                f.read()
            self.assertEqual(caught.exception.errno, errno.EIO)
        self.assertTrue(mounted(mnt))
        self.nginx.start()
        self.assertEqual(read_bytes(os.path.join(mnt, "resources", "w.bin")), self.weights)


@unittest.skipUnless(NGINX, "nginx is not installed (scripts/setup.sh --with-tests)")
class RemoteDaemonMount(DaemonTest):
    def test_a_lazy_config_entry_mounts_the_url_without_pulling_it(self):
        port = free_port()
        os.makedirs(self.path("www"))
        pkg = self.package("served", "--compress", "none")  # stored: its chunks can be kept
        shutil.copy(pkg, self.path("www", "served.torshpkg"))
        nginx = Nginx(self.path("nginx"), f"""
  server {{ listen 127.0.0.1:{port}; root {self.path('www')}; }}
""", port)
        nginx.start()
        try:
            url = f"http://127.0.0.1:{port}/served.torshpkg"
            store = self.path("store")
            cfg = self.config([{"package": url, "mountpoint": self.points[0], "lazy": True,
                                "prefetch": "all"}],
                              store=store, disk_cache=self.path("chunks"))
            proc = self.start(cfg)
            fields, state = self.notify.expect("READY")
            self.assertEqual(fields["STATUS"], "1 mounted")
            self.assertTrue(state[self.points[0]])
            self.assertEqual(read_bytes(os.path.join(self.points[0], "resources", "config.json")),
                             self.files["config.json"])
            # The whole package ends up in the configured disk cache ("prefetch": "all"): a
            # file for every 64 KiB chunk (of distinct content) of every resource.
            chunks = len({bytes(data[i:i + 65536]) for data in self.files.values()
                          for i in range(0, len(data), 65536)})
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and \
                    sum(len(f) for _, _, f in os.walk(self.path("chunks"))) < chunks:
                time.sleep(0.05)
            self.assertEqual(sum(len(f) for _, _, f in os.walk(self.path("chunks"))), chunks)
            # Nothing was pulled: the store holds no package, and every request was a range.
            self.assertFalse(os.path.exists(store) and any(
                f.endswith(".torshpkg") for _, _, fs in os.walk(store) for f in fs))
            log = nginx.access_log().splitlines()
            self.assertTrue(log and all('" 206 ' in line for line in log), log)
            [mounted_event] = [e for e in self.events() if e["event"] == "mounted"]
            self.assertIn(url, json.dumps(mounted_event))
            # torshpkg status says what the mount fetched, and from where.
            [m] = self.status()["mounts"]
            self.assertEqual(m["remote"]["first_choice"], url)
            self.assertEqual(m["remote"]["requests"], len(log))
            self.assertEqual(m["remote"]["bytes"],
                             sum(int(x.split('" 206 ')[1].split()[0]) for x in log))
            text = tpk("status", "--socket", self.path("torshpkgd.sock")).stdout.decode()
            self.assertIn(f"requests from {url}", text)
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=30), 0)
        finally:
            nginx.stop()
        bad = self.config([{"package": pkg, "mountpoint": self.points[0], "lazy": True}])
        out = subprocess.run([os.environ.get("TORSHPKGD") or TORSHPKGD, "--config", bad,
                              "--check"], capture_output=True)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn(b"lazy", out.stderr)

    @unittest.skipUnless(REGISTRY, "docker-registry is not installed")
    def test_a_lazy_oci_entry_mounts_the_reference_without_pulling_it(self):
        registry = Registry(self.path("registry"))
        try:
            pkg = self.package("served")
            ref = registry.ref("models/served:1.0.0")
            tpk("push", pkg, ref, "-q")
            store = self.path("store")
            cfg = self.config([{"package": "oci://" + ref, "mountpoint": self.points[0],
                                "lazy": True}], store=store, disk_cache="")
            proc = self.start(cfg)
            fields, state = self.notify.expect("READY")
            self.assertEqual(fields["STATUS"], "1 mounted")
            self.assertEqual(read_bytes(os.path.join(self.points[0], "resources", "config.json")),
                             self.files["config.json"])
            self.assertFalse(os.path.exists(store) and any(
                f.endswith(".torshpkg") for _, _, fs in os.walk(store) for f in fs))
            [m] = self.status()["mounts"]
            self.assertIn("/v2/models/served/blobs/sha256:", m["remote"]["first_choice"])
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=30), 0)
        finally:
            registry.stop()


@unittest.skipUnless(REGISTRY and HTPASSWD, "docker-registry and htpasswd (apache2-utils) needed")
class RemoteRegistryMount(TempDirTest):
    def setUp(self):
        super().setUp()
        htpasswd = self.path("htpasswd")
        subprocess.run([HTPASSWD, "-Bbc", htpasswd, "alice", "s3cret"], check=True,
                       capture_output=True)
        self.registry = Registry(self.path("registry"), auth=htpasswd)
        auth = base64.b64encode(b"alice:s3cret").decode()
        self.config = self.write("docker/config.json", json.dumps(
            {"auths": {f"localhost:{self.registry.port}": {"auth": auth}}}).encode())
        self.weights = os.urandom(WEIGHTS)
        self.write("w.bin", self.weights)
        tpk("keygen", self.path("k"))
        os.makedirs(self.path("trusted"))
        shutil.copy(self.path("k.pub"), self.path("trusted"))
        self.pkg = self.path("m.torshpkg")
        tpk("create", self.pkg, "--name", "m", "--version", "1.2.0", "-q", "--compress", "none",
            "--add", "w.bin=" + self.path("w.bin"), "--sign-key", self.path("k.key"))
        self.mnt = self.path("mnt")
        os.makedirs(self.mnt)

    def tearDown(self):
        if mounted(self.mnt):
            subprocess.run(["umount", "-l", self.mnt])
        self.registry.stop()
        super().tearDown()

    def mount(self, ref, *extra, check=True):
        return tpk("mount", "oci://" + ref, self.mnt, "--trusted-keys", self.path("trusted"),
                   "--docker-config", self.config, *extra, check=check)

    def test_an_oci_reference_mounts_the_package_blob_with_the_registrys_credentials(self):
        ref = self.registry.ref("models/m:1.2.0")
        tpk("push", self.pkg, ref, "--docker-config", self.config, "-q")
        proc = self.mount(ref)
        self.assertIn(b"mounted m@1.2.0", proc.stdout)
        self.assertEqual(read_bytes(os.path.join(self.mnt, "resources", "w.bin")), self.weights)
        tpk("umount", self.mnt)
        # Without the credentials, the registry's refusal in one line.
        proc = tpk("mount", "oci://" + ref, self.mnt, "--trusted-keys", self.path("trusted"),
                   "--docker-config", self.path("none.json"), check=False)
        self.assert_one_line_error(proc, 1)
        self.assertIn(b"credentials", proc.stderr)
        self.assertFalse(mounted(self.mnt))

    def test_a_reference_that_serves_another_version_is_refused(self):
        # Tag 2.0.0 holds the package of version 1.2.0: a version tag promises its version.
        ref = self.registry.ref("models/m:2.0.0")
        tpk("push", self.pkg, ref, "--docker-config", self.config, "-q")
        proc = self.mount(ref, check=False)
        self.assert_one_line_error(proc, 3)
        self.assertIn(b"for the tag 2.0.0", proc.stderr)
        self.assertFalse(mounted(self.mnt))
        proc = self.mount(self.registry.ref("models/none:1.0.0"), check=False)
        self.assert_one_line_error(proc, 1)
        self.assertFalse(mounted(self.mnt))


if __name__ == "__main__":
    unittest.main()
