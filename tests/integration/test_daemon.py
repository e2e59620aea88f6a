"""torshpkgd as systemd runs it: a real daemon, a NOTIFY_SOCKET the test binds, real mounts."""
import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
import zipfile

sys.path.insert(0, os.path.dirname(__file__))
from helpers import (TORSHPKG, TempDirTest, bdi_read_ahead_kb, bind_journal_socket,  # noqa: E402
                     drop_cached, max_rss_kib, on_tmpfs, read_bytes, received_journal_entries, resident_bytes,
                     run, tpk, with_journal_socket)
import test_registry  # noqa: E402

TORSHPKGD = os.environ.get("TORSHPKGD") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "daemon", "torshpkgd")


def mounted(path):
    path = os.path.realpath(path)
    with open("/proc/mounts") as f:
        return any(line.split()[1] == path for line in f)


class Notify:
    """The NOTIFY_SOCKET: records each message with the mount state at the moment it arrived."""

    def __init__(self, path, watched):
        self.path = path
        self.watched = watched
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []  # (fields dict, {mountpoint: mounted?})
        self.times = []  # when each message arrived (time.monotonic())

    def expect(self, key, timeout=30):
        """Waits for a message carrying `key` (e.g. "READY"); returns (fields, mount state)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536).decode()
            except socket.timeout:
                break
            self.times.append(time.monotonic())
            state = {m: mounted(m) for m in self.watched}
            fields = dict(line.split("=", 1) for line in data.split("\n") if "=" in line)
            self.messages.append((fields, state))
            if key in fields:
                return fields, state
        raise AssertionError(f"no {key}= within {timeout} s; got {[m[0] for m in self.messages]}")

    def close(self):
        self.sock.close()


class DaemonTest(TempDirTest):
    """A test folder with a model, a signing key the daemon trusts, four mount points, and
    helpers to configure, start and read the journal of real daemons."""

    def setUp(self):
        super().setUp()
        self.files = self.make_model()
        tpk("keygen", self.path("k"))
        os.makedirs(self.path("trusted"))
        os.rename(self.path("k.pub"), self.path("trusted", "k.pub"))
        self.journal = self.path("state", "lineage.jsonl")
        self.procs = []
        self.points = [self.path(f"m{i}") for i in range(4)]
        for p in self.points:
            os.makedirs(p)
        self.notify = Notify(self.path("notify"), self.points)

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
            p.stderr.close()
        for m in self.points:
            if mounted(m) or not os.path.isdir(m):
                subprocess.run(["umount", "-l", m], stderr=subprocess.DEVNULL)
        self.notify.close()
        super().tearDown()

    def package(self, name, *extra, sign=True):
        pkg = self.path(name + ".torshpkg")
        tpk("create", pkg, "--name", name, "--version", "1.0.0", "-q", "--chunk-size", "64K",
            "--add-dir", "=" + self.path("model"), "--journal", self.path("cli.jsonl"),
            *(["--sign-key", self.path("k.key")] if sign else []), *extra)
        return pkg

    def config(self, mounts, **top):
        cfg = {"control_socket": self.path("torshpkgd.sock"), "lineage_journal": self.journal,
               "trusted_keys_dir": self.path("trusted"), "mounts": mounts, **top}
        path = self.path("torshpkgd.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        return path

    def start(self, config, env=None, wrap=()):
        environment = {**os.environ, "NOTIFY_SOCKET": self.notify.path, **(env or {})}
        proc = subprocess.Popen([*wrap, TORSHPKGD, "--config", config],
                                env={k: v for k, v in environment.items() if v is not None},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(proc)
        return proc

    def events(self):
        with open(self.journal) as f:
            return [json.loads(line) for line in f]

    def status(self, timeout=10):
        """The daemon's status as `torshpkg status --json` gives it, less the standalone mounts
        it also lists (other tests' too, made meanwhile)."""
        out = tpk("status", "--json", "--socket", self.path("torshpkgd.sock"), timeout=timeout)
        status = json.loads(out.stdout)
        status["mounts"] = [m for m in status["mounts"] if not m.get("standalone")]
        return status

    def in_namespace(self, commands):
        """Runs shell commands in a private mount namespace whose /usr/sbin holds only the built
        mount.torshpkg (mount(8) finds helpers in /sbin, which is /usr/sbin on Debian)."""
        helper_dir = self.path("sbin")
        os.makedirs(helper_dir, exist_ok=True)
        helper = os.path.join(os.path.dirname(TORSHPKGD), "..", "tools", "mount.torshpkg")
        if not os.path.lexists(os.path.join(helper_dir, "mount.torshpkg")):
            os.symlink(os.path.realpath(helper), os.path.join(helper_dir, "mount.torshpkg"))
        script = f"mount --bind {helper_dir} /usr/sbin\n" + commands
        return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                              capture_output=True, timeout=120)


