"""Shared helpers for the integration tests: run the real torshpkg binary and real peers."""
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import tempfile
import time
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


def max_rss_kib(*args):
    """Runs a command; returns (exit status, stderr text, the largest resident size of it and its
    children in KiB), measured in a fresh interpreter so that nothing else is counted."""
    probe = ("import resource,subprocess,sys,json; p=subprocess.run(sys.argv[1:], capture_output=True);"
             "print(json.dumps([p.returncode, p.stderr.decode(errors='replace'), "
             "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))")
    out = subprocess.run(["/usr/bin/python3", "-c", probe, *map(str, args)], capture_output=True,
                         timeout=600, check=True)
    return tuple(json.loads(out.stdout))


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


def bind_journal_socket(folder):
    """A datagram socket bound as FOLDER/socket, to stand in for journald's."""
    os.makedirs(folder)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(os.path.join(folder, "socket"))
    return sock


def with_journal_socket(folder):
    """A command prefix that runs the command in a private mount namespace whose
    /run/systemd/journal is FOLDER, so what libsystemd sends to journald arrives at the socket
    bind_journal_socket made there."""
    script = ("mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && "
              f"mount --bind {folder} /run/systemd/journal && exec \"$0\" \"$@\"")
    return ("unshare", "-m", "--propagation", "private", "sh", "-c", script)


def received_journal_entries(sock):
    """Every entry sent to the socket so far (waiting up to 1 s for more), then closes it."""
    entries = []
    sock.settimeout(1)
    while True:
        try:
            entries.append(parse_journal_datagram(sock.recv(1 << 20)))
        except socket.timeout:
            break
    sock.close()
    return entries


def parse_journal_datagram(data):
    """journald's native protocol: KEY=value lines, or KEY\\n<le64 size><value>\\n."""
    fields, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            i = nl + 1
        else:
            key = line
            size = struct.unpack("<Q", data[nl + 1:nl + 9])[0]
            value = data[nl + 9:nl + 9 + size]
            i = nl + 9 + size + 1
        fields[key.decode()] = value.decode(errors="replace")
    return fields


def resident_bytes(path):
    """How many of a file's bytes the page cache holds (fincore, from util-linux)."""
    return int(run("fincore", "--bytes", "--noheadings", "--output", "RES", path).stdout)


def drop_cached(path):
    """Writes a file back and drops it from the page cache, as on a host that never read it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def bdi_read_ahead_kb(mountpoint):
    """The kernel's readahead for the file system mounted at `mountpoint`, in KiB."""
    dev = os.stat(mountpoint).st_dev
    with open(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb") as f:
        return int(f.read())


def on_tmpfs(path):
    """True on tmpfs, where a file's bytes are always in the page cache."""
    return run("stat", "-f", "-c", "%T", path).stdout.strip() == b"tmpfs"


NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """Debian's nginx on loopback with a config of its own under `folder`: `servers` is the
    text of the server blocks. start() waits until `port` accepts connections."""

    def __init__(self, folder, servers, port):
        self.folder, self.port = folder, port
        for d in ("logs", "tmp"):
            os.makedirs(os.path.join(folder, d), exist_ok=True)
        tmp = os.path.join(folder, "tmp")
        self.conf = os.path.join(folder, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(f"""daemon off;
user root;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/logs/error.log;
events {{ worker_connections 64; }}
http {{
  access_log {folder}/logs/access.log;
  client_body_temp_path {tmp};
  proxy_temp_path {tmp};
  fastcgi_temp_path {tmp};
  uwsgi_temp_path {tmp};
  scgi_temp_path {tmp};
{servers}
}}
""")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([NGINX, "-c", self.conf, "-e",
                                      os.path.join(self.folder, "logs", "stderr.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"nginx did not listen on {self.port}")

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def access_log(self):
        path = os.path.join(self.folder, "logs", "access.log")
        if not os.path.exists(path):
            return ""
        with open(path) as f:
            return f.read()
