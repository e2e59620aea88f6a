"""torshpkg pull over plain HTTP from nginx (Debian's, started on loopback with a temporary
config): a package served as a file, an ordered mirror list where a mirror serves wrong bytes
or nothing, an interrupted download resumed with a Range request, and OCI mirrors."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from helpers import NGINX, TORSHPKG, Nginx, TempDirTest, free_port, read_bytes, tpk  # noqa: E402


@unittest.skipUnless(NGINX, "nginx is not installed (scripts/setup.sh --with-tests)")
class HttpPulls(TempDirTest):
    def setUp(self):
        super().setUp()
        self.good, self.bad = free_port(), free_port()
        for d in ("www/models", "bad/models"):
            os.makedirs(self.path(d))
        self.write("w.bin", os.urandom(3 << 20))
        self.pkg = self.path("www", "models", "m.torshpkg")
        tpk("create", self.pkg, "--name", "m", "--version", "1.0.0", "-q", "--compress", "none",
            "--add", "w.bin=" + self.path("w.bin"))
        self.write("bad/models/m.torshpkg", os.urandom(4096))
        self.nginx = Nginx(self.path(), f"""
  server {{ listen 127.0.0.1:{self.good}; root {self.path('www')};
           location /slow/ {{ alias {self.path('www')}/; limit_rate 256k; }} }}
  server {{ listen 127.0.0.1:{self.bad}; root {self.path('bad')}; }}
""", self.good)
        self.nginx.start()

    def tearDown(self):
        self.nginx.stop()
        super().tearDown()

    def url(self, port, path="models/m.torshpkg"):
        return f"http://127.0.0.1:{port}/{path}"

    def access_log(self):
        return read_bytes(self.path("logs", "access.log")).decode()

    def test_plain_http_pull_checks_the_digest(self):
        tpk("pull", self.url(self.good), "-o", self.path("a.torshpkg"),
            "--sha256", hashlib.sha256(read_bytes(self.pkg)).hexdigest())
        self.assertEqual(read_bytes(self.path("a.torshpkg")), read_bytes(self.pkg))
        proc = tpk("pull", self.url(self.good), "-o", self.path("b.torshpkg"), "--sha256", "0" * 64,
                   check=False)
        self.assert_one_line_error(proc, 3)
        self.assertFalse(os.path.exists(self.path("b.torshpkg")))
        self.assertFalse(os.path.exists(self.path("b.torshpkg.part")))

    def test_mirrors_in_order_wrong_bytes_and_missing_files_skipped(self):
        proc = tpk("pull", self.url(self.good), "-o", self.path("m.torshpkg"),
                   "--mirror", f"http://127.0.0.1:{self.bad}",        # serves other bytes
                   "--mirror", f"http://127.0.0.1:{self.good}/nothere")  # base URL: same path
        self.assertEqual(read_bytes(self.path("m.torshpkg")), read_bytes(self.pkg))
        self.assertIn(f"127.0.0.1:{self.bad}/models/m.torshpkg: wrong bytes, skipped".encode(),
                      proc.stderr)
        log = self.access_log()
        self.assertEqual(log.count("GET /models/m.torshpkg"), 2)  # the second mirror, the origin
        proc = tpk("pull", self.url(self.good, "models/none.torshpkg"), "-o", self.path("n.torshpkg"),
                   check=False)
        self.assert_one_line_error(proc, 1)
        self.assertIn(b"HTTP 404", proc.stderr)

    def test_mirror_list_file(self):
        mirrors = self.write("mirrors.json", json.dumps(
            {"urls": {f"http://127.0.0.1:{self.good}": [f"http://127.0.0.1:{self.bad}"]}}).encode())
        proc = subprocess.run([TORSHPKG, "pull", self.url(self.good), "-o", self.path("f.torshpkg")],
                              env={**os.environ, "TORSHPKG_MIRRORS": mirrors}, capture_output=True)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn(f"127.0.0.1:{self.bad}/models/m.torshpkg: wrong bytes, skipped".encode(), proc.stderr)
        self.assertEqual(read_bytes(self.path("f.torshpkg")), read_bytes(self.pkg))
        bad = self.write("bad.json", b'{"urls": {"http://x": "not a list"}}')
        proc = tpk("pull", self.url(self.good), "-o", self.path("g.torshpkg"), "--mirrors-file", bad,
                   check=False)
        self.assert_one_line_error(proc, 2)
        self.assertIn(b"must be an array of strings", proc.stderr)

    def test_interrupted_download_resumes_with_a_range_request(self):
        out = self.path("r.torshpkg")
        proc = subprocess.Popen([TORSHPKG, "pull", self.url(self.good, "slow/models/m.torshpkg"),
                                 "-o", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not os.path.exists(out + ".part")
                                               or os.path.getsize(out + ".part") < 300_000):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # the download dies half way
        proc.wait()
        have = os.path.getsize(out + ".part")
        self.assertGreater(have, 0)
        self.assertLess(have, os.path.getsize(self.pkg))
        self.assertFalse(os.path.exists(out))
        tpk("pull", self.url(self.good, "slow/models/m.torshpkg"), "-o", out)
        self.assertEqual(read_bytes(out), read_bytes(self.pkg))
        self.assertFalse(os.path.exists(out + ".part"))
        self.assertIn('"GET /slow/models/m.torshpkg HTTP/1.1" 206', self.access_log())


if __name__ == "__main__":
    unittest.main()
