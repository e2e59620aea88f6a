"""An independent reader of torshpkg formats 1 to 3 (2 adds executable resources, 3 resources
verified in blocks), written from docs/FORMAT.md alone.

It checks a package the way a second implementation would: the ZIP structure through Python's
zipfile, the manifest, every chunk index, every leaf hash, and every chunk decoded on its own
(zlib, lzma, and the zstd command line). It shares no code with libtorshpkg.
"""
import hashlib
import json
import lzma
import struct
import unicodedata
import subprocess
import zipfile
import zlib

LEAF_TAG = b"torshpkg-leaf-v1\x00"
BLOCK_LEAF_TAG = b"torshpkg-leaf-v2\x00"
BLOCK_TAG = b"torshpkg-block-v1\x00"
INDEX_MAGIC = b"TPKGIDX1"
METHODS = {"none": 0, "deflate": 8, "zstd": 93, "xz": 95}


def _zstd_decode(frame):
    return subprocess.run(["zstd", "-d", "-c", "-q"], input=frame, capture_output=True,
                          check=True).stdout


def _decode_chunk(codec, stored, first, last, plain_len):
    if codec == "none":
        return stored
    if codec == "deflate":
        d = zlib.decompressobj(-15)
        out = d.decompress(stored)
        if last:
            assert d.eof, "last deflate chunk must end the stream"
        else:
            assert stored.endswith(b"\x00\x00\xff\xff"), "chunk must end at a full flush"
        return out
    if codec == "zstd":
        return _zstd_decode(stored)
    if codec == "xz":
        # Rebuild a one-block .xz stream around the block so the lzma module can decode it.
        header = stored[:12] if first else None
        body = stored[12:] if first else stored
        block_header_size = (body[0] + 1) * 4
        raw = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[_lzma2_filter(body, block_header_size)])
        out = raw.decompress(body[block_header_size:], max_length=plain_len)
        if header is not None:
            assert header[:6] == b"\xfd7zXZ\x00", "xz stream header"
        return out
    raise AssertionError("unknown codec " + codec)


def _lzma2_filter(body, header_size):
    # Block header: size byte, flags, [compressed size], [uncompressed size], filter flags...
    flags = body[1]
    pos = 2
    for present in (flags & 0x40, flags & 0x80):
        if present:
            while body[pos] & 0x80:
                pos += 1
            pos += 1
    filter_id = body[pos]
    assert filter_id == 0x21, "LZMA2 filter expected"
    props_size = body[pos + 1]
    assert props_size == 1
    dict_byte = body[pos + 2]
    bits = dict_byte // 2 + 12
    dict_size = (2 | (dict_byte & 1)) << (bits - 1) if dict_byte < 40 else 0xFFFFFFFF
    return {"id": lzma.FILTER_LZMA2, "dict_size": dict_size}