class Daemon(DaemonTest):
    def test_ready_only_after_every_mount_and_failures_reported(self):
        a, b, u = self.package("a"), self.package("b"), self.package("u", sign=False)
        cfg = self.config([
            {"package": a, "mountpoint": self.points[0]},
            {"package": b, "mountpoint": self.points[1], "password_file": None},
            {"package": u, "mountpoint": self.points[2]},  # unsigned: refused
            {"package": self.path("missing.torshpkg"), "mountpoint": self.points[3]},
        ])
        proc = self.start(cfg)
        fields, state = self.notify.expect("READY")
        self.assertEqual(state, {self.points[0]: True, self.points[1]: True,
                                 self.points[2]: False, self.points[3]: False})
        self.assertEqual(fields["STATUS"], "2 mounted, 2 failed")
        self.assertEqual(read_bytes(os.path.join(self.points[1], "resources", "config.json")),
                         self.files["config.json"])
        kinds = [e["event"] for e in self.events()]
        self.assertEqual(kinds.count("mounted"), 2)
        self.assertEqual(kinds.count("mount_refused"), 2)
        refused = [e["data"] for e in self.events() if e["event"] == "mount_refused"]
        self.assertTrue(any("unsigned" in r["error"] for r in refused), refused)
        proc.send_signal(signal.SIGTERM)
        fields, state = self.notify.expect("STOPPING")
        self.assertEqual(proc.wait(timeout=30), 0)
        self.assertFalse(any(mounted(m) for m in self.points))
        self.assertEqual([e["event"] for e in self.events()].count("unmounted"), 2)

    def test_config_names_packages_from_the_store_by_requirement(self):
        store = self.path("store")
        for version in ("1.0.0", "1.3.0", "2.0.0"):
            pkg = self.path(f"s-{version}.torshpkg")
            tpk("create", pkg, "--name", "served", "--version", version, "-q",
                "--add-dir", "=" + self.path("model"), "--sign-key", self.path("k.key"))
            tpk("install", pkg, "--store", store, "--trusted-keys", self.path("trusted"))
        cfg = self.config([{"package": "served@^1", "mountpoint": self.points[0]},
                           {"package": "served@^3", "mountpoint": self.points[1]}], store=store)
        proc = self.start(cfg)
        fields, state = self.notify.expect("READY")
        self.assertEqual(state[self.points[0]], True)
        self.assertEqual(state[self.points[1]], False)  # nothing matches ^3
        manifest = json.loads(read_bytes(os.path.join(self.points[0], "manifest.json")))
        self.assertEqual(manifest["version"], "1.3.0")  # the highest ^1
        refused = [e["data"] for e in self.events() if e["event"] == "mount_refused"]
        self.assertTrue(any("served@^3" in r["error"] for r in refused), refused)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)

    def test_with_deps_mounts_resolved_dependencies_beside_the_package(self):
        store = self.path("store")
        for name, version, deps in [("base", "1.2.0", []), ("base", "2.0.0", []),
                                    ("model", "1.0.0", ["base:^1"])]:
            pkg = self.path(f"{name}-{version}.torshpkg")
            tpk("create", pkg, "--name", name, "--version", version, "-q", "--add-dir",
                "=" + self.path("model"), "--sign-key", self.path("k.key"),
                *[a for d in deps for a in ("--dependency", d)])
            tpk("install", pkg, "--store", store, "--trusted-keys", self.path("trusted"))
        beside = self.path("base")
        self.points.append(beside)  # cleaned up by tearDown if anything is left
        cfg = self.config([{"package": "model@^1", "mountpoint": self.points[0], "with_deps": True,
                            "cache_size": "1M"},
                           {"package": "base@^9", "mountpoint": self.points[1], "with_deps": True}],
                          store=store, mountpoint_root=self.dir)
        proc = self.start(cfg)
        fields, state = self.notify.expect("READY")
        self.assertTrue(state[self.points[0]])
        self.assertTrue(mounted(beside))
        manifest = json.loads(read_bytes(os.path.join(beside, "manifest.json")))
        self.assertEqual((manifest["name"], manifest["version"]), ("base", "1.2.0"))  # ^1, not 2.0.0
        status = self.status()
        capacity = {m["mountpoint"]: m["cache_capacity"] for m in status["mounts"]}
        self.assertEqual(capacity, {self.points[0]: 1 << 20, beside: 1 << 20})  # inherited
        self.assertFalse(state[self.points[1]])
        self.assertIn("1 failed", fields["STATUS"])
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)
        self.assertFalse(mounted(beside))

    @unittest.skipUnless(test_registry.REGISTRY, "docker-registry is not installed")
    def test_config_pulls_oci_references_into_the_store_then_mounts(self):
        registry = test_registry.Registry(self.path("registry"))
        try:
            pkg = self.package("remote")
            ref = registry.ref("models/remote:1.0.0")
            tpk("push", pkg, ref, "-q")
            store = self.path("store")
            cfg = self.config([{"package": "oci://" + ref, "mountpoint": self.points[0]},
                               {"package": "oci://" + registry.ref("models/absent:1"),
                                "mountpoint": self.points[1]}], store=store)
            proc = self.start(cfg)
            fields, state = self.notify.expect("READY")
            self.assertEqual(state[self.points[0]], True)
            self.assertEqual(state[self.points[1]], False)
            self.assertEqual(read_bytes(os.path.join(self.points[0], "resources", "config.json")),
                             self.files["config.json"])
            listed = json.loads(tpk("list", "--store", store, "--json").stdout)["packages"]
            self.assertEqual([p["name"] for p in listed], ["remote"])
            mounted_events = [e["data"] for e in self.events() if e["event"] == "mounted"]
            self.assertEqual(mounted_events[0]["source"], "oci://" + ref)
            self.assertEqual(mounted_events[0]["source_digest"],
                             "sha256:" + hashlib.sha256(read_bytes(pkg)).hexdigest())
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=30), 0)
        finally:
            registry.stop()

    @unittest.skipUnless(test_registry.REGISTRY, "docker-registry is not installed")
    def test_a_remote_mount_that_rolls_back_is_refused(self):
        registry = test_registry.Registry(self.path("registry"))
        try:
            ref = registry.ref("models/remote:latest")
            tpk("push", self.package("remote"), ref, "-q")  # remote@1.0.0
            older = self.path("older.torshpkg")
            tpk("create", older, "--name", "remote", "--version", "0.9.0", "-q", "--add-dir",
                "=" + self.path("model"), "--sign-key", self.path("k.key"))
            entry = {"package": "oci://" + ref, "mountpoint": self.points[0]}
            cfg = self.config([entry], store=self.path("store"))
            proc = self.start(cfg)
            fields, state = self.notify.expect("READY")
            self.assertTrue(state[self.points[0]])
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=30), 0)
            tpk("push", older, ref, "-q")  # the tag now points back at 0.9.0
            proc = self.start(cfg)
            fields, state = self.notify.expect("READY")
            self.assertFalse(state[self.points[0]])
            [failed] = self.status()["pending"]
            self.assertIn("older than the 1.0.0", failed["error"])
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=30), 0)
            entry["allow_downgrade"] = True
            proc = self.start(self.config([entry], store=self.path("store")))
            fields, state = self.notify.expect("READY")
            self.assertTrue(state[self.points[0]])
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=30), 0)
        finally:
            registry.stop()

    @unittest.skipUnless(test_registry.REGISTRY and test_registry.HTPASSWD,
                         "docker-registry and htpasswd (apache2-utils) are not installed")
    def test_registry_credentials_come_from_the_config_not_home(self):
        htpasswd = self.path("htpasswd")
        subprocess.run([test_registry.HTPASSWD, "-Bbc", htpasswd, "svc", "pw"], check=True,
                       capture_output=True)
        registry = test_registry.Registry(self.path("registry"), auth=htpasswd)
        try:
            auth = base64.b64encode(b"svc:pw").decode()
            creds = self.write("registry-auth.json", json.dumps(
                {"auths": {f"localhost:{registry.port}": {"auth": auth}}}).encode())
            ref = registry.ref("models/private:1.0.0")
            tpk("push", self.package("private"), ref, "-q", "--docker-config", creds)
            entry = [{"package": "oci://" + ref, "mountpoint": self.points[0]}]
            env = {"HOME": None, "DOCKER_CONFIG": None}  # as under systemd: no $HOME
            # Without the config key the pull has no credentials; with it, it mounts.
            proc = self.start(self.config(entry, store=self.path("store")), env=env)
            fields, state = self.notify.expect("READY")
            self.assertFalse(state[self.points[0]])
            self.assertIn("credentials", self.events()[-1]["data"]["error"])
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=30), 0)
            proc = self.start(self.config(entry, store=self.path("store"),
                                          registry_credentials=creds), env=env)
            fields, state = self.notify.expect("READY")
            self.assertTrue(state[self.points[0]], fields)
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=30), 0)
        finally:
            registry.stop()

    def test_reload_mounts_added_and_unmounts_removed(self):
        a, b = self.package("a"), self.package("b")
        proc = self.start(self.config([{"package": a, "mountpoint": self.points[0]}]))
        self.notify.expect("READY")
        self.config([{"package": b, "mountpoint": self.points[1]}])
        proc.send_signal(signal.SIGHUP)
        self.notify.expect("RELOADING")
        fields, after = self.notify.expect("READY")  # the reload is complete when READY comes
        self.assertEqual(after[self.points[0]], False)
        self.assertEqual(after[self.points[1]], True)
        self.assertEqual(fields["STATUS"], "1 mounted")
        # A broken config on reload keeps what runs.
        with open(self.path("torshpkgd.json"), "w") as f:
            f.write('{"mounts": [}')
        proc.send_signal(signal.SIGHUP)
        self.notify.expect("RELOADING")
        self.notify.expect("READY")
        self.assertTrue(mounted(self.points[1]))
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)
        self.assertIn(b"reload failed, keeping the running mounts", proc.stderr.read())

    def test_sigterm_with_a_busy_reader_still_stops(self):
        a = self.package("a")
        proc = self.start(self.config([{"package": a, "mountpoint": self.points[0]}]))
        self.notify.expect("READY")
        busy = open(os.path.join(self.points[0], "resources", "model.safetensors"), "rb")
        self.assertEqual(busy.read(1000), self.files["model.safetensors"][:1000])
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        self.notify.expect("STOPPING")
        self.assertEqual(proc.wait(timeout=60), 0)
        self.assertLess(time.monotonic() - start, 30)
        self.assertFalse(mounted(self.points[0]))  # detached at once
        with self.assertRaises(OSError):  # the connection ended: an error, not a hang
            busy.seek(2_000_000)
            busy.read(100_000)
        with self.assertRaises(OSError):
            busy.close()  # the release cannot reach a server that is gone either
        self.assertIn(b"still in use after the grace period", proc.stderr.read())

    def test_kill9_then_restart_clears_the_stale_mount_and_mounts_again(self):
        a = self.package("a")
        cfg = self.config([{"package": a, "mountpoint": self.points[0]}])
        proc = self.start(cfg)
        self.notify.expect("READY")
        proc.kill()
        proc.wait()
        with self.assertRaises(OSError) as err:
            os.statvfs(self.points[0])  # (a stat may still be answered from the kernel's cache)
        self.assertEqual(err.exception.errno, 107)  # ENOTCONN: "Transport endpoint is not connected"
        proc = self.start(cfg)
        fields, state = self.notify.expect("READY")
        self.assertEqual(fields["STATUS"], "1 mounted")
        self.assertTrue(state[self.points[0]])
        self.assertEqual(read_bytes(os.path.join(self.points[0], "resources", "config.json")),
                         self.files["config.json"])
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)
        self.assertIn(b"cleared the stale mount point", proc.stderr.read())

    def test_watchdog_pings_when_asked(self):
        proc = self.start(self.config([]), env={"WATCHDOG_USEC": "200000"})
        self.notify.expect("READY")
        self.notify.expect("WATCHDOG")
        self.notify.expect("WATCHDOG")
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)

    def test_bad_configs_are_one_clear_error(self):
        cases = {
            '{"mounts": [{"package": "/x", "mountpoint": "/y", "color": 1}]}':
                "mounts[0].color: unknown key",
            '{"mounts": [{"package": "x.torshpkg", "mountpoint": "/y"}]}':
                "mounts[0].package: must be an absolute path",
            '{"mounts": [{"package": "/x", "mountpoint": "/y", "allow_unsigned": "yes"}]}':
                "mounts[0].allow_unsigned: must be true or false",
            '{"mounts": [{"package": "/x", "mountpoint": "/y", "buffered_reads": 1}]}':
                "mounts[0].buffered_reads: must be true or false",
            '{"mounts": [{"package": "/x", "mountpoint": "/y", "cache_size": "4T"}]}':
                "mounts[0].cache_size: unknown unit in '4T' (use K, M or G)",
            '{"mounts": [{"package": "/x", "mountpoint": "/y", "cache_size": -1}]}':
                "mounts[0].cache_size: must be a byte count",
            '{"mounts": [{"package": "/x", "mountpoint": "/y", "cache_size": true}]}':
                "mounts[0].cache_size: must be a byte count",
            '{"mounts": [{"package": "/x", "mountpoint": "/y", "kernel_readahead_kb": 65537}]}':
                "mounts[0].kernel_readahead_kb: must be a whole number from 0 to 65536",
            '{"mounts": [{"package": "/x", "mountpoint": "/y", "kernel_readahead_kb": "512"}]}':
                "mounts[0].kernel_readahead_kb: must be a whole number from 0 to 65536",
            '{"mounts": [{"package": "/x", "mountpoint": "/y"}, {"package": "/z", "mountpoint": "/y/"}]}':
                "mounts[1].mountpoint: '/y' is already used",
            '{"mounts": [{"mountpoint": "/y"}]}': "mounts[0].package: missing",
            '{"mounts": [{"package": "m@>=1.q", "mountpoint": "/y"}]}':
                "mounts[0].package: version requirement '>=1.q'",
            '{"store": "relative", "mounts": []}': "store: must be an absolute path",
            '{"mounts": [{"package": "oci://h:1/r:t", "mountpoint": "/y", "with_deps": true}]}':
                "mounts[0].with_deps: needs a path or NAME@REQ package",
            '{"lineage_journal": 3}': "lineage_journal: must be a string",
            '{"memory_budget": "64K"}': "memory_budget: must be at least 1M",
            '{"memory_budget": "lots"}': "memory_budget:",
            '{"decode_threads": 0}': "decode_threads: must be at least 1",
            '{"decode_threads": 5000}': "decode_threads: must be a whole number from 0 to 4096",
            '{"idle_release_s": -1}': "idle_release_s: must be a whole number",
            '{"extra": true}': "extra: unknown key",
            '{"mounts": [}': "not valid JSON",
            '[]': "must be an object",
        }
        for text, expect in cases.items():
            with self.subTest(text=text):
                path = self.write("bad.json", text.encode())
                proc = run(TORSHPKGD, "--config", path, check=False)
                self.assertEqual(proc.returncode, 1)
                lines = proc.stderr.decode().strip().splitlines()
                self.assertEqual(len(lines), 1, lines)
                self.assertIn(expect, lines[0])
        proc = run(TORSHPKGD, "--config", self.path("absent.json"), check=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn(b"cannot open the config file", proc.stderr)
        ok = run(TORSHPKGD, "--check", "--config", self.config([]))
        self.assertIn(b"OK, 0 mounts", ok.stdout)

    def test_journal_answers_who_read_the_model_and_where_it_came_from(self):
        a = self.package("a", "--lineage", "ConvertedFrom:llama.pt:converted from torch.save",
                         "--provenance", "creator=ci", "--provenance", "source_commit=abc123")
        bad = self.package("bad", "--compress", "none", sign=False)
        data = bytearray(read_bytes(bad))
        pos = data.find(self.files["model.safetensors"][70_000:70_100])
        data[pos] ^= 0xFF  # inside the weights' second 64 KiB chunk
        with open(bad, "wb") as f:
            f.write(data)
        proc = self.start(self.config([
            {"package": a, "mountpoint": self.points[0]},
            {"package": bad, "mountpoint": self.points[1], "allow_unsigned": True}]))
        self.notify.expect("READY")
        reader = run("cat", os.path.join(self.points[0], "resources", "config.json"))
        self.assertEqual(reader.stdout, self.files["config.json"])
        broken = run("cat", os.path.join(self.points[1], "resources", "model.safetensors"),
                     check=False)
        self.assertNotEqual(broken.returncode, 0)
        self.assertIn(b"Input/output error", broken.stderr)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)

        events = self.events()
        opened = [e["data"] for e in events if e["event"] == "opened"]
        self.assertTrue(any(o["comm"] == "cat" and o["package"] == "a@1.0.0" and o["uid"] == "0"
                            for o in opened), opened)
        failed = [e["data"] for e in events if e["event"] == "verification_failed"]
        self.assertTrue(failed and "hash mismatch" in failed[0]["error"], failed)
        derived = [e["data"] for e in events if e["event"] == "derived"]
        self.assertEqual([(d["relation"], d["parent"], d["provenance.creator"],
                           d["provenance.source_commit"]) for d in derived],
                         [("ConvertedFrom", "llama.pt", "ci", "abc123")])
        self.assertEqual(len({e["data"]["digest"] for e in events if e["data"].get("package") == "a@1.0.0"}), 1)

        log = tpk("lineage", "log", "--journal", self.journal).stdout.decode()
        self.assertIn("opened  a@1.0.0 at " + self.points[0] + " by cat", log)
        info = tpk("info", a).stdout.decode()
        self.assertIn("ConvertedFrom llama.pt (converted from torch.save)", info)
        self.assertIn("source_commit: abc123", info)
        show = tpk("lineage", "show", "a", "--journal", self.journal).stdout.decode()
        self.assertIn("<- ConvertedFrom llama.pt", show)
        dot = tpk("lineage", "export", "--dot", "--journal", self.journal).stdout.decode()
        self.assertIn('"llama.pt" -> "a@1.0.0" [label="ConvertedFrom"];', dot)
        self.assertIn(b"intact", tpk("lineage", "verify", "--journal", self.journal).stdout)
        cli = subprocess.run([TORSHPKG, "lineage", "log", "--json"], capture_output=True, check=True,
                             env={**os.environ, "TORSHPKG_JOURNAL": self.path("cli.jsonl")}).stdout
        self.assertEqual([e["event"] for e in json.loads(cli)], ["created", "created"])

        with open(self.journal) as f:
            lines = f.read().splitlines()
        for name, tampered in {
            "edited": [lines[0].replace("llama.pt", "other.pt")] + lines[1:],
            "deleted": lines[:2] + lines[3:],
            "reordered": [lines[1], lines[0]] + lines[2:],
            "truncated": lines[:-1],
        }.items():
            with self.subTest(tamper=name):
                with open(self.journal, "w") as f:
                    f.write("".join(line + "\n" for line in tampered))
                proc = tpk("lineage", "verify", "--journal", self.journal, check=False)
                self.assertEqual(proc.returncode, 3, proc.stderr)

    def test_a_random_1mib_read_is_not_read_ahead(self):
        # A 1 MiB pread at an offset inside a page covers 257 pages; with the mount's kernel
        # readahead at 1024 KiB the kernel took it for a stream and asked for 2 MiB more. The
        # daemon counts the bytes its replies carried.
        sock = self.path("torshpkgd.sock")
        self.start(self.config([]))
        self.notify.expect("READY")
        tpk("mount", self.package("a"), self.points[0], "--socket", sock)
        path = os.path.join(self.points[0], "resources", "model.safetensors")
        offset = (1 << 20) + 12345
        fd = os.open(path, os.O_RDONLY)
        try:
            self.assertEqual(os.pread(fd, 1 << 20, offset),
                             self.files["model.safetensors"][offset:offset + (1 << 20)])
        finally:
            os.close(fd)
        status = json.loads(tpk("status", "--json", "--socket", sock).stdout)
        [m] = [m for m in status["mounts"] if m["mountpoint"] == self.points[0]]
        self.assertGreaterEqual(m["bytes_served"], 1 << 20)
        self.assertLessEqual(m["bytes_served"], (1 << 20) + 8192)  # the pages the read covers

    def test_stored_chunks_skip_the_page_cache_unless_buffered_reads(self):
        if on_tmpfs(self.dir):
            self.skipTest("the packages must be on a disk: tmpfs is the page cache")
        a, b, c = (self.package(n, "--compress", "none") for n in ("a", "b", "c"))
        sock = self.path("torshpkgd.sock")
        proc = self.start(self.config([
            {"package": a, "mountpoint": self.points[0]},
            {"package": b, "mountpoint": self.points[1], "buffered_reads": True}]))
        self.notify.expect("READY")
        out = tpk("mount", c, self.points[2], "--buffered-reads", "--socket", sock)
        self.assertIn(b"through torshpkgd", out.stdout)
        size = len(self.files["model.safetensors"])
        for pkg, point, cached in ((a, self.points[0], False), (b, self.points[1], True),
                                   (c, self.points[2], True)):
            with self.subTest(package=os.path.basename(pkg), buffered_reads=cached):
                drop_cached(pkg)
                self.assertEqual(read_bytes(os.path.join(point, "resources", "model.safetensors")),
                                 self.files["model.safetensors"])
                if cached:
                    self.assertGreater(resident_bytes(pkg), size)
                else:
                    self.assertLess(resident_bytes(pkg), size // 10)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)

    def test_cache_size_and_kernel_readahead_per_mount(self):
        a, b, c = (self.package(n) for n in ("a", "b", "c"))
        sock = self.path("torshpkgd.sock")
        entry_a = {"package": a, "mountpoint": self.points[0], "cache_size": "256K",
                   "kernel_readahead_kb": 512}
        entry_b = {"package": b, "mountpoint": self.points[1]}
        proc = self.start(self.config([entry_a, entry_b]))
        self.notify.expect("READY")
        # The CLI's --cache-size and --kernel-readahead go through the daemon too.
        out = tpk("mount", c, self.points[2], "--cache-size", "128K", "--kernel-readahead", "256",
                  "--socket", sock)
        self.assertIn(b"through torshpkgd", out.stdout)
        weights = self.files["model.safetensors"]  # 3 MiB in 64 KiB chunks
        for point in self.points[:3]:
            self.assertEqual(read_bytes(os.path.join(point, "resources", "model.safetensors")),
                             weights)

        def mounts():
            status = json.loads(tpk("status", "--json", "--socket", sock).stdout)
            return {m["mountpoint"]: m for m in status["mounts"]}
        now = mounts()
        for point, capacity, readahead in ((self.points[0], 256 << 10, 512),
                                           (self.points[1], 64 << 20, 2048),
                                           (self.points[2], 128 << 10, 256)):
            with self.subTest(mountpoint=point):
                self.assertEqual(now[point]["cache_capacity"], capacity)
                self.assertGreater(now[point]["cache_bytes"], 0)
                self.assertLessEqual(now[point]["cache_bytes"], capacity)
                self.assertEqual(bdi_read_ahead_kb(point), readahead)
        # The same read filled the default cache past the small ones' limits.
        self.assertGreater(now[self.points[1]]["cache_bytes"], 256 << 10)
        # A changed size on reload remounts the entry with it; the CLI's mount stays.
        entry_a["cache_size"] = 524288
        self.config([entry_a, entry_b])
        proc.send_signal(signal.SIGHUP)
        self.notify.expect("RELOADING")
        self.notify.expect("READY")
        now = mounts()
        self.assertEqual(now[self.points[0]]["cache_capacity"], 512 << 10)
        self.assertEqual(now[self.points[2]]["cache_capacity"], 128 << 10)
        text = tpk("status", "--socket", sock).stdout.decode()
        self.assertIn("cache 0 B of 512.0 KiB (hits 0.0%)", text)
        # A request the CLI would not send is refused with a reason, and nothing is mounted.
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        s.sendall(json.dumps({"op": "mount", "package": b, "mountpoint": self.points[3],
                              "allow_unsigned": True, "cache_bytes": "lots"}).encode() + b"\n")
        reply = json.loads(s.recv(4096))
        s.close()
        self.assertFalse(reply["ok"])
        self.assertIn("cache_bytes: expected a whole number", reply["error"])
        self.assertEqual(reply["kind"], "invalid_argument")  # error.h's tokens, as documented
        self.assertFalse(mounted(self.points[3]))
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        unsigned = self.package("u", sign=False)
        s.sendall(json.dumps({"op": "mount", "package": unsigned,
                              "mountpoint": self.points[3]}).encode() + b"\n")
        reply = json.loads(s.recv(4096))
        s.close()
        self.assertEqual((reply["ok"], reply.get("kind")), (False, "bad_signature"), reply)
        self.assertFalse(mounted(self.points[3]))
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)

    def test_many_mounts_share_one_memory_budget_and_give_it_back_when_idle(self):
        pkg = self.package("a")
        points = [self.path("many", f"m{i:02d}") for i in range(40)]
        for p in points:
            os.makedirs(p)
        self.points += points  # unmounted by tearDown if the test fails
        budget = 8 << 20
        # Each mount's own cache (64 MiB by default) would hold all of its 3 MiB of weights.
        proc = self.start(self.config([{"package": pkg, "mountpoint": p} for p in points],
                                      memory_budget="8M", decode_threads=6, idle_release_s=2))
        self.notify.expect("READY", timeout=120)

        def proc_status():
            with open(f"/proc/{proc.pid}/status") as f:
                return {k: (v.split() or [""])[0] for k, v in (line.split(":", 1) for line in f)}
        before = int(proc_status()["VmRSS"]) * 1024
        weights = self.files["model.safetensors"]
        for p in points:
            self.assertEqual(read_bytes(os.path.join(p, "resources", "model.safetensors")),
                             weights)
        status = self.status()
        self.assertEqual(status["memory_budget"], budget)
        self.assertLessEqual(status["memory_used"], budget)
        self.assertGreater(status["memory_used"], budget // 2)
        self.assertEqual(sum(m["cache_bytes"] for m in status["mounts"]), status["memory_used"])
        self.assertEqual(status["decode_threads"], 6)
        self.assertLessEqual(status["decode_threads_running"], 6)
        # The server's memory grew by the budget, not by 40 mounts' 3 MiB each (120 MiB).
        grown = int(proc_status()["VmRSS"]) * 1024 - before
        self.assertLess(grown, budget + (32 << 20), grown)
        text = tpk("status", "--socket", self.path("torshpkgd.sock")).stdout.decode()
        self.assertIn("of 8.0 MiB for all mounts, decode threads", text)
        # Idle FUSE workers end: each mount keeps its loop and one worker, besides the
        # decoding threads (which end after 10 s idle) and the daemon's own.
        time.sleep(0.5)
        self.assertLessEqual(int(proc_status()["Threads"]), 3 * len(points) + 6 + 16)
        # Nobody reads for idle_release_s: every mount gives its chunks back.
        deadline = time.monotonic() + 20
        while self.status()["memory_used"] > 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertEqual(self.status()["memory_used"], 0)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=60), 0)

    def test_cli_goes_through_the_daemon_and_falls_back_without_it(self):
        a = self.package("a")
        sock = self.path("torshpkgd.sock")
        env_socket = ["--socket", sock]
        proc = self.start(self.config([]))
        self.notify.expect("READY")
        self.assertEqual(os.stat(sock).st_mode & 0o777, 0o600)
        # The daemon's trusted keys apply: the CLI names none.
        out = tpk("mount", a, self.points[0], *env_socket)
        self.assertIn(b"through torshpkgd", out.stdout)
        self.assertEqual(read_bytes(os.path.join(self.points[0], "resources", "config.json")),
                         self.files["config.json"])
        refused = tpk("mount", self.package("u", sign=False), self.points[1], *env_socket,
                      check=False)
        self.assertEqual(refused.returncode, 3, refused.stderr)  # the daemon's error kind
        self.assertFalse(mounted(self.points[1]))
        status = json.loads(tpk("status", "--json", *env_socket).stdout)
        self.assertTrue(status["daemon"])
        [m] = [m for m in status["mounts"] if m["mountpoint"] == self.points[0]]
        self.assertEqual(m["package"], "a@1.0.0")
        self.assertEqual(m["bytes_served"], len(self.files["config.json"]))
        self.assertEqual(len(m["signer"]), 64)
        self.assertEqual(m["verification_failures"], 0)
        self.assertIn("cache_hit_rate", m)
        # A reload keeps mounts made through the socket.
        proc.send_signal(signal.SIGHUP)
        self.notify.expect("RELOADING")
        self.notify.expect("READY")
        self.assertTrue(mounted(self.points[0]))
        busy = open(os.path.join(self.points[0], "resources", "config.json"), "rb")
        self.assertEqual(tpk("umount", self.points[0], *env_socket, check=False).returncode, 1)
        busy.close()
        tpk("umount", self.points[0], *env_socket)
        self.assertFalse(mounted(self.points[0]))
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)
        kinds = [e["event"] for e in self.events()]
        self.assertEqual(kinds.count("mounted"), 1)
        self.assertEqual(kinds.count("unmounted"), 1)
        self.assertEqual(kinds.count("mount_refused"), 1)
        # No daemon: the CLI mounts alone.
        self.assertFalse(os.path.exists(sock))
        out = tpk("mount", a, self.points[0], "--trusted-keys", self.path("trusted"), *env_socket)
        self.assertNotIn(b"through torshpkgd", out.stdout)
        status = json.loads(tpk("status", "--json", *env_socket).stdout)
        self.assertFalse(status["daemon"])
        self.assertIn({"path": a, "mountpoint": self.points[0], "standalone": True, "alive": True},
                      status["mounts"])
        tpk("umount", self.points[0], *env_socket)
        self.assertFalse(mounted(self.points[0]))

    def test_control_socket_refuses_other_users(self):
        proc = self.start(self.config([]))
        self.notify.expect("READY")
        sock = self.path("torshpkgd.sock")
        os.chmod(self.dir, 0o755)
        os.chmod(sock, 0o666)  # even when the file mode lets them in, peer credentials do not

        def as_nobody():
            os.setgid(65534)
            os.setuid(65534)
        # The daemon answers a refused peer at once, before it sends anything.
        probe = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
                 "print(s.recv(4096).decode())")
        out = subprocess.run(["/usr/bin/python3", "-c", probe, sock], capture_output=True,
                             preexec_fn=as_nobody, timeout=30)
        reply = json.loads(out.stdout)
        self.assertFalse(reply["ok"])
        self.assertIn("only root", reply["error"])
        # Root with a malformed request gets an error reply, and the daemon keeps running.
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        s.sendall(b"not json\n")
        reply = json.loads(s.recv(4096))
        self.assertEqual((reply["ok"], reply["kind"]), (False, "invalid_argument"))
        s.close()
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)

    def test_journald_gets_structured_fields(self):
        """The daemon runs in a private mount namespace whose /run/systemd/journal is a folder
        holding the test's own socket, so what libsystemd sends arrives here."""
        a = self.package("a")
        jdir = self.path("journal")
        jsock = bind_journal_socket(jdir)
        proc = self.start(self.config([{"package": a, "mountpoint": self.points[0]}]),
                          wrap=with_journal_socket(jdir))
        self.notify.expect("READY")
        run("nsenter", "-t", str(proc.pid), "-m", "cat",
            os.path.join(self.points[0], "resources", "config.json"))
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)
        entries = received_journal_entries(jsock)
        by_event = {e.get("TORSHPKG_EVENT"): e for e in entries}
        mounted_entry = by_event["mounted"]
        self.assertEqual(mounted_entry["TORSHPKG_PACKAGE"], "a@1.0.0")
        self.assertTrue(mounted_entry["TORSHPKG_DIGEST"].startswith("sha256:"))
        self.assertEqual(mounted_entry["TORSHPKG_MOUNTPOINT"], self.points[0])
        self.assertEqual(mounted_entry["MESSAGE_ID"], "f30a73e1236e402f9c0dae3b5ce62bfd")
        self.assertEqual(mounted_entry["SYSLOG_IDENTIFIER"], "torshpkgd")
        opened = by_event["opened"]
        self.assertEqual(opened["TORSHPKG_COMM"], "cat")
        self.assertEqual(opened["OBJECT_PID"], opened["TORSHPKG_PID"])
        self.assertIn("unmounted", by_event)
        with open(os.path.join(os.path.dirname(__file__), "..", "..", "systemd",
                               "torshpkg.catalog")) as f:
            catalog = f.read()
        for e in entries:
            if "MESSAGE_ID" in e:
                self.assertIn("-- " + e["MESSAGE_ID"], catalog)


    def test_mount_t_torshpkg_with_fstab_style_options_and_plain_umount(self):
        a = self.package("a")
        u = self.package("u", sign=False)
        mnt = self.points[0]
        opts = f"ro,trusted_keys={self.path('trusted')},nofail,x-systemd.after=network.target,socket={self.path('none.sock')}"
        proc = self.in_namespace(f"""
set -e
mount -t torshpkg {a} {mnt} -o {opts}
cat {mnt}/resources/config.json
grep -c " {mnt} fuse.torshpkg " /proc/mounts
umount {mnt}
grep -c " {mnt} " /proc/mounts || echo "unmounted"
if mount -t torshpkg {u} {mnt} -o trusted_keys={self.path('trusted')} 2>{self.path('err')}; then echo "mounted unsigned"; fi
mount -t torshpkg {a} {mnt} -o rw,trusted_keys={self.path('trusted')}
touch {mnt}/manifest.json 2>>{self.path('err')} || echo "still read-only"
umount {mnt}
if mount -t torshpkg {a} {mnt} -o bogus_option=1,trusted_keys={self.path('trusted')} 2>>{self.path('err')}; then echo "mounted bogus"; fi
grep -c " {mnt} " /proc/mounts || echo "nothing mounted"
mount -t torshpkg {u} {mnt} -o allow_unsigned,standalone,buffered_reads
cat {mnt}/manifest.json > /dev/null
tr '\\0' ' ' < /proc/$(pgrep -f "torshpkg mount {u}" | head -1)/cmdline | grep -q -- --buffered-reads && echo "buffered reads passed on"
umount {mnt}
""")
        out = proc.stdout.decode()
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertTrue(out.startswith(self.files["config.json"].decode()), out)
        self.assertIn("\n1\n", out)
        self.assertIn("unmounted", out)
        self.assertNotIn("mounted unsigned", out)
        self.assertIn("still read-only", out)
        self.assertNotIn("mounted bogus", out)
        self.assertIn("nothing mounted", out)
        self.assertIn("buffered reads passed on", out)
        err = read_bytes(self.path("err")).decode()
        self.assertIn("unsigned", err)
        self.assertIn("Read-only file system", err)
        self.assertIn("bogus_option", err)


