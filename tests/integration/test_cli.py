"""The torshpkg command line, end to end, with the real binary."""
import json
import os
import pty
import random
import select
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from helpers import (CODECS, TORSHPKG, TempDirTest, bind_journal_socket, random_bytes,  # noqa: E402
                     received_journal_entries, run, text_bytes, tpk, with_journal_socket)


class CreateAndRead(TempDirTest):
    def create(self, out, *extra):
        tpk("create", self.path(out), "--name", "demo", "--version", "1.0.0", "-q", *extra)
        return self.path(out)

    def test_every_codec_round_trips_through_cat_and_extract(self):
        files = self.make_model()
        for codec in CODECS:
            with self.subTest(codec=codec):
                pkg = self.create(f"{codec}.torshpkg", "--compress", codec,
                                  "--add-dir", "=" + self.path("model"))
                for rel, data in files.items():
                    self.assertEqual(tpk("cat", pkg, "resources/" + rel).stdout, data, rel)
                tpk("extract", pkg, self.path("x-" + codec), "-q")
                for rel, data in files.items():
                    self.assertEqual(self.read(os.path.join("x-" + codec, "resources", rel)), data)
                tpk("verify", "--full", pkg)

    def test_ls_prints_the_tree_and_json(self):
        self.make_model()
        pkg = self.create("p.torshpkg", "--add-dir", "weights=" + self.path("model"),
                          "--dependency", "tokenizers:^0.15:optional:features=fast,rust")
        lines = tpk("ls", pkg).stdout.decode().splitlines()
        self.assertEqual(lines, sorted(lines))
        self.assertIn("manifest.json", lines)
        self.assertIn("resources/weights/tokenizer/vocab.txt", lines)
        self.assertIn("dependencies/tokenizers.json", lines)
        listing = json.loads(tpk("ls", "--json", pkg).stdout)
        by_path = {e["path"]: e for e in listing}
        self.assertEqual(by_path["resources/weights/model.safetensors"]["type"], "ModelWeights")
        self.assertEqual(by_path["resources/weights/empty.bin"]["size"], 0)
        dep = json.loads(tpk("cat", pkg, "dependencies/tokenizers.json").stdout)
        self.assertEqual(dep, {"name": "tokenizers", "version_req": "^0.15", "optional": True,
                               "features": ["fast", "rust"]})

    def test_info_reports_metadata_resources_and_dependencies(self):
        self.write("w.bin", random_bytes(10000, 3))
        pkg = self.create("p.torshpkg", "--description", "A test", "--author", "me",
                          "--license", "MIT", "--meta", "framework=pytorch", "--meta", "k=v=w",
                          "--add", "Tokenizer:tok/w.bin=" + self.path("w.bin"),
                          "--dependency", "base:>=1, <2", "--lineage", "FineTunedFrom:base@1.0.0:lora")
        info = json.loads(tpk("info", "--json", pkg).stdout)
        self.assertEqual(info["name"], "demo")
        self.assertEqual(info["metadata"], {"framework": "pytorch", "k": "v=w"})
        self.assertEqual(info["resources"][0]["type"], "Tokenizer")
        self.assertEqual(info["resources"][0]["path"], "tok/w.bin")
        self.assertEqual((info["resources"][0]["compression"], info["resources"][0]["compression_level"]),
                         ("zstd", 3))
        self.assertEqual(info["dependencies"][0]["version_req"], ">=1, <2")
        self.assertEqual(info["lineage"][0]["relation"], "FineTunedFrom")
        self.assertEqual(info["file_size"], os.path.getsize(pkg))
        text = tpk("info", pkg).stdout.decode()
        self.assertIn("resources/tok/w.bin", text)
        self.assertIn("base >=1, <2", text)

    def test_random_slices_are_exact(self):
        data = text_bytes(2_000_000, 4)
        self.write("d.bin", data)
        rng = random.Random(5)
        for codec in CODECS:
            pkg = self.create(f"{codec}.torshpkg", "--compress", codec, "--chunk-size", "64K",
                              "--add", "d.bin=" + self.path("d.bin"))
            for _ in range(25):
                off = rng.randrange(0, len(data) + 100)
                length = rng.randrange(0, 300_000)
                got = tpk("cat", pkg, "resources/d.bin", "--offset", off, "--length", length).stdout
                self.assertEqual(got, data[off:off + length], f"{codec} {off}+{length}")

    def test_sizes_at_chunk_boundaries(self):
        cs = 4096
        sizes = [0, 1, cs - 1, cs, cs + 1, 3 * cs - 1, 3 * cs, 3 * cs + 1]
        args = []
        for s in sizes:
            args += ["--add", f"s{s}=" + self.write(f"s{s}", random_bytes(s, s))]
        for codec in CODECS:
            pkg = self.create(f"{codec}.torshpkg", "--compress", codec, "--chunk-size", "4K", *args)
            for s in sizes:
                self.assertEqual(tpk("cat", pkg, f"resources/s{s}").stdout, random_bytes(s, s))
                if s > 2:
                    got = tpk("cat", pkg, f"resources/s{s}", "--offset", s - 2).stdout
                    self.assertEqual(got, random_bytes(s, s)[s - 2:])

    def test_empty_package(self):
        pkg = self.create("empty.torshpkg")
        self.assertEqual(tpk("ls", pkg).stdout, b"manifest.json\n")
        tpk("verify", "--full", pkg)
        self.assertEqual(run("bsdtar", "-tf", pkg).stdout, b"manifest.json\n")

    def test_ten_thousand_resources(self):
        for i in range(10000):
            self.write(f"many/d{i % 50}/f{i}.txt", b"%d\n" % i)
        pkg = self.create("many.torshpkg", "--add-dir", "=" + self.path("many"))
        lines = tpk("ls", pkg).stdout.decode().splitlines()
        self.assertEqual(len(lines), 10001)
        self.assertEqual(tpk("cat", pkg, "resources/d7/f9957.txt").stdout, b"9957\n")
        tpk("verify", "--full", pkg)
        run("bsdtar", "-xf", pkg, "-C", self.dir)
        self.assertEqual(self.read("resources/d49/f9999.txt"), b"9999\n")

    def test_compress_for_overrides_by_glob(self):
        files = self.make_model()
        pkg = self.create("p.torshpkg", "--compress", "xz:1", "--compress-for", "*.safetensors=none",
                          "--compress-for", "tokenizer/*=gzip:9", "--add-dir", "=" + self.path("model"))
        info = json.loads(tpk("info", "--json", pkg).stdout)
        codecs = {r["path"]: (r["compression"], r["compression_level"]) for r in info["resources"]}
        self.assertEqual(codecs["model.safetensors"], ("none", 0))
        self.assertEqual(codecs["tokenizer/vocab.txt"], ("deflate", 9))
        self.assertEqual(codecs["config.json"], ("xz", 1))
        self.assertEqual(tpk("cat", pkg, "resources/tokenizer/vocab.txt").stdout,
                         files["tokenizer/vocab.txt"])

    def test_from_archive_imports_tar_targz_tarzst_and_zip(self):
        files = self.make_model()
        model = self.path("model")
        archives = {
            "m.tar": ["bsdtar", "-cf", self.path("m.tar"), "-C", model, "."],
            "m.tar.gz": ["tar", "-czf", self.path("m.tar.gz"), "-C", model, "."],
            "m.tar.zst": ["bsdtar", "--zstd", "-cf", self.path("m.tar.zst"), "-C", model, "."],
            "m.zip": ["bsdtar", "--format", "zip", "-cf", self.path("m.zip"), "-C", model, "."],
        }
        for name, cmd in archives.items():
            with self.subTest(archive=name):
                run(*cmd)
                pkg = self.create(name + ".torshpkg", "--from-archive", self.path(name))
                listed = set(tpk("ls", pkg).stdout.decode().splitlines())
                self.assertEqual(listed, {"manifest.json"} | {"resources/" + r for r in files})
                for rel, data in files.items():
                    self.assertEqual(tpk("cat", pkg, "resources/" + rel).stdout, data)

    def test_progress_bar_on_a_terminal(self):
        self.write("big.bin", text_bytes(64 << 20, 6))
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(TORSHPKG, [TORSHPKG, "create", self.path("p.torshpkg"), "--name", "demo",
                                "--version", "1.0.0", "--compress", "xz:1", "--add",
                                "big.bin=" + self.path("big.bin")])
        out = b""
        while True:
            try:
                ready, _, _ = select.select([fd], [], [], 60)
                if not ready:
                    break
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, out)
        self.assertIn(b"create [", out)
        self.assertIn(b"%", out)


