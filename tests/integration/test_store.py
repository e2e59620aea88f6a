"""The local store through the real CLI: install (trust policy, atomic, concurrent), list,
remove, gc, dependency resolution by semver, and mounting NAME@REQ with its dependencies."""
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from helpers import TORSHPKG, TempDirTest, read_bytes, tpk  # noqa: E402


def mounted(path):
    path = os.path.realpath(path)
    with open("/proc/mounts") as f:
        return any(line.split()[1] == path for line in f)


class StoreBase(TempDirTest):
    def setUp(self):
        super().setUp()
        self.store = self.path("store")
        self.write("w.txt", b"weights " * 1000)
        tpk("keygen", self.path("k"))
        os.makedirs(self.path("trusted"))
        os.rename(self.path("k.pub"), self.path("trusted", "k.pub"))
        self.mounts = []

    def tearDown(self):
        for m in self.mounts:
            if mounted(m):
                subprocess.run(["umount", "-l", m], stderr=subprocess.DEVNULL)
        super().tearDown()

    def package(self, name, version, *deps, sign=True):
        pkg = self.path(f"{name}-{version}.torshpkg")
        extra = [a for d in deps for a in ("--dependency", d)]
        tpk("create", pkg, "--name", name, "--version", version, "-q", "--force",
            "--add", "w.txt=" + self.path("w.txt"), *extra,
            *(["--sign-key", self.path("k.key")] if sign else []))
        return pkg

    def install(self, pkg, *extra, check=True):
        return tpk("install", pkg, "--store", self.store, "--trusted-keys", self.path("trusted"),
                   *extra, check=check)

    def listing(self):
        return json.loads(tpk("list", "--store", self.store, "--json").stdout)["packages"]


