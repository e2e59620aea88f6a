"""Who may read a mount, and who may ask torshpkgd: real mounts made each way (standalone,
torshpkgd's config, torshpkgd's socket, the mount helper) of each kind of package (plain,
signed, encrypted), read by real unprivileged users this test creates."""
import grp
import json
import os
import pwd
import socket
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from helpers import TORSHPKG, read_bytes, tpk  # noqa: E402
from test_daemon import DaemonTest, mounted  # noqa: E402

ALICE, BOB, GROUP = "tpk-alice", "tpk-bob", "tpk-mounters"  # Bob is in the group, Alice not
USERS = ("root", ALICE, BOB)


def setUpModule():
    if not any(g.gr_name == GROUP for g in grp.getgrall()):
        subprocess.run(["groupadd", GROUP], check=True)
    for user in (ALICE, BOB):
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin",
                            "--user-group", user], check=True)
    subprocess.run(["usermod", "-a", "-G", GROUP, BOB], check=True)


def tearDownModule():
    for user in (ALICE, BOB):
        subprocess.run(["userdel", user], stderr=subprocess.DEVNULL)
    subprocess.run(["groupdel", GROUP], stderr=subprocess.DEVNULL)


def uid(user):
    return pwd.getpwnam(user).pw_uid


def run_as(user, *args, timeout=60):
    """Runs a command as `user` (with the user's groups), or as root."""
    preexec = None
    if user != "root":
        pw = pwd.getpwnam(user)
        groups = os.getgrouplist(user, pw.pw_gid)

        def preexec():
            os.setgroups(groups)
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
    return subprocess.run([str(a) for a in args], capture_output=True, preexec_fn=preexec,
                          timeout=timeout, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


EVERYONE = {"root": (True, True), ALICE: (True, True), BOB: (True, True)}
ROOT_ONLY = {"root": (True, True), ALICE: (False, False), BOB: (False, False)}


class AccessTest(DaemonTest):
    def setUp(self):
        super().setUp()
        os.chmod(self.dir, 0o755)  # the users reach the packages and the mount points
        for p in self.points:
            os.chmod(p, 0o755)
        self.key = self.write("model.key", os.urandom(32))
        os.chmod(self.key, 0o600)
        self.pkgs = {
            "plain": self.package("plain", sign=False),
            "signed": self.package("signed"),
            "encrypted": self.package("encrypted", "--encrypt", "aes-256-gcm",
                                      "--key-file", self.key),
        }
        for pkg in self.pkgs.values():
            os.chmod(pkg, 0o644)
        self.sock = self.path("torshpkgd.sock")

    def tearDown(self):
        for p in self.points:
            while mounted(p):
                if subprocess.run(["umount", "-l", p], stderr=subprocess.DEVNULL).returncode:
                    break
        super().tearDown()

    def who_can(self, point):
        """{user: (can list the mount, can read a file in it)}."""
        out = {}
        for user in USERS:
            listed = run_as(user, "ls", point).returncode == 0
            read = run_as(user, "cat", os.path.join(point, "resources", "config.json"))
            if read.returncode == 0:
                self.assertEqual(read.stdout, self.files["config.json"])
            out[user] = (listed, read.returncode == 0)
        return out

    def modes(self, point):
        return (stat.S_IMODE(os.stat(point).st_mode),
                stat.S_IMODE(os.stat(os.path.join(point, "resources", "config.json")).st_mode))

    def secret_args(self, kind):
        return ["--key-file", self.key] if kind == "encrypted" else []

    def trust_args(self, kind):
        return ["--allow-unsigned"] if kind == "plain" else []

    def expected(self, kind):
        return ROOT_ONLY if kind == "encrypted" else EVERYONE


class Standalone(AccessTest):
    def test_each_kind_and_the_access_options(self):
        point = self.points[0]
        for kind, pkg in self.pkgs.items():
            with self.subTest(kind=kind):
                tpk("mount", pkg, point, "--standalone", "--trusted-keys", self.path("trusted"),
                    *self.trust_args(kind), *self.secret_args(kind))
                self.assertEqual(self.who_can(point), self.expected(kind))
                self.assertEqual(self.modes(point),
                                 (0o500, 0o400) if kind == "encrypted" else (0o555, 0o444))
                self.assertEqual(os.stat(point).st_uid, 0)
                tpk("umount", point)
        enc = self.pkgs["encrypted"]
        common = ["--standalone", "--trusted-keys", self.path("trusted"), "--key-file", self.key]
        tpk("mount", enc, point, *common, "--owner", ALICE)
        self.assertEqual(self.who_can(point), {"root": (True, True), ALICE: (True, True),
                                               BOB: (False, False)})
        self.assertEqual(os.stat(point).st_uid, uid(ALICE))
        self.assertEqual(os.stat(point).st_gid, pwd.getpwnam(ALICE).pw_gid)
        tpk("umount", point)
        tpk("mount", enc, point, *common, "--group", GROUP, "--mode", "0440")
        self.assertEqual(self.who_can(point), {"root": (True, True), ALICE: (False, False),
                                               BOB: (True, True)})
        self.assertEqual(self.modes(point), (0o550, 0o440))
        tpk("umount", point)
        # The mount helper's way, through -o.
        tpk("mount", self.pkgs["signed"], point, *common[:3], "-o", "umask=0077")
        self.assertEqual(self.who_can(point), ROOT_ONLY)
        self.assertEqual(self.modes(point), (0o500, 0o400))
        tpk("umount", point)
        for bad, says in ((["--mode", "0644"], "read-only"), (["--mode", "4444"], "setuid"),
                          (["--mode", "rw"], "octal"), (["--owner", "no-such-user-x"], "no such user"),
                          (["--group", "no-such-group-x"], "no such group")):
            with self.subTest(bad=bad):
                proc = tpk("mount", self.pkgs["signed"], point, *common[:3], *bad, check=False)
                self.assert_one_line_error(proc, 2)  # a bad option value
                self.assertIn(says, proc.stderr.decode())
                self.assertFalse(mounted(point))

    def test_executable_resources_can_be_run_from_the_mount(self):
        script = self.write("model/bin/hello.sh", b"#!/bin/sh\necho hello from the mount\n")
        os.chmod(script, 0o755)
        pkg = self.package("tools", sign=False)
        os.chmod(pkg, 0o644)
        point = self.points[0]
        tpk("mount", pkg, point, "--allow-unsigned", "--standalone")
        ran = run_as(ALICE, os.path.join(point, "resources", "bin", "hello.sh"))
        self.assertEqual(ran.returncode, 0, ran.stderr)
        self.assertEqual(ran.stdout, b"hello from the mount\n")
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(point, "resources", "bin",
                                                           "hello.sh")).st_mode), 0o555)
        self.assertEqual(self.modes(point), (0o555, 0o444))
        tpk("umount", point)
        # extract gives it its x bits back, and only it.
        tpk("extract", pkg, self.path("out"), "-q")
        self.assertEqual(os.stat(self.path("out", "resources", "bin", "hello.sh")).st_mode & 0o111,
                         0o111 & ~current_umask())
        self.assertEqual(os.stat(self.path("out", "resources", "config.json")).st_mode & 0o111, 0)

    def test_a_user_mounts_alone_when_the_daemon_does_not_serve_it(self):
        # Debian's /dev/fuse is 0666 (fusermount3 does the mount for users); some containers
        # make it 0600.
        before = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
        try:
            os.chmod("/dev/fuse", 0o666)
        except OSError:
            self.skipTest("cannot make /dev/fuse usable by other users here")
        try:
            self.start(self.config([]))
            self.notify.expect("READY")
            self.assertEqual(stat.S_IMODE(os.stat(self.sock).st_mode), 0o600)
            mine = self.path("alice-mount")
            os.makedirs(mine)
            os.chown(mine, uid(ALICE), -1)
            out = run_as(ALICE, TORSHPKG, "mount", self.pkgs["plain"], mine, "--allow-unsigned",
                         "--socket", self.sock)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertNotIn(b"through torshpkgd", out.stdout)
            try:
                # Without user_allow_other in /etc/fuse.conf only Alice's processes may enter.
                self.assertEqual(run_as(ALICE, "cat", os.path.join(mine, "resources", "config.json"))
                                 .stdout, self.files["config.json"])
                self.assertNotEqual(run_as(BOB, "ls", mine).returncode, 0)
                status = run_as(ALICE, TORSHPKG, "status", "--json", "--socket", self.sock)
                self.assertEqual(status.returncode, 0, status.stderr)
                listed = json.loads(status.stdout)
                self.assertIn(mine, [m["mountpoint"] for m in listed["mounts"]])
                self.assertEqual((listed["daemon"], listed["daemon_not_serving_you"]), (False, True))
            finally:
                done = run_as(ALICE, TORSHPKG, "umount", mine, "--socket", self.sock)
            self.assertEqual(done.returncode, 0, done.stderr)
            self.assertFalse(mounted(mine))
        finally:
            os.chmod("/dev/fuse", before)