class Errors(TempDirTest):
    def test_exit_codes(self):
        self.write("a.bin", b"a")
        pkg = self.path("p.torshpkg")
        tpk("create", pkg, "--name", "demo", "--version", "1.0.0", "--add", "a.bin=" + self.path("a.bin"))
        cases = [
            (["create", self.path("x.torshpkg"), "--version", "1.0.0"], 2),          # missing --name
            (["create", self.path("x.torshpkg"), "--name", "d", "--version", "1"], 2),  # bad semver
            (["create", self.path("x.torshpkg"), "--name", "d", "--version", "1.0.0",
              "--compress", "lz4"], 2),
            (["create", self.path("x.torshpkg"), "--name", "d", "--version", "1.0.0",
              "--add", "a=" + self.path("missing")], 1),
            (["create", self.path("x.torshpkg"), "--name", "d", "--version", "1.0.0",
              "--add", "../a=" + self.path("a.bin")], 2),
            (["create", pkg, "--name", "d", "--version", "1.0.0"], 2),                  # exists
            (["cat", pkg, "resources/nope"], 1),
            (["info", self.path("missing.torshpkg")], 1),
            (["verify", self.path("a.bin")], 3),                                         # not a ZIP
            (["frobnicate"], 2),
        ]
        for args, code in cases:
            with self.subTest(args=args):
                proc = tpk(*args, check=False)
                self.assertEqual(proc.returncode, code, proc.stderr)
                if code != 2 or args[0] == "create" and "--name" in args:
                    self.assert_one_line_error(proc, code)
        self.assertFalse(os.path.exists(self.path("x.torshpkg")))

    def test_help_on_every_subcommand(self):
        for sub in ["create", "info", "ls", "cat", "extract", "verify"]:
            proc = tpk(sub, "--help")
            self.assertIn(b"Usage", proc.stdout + proc.stderr)
        self.assertIn(b"Exit codes", tpk("--help").stdout)

    def test_ctrl_c_during_create_leaves_nothing(self):
        self.write("in/big.bin", text_bytes(256 << 20, 7))
        out = self.path("out", "p.torshpkg")
        os.makedirs(self.path("out"))
        proc = subprocess.Popen([TORSHPKG, "create", out, "--name", "d", "--version", "1.0.0",
                                 "--compress", "xz:9", "--add", "big.bin=" + self.path("in/big.bin")],
                                stderr=subprocess.PIPE)
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 130, err)
        self.assertEqual(os.listdir(self.path("out")), [])

    def test_extract_never_follows_symlinks_out_of_the_target(self):
        self.write("a.bin", b"payload")
        pkg = self.path("p.torshpkg")
        tpk("create", pkg, "--name", "d", "--version", "1.0.0", "--add", "a.bin=" + self.path("a.bin"))
        os.makedirs(self.path("outside"))
        os.makedirs(self.path("target"))
        os.symlink(self.path("outside"), self.path("target", "resources"))
        proc = tpk("extract", pkg, self.path("target"), check=False)
        self.assert_one_line_error(proc)
        self.assertEqual(os.listdir(self.path("outside")), [])
        # A symlink planted where a file goes is replaced, not written through.
        os.remove(self.path("target", "resources"))
        os.makedirs(self.path("target", "resources"))
        os.symlink(self.path("outside", "victim"), self.path("target", "resources", "a.bin"))
        tpk("extract", pkg, self.path("target"))
        self.assertFalse(os.path.exists(self.path("outside", "victim")))
        self.assertEqual(self.read("target/resources/a.bin"), b"payload")


