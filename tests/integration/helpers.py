"""Shared helpers for the integration tests: run the real torshpkg binary and real peers."""
import os
import random
import shutil
import subprocess
import tempfile
import unittest

TORSHPKG = os.environ.get("TORSHPKG") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "tools", "torshpkg")
CODECS = ["none", "gzip", "zstd", "xz"]


def run(*args, check=True, input_bytes=None, timeout=600):
    """Runs a command; returns CompletedProcess with bytes stdout/stderr."""
    proc = subprocess.run([str(a) for a in args], input=input_bytes, capture_output=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}")
    return proc


def tpk(*args, **kw):
    return run(TORSHPKG, *args, **kw)


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def random_bytes(n, seed):
    return random.Random(seed).randbytes(n)


def text_bytes(n, seed):
    rng = random.Random(seed)
    words = [b"tensor ", b"weight ", b"layer ", b"bias ", b"norm ", b"attention\n"]
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words)
    return bytes(out[:n])


class TempDirTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="torshpkg-it-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def write(self, rel, data):
        p = self.path(rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def read(self, rel):
        with open(self.path(rel), "rb") as f:
            return f.read()

    def make_model(self, name="model"):
        """A small model folder with weights, config, tokenizer and code; returns {relpath: bytes}."""
        files = {
            "model.safetensors": random_bytes(3 * 1024 * 1024 + 123, 1),
            "config.json": b'{"hidden_size": 64, "layers": 2}\n',
            "tokenizer/vocab.txt": text_bytes(700_000, 2),
            "modeling.py": b"def forward(x):\n    return x\n",
            "empty.bin": b"",
        }
        for rel, data in files.items():
            self.write(os.path.join(name, rel), data)
        return files

    def assert_one_line_error(self, proc, code=None):
        self.assertNotEqual(proc.returncode, 0)
        self.assertGreater(proc.returncode, 0, "killed by a signal")
        if code is not None:
            self.assertEqual(proc.returncode, code, proc.stderr)
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        self.assertEqual(len(lines), 1, proc.stderr)
        self.assertTrue(lines[0].startswith("torshpkg: "), lines[0])