class Store(StoreBase):
    def test_install_verifies_and_is_idempotent(self):
        out = self.install(self.package("m", "1.0.0")).stdout.decode()
        self.assertIn("installed m@1.0.0", out)
        self.assertIn("signed by", out)
        self.assertIn("already installed",
                      self.install(self.path("m-1.0.0.torshpkg")).stdout.decode())
        [p] = self.listing()
        self.assertEqual((p["name"], p["version"]), ("m", "1.0.0"))
        self.assertEqual(read_bytes(p["path"]), read_bytes(self.path("m-1.0.0.torshpkg")))
        # unsigned: refused unless allowed; a damaged package: refused; nothing left behind
        self.assert_one_line_error(self.install(self.package("u", "1.0.0", sign=False), check=False), 3)
        self.install(self.path("u-1.0.0.torshpkg"), "--allow-unsigned")
        bad = bytearray(read_bytes(self.package("d", "1.0.0")))
        at = bad.find(b"weights weights")
        bad[at + 3] ^= 1
        self.write("d-bad.torshpkg", bytes(bad))
        self.assert_one_line_error(self.install(self.path("d-bad.torshpkg"), check=False), 3)
        self.assertEqual(sorted(p["name"] for p in self.listing()), ["m", "u"])
        self.assertEqual(os.listdir(os.path.join(self.store, "tmp")), [])

    def test_concurrent_installs_from_many_processes(self):
        pkg = self.package("c", "1.0.0")
        procs = [subprocess.Popen([TORSHPKG, "install", pkg, "--store", self.store,
                                   "--trusted-keys", self.path("trusted")],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(6)]
        for p in procs:
            out, err = p.communicate(timeout=120)
            self.assertEqual(p.returncode, 0, err)
        self.assertEqual(len(self.listing()), 1)
        self.assertEqual(len(os.listdir(os.path.join(self.store, "blobs", "sha256"))), 1)
        self.assertEqual(os.listdir(os.path.join(self.store, "tmp")), [])

    def test_remove_and_gc(self):
        for v in ("1.0.0", "1.1.0"):
            self.write("w.txt", b"version " + v.encode())
            self.install(self.package("g", v))
        tpk("remove", "g@1.0.0", "--store", self.store)
        self.assertEqual([p["version"] for p in self.listing()], ["1.1.0"])
        self.assertIn("removed 1 blobs", tpk("gc", "--store", self.store).stdout.decode())
        self.assert_one_line_error(tpk("remove", "g@1.0.0", "--store", self.store, check=False), 1)

    def test_deps_resolve_by_semver_with_prerelease_and_optional_rules(self):
        for name, version, deps in [("base", "1.2.0", []), ("base", "1.4.1", []),
                                    ("base", "2.0.0-rc.1", []),
                                    ("tok", "0.15.3", ["base:^1.2"]), ("tok", "0.16.0", ["base:^2"])]:
            self.install(self.package(name, version, *deps))
        app = self.package("app", "1.0.0", "tok:~0.15", "extra:^1:optional", "base:>=1.3, <2")
        out = json.loads(tpk("deps", app, "--store", self.store, "--json").stdout)
        got = {(d["parent"], d["name"]): d["resolved"] for d in out["dependencies"]}
        self.assertEqual(got[("app@1.0.0", "tok")], "0.15.3")      # ~0.15 skips 0.16.0
        self.assertEqual(got[("app@1.0.0", "extra")], None)        # optional, absent: fine
        self.assertEqual(got[("app@1.0.0", "base")], "1.4.1")      # highest match
        self.assertEqual(got[("tok@0.15.3", "base")], "1.4.1")
        self.assertEqual(out["missing"], 0)
        # ^2 must not pick 2.0.0-rc.1: a required dependency is missing -> exit 1
        broken = self.package("broken", "1.0.0", "base:^2")
        proc = tpk("deps", broken, "--store", self.store, check=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn(b"base ^2 -> MISSING: installed 1.2.0, 1.4.1, 2.0.0-rc.1, none matches",
                      proc.stdout)
        self.install(app)
        self.assertIn(b"tok ~0.15 -> 0.15.3", tpk("deps", "app@^1", "--store", self.store).stdout)

    def test_mount_by_requirement_with_dependencies_beside_it(self):
        self.install(self.package("base", "1.2.0"))
        self.install(self.package("model", "1.0.0", "base:^1"))
        self.install(self.package("model", "1.1.0", "base:^1"))
        runtime = self.path("run")
        main = os.path.join(runtime, "model")
        os.makedirs(main)
        self.mounts += [main, os.path.join(runtime, "base")]
        tpk("mount", "model@~1.0", main, "--store", self.store, "--trusted-keys",
            self.path("trusted"), "--with-deps", "--standalone")
        self.assertEqual(json.loads(read_bytes(os.path.join(main, "manifest.json")))["version"],
                         "1.0.0")
        self.assertEqual(read_bytes(os.path.join(runtime, "base", "resources", "w.txt")),
                         read_bytes(self.path("w.txt")))
        for m in self.mounts:
            tpk("umount", m)
        # A required dependency that does not resolve: nothing is mounted.
        self.install(self.package("lonely", "1.0.0", "nothere:^1"))
        os.makedirs(self.path("run", "lonely"))
        proc = tpk("mount", "lonely", self.path("run", "lonely"), "--store", self.store,
                   "--trusted-keys", self.path("trusted"), "--with-deps", "--standalone", check=False)
        self.assert_one_line_error(proc, 1)
        self.assertIn(b"nothere", proc.stderr)
        self.assertFalse(mounted(self.path("run", "lonely")))
        proc = tpk("mount", "model@^7", main, "--store", self.store, check=False)
        self.assert_one_line_error(proc, 1)
        self.assertIn(b"installed: 1.0.0, 1.1.0", proc.stderr)


class Backup(StoreBase):
    def state(self, root):
        return ["--store", os.path.join(root, "store"), "--journal", os.path.join(root, "lineage.jsonl"),
                "--trusted-keys", os.path.join(root, "keys")]

    def setUp(self):
        super().setUp()
        self.store = self.path("host", "store")
        os.makedirs(self.path("host", "keys"))
        os.link(self.path("trusted", "k.pub"), self.path("host", "keys", "k.pub"))
        for v in ("1.0.0", "1.1.0"):
            self.write("w.txt", b"version " + v.encode() * 100)
            tpk("install", self.package("b", v), "--store", self.store, "--trusted-keys",
                self.path("trusted"), "--journal", self.path("host", "lineage.jsonl"))
        self.backup = self.path("backup.tar")
        out = tpk("backup", self.backup, *self.state(self.path("host"))).stdout.decode()
        self.assertIn("backed up 2 packages", out)

    def files(self, root):
        found = {}
        for d, _, names in os.walk(root):
            for n in names:
                p = os.path.join(d, n)
                found[os.path.relpath(p, root)] = read_bytes(p)
        return found

    def test_restore_reproduces_the_state_and_is_idempotent(self):
        tpk("restore", self.backup, *self.state(self.path("new")))
        want = {k: v for k, v in self.files(self.path("host")).items() if k != "store/lock"}
        self.assertEqual(self.files(self.path("new")), want)
        self.assertIn("restored 0 packages", tpk("restore", self.backup, *self.state(self.path("new"))).stdout.decode())
        self.assertEqual(len(json.loads(tpk("list", "--store", self.path("new", "store"), "--json").stdout)["packages"]), 2)
        tpk("lineage", "verify", "--journal", self.path("new", "lineage.jsonl"))
        # A journal that differs is kept unless --force.
        with open(self.path("new", "lineage.jsonl"), "ab") as f:
            f.write(b"\n")
        proc = tpk("restore", self.backup, *self.state(self.path("new")), check=False)
        self.assert_one_line_error(proc, 2)
        tpk("restore", self.backup, *self.state(self.path("new")), "--force")

    def test_damaged_or_hostile_backups_restore_nothing(self):
        import io
        import tarfile
        data = bytearray(read_bytes(self.backup))
        at = data.find(b"version 1.1.0version")
        data[at + 2] ^= 1
        self.write("damaged.tar", bytes(data))
        cases = {"damaged.tar": 3}
        with tarfile.open(self.backup) as t:
            members = [(m, t.extractfile(m).read()) for m in t.getmembers()]
        for name, change in [("evil.tar", lambda n: "../evil" if n.startswith("trusted-keys/") else n),
                             ("extra.tar", lambda n: "store/refs/b/9.9.9" if n.endswith("1.0.0") and "refs" in n else n)]:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as t:
                for m, content in members:
                    info = tarfile.TarInfo(change(m.name))
                    info.size = len(content)
                    t.addfile(info, io.BytesIO(content))
            self.write(name, buf.getvalue())
            cases[name] = 3
        self.write("truncated.tar", read_bytes(self.backup)[:5000])
        cases["truncated.tar"] = 3
        for name, code in cases.items():
            with self.subTest(backup=name):
                target = self.path("t-" + name)
                proc = tpk("restore", self.path(name), *self.state(target), check=False)
                self.assert_one_line_error(proc, code)
                self.assertFalse(os.path.exists(os.path.join(target, "store", "refs")))
                self.assertFalse(os.path.exists(os.path.join(target, "lineage.jsonl")))
        self.assertFalse(os.path.exists(self.path("evil")))


if __name__ == "__main__":
    unittest.main()