class Startup(TempDirTest):
    def loaded_libraries(self, *args):
        env = dict(os.environ, LD_DEBUG="files")
        proc = subprocess.run([TORSHPKG, *args], env=env, capture_output=True, text=True)
        return proc, proc.stderr

    def assert_everyday_commands_do_not_load(self, *names):
        """--version, ls and info of a package load none of the libraries named."""
        pkg = self.path("p.torshpkg")
        tpk("create", pkg, "--name", "demo", "--version", "1.0.0", "-q", "--add", "a.txt=" + self.write("a.txt", b"a"))
        for args in (["--version"], ["ls", pkg], ["info", pkg]):
            proc, libs = self.loaded_libraries(*args)
            self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
            for name in names:
                self.assertNotIn(name, libs, args)

    def test_libcurl_is_loaded_only_by_commands_that_use_http(self):
        self.assert_everyday_commands_do_not_load("libcurl")
        # A pull from a closed port loads it, and fails with one line.
        proc, libs = self.loaded_libraries("pull", "http://127.0.0.1:9/p.torshpkg", "-o", self.path("out"))
        self.assertIn("libcurl", libs)
        self.assertEqual(proc.returncode, 1)

    def test_libarchive_is_loaded_only_by_commands_that_use_archives(self):
        # Linked, it would bring libxml2 and ICU into every command: tens of ms at a cold start.
        self.assert_everyday_commands_do_not_load("libarchive", "libxml2", "libicu")
        run("bsdtar", "-cf", self.path("a.tar"), "-C", self.path("."), "a.txt")
        proc, libs = self.loaded_libraries("create", self.path("q.torshpkg"), "--name", "demo", "--version", "1.0.0",
                                           "-q", "--from-archive", self.path("a.tar"))
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        self.assertIn("libarchive", libs)
        self.assertEqual(tpk("cat", self.path("q.torshpkg"), "resources/a.txt").stdout, b"a")

    def test_libsystemd_is_loaded_only_to_mirror_an_event_to_journald(self):
        # Linked, it would bring libgcrypt, libgpg-error, libcap and liblz4 into every command.
        self.assert_everyday_commands_do_not_load("libsystemd", "libgcrypt")
        # create with a lineage journal records the event and mirrors it to journald, here a
        # socket of the test's own.
        jdir = self.path("journald")
        jsock = bind_journal_socket(jdir)
        proc = subprocess.run(
            [*with_journal_socket(jdir), TORSHPKG, "create", self.path("j.torshpkg"), "--name", "demo",
             "--version", "1.0.0", "-q", "--add", "b.txt=" + self.write("b.txt", b"b"),
             "--journal", self.path("lineage.jsonl")],
            env=dict(os.environ, LD_DEBUG="files"), capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        self.assertIn("libsystemd", proc.stderr)
        created = [e for e in received_journal_entries(jsock) if e.get("TORSHPKG_EVENT") == "created"]
        self.assertEqual(len(created), 1)
        self.assertEqual(created[0]["SYSLOG_IDENTIFIER"], "torshpkg")
        self.assertEqual(created[0]["TORSHPKG_PACKAGE"], "demo@1.0.0")


if __name__ == "__main__":
    unittest.main()