CONFUSING = set("\u061c\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                "\u2060\u2066\u2067\u2068\u2069\ufeff")


def check_package(path, expected_files=None):
    """Validates a package; returns {tree path: plain bytes}. Raises AssertionError on a problem."""
    with open(path, "rb") as f:
        raw = f.read()
    zf = zipfile.ZipFile(path)
    infos = {i.filename: i for i in zf.infolist()}
    # Section 2.4: the fields a writer fixes, and no comments.
    assert zf.comment == b"", "archive comment"
    for i in zf.infolist():
        assert (i.create_system, i.create_version) == (3, 63), i.filename
        assert i.external_attr == 0o100644 << 16 and i.internal_attr == 0, i.filename
        assert i.comment == b"" and i.flag_bits & ~0x0806 == 0, i.filename
    manifest_bytes = zf.read("manifest.json")
    assert infos["manifest.json"].compress_type == 0
    manifest = json.loads(manifest_bytes)
    assert manifest["format"] == "torshpkg" and manifest["format_version"] in (1, 2, 3)
    package_id = bytes.fromhex(manifest["package_id"])
    assert len(package_id) == 16
    # Section 2.4: names one could take for another are refused.
    folded = {}
    for r in manifest["resources"]:
        path = r["path"]
        assert unicodedata.normalize("NFC", path) == path, "not NFC: " + path
        assert not any(0x80 <= ord(c) <= 0x9f or c in CONFUSING for c in path), path
        parts = path.split("/")
        for n in range(1, len(parts) + 1):
            prefix = "/".join(parts[:n])
            key = unicodedata.normalize("NFC", prefix.casefold())
            assert folded.setdefault(key, prefix) == prefix, "case or normalization: " + prefix
    executable = any("executable" in r for r in manifest["resources"])
    blocks = any("block_size" in r for r in manifest["resources"])
    version = 3 if blocks else 2 if executable else 1
    assert manifest["format_version"] == version, "the oldest version that holds the package"
    expected_entries = {"manifest.json"}
    tree = {"manifest.json": manifest_bytes}
    for position, r in enumerate(manifest["resources"]):
        assert r["id"] == position
        # Version 2 adds only "executable", and is written only when some resource has it.
        assert ("executable" in r) <= (manifest["format_version"] >= 2), "executable in version 1"
        assert r.get("executable", True) is True, "executable is written only as true"
        name = "resources/" + r["path"]
        index_name = f".torshpkg/index/{r['id']}"
        expected_entries |= {name, index_name}
        info = infos[name]
        assert info.compress_type == METHODS[r["compression"]], name
        assert info.file_size == r["size"] and info.compress_size == r["stored_size"], name
        # Data offset: local header + name + extra (read from the local header itself).
        lh = raw[info.header_offset:info.header_offset + 30]
        assert lh[:4] == b"PK\x03\x04"
        name_len, extra_len = struct.unpack("<HH", lh[26:30])
        data_offset = info.header_offset + 30 + name_len + extra_len
        if r["compression"] == "none":
            assert data_offset % 4096 == 0, f"{name} is not 4096-aligned"
        index = zf.read(index_name)
        assert hashlib.sha256(index).hexdigest() == r["index_sha256"], "index digest"
        magic, rid, chunk_size, plain_size, stored_size, count = struct.unpack("<8sIIQQQ", index[:40])
        assert magic == INDEX_MAGIC and rid == r["id"] and chunk_size == r["chunk_size"]
        assert plain_size == r["size"] and stored_size == r["stored_size"] and count == r["chunk_count"]
        assert count == -(-plain_size // chunk_size)
        assert len(index) == 40 + 36 * count
        block_size = r.get("block_size", 0)
        hashes = b""
        if block_size:
            # Version 3, section 7.1: the hashes of every block, in their own stored entry.
            assert r["compression"] == "none" and r["encryption"] == "none" and r["size"] > 0
            assert block_size >= 4096 and block_size & (block_size - 1) == 0
            assert block_size <= chunk_size
            blocks_name = f".torshpkg/blocks/{r['id']}"
            expected_entries.add(blocks_name)
            assert infos[blocks_name].compress_type == 0
            hashes = zf.read(blocks_name)
            assert len(hashes) == 32 * -(-plain_size // block_size), "blocks entry size"
        plain = bytearray()
        offset = data_offset
        for c in range(count):
            stored_len = struct.unpack("<I", index[40 + 36 * c:44 + 36 * c])[0]
            leaf = index[44 + 36 * c:76 + 36 * c]
            plain_len = min(chunk_size, plain_size - c * chunk_size)
            stored = raw[offset:offset + stored_len]
            prefix = package_id + struct.pack("<IQI", r["id"], c, plain_len)
            if block_size:
                first = c * (chunk_size // block_size)
                listed = hashes[32 * first:32 * (first + -(-plain_len // block_size))]
                computed = b"".join(hashlib.sha256(BLOCK_TAG + stored[b:b + block_size]).digest()
                                    for b in range(0, plain_len, block_size))
                assert computed == listed, f"{name} chunk {c} block hashes"
                h = hashlib.sha256(BLOCK_LEAF_TAG + prefix + listed)
            else:
                h = hashlib.sha256(LEAF_TAG + prefix + stored)
            assert h.digest() == leaf, f"{name} chunk {c} leaf hash"
            chunk = _decode_chunk(r["compression"], stored, c == 0, c == count - 1, plain_len)
            assert len(chunk) == plain_len, f"{name} chunk {c} decodes to {len(chunk)} bytes"
            plain += chunk
            offset += stored_len
        assert offset == data_offset + stored_size
        assert hashlib.sha256(plain).hexdigest() == r["sha256"]
        assert zlib.crc32(plain) == info.CRC
        tree[name] = bytes(plain)
    for d in manifest["dependencies"]:
        name = f"dependencies/{d['name']}.json"
        expected_entries.add(name)
        data = zf.read(name)
        assert hashlib.sha256(data).hexdigest() == d["file_sha256"] and len(data) == d["file_size"]
        tree[name] = data
    assert set(infos) == expected_entries, set(infos) ^ expected_entries
    if expected_files is not None:
        for rel, data in expected_files.items():
            assert tree["resources/" + rel] == data, rel
    return tree