class ThroughTheDaemon(AccessTest):
    def test_config_mounts(self):
        enc = self.pkgs["encrypted"]
        extra = [self.path(f"c{i}") for i in range(2)]
        for p in extra:
            os.makedirs(p, 0o755)
        self.points.extend(extra)
        self.start(self.config([
            {"package": self.pkgs["plain"], "mountpoint": self.points[0], "allow_unsigned": True},
            {"package": self.pkgs["signed"], "mountpoint": self.points[1]},
            {"package": enc, "mountpoint": self.points[2], "key_file": self.key},
            {"package": enc, "mountpoint": self.points[3], "key_file": self.key, "owner": ALICE},
            {"package": enc, "mountpoint": extra[0], "key_file": self.key, "group": GROUP,
             "mode": "0440"},
            {"package": self.pkgs["signed"], "mountpoint": extra[1], "mode": "0400"},
        ]))
        fields, _ = self.notify.expect("READY")
        self.assertEqual(fields["STATUS"], "6 mounted")
        self.assertEqual(self.who_can(self.points[0]), EVERYONE)
        self.assertEqual(self.who_can(self.points[1]), EVERYONE)
        self.assertEqual(self.who_can(self.points[2]), ROOT_ONLY)
        self.assertEqual(self.who_can(self.points[3]),
                         {"root": (True, True), ALICE: (True, True), BOB: (False, False)})
        self.assertEqual(self.who_can(extra[0]),
                         {"root": (True, True), ALICE: (False, False), BOB: (True, True)})
        self.assertEqual(self.who_can(extra[1]), ROOT_ONLY)
        status = json.loads(tpk("status", "--json", "--socket", self.sock).stdout)
        # (Other tests' standalone mounts, made meanwhile, are listed too.)
        modes = {m["mountpoint"]: (m["mode"], m["owner_uid"]) for m in status["mounts"]
                 if not m.get("standalone")}
        self.assertEqual(modes[self.points[2]], ("0400", 0))
        self.assertEqual(modes[self.points[3]], ("0400", uid(ALICE)))
        self.assertEqual(modes[extra[0]], ("0440", 0))

    def test_socket_mounts_by_root(self):
        self.start(self.config([]))
        self.notify.expect("READY")
        for kind, pkg in self.pkgs.items():
            with self.subTest(kind=kind):
                out = tpk("mount", pkg, self.points[0], "--socket", self.sock,
                          *self.trust_args(kind), *self.secret_args(kind))
                self.assertIn(b"through torshpkgd", out.stdout)
                self.assertEqual(self.who_can(self.points[0]), self.expected(kind))
                tpk("umount", self.points[0], "--socket", self.sock)
        tpk("mount", self.pkgs["encrypted"], self.points[0], "--socket", self.sock,
            "--key-file", self.key, "--owner", ALICE)
        self.assertEqual(self.who_can(self.points[0]),
                         {"root": (True, True), ALICE: (True, True), BOB: (False, False)})

    def test_mount_helper_and_fstab_options(self):
        trusted = self.path("trusted")
        point = self.points[0]
        as_user = "setpriv --reuid=$u --regid=$(id -g $u) --init-groups"
        checks = (f"for u in root {ALICE} {BOB}; do l=0; r=0; "
                  f"{as_user} ls {point} >/dev/null 2>&1 || l=$?; "
                  f"{as_user} cat {point}/resources/config.json >/dev/null 2>&1 || r=$?; "
                  "echo \"@LABEL@ $u $l $r\"; done")
        cases = {
            "plain": (self.pkgs["plain"], "allow_unsigned,standalone"),
            "signed": (self.pkgs["signed"], f"ro,trusted_keys={trusted},nofail"),
            "encrypted": (self.pkgs["encrypted"], f"trusted_keys={trusted},key_file={self.key}"),
            "enc-group": (self.pkgs["encrypted"],
                          f"trusted_keys={trusted},key_file={self.key},group={GROUP},mode=0440"),
            "umask": (self.pkgs["signed"], f"trusted_keys={trusted},umask=0027,group={GROUP}"),
        }
        script = "set -e\n"
        for label, (pkg, opts) in cases.items():
            script += (f"mount -t torshpkg {pkg} {point} -o {opts},socket={self.path('none.sock')}\n"
                       + checks.replace("@LABEL@", label) + f"\numount {point}\n")
        proc = self.in_namespace(script)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        got = {}
        for line in proc.stdout.decode().splitlines():
            label, user, listed, read = line.split()
            got.setdefault(label, {})[user] = (listed == "0", read == "0")
        self.assertEqual(got["plain"], EVERYONE)
        self.assertEqual(got["signed"], EVERYONE)
        self.assertEqual(got["encrypted"], ROOT_ONLY)
        member_only = {"root": (True, True), ALICE: (False, False), BOB: (True, True)}
        self.assertEqual(got["enc-group"], member_only)
        self.assertEqual(got["umask"], member_only)