class StallingServer:
    """A loopback TCP server that accepts connections and never answers them."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
                self.held.append(conn)  # kept open, never read or answered
            except (socket.timeout, OSError):
                pass

    def close(self):
        self.stop = True
        self.thread.join()
        for c in self.held:
            c.close()
        self.sock.close()


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class Robustness(DaemonTest):
    """The daemon answers and pings through slow and hostile work, and refuses honestly."""

    def test_a_stalled_registry_delays_only_its_own_mount_and_the_pings_go_on(self):
        a, b = self.package("a"), self.package("b")
        server = StallingServer()
        try:
            proc = self.start(self.config([{"package": a, "mountpoint": self.points[0]}]),
                              env={"WATCHDOG_USEC": "2000000"})
            self.notify.expect("READY")
            self.config([{"package": a, "mountpoint": self.points[0]},
                         {"package": f"http://127.0.0.1:{server.port}/m.torshpkg",
                          "mountpoint": self.points[1]},
                         {"package": b, "mountpoint": self.points[2]}],
                        store=self.path("store"), pull_timeout_s=2)
            proc.send_signal(signal.SIGHUP)
            self.notify.expect("RELOADING")
            reload_started = len(self.notify.times) - 1
            # While the pull stalls the socket answers, the other new mount is up, and the
            # stalled one shows as being mounted.
            deadline = time.monotonic() + 20
            while True:
                now = self.status(timeout=3)
                points = {m["mountpoint"] for m in now["mounts"] if not m.get("standalone")}
                if self.points[2] in points or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            self.assertEqual(points, {self.points[0], self.points[2]})
            self.assertEqual([(p["mountpoint"], p["state"]) for p in now["pending"]],
                             [(self.points[1], "mounting")])
            fields, _ = self.notify.expect("READY", timeout=120)
            self.assertEqual(fields["STATUS"], "2 mounted, 1 failed")
            times = self.notify.times[reload_started:]
            pings = [t for t, (f, _) in zip(times, self.notify.messages[reload_started:])
                     if "WATCHDOG" in f]
            self.assertGreater(len(pings), 4)
            gaps = [b - a for a, b in zip(pings, pings[1:])]
            self.assertLess(max(gaps), 1.0, gaps)  # half of WatchdogSec
            [failed] = self.status()["pending"]
            self.assertEqual((failed["mountpoint"], failed["state"]), (self.points[1], "failed"))
            self.assertIn("127.0.0.1", failed["error"])
            self.assertTrue(mounted(self.points[0]) and mounted(self.points[2]))
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=60), 0)
        finally:
            server.close()

    def test_a_long_start_extends_its_timeout_and_answers_meanwhile(self):
        a = self.package("a")
        server = StallingServer()
        try:
            proc = self.start(self.config(
                [{"package": a, "mountpoint": self.points[0]},
                 {"package": f"http://127.0.0.1:{server.port}/m.torshpkg",
                  "mountpoint": self.points[1]}], store=self.path("store"), pull_timeout_s=1))
            fields, _ = self.notify.expect("EXTEND_TIMEOUT_USEC")
            self.assertGreater(int(fields["EXTEND_TIMEOUT_USEC"]), 1_000_000)
            self.assertNotIn("READY", [k for f, _ in self.notify.messages for k in f])
            # The socket answers before READY: the stalled pull is shown as being mounted.
            pending = self.status(timeout=3)["pending"]
            self.assertIn((self.points[1], "mounting"),
                          [(p["mountpoint"], p["state"]) for p in pending])
            fields, state = self.notify.expect("READY", timeout=60)
            self.assertEqual(fields["STATUS"], "1 mounted, 1 failed")
            self.assertEqual(state, {self.points[0]: True, self.points[1]: False,
                                     self.points[2]: False, self.points[3]: False})
            [failed] = self.status()["pending"]
            self.assertIn("127.0.0.1", failed["error"])
            self.assertRegex(failed["error"], "(?i)timed? ?out|too slow|stall")
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=30), 0)
        finally:
            server.close()

    def test_a_reload_that_hits_a_permission_error_keeps_the_daemon_and_its_mounts(self):
        a = self.package("a")
        # Root without CAP_DAC_OVERRIDE, as a hardened unit may run it: a store folder that
        # belongs to another user cannot be written.
        store = self.path("store")
        os.makedirs(store)
        os.chown(store, 65534, 65534)
        wrap = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
        proc = self.start(self.config([{"package": a, "mountpoint": self.points[0]}]), wrap=wrap)
        self.notify.expect("READY")
        self.config([{"package": a, "mountpoint": self.points[0]},
                     {"package": "https://127.0.0.1:9/x.torshpkg", "mountpoint": self.points[1]}],
                    store=store)
        proc.send_signal(signal.SIGHUP)
        self.notify.expect("RELOADING")
        fields, _ = self.notify.expect("READY")
        self.assertEqual(fields["STATUS"], "1 mounted, 1 failed")
        self.assertIsNone(proc.poll())
        self.assertTrue(mounted(self.points[0]))
        [failed] = self.status()["pending"]
        self.assertIn("staging folder", failed["error"])
        self.assertIn("ermission denied", failed["error"])
        self.assertEqual(read_bytes(os.path.join(self.points[0], "resources", "config.json")),
                         self.files["config.json"])
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)

    def verify_journal(self):
        return tpk("lineage", "verify", "--journal", self.journal, check=False)

    def test_a_torn_journal_is_cut_and_recorded_at_start(self):
        a = self.package("a")
        proc = self.start(self.config([{"package": a, "mountpoint": self.points[0]}]))
        self.notify.expect("READY")
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)
        torn = b'{"seq": 99, "time": "2026-12-'  # a crash in the middle of an append
        with open(self.journal, "ab") as f:
            f.write(torn)
        proc = self.start(self.config([{"package": a, "mountpoint": self.points[0]}]))
        fields, state = self.notify.expect("READY")
        self.assertTrue(state[self.points[0]])
        recovered = [e for e in self.events() if e["event"] == "recovered"]
        self.assertEqual([e["data"]["bytes_dropped"] for e in recovered], [str(len(torn))])
        out = self.verify_journal()
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(b"recovered: an interrupted write of %d bytes" % len(torn), out.stdout)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)

    def test_a_full_disk_loses_events_but_never_blocks_mounts(self):
        state = self.path("small")
        os.makedirs(state)
        run("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", state)
        try:
            self.journal = os.path.join(state, "lineage.jsonl")
            a, b = self.package("a"), self.package("b")
            proc = self.start(self.config([{"package": a, "mountpoint": self.points[0]}]))
            self.notify.expect("READY")
            fd = os.open(os.path.join(state, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                while True:
                    os.write(fd, bytes(512))
            except OSError:
                pass  # the file system is full
            finally:
                os.close(fd)
            sock = self.path("torshpkgd.sock")
            tpk("mount", b, self.points[1], "--socket", sock)  # its "mounted" event cannot land
            self.assertTrue(mounted(self.points[1]))
            status = self.status()
            self.assertGreaterEqual(status.get("journal_lost_events", 0), 1)
            self.assertEqual(self.verify_journal().returncode, 0)  # nothing torn
            os.unlink(os.path.join(state, "filler"))
            tpk("umount", self.points[1], "--socket", sock)
            self.assertEqual([e["event"] for e in self.events()][-1], "unmounted")
            out = self.verify_journal()
            self.assertEqual(out.returncode, 0, out.stderr)
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=30), 0)
        finally:
            subprocess.run(["umount", "-l", state], stderr=subprocess.DEVNULL)

    def test_kill_9_at_any_moment_never_makes_a_false_alarm(self):
        a = self.package("a")
        cfg = self.config([{"package": a, "mountpoint": self.points[0]}])
        path = os.path.join(self.points[0], "resources", "config.json")
        for crash in range(8):
            with self.subTest(crash=crash):
                proc = self.start(cfg)
                self.notify.expect("READY")
                readers = [subprocess.Popen(["cat", path], stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL) for _ in range(6)]
                time.sleep(0.003 * crash)  # crash at another moment of the opens' appends
                proc.kill()
                proc.wait()
                for r in readers:
                    r.wait()
                out = self.verify_journal()
                self.assertEqual(out.returncode, 0, out.stderr)
        proc = self.start(cfg)  # the stale mount is cleared and mounted again
        self.notify.expect("READY")
        self.assertEqual(read_bytes(path), self.files["config.json"])
        self.assertEqual(self.verify_journal().returncode, 0)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)

    def test_a_process_name_with_escapes_is_shown_escaped(self):
        a = self.package("a")
        proc = self.start(self.config([{"package": a, "mountpoint": self.points[0]}]))
        self.notify.expect("READY")
        evil = self.path("\x1b[31mcat")
        os.symlink("/bin/cat", evil)
        run(evil, os.path.join(self.points[0], "resources", "config.json"))
        deadline = time.monotonic() + 10
        while not any(e["event"] == "opened" for e in self.events()):
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        log = tpk("lineage", "log", "--journal", self.journal).stdout
        self.assertNotIn(b"\x1b", log)
        self.assertIn(b"by \\x1b[31mcat (pid", log)
        exact = json.loads(tpk("lineage", "log", "--json", "--journal", self.journal).stdout)
        self.assertIn("\x1b[31mcat", [e["data"].get("comm") for e in exact])
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)
        self.assertNotIn(b"\x1b", proc.stderr.read())

    def test_idle_clients_do_not_delay_status_and_nul_bytes_are_refused(self):
        self.start(self.config([]))
        self.notify.expect("READY")
        sock = self.path("torshpkgd.sock")
        idle = []
        for _ in range(8):
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            idle.append(s)  # connected, sending nothing
        try:
            # Served one at a time with 5 s each, these would hold status up for 40 s.
            self.assertEqual(self.status(timeout=4)["mounts"], [])
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            s.sendall(b'{"op": "status"}\x00{"op": "mount"}\n')
            reply = json.loads(s.recv(65536))
            s.close()
            self.assertFalse(reply["ok"])
            self.assertIn("NUL", reply["error"])
        finally:
            for s in idle:
                s.close()

    def test_a_fifo_is_refused_without_waiting_for_a_writer(self):
        fifo = self.path("pipe.torshpkg")
        os.mkfifo(fifo)
        proc = self.start(self.config([{"package": fifo, "mountpoint": self.points[0]}]))
        fields, _ = self.notify.expect("READY")
        self.assertEqual(fields["STATUS"], "0 mounted, 1 failed")
        self.assertIn("not a regular file", self.status()["pending"][0]["error"])
        refused = tpk("mount", fifo, self.points[1], "--socket", self.path("torshpkgd.sock"),
                      check=False, timeout=30)
        self.assert_one_line_error(refused, 2)
        self.assertIn("not a regular file", refused.stderr.decode())
        info = tpk("info", fifo, check=False, timeout=30)
        self.assert_one_line_error(info, 2)
        self.assertIsNone(proc.poll())
        self.assertEqual(self.status()["mounts"], [])

    def test_expensive_key_slots_of_an_untrusted_package_cost_no_key_derivation(self):
        self.write("pw", b"secret\n")
        pkg = self.path("enc.torshpkg")
        tpk("create", pkg, "--name", "enc", "--version", "1.0.0", "-q", "--add-dir",
            "=" + self.path("model"), "--encrypt", "aes-256-gcm", "--password-file",
            self.path("pw"))
        # Raise the slot's cost to 1 GiB of Argon2id memory (unsigned: nothing else to break).
        with zipfile.ZipFile(pkg) as z:
            items = [(i, z.read(i.filename)) for i in z.infolist()]
        costly = self.path("costly.torshpkg")
        with zipfile.ZipFile(costly, "w") as z:
            for info, data in items:
                if info.filename == "manifest.json":
                    data = data.replace(b'"memory_kib" : 65536', b'"memory_kib" : 1048576')
                    data = data.replace(b'"time_cost" : 3', b'"time_cost" : 1')
                    self.assertIn(b"1048576", data)
                z.writestr(info, data)
        rc, err, rss = max_rss_kib(TORSHPKG, "mount", costly, self.points[0], "--standalone",
                                   "--password-file", self.path("pw"), "--trusted-keys",
                                   self.path("trusted"))
        self.assertEqual(rc, 3, err)
        self.assertIn("--allow-unsigned", err)
        self.assertLess(rss, 256 * 1024)  # no 1 GiB Argon2id run
        # The same slot is tried once the package is trusted: the measure can see it.
        rc, err, rss = max_rss_kib(TORSHPKG, "mount", costly, self.points[0], "--standalone",
                                   "--password-file", self.path("pw"), "--allow-unsigned",
                                   "--foreground")
        self.assertGreater(rss, 900 * 1024, err)
        subprocess.run(["umount", "-l", self.points[0]], stderr=subprocess.DEVNULL)
        # Through the daemon: refused before any key slot, and the daemon stays small.
        proc = self.start(self.config([]))
        self.notify.expect("READY")
        refused = tpk("mount", costly, self.points[1], "--socket", self.path("torshpkgd.sock"),
                      "--password-file", self.path("pw"), check=False)
        self.assertEqual(refused.returncode, 3, refused.stderr)
        self.assertLess(vm_hwm_kib(proc.pid), 256 * 1024)

    def test_mount_points_are_checked(self):
        a = self.package("a")
        sock = self.path("torshpkgd.sock")
        link = self.path("link")
        os.symlink(self.points[0], link)
        full = self.points[1]
        self.write("m1/keep.txt", b"mine")
        self.start(self.config([]))
        self.notify.expect("READY")
        for way in (["--standalone", "--trusted-keys", self.path("trusted")], ["--socket", sock]):
            with self.subTest(way=way[0]):
                proc = tpk("mount", a, link, *way, check=False)
                self.assert_one_line_error(proc)
                self.assertIn("symlink", proc.stderr.decode())
                self.assertFalse(mounted(self.points[0]))
                proc = tpk("mount", a, full, *way, check=False)
                self.assert_one_line_error(proc)
                self.assertIn("--nonempty", proc.stderr.decode())
                # Given twice in other spellings, one folder is one mount point.
                tpk("mount", a, self.points[2] + "/", *way)
                for spelling in (self.points[2], self.points[2] + "/../m2"):
                    proc = tpk("mount", a, spelling, *way, check=False)
                    self.assert_one_line_error(proc)
                    self.assertIn("already mounted", proc.stderr.decode())
                with open("/proc/mounts") as f:
                    self.assertEqual(sum(line.split()[1] == self.points[2] for line in f), 1)
                tpk("umount", self.points[2] + "/../m2", "--socket", sock)
                self.assertFalse(mounted(self.points[2]))
                tpk("mount", a, full, *way, "--nonempty")
                self.assertTrue(mounted(full))
                tpk("umount", full, "--socket", sock)
        self.assertEqual(read_bytes(os.path.join(full, "keep.txt")), b"mine")

    def test_umount_leaves_a_foreign_mount_on_top_alone(self):
        a = self.package("a")
        sock = self.path("torshpkgd.sock")
        self.start(self.config([{"package": a, "mountpoint": self.points[0]}]))
        self.notify.expect("READY")
        tpk("mount", a, self.points[1], "--standalone", "--trusted-keys", self.path("trusted"))
        for point, args in ((self.points[0], ["--socket", sock]), (self.points[1], [])):
            with self.subTest(point=point):
                run("mount", "-t", "tmpfs", "tmpfs", point)
                proc = tpk("umount", point, *args, check=False)
                self.assert_one_line_error(proc)
                self.assertIn("on top", proc.stderr.decode())
                with open("/proc/mounts") as f:
                    types = [line.split()[2] for line in f if line.split()[1] == point]
                self.assertEqual(types, ["fuse.torshpkg", "tmpfs"])
                run("umount", point)  # the tmpfs
                tpk("umount", point, *args)
                self.assertFalse(mounted(point))

    def test_refusals_name_the_way_out(self):
        signed, unsigned = self.package("s"), self.package("u", sign=False)
        point = self.points[0]
        proc = tpk("mount", unsigned, point, "--standalone", "--trusted-keys",
                   self.path("no-such-keys"), check=False)
        self.assert_one_line_error(proc, 3)
        self.assertIn("--allow-unsigned", proc.stderr.decode())
        proc = tpk("mount", signed, point, "--standalone", "--trusted-keys",
                   self.path("no-such-keys"), check=False)
        self.assert_one_line_error(proc)
        self.assertIn("--trusted-keys DIR", proc.stderr.decode())
        proc = tpk("umount", point, check=False)
        self.assert_one_line_error(proc, 1)
        self.assertIn("not a mount point", proc.stderr.decode())
        tpk("mount", signed, point, "--standalone", "--trusted-keys", self.path("trusted"))
        busy = open(os.path.join(point, "resources", "config.json"), "rb")
        try:
            proc = tpk("umount", point, check=False)
            self.assert_one_line_error(proc)
            self.assertIn("--lazy", proc.stderr.decode())
        finally:
            busy.close()
        # A standalone mount whose process died shows as dead, and umount clears it.
        [pid] = [int(p) for p in os.listdir("/proc") if p.isdigit() and
                 f"mount\0{signed}\0".encode() in read_bytes(f"/proc/{p}/cmdline")]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.05)
        [m] = [m for m in json.loads(tpk("status", "--json", "--socket",
                                        self.path("none.sock")).stdout)["mounts"]
               if m["mountpoint"] == point]
        self.assertEqual((m["mountpoint"], m["alive"]), (point, False))
        self.assertIn(b"dead", tpk("status", "--socket", self.path("none.sock")).stdout)
        tpk("umount", point)
        self.assertFalse(mounted(point))


class Units(unittest.TestCase):
    def test_units_expose_at_most_4_0(self):
        build = os.environ.get("BUILD_ROOT") or os.path.join(os.path.dirname(__file__), "..", "..", "build")
        for unit in ("torshpkgd.service", "torshpkg-mount@.service"):
            with self.subTest(unit=unit):
                proc = run("systemd-analyze", "security", "--offline=yes", "--no-pager",
                           os.path.join(build, "daemon", unit))
                last = proc.stdout.decode().strip().splitlines()[-1]
                exposure = float(last.split(":")[1].split()[0])
                self.assertLessEqual(exposure, 4.0, last)
                text = "\n".join(line for line in read_bytes(os.path.join(build, "daemon", unit))
                                  .decode().splitlines() if not line.startswith("#"))
                for namespacing in ("ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
                                    "PrivateMounts", "ProtectKernelTunables", "ProtectKernelModules",
                                    "ProtectKernelLogs", "ProtectControlGroups", "PrivateNetwork",
                                    "ReadOnlyPaths", "ProtectProc"):
                    self.assertNotIn("\n" + namespacing + "=", text)


if __name__ == "__main__":
    unittest.main()
