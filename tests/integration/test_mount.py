"""Real mounts: torshpkg mount serves packages through FUSE, read with ordinary tools and syscalls."""
import json
import mmap
import os
import random
import shutil
import struct
import subprocess
import sys
import threading
import unittest
import zipfile

sys.path.insert(0, os.path.dirname(__file__))
from helpers import (CODECS, TempDirTest, bdi_read_ahead_kb, drop_cached,  # noqa: E402
                     on_tmpfs, read_bytes, resident_bytes, run, text_bytes, tpk)


def mounted(path):
    path = os.path.realpath(path)
    with open("/proc/mounts") as f:
        return any(line.split()[1] == path for line in f)


def server_of(pid, mountpoint):
    """True when process `pid` serves `mountpoint` (a standalone mount's process)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    return b"mount" in args and os.fsencode(mountpoint) in args


class Mount(TempDirTest):
    def setUp(self):
        super().setUp()
        self.files = self.make_model()
        tpk("keygen", self.path("k"))
        os.makedirs(self.path("trusted"))
        shutil.copy(self.path("k.pub"), self.path("trusted"))
        self.write("pw", b"mount password\n")
        self.mounts = []

    def tearDown(self):
        for m in self.mounts:
            if mounted(m):
                subprocess.run(["umount", "-l", m])
        super().tearDown()

    def create(self, name, *extra):
        pkg = self.path(name)
        tpk("create", pkg, "--name", "demo", "--version", "1.0.0", "-q", "--chunk-size", "64K",
            "--add-dir", "=" + self.path("model"), "--sign-key", self.path("k.key"), *extra)
        return pkg

    def mount(self, pkg, *extra, name=None, check=True):
        mnt = self.path(name or ("mnt-" + os.path.basename(pkg)))
        os.makedirs(mnt, exist_ok=True)
        proc = tpk("mount", pkg, mnt, "--trusted-keys", self.path("trusted"), *extra, check=check)
        if proc.returncode == 0:
            self.mounts.append(mnt)
        return mnt, proc

    def unmount(self, mnt):
        tpk("umount", mnt)
        self.assertFalse(mounted(mnt))

    def test_every_codec_and_cipher_reads_byte_exact(self):
        variants = [(c, []) for c in CODECS] + [
            ("zstd", ["--encrypt", "aes-256-gcm", "--password-file", self.path("pw")]),
            ("xz", ["--encrypt", "chacha20-poly1305", "--password-file", self.path("pw")])]
        for i, (codec, enc) in enumerate(variants):
            with self.subTest(codec=codec, encrypted=bool(enc)):
                pkg = self.create(f"p{i}.torshpkg", "--compress", codec, *enc)
                mnt, _ = self.mount(pkg, *(["--password-file", self.path("pw")] if enc else []))
                for rel, data in self.files.items():
                    self.assertEqual(read_bytes(os.path.join(mnt, "resources", rel)), data, rel)
                self.assertEqual(run("cat", os.path.join(mnt, "resources", "config.json")).stdout,
                                 self.files["config.json"])
                self.assertEqual(read_bytes(os.path.join(mnt, "manifest.json")),
                                 tpk("cat", pkg, "manifest.json").stdout)
                self.unmount(mnt)

    def test_tree_attributes_and_xattrs(self):
        pkg = self.create("p.torshpkg", "--compress", "zstd", "--dependency", "base:^1")
        mnt, proc = self.mount(pkg)
        self.assertIn(b"signed by", proc.stdout)
        self.assertEqual(sorted(os.listdir(mnt)), ["dependencies", "manifest.json", "resources"])
        self.assertEqual(os.listdir(os.path.join(mnt, "dependencies")), ["base.json"])
        st = os.stat(os.path.join(mnt, "resources", "model.safetensors"))
        self.assertEqual(st.st_size, len(self.files["model.safetensors"]))
        self.assertEqual(st.st_mode & 0o777, 0o444)
        self.assertEqual(os.stat(os.path.join(mnt, "resources")).st_mode & 0o777, 0o555)
        ino = st.st_ino
        self.unmount(mnt)
        mnt, _ = self.mount(pkg)
        self.assertEqual(os.stat(os.path.join(mnt, "resources", "model.safetensors")).st_ino, ino, "stable inodes")
        w = os.path.join(mnt, "resources", "model.safetensors")
        self.assertEqual(os.getxattr(w, "user.torshpkg.type"), b"ModelWeights")
        self.assertEqual(os.getxattr(w, "user.torshpkg.compression"), b"zstd:3")
        self.assertEqual(os.getxattr(w, "user.torshpkg.encryption"), b"none")
        import hashlib
        self.assertEqual(os.getxattr(w, "user.torshpkg.sha256").decode(),
                         hashlib.sha256(self.files["model.safetensors"]).hexdigest())
        self.assertEqual(len(os.getxattr(w, "user.torshpkg.signer")), 64)
        self.assertIn("user.torshpkg.signer", os.listxattr(w))

    def test_mount_is_ready_on_return_with_raised_kernel_readahead(self):
        mnt, _ = self.mount(self.create("p.torshpkg"))
        # Mounted and past the kernel's INIT: the fs answers at once, as a FUSE mount.
        with open("/proc/mounts") as f:
            fstype = [line.split()[2] for line in f if line.split()[1] == os.path.realpath(mnt)]
        self.assertEqual(fstype, ["fuse.torshpkg"])
        self.assertEqual(bdi_read_ahead_kb(mnt), 2048)
        path = os.path.join(mnt, "resources", "model.safetensors")
        with open(path, "rb", buffering=0) as f:  # sequential 1 MiB reads, served whole
            self.assertEqual(f.read(), self.files["model.safetensors"])
        self.unmount(mnt)
        mnt, _ = self.mount(self.create("q.torshpkg"), "--kernel-readahead", "256")
        self.assertEqual(bdi_read_ahead_kb(mnt), 256)

    def test_threads_start_with_reads_not_with_the_mount(self):
        # torshpkgd may hold thousands of mounts: one nobody reads holds no readahead or
        # direct-read threads (it held 34 of them for stored resources).
        big = os.urandom(24 << 20)  # long enough for the mount's readahead to start
        self.write("big.bin", big)
        pkg = self.create("p.torshpkg", "--compress", "none", "--add", "big.bin=" + self.path("big.bin"))
        mnt, _ = self.mount(pkg)
        [pid] = [int(p) for p in os.listdir("/proc") if p.isdigit() and server_of(p, mnt)]

        def threads(name=None):
            tasks = os.listdir(f"/proc/{pid}/task")
            if name is None:
                return len(tasks)
            return sum(read_bytes(f"/proc/{pid}/task/{t}/comm").strip() == name for t in tasks)
        self.assertLessEqual(threads(), 6)  # main, FUSE loop, workers
        self.assertEqual(threads(b"torshpkg-read"), 0)
        self.assertEqual(read_bytes(os.path.join(mnt, "resources", "model.safetensors")),
                         self.files["model.safetensors"])
        self.assertEqual(read_bytes(os.path.join(mnt, "resources", "big.bin")), big)
        # The reads started readers (counted by name: libfuse's own workers come and go).
        self.assertGreater(threads(b"torshpkg-read"), 0)
        self.unmount(mnt)

    def test_huge_chunks_are_decoded_one_at_a_time_within_the_cache(self):
        # A small package of 64 MiB zstd chunks (of zeros): every 1-byte read decodes a whole
        # chunk. 16 readers at once once took one mount to 454 MiB; chunks being decoded now
        # count against the cache (64 MiB), so they wait for room instead.
        with open(self.path("zeros.bin"), "wb") as f:
            f.truncate(8 << 26)
        pkg = self.path("huge.torshpkg")
        tpk("create", pkg, "--name", "huge", "--version", "1.0.0", "-q", "--compress", "zstd:3",
            "--chunk-size", "64M", "--add", "zeros.bin=" + self.path("zeros.bin"))
        self.assertLess(os.path.getsize(pkg), 1 << 20)
        mnt, _ = self.mount(pkg, "--allow-unsigned")
        [pid] = [int(p) for p in os.listdir("/proc") if p.isdigit() and server_of(p, mnt)]
        path = os.path.join(mnt, "resources", "zeros.bin")
        errors = []

        def reader(i):
            try:
                with open(path, "rb", buffering=0) as f:
                    f.seek((i % 8) * (64 << 20) + 12345 * i)
                    if f.read(1) != b"\0":
                        errors.append(f"reader {i}: wrong byte")
            except OSError as e:
                errors.append(f"reader {i}: {e}")
        threads = [threading.Thread(target=reader, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        with open(f"/proc/{pid}/status") as f:
            hwm_mib = [int(line.split()[1]) for line in f if line.startswith("VmHWM:")][0] / 1024
        # The cache (64 MiB, one chunk), a reply being sent from an evicted chunk, the program.
        self.assertLess(hwm_mib, 64 + 64 + 40, hwm_mib)
        self.unmount(mnt)

    def test_stored_chunks_are_read_past_the_page_cache_unless_buffered_reads(self):
        if on_tmpfs(self.dir):
            self.skipTest("the package must be on a disk: tmpfs is the page cache")
        pkg = self.create("p.torshpkg", "--compress", "none")
        path = "resources/model.safetensors"
        size = len(self.files["model.safetensors"])
        for extra, cached in ((), False), (("--buffered-reads",), True):
            with self.subTest(extra=extra):
                drop_cached(pkg)
                self.assertLess(resident_bytes(pkg), size // 10)
                mnt, _ = self.mount(pkg, *extra)
                self.assertEqual(read_bytes(os.path.join(mnt, path)), self.files["model.safetensors"])
                # The mount's own page cache holds what it served; by default the package
                # file's bytes are not cached a second time (only the manifest and indexes).
                resident = resident_bytes(pkg)
                if cached:
                    self.assertGreater(resident, size)
                else:
                    self.assertLess(resident, size // 10)
                self.unmount(mnt)
        # Bytes the page cache holds already are taken from there, and are the same.
        mnt, _ = self.mount(pkg)
        self.assertEqual(read_bytes(os.path.join(mnt, path)), self.files["model.safetensors"])

    def test_owner_option(self):
        mnt, _ = self.mount(self.create("p.torshpkg"), "--owner", "1234:5678")
        st = os.stat(os.path.join(mnt, "resources", "config.json"))
        self.assertEqual((st.st_uid, st.st_gid), (1234, 5678))
        self.assertEqual(read_bytes(os.path.join(mnt, "resources", "config.json")), self.files["config.json"])

    def test_parallel_preads_and_mmap(self):
        pkg = self.create("p.torshpkg", "--compress", "gzip")
        mnt, _ = self.mount(pkg)
        path = os.path.join(mnt, "resources", "model.safetensors")
        data = self.files["model.safetensors"]
        errors = []

        def worker(seed):
            rng = random.Random(seed)
            fd = os.open(path, os.O_RDONLY)
            try:
                for _ in range(50):
                    off = rng.randrange(len(data))
                    n = rng.randrange(1, 300_000)
                    if os.pread(fd, n, off) != data[off:off + n]:
                        errors.append((off, n))
            finally:
                os.close(fd)

        threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
            self.assertEqual(m[1000:2000], data[1000:2000])
            self.assertEqual(m[-100:], data[-100:])

    def test_writes_fail_with_erofs(self):
        mnt, _ = self.mount(self.create("p.torshpkg"))
        for attempt in (lambda: open(os.path.join(mnt, "new"), "w"),
                        lambda: open(os.path.join(mnt, "resources", "config.json"), "a"),
                        lambda: os.mkdir(os.path.join(mnt, "d")),
                        lambda: os.remove(os.path.join(mnt, "manifest.json"))):
            with self.assertRaises(OSError) as ctx:
                attempt()
            self.assertEqual(ctx.exception.errno, 30)  # EROFS

    def test_damaged_chunk_is_eio_and_the_rest_reads(self):
        pkg = self.create("p.torshpkg", "--compress", "none")
        raw = bytearray(read_bytes(pkg))
        with zipfile.ZipFile(pkg) as z:
            info = z.getinfo("resources/model.safetensors")
        n, e = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
        start = info.header_offset + 30 + n + e
        raw[start + 65536 * 3 + 10] ^= 1  # chunk 3
        bad = self.write("bad.torshpkg", bytes(raw))
        # Stored chunks come from the page cache when it holds them, else with direct I/O.
        for cached in (True, False):
            with self.subTest(cached=cached):
                if not cached:
                    drop_cached(bad)
                mnt, _ = self.mount(bad, name=f"mnt-bad-{cached}")
                path = os.path.join(mnt, "resources", "model.safetensors")
                data = self.files["model.safetensors"]
                fd = os.open(path, os.O_RDONLY)
                try:
                    self.assertEqual(os.pread(fd, 65536, 0), data[:65536])
                    with self.assertRaises(OSError) as ctx:
                        os.pread(fd, 65536, 65536 * 3)
                    self.assertEqual(ctx.exception.errno, 5)  # EIO
                    self.assertEqual(os.pread(fd, 65536, 65536 * 5), data[65536 * 5:65536 * 6])
                finally:
                    os.close(fd)
                self.assertEqual(read_bytes(os.path.join(mnt, "resources", "config.json")),
                                 self.files["config.json"])
                self.unmount(mnt)

    def test_damaged_chunk_index_is_eio_for_its_file_only(self):
        # Chunk indexes are checked when their file is first read, not at mount time.
        pkg = self.create("p.torshpkg", "--compress", "none")
        with zipfile.ZipFile(pkg) as z:
            manifest = json.loads(z.read("manifest.json"))
            rid = next(r["id"] for r in manifest["resources"] if r["path"] == "model.safetensors")
            info = z.getinfo(f".torshpkg/index/{rid}")
        raw = bytearray(read_bytes(pkg))
        n, e = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
        raw[info.header_offset + 30 + n + e + 60] ^= 1  # a leaf hash: the size stays right
        bad = self.write("bad.torshpkg", bytes(raw))
        mnt, _ = self.mount(bad)
        self.assertIn("model.safetensors", os.listdir(os.path.join(mnt, "resources")))
        with self.assertRaises(OSError) as ctx:
            read_bytes(os.path.join(mnt, "resources", "model.safetensors"))
        self.assertEqual(ctx.exception.errno, 5)  # EIO
        self.assertEqual(read_bytes(os.path.join(mnt, "resources", "config.json")), self.files["config.json"])
        # verify still checks every index.
        self.assert_one_line_error(tpk("verify", bad, "--trusted-keys", self.path("trusted"), check=False), 3)

    def test_policy_refusals_mount_nothing(self):
        unsigned = self.path("u.torshpkg")
        tpk("create", unsigned, "--name", "u", "--version", "1.0.0", "-q", "--add-dir", "=" + self.path("model"))
        mnt, proc = self.mount(unsigned, check=False)
        self.assert_one_line_error(proc, 3)
        self.assertFalse(mounted(mnt))
        mnt, _ = self.mount(unsigned, "--allow-unsigned", name="mnt-allowed")
        self.assertTrue(mounted(mnt))
        tpk("keygen", self.path("stranger"))
        stranger = self.path("s.torshpkg")
        tpk("create", stranger, "--name", "s", "--version", "1.0.0", "-q", "--add-dir", "=" + self.path("model"),
            "--sign-key", self.path("stranger.key"))
        mnt, proc = self.mount(stranger, check=False)
        self.assert_one_line_error(proc, 3)
        self.assertFalse(mounted(mnt))
        enc = self.create("e.torshpkg", "--encrypt", "aes-256-gcm", "--password-file", self.path("pw"))
        self.write("wrong", b"nope\n")
        mnt, proc = self.mount(enc, "--password-file", self.path("wrong"), check=False)
        self.assert_one_line_error(proc, 4)
        self.assertFalse(mounted(mnt))
        mnt, proc = self.mount(enc, name="mnt-nokey", check=False)
        self.assert_one_line_error(proc, 4)
        self.assertFalse(mounted(mnt))

    def test_many_mounts_and_a_busy_unmount(self):
        mnts = []
        for i in range(5):
            pkg = self.create(f"m{i}.torshpkg", "--compress", "zstd")
            mnts.append(self.mount(pkg)[0])
        for m in mnts:
            self.assertEqual(read_bytes(os.path.join(m, "resources", "config.json")), self.files["config.json"])
        f = open(os.path.join(mnts[0], "resources", "model.safetensors"), "rb")
        try:
            proc = tpk("umount", mnts[0], check=False)
            self.assertNotEqual(proc.returncode, 0)  # busy
            self.assertTrue(mounted(mnts[0]))
            tpk("umount", "--lazy", mnts[0])
            self.assertEqual(f.read(100), self.files["model.safetensors"][:100])
        finally:
            f.close()
        for m in mnts[1:]:
            self.unmount(m)

    def test_ten_thousand_resource_listing(self):
        for i in range(10000):
            self.write(f"many/d{i % 50}/f{i}.txt", b"%d\n" % i)
        pkg = self.path("many.torshpkg")
        tpk("create", pkg, "--name", "many", "--version", "1.0.0", "-q", "--add-dir", "=" + self.path("many"))
        mnt, _ = self.mount(pkg, "--allow-unsigned")
        count = sum(len(files) for _, _, files in os.walk(os.path.join(mnt, "resources")))
        self.assertEqual(count, 10000)
        # 200 entries: listed over several readdir calls, each resuming at its offset, in name order.
        self.assertEqual(os.listdir(os.path.join(mnt, "resources", "d7")),
                         sorted(f"f{i}.txt" for i in range(7, 10000, 50)))
        self.assertEqual(os.stat(os.path.join(mnt, "resources")).st_nlink, 2 + 50)
        self.assertEqual(read_bytes(os.path.join(mnt, "resources", "d7", "f9957.txt")), b"9957\n")


if __name__ == "__main__":
    unittest.main()