class GroupMembers(AccessTest):
    """Bob, a member of the control group, asks torshpkgd; Alice is not a member."""

    def setUp(self):
        super().setUp()
        self.start(self.config([], control_group=GROUP))
        self.notify.expect("READY")
        self.bobs = self.path("bob")
        os.makedirs(self.bobs)
        os.chown(self.bobs, uid(BOB), -1)
        self.points.append(self.bobs)
        self.bob_key = self.write("bob.key", read_bytes(self.key))
        os.chown(self.bob_key, uid(BOB), -1)
        self.alice_key = self.write("alice.key", read_bytes(self.key))
        os.chown(self.alice_key, uid(ALICE), -1)
        os.chmod(self.alice_key, 0o644)  # readable by Bob, but not Bob's

    def bob(self, *args):
        return run_as(BOB, TORSHPKG, *args, "--socket", self.sock)

    def test_socket_mode_and_a_member_mounts_what_it_may(self):
        self.assertEqual(stat.S_IMODE(os.stat(self.sock).st_mode), 0o666)
        out = self.bob("mount", self.pkgs["signed"], self.bobs)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(b"through torshpkgd", out.stdout)
        self.assertEqual(self.who_can(self.bobs), EVERYONE)
        self.assertEqual(os.stat(self.bobs).st_uid, uid(BOB))
        status = json.loads(tpk("status", "--json", "--socket", self.sock).stdout)
        [m] = [m for m in status["mounts"] if m["mountpoint"] == self.bobs]
        self.assertEqual((m["requested_by_uid"], m["owner_uid"]), (uid(BOB), uid(BOB)))
        self.assertEqual(self.bob("umount", self.bobs).returncode, 0)
        self.assertFalse(mounted(self.bobs))
        # An encrypted package with Bob's own key file: Bob's alone.
        out = self.bob("mount", self.pkgs["encrypted"], self.bobs, "--key-file", self.bob_key)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(self.who_can(self.bobs),
                         {"root": (True, True), ALICE: (False, False), BOB: (True, True)})
        self.assertEqual(self.modes(self.bobs), (0o500, 0o400))
        # Alice is no member: she may not unmount it, through the daemon or alone.
        self.assertNotEqual(run_as(ALICE, TORSHPKG, "umount", self.bobs, "--socket",
                                   self.sock).returncode, 0)
        self.assertTrue(mounted(self.bobs))
        self.assertEqual(self.bob("umount", self.bobs).returncode, 0)
        events = [e for e in self.events() if e["event"] in ("mounted", "unmounted")]
        self.assertEqual(len(events), 4)
        for e in events:
            self.assertEqual(e["data"]["requester_uid"], str(uid(BOB)), e)
            self.assertIn("requester_pid", e["data"])

    def test_what_a_member_may_not_do(self):
        roots = self.path("roots")
        os.makedirs(roots, 0o777)  # writable by Bob, but not Bob's
        self.points.append(roots)
        unreadable = self.path("unreadable.torshpkg")
        tpk("create", unreadable, "--name", "u", "--version", "1.0.0", "-q", "--add-dir",
            "=" + self.path("model"), "--sign-key", self.path("k.key"))
        os.chmod(unreadable, 0o600)
        nonempty = self.path("bob-full")
        os.makedirs(nonempty)
        os.chown(nonempty, uid(BOB), -1)
        self.write("bob-full/x", b"x")
        cases = [
            ("a package Bob cannot read", ["mount", unreadable, self.bobs], "Permission denied"),
            ("a folder Bob does not own", ["mount", self.pkgs["signed"], roots], "another user"),
            ("a folder with files", ["mount", self.pkgs["signed"], nonempty], "not empty"),
            ("someone else's secret", ["mount", self.pkgs["encrypted"], self.bobs, "--key-file",
                                       self.alice_key], "another user"),
            ("an unsigned package", ["mount", self.pkgs["plain"], self.bobs, "--allow-unsigned"],
             "may not mount unsigned"),
            ("a key the daemon does not trust", ["mount", self.pkgs["signed"], self.bobs,
                                                 "--require-key", "ab" * 32], "not a trusted key"),
            ("another owner", ["mount", self.pkgs["signed"], self.bobs, "--owner", ALICE],
             "only root"),
        ]
        for why, args, says in cases:
            with self.subTest(why=why):
                proc = self.bob(*args)
                self.assertNotEqual(proc.returncode, 0, why)
                self.assertIn(says, proc.stderr.decode(), why)
                self.assertFalse(mounted(self.bobs) or mounted(roots) or mounted(nonempty))
        # A request that would widen the trust policy is refused outright.
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.sock)
        s.sendall(json.dumps({"op": "mount", "package": self.pkgs["signed"],
                              "mountpoint": self.bobs,
                              "trusted_keys_dir": self.path("k")}).encode() + b"\n")
        reply = json.loads(s.recv(65536))
        s.close()
        self.assertFalse(reply["ok"])
        self.assertIn("applies its own trusted keys", reply["error"])
        # Bob may not unmount what root mounted through the socket.
        tpk("mount", self.pkgs["signed"], self.points[0], "--socket", self.sock)
        proc = self.bob("umount", self.points[0])
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("another user", proc.stderr.decode())
        self.assertTrue(mounted(self.points[0]))
        refused = [e["data"] for e in self.events() if e["event"] == "mount_refused"]
        bobs = [r for r in refused if r["requester_uid"] == str(uid(BOB))]
        # Each refusal the daemon made (the CLI refuses the unreadable package and the full
        # folder itself): the folder, the secret, the unsigned package, the key, the owner.
        self.assertEqual(len(bobs), 5, refused)
        self.assertTrue(all(r["requester_pid"].isdigit() for r in bobs))
        [umount] = [e["data"] for e in self.events() if e["event"] == "umount_refused"]
        self.assertEqual(umount["requester_uid"], str(uid(BOB)))


if __name__ == "__main__":
    unittest.main()
