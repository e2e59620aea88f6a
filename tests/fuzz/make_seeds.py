#!/usr/bin/env python3
"""Regenerates the fuzz seed corpora in corpus/ from small packages made by the real CLI.

Usage: make_seeds.py PATH/TO/torshpkg
"""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
CODEC_BITS = {"none": 0, "deflate": 1, "zstd": 2, "xz": 3}


def save(folder, data):
    path = os.path.join(HERE, "corpus", folder)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def main():
    torshpkg = sys.argv[1]
    shutil.rmtree(os.path.join(HERE, "corpus"), ignore_errors=True)
    work = tempfile.mkdtemp()
    try:
        src = os.path.join(work, "w.txt")
        with open(src, "wb") as f:
            f.write(b"tensor weight bias norm " * 400)
        with open(os.path.join(work, "c.json"), "wb") as f:
            f.write(b'{"a": 1}\n')
        subprocess.run([torshpkg, "keygen", os.path.join(work, "k")], check=True, capture_output=True)
        for suffix in ("k.key", "k.pub"):
            save("signature", open(os.path.join(work, suffix), "rb").read())
        with open(os.path.join(work, "pw"), "w") as f:
            f.write("seed password\n")
        for codec, encrypt in (("none", False), ("gzip", False), ("zstd", False), ("xz", False),
                               ("zstd", True), ("none", True)):
            pkg = os.path.join(work, codec + ("-enc" if encrypt else "") + ".torshpkg")
            extra = ["--encrypt", "aes-256-gcm", "--password-file", os.path.join(work, "pw")] if encrypt else []
            subprocess.run([torshpkg, "create", pkg, "--name", "seed", "--version", "1.0.0-rc.1",
                            "-q", "--compress", codec, "--chunk-size", "4K", "--add", "w.txt=" + src,
                            "--add", "cfg/c.json=" + os.path.join(work, "c.json"),
                            "--dependency", "base:^1:optional:features=x",
                            "--lineage", "DerivedFrom:parent@1.0.0:seed", "--meta", "k=v",
                            "--sign-key", os.path.join(work, "k.key"), *extra],
                           check=True)
            raw = open(pkg, "rb").read()
            save("zip_directory", raw)
            save("package", raw)
            z = zipfile.ZipFile(pkg)
            manifest = z.read("manifest.json")
            for name in z.namelist():
                if name.startswith(".torshpkg/signatures/"):
                    save("signature", z.read(name))
            save("manifest", manifest)
            m = json.loads(manifest)
            r = m["resources"][0]
            info = z.getinfo("resources/" + r["path"])
            name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
            at = info.header_offset + 30 + name_len + extra_len
            index = z.read(".torshpkg/index/0")
            count = r["chunk_count"]
            for c in range(count):
                stored_len = struct.unpack("<I", index[40 + 36 * c:44 + 36 * c])[0]
                plain_len = min(r["chunk_size"], r["size"] - c * r["chunk_size"])
                place = (4 if c == 0 else 0) | (8 if c == count - 1 else 0)
                head = bytes([CODEC_BITS[r["compression"]] | place]) + plain_len.to_bytes(3, "little")
                if r["encryption"] == "none":
                    save("chunk_decoder", head + raw[at:at + stored_len])
                at += stored_len
        # Lineage journals: made by create and sign, then the same with their head (a seed
        # verify accepts) and a tampered copy.
        journal = os.path.join(work, "lineage.jsonl")
        pkg = os.path.join(work, "j.torshpkg")
        subprocess.run([torshpkg, "create", pkg, "--name", "j", "--version", "1.0.0", "-q",
                        "--add", "w.txt=" + src, "--journal", journal], check=True)
        subprocess.run([torshpkg, "sign", pkg, "--key", os.path.join(work, "k.key"),
                        "--journal", journal], check=True, capture_output=True)
        text = open(journal, "rb").read()
        save("lineage_journal", text)
        save("lineage_journal", text.replace(b'"signed"', b'"sighed"'))
        save("lineage_journal", text.splitlines(keepends=True)[0])
        # Daemon configs: the shipped example and small edge cases.
        save("daemon_config", open(os.path.join(HERE, "..", "..", "systemd",
                                                "torshpkgd.json.example"), "rb").read())
        save("daemon_config", b'{"mounts": []}')
        save("daemon_config", b'{"control_socket": "/run/t.sock", "mounts": [{"package": "/a", '
                              b'"mountpoint": "/b/", "allow_unsigned": true, "key_file": null}]}')
        save("daemon_config", b'{"store": "/s", "mounts": [{"package": "m@^1.2", "mountpoint": "/a", '
                              b'"with_deps": true}, {"package": "oci://localhost:5000/r/m:1", '
                              b'"mountpoint": "/b"}, {"package": "http:///x", "mountpoint": "/c"}]}')
        save("daemon_config", b'{"mounts": [{"package": "/a", "mountpoint": "/b", "cache_size": "256M", '
                              b'"kernel_readahead_kb": 0, "buffered_reads": true}, {"package": "/c", '
                              b'"mountpoint": "/d", "cache_size": 1048576}]}')
        # safetensors: files laid out as the format's specification describes them.
        for header, data in (
                (b'{"__metadata__":{"format":"pt"},"w":{"dtype":"BF16","shape":[2,2],'
                 b'"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[],"data_offsets":[8,12]}}', 12),
                (b'{"q":{"dtype":"F4","shape":[4],"data_offsets":[0,2]},'
                 b'"e":{"dtype":"I64","shape":[0],"data_offsets":[2,2]}}    ', 2)):
            save("safetensors", struct.pack("<Q", len(header)) + header + bytes(range(data)))
        # Converters: pickles, .npy files, ONNX models and ZIP archives the real producers made
        # (tests/fixtures/convert).
        fixtures = os.path.join(HERE, "..", "fixtures", "convert")
        for archive in ("checkpoint.pt", "module.pt", "tiny.torchpkg", "arrays.npz",
                        "arrays_compressed.npz"):
            path = os.path.join(fixtures, archive)
            save("source_zip", open(path, "rb").read())
            with zipfile.ZipFile(path) as z:
                for name in z.namelist():
                    if name.endswith(".pkl"):
                        save("pickle", z.read(name))
                    if name.endswith(".npy") and archive == "arrays.npz":
                        save("npy", z.read(name))
        save("npy", open(os.path.join(fixtures, "weights.npy"), "rb").read())
        for model in ("model.onnx", os.path.join("onnx_external", "model.onnx")):
            save("onnx", open(os.path.join(fixtures, model), "rb").read())
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
