"""A second, independent reader of .aio captures, written from format/SPEC.md alone.

It imports nothing from aether_rec (only the standard library, msgpack and zstandard), so
a bug shared by the project's writer and reader (both built on the same helpers) cannot
pass tests/test_spec_decoder.py, which compares the two on the golden vectors and on
captures the writer makes. It favours plainness over speed: pure Python integers,
modulo 2**64, exactly as section 6.4 states the arithmetic.

Section numbers refer to format/SPEC.md.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import msgpack
import zstandard

MAGIC = b"\x89AIO\r\n\x1a\n"  # 3
KNOWN = (b"HEAD", b"CHNK", b"LOSS", b"META", b"INDX", b"TRLR", b"SUMM")  # 4.3
MAX_BLOCK_PAYLOAD = 64 << 20  # 18
M64 = (1 << 64) - 1
INT_TYPES = {"<u1": (1, False), "<u2": (2, False), "<u4": (4, False), "<u8": (8, False),
             "<i1": (1, True), "<i2": (2, True), "<i4": (4, True), "<i8": (8, True)}


class SpecError(Exception):
    pass


@dataclass
class SpecChunk:
    offset: int
    length: int
    summary: dict[str, Any]
    directory: list[dict[str, Any]]
    columns: dict[str, list[Any]]  # decoded values (strings for str columns)


@dataclass
class SpecCapture:
    major: int
    minor: int
    header: dict[str, Any]
    chunks: list[SpecChunk] = field(default_factory=list)
    bad_chunks: list[tuple[int, str]] = field(default_factory=list)
    losses: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    metas: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    index: dict[str, Any] | None = None
    index_offset: int | None = None
    damage: list[tuple[int, str]] = field(default_factory=list)

    def events(self) -> list[dict[str, Any]]:
        """Every readable event, in ts order (ties in file order: section 12)."""
        rows = []
        for c in self.chunks:
            n = c.summary["n"]
            rows.extend({k: v[i] for k, v in c.columns.items()} for i in range(n))
        return sorted(rows, key=lambda r: r["ts"])


def _block(data: bytes, off: int) -> tuple[bytes, bytes] | str:
    """(type, payload) of the block at ``off`` if it verifies (4.1), else why not."""
    if off + 8 > len(data):
        return "cut short"
    btype, length = struct.unpack_from("<4sI", data, off)
    if length > MAX_BLOCK_PAYLOAD:
        return "length over the limit"
    if off + 16 + length > len(data):
        return "cut short"
    crc, total = struct.unpack_from("<II", data, off + 8 + length)
    if total != length + 16:
        return "length fields disagree"
    if crc != zlib.crc32(data[off : off + 8 + length]):  # 4.2: type + length + payload
        return "bad checksum"
    return btype, data[off + 8 : off + 8 + length]


def _mp(b: bytes) -> Any:
    return msgpack.unpackb(b, raw=False, strict_map_key=False)


def _prefixed(buf: bytes) -> tuple[Any, int]:
    """A u32 length, then that many bytes of msgpack (6.1); returns (doc, end)."""
    if len(buf) < 4:
        raise SpecError("too short for a length")
    (n,) = struct.unpack_from("<I", buf)
    if 4 + n > len(buf):
        raise SpecError("document runs past its container")
    return _mp(buf[4 : 4 + n]), 4 + n


def _ints(entry: dict[str, Any], n: int, data: bytes) -> list[int]:
    """6.4, literally."""
    width, signed = INT_TYPES[entry["type"]]
    enc, w = entry.get("enc"), entry.get("w")
    if enc not in ("for", "delta") or w not in (0, 1, 2, 4, 8):
        raise SpecError("bad integer encoding")
    count = n - 1 if enc == "delta" and n > 0 else n
    if len(data) != count * w:
        raise SpecError("integer column has the wrong size")
    base = entry.get("base", 0)
    s = [int.from_bytes(data[i * w : (i + 1) * w], "little") for i in range(count)] if w else [0] * count
    u = [(base + x) & M64 for x in s]
    if enc == "for":
        v = u
    else:
        v = [entry.get("first", 0)] if n > 0 else []
        for i in range(1, n):
            v.append((v[i - 1] + u[i - 1]) & M64)
    bits = 8 * width
    out = []
    for x in v:
        x &= (1 << bits) - 1
        if signed and x >= 1 << (bits - 1):
            x -= 1 << bits
        out.append(x)
    return out


def _strings(entry: dict[str, Any], n: int, data: bytes) -> list[str]:
    """6.5."""
    w, words = entry.get("w"), entry.get("dict")
    if w not in (0, 1, 2, 4) or not isinstance(words, list) or len(data) != n * w:
        raise SpecError("bad string column")
    codes = [int.from_bytes(data[i * w : (i + 1) * w], "little") for i in range(n)] if w else [0] * n
    if any(c >= len(words) for c in codes):
        raise SpecError("code outside the dictionary")
    return [words[c] for c in codes]


def decode_chunk(payload: bytes, offset: int = -1, length: int = 0) -> SpecChunk:
    summary, at = _prefixed(payload)  # 6.1
    if not isinstance(summary, dict) or any(type(summary.get(k)) is not int or summary[k] < 0
                                            for k in ("n", "t0", "t1", "raw")):
        raise SpecError("bad summary")  # 6.2
    stored = payload[at:]
    codec = summary.get("codec", "zstd")
    if codec == "zstd":  # 6.8
        params = zstandard.get_frame_parameters(stored)
        if params.content_size != summary["raw"]:
            raise SpecError("zstd frame size differs from raw")
        body = zstandard.ZstdDecompressor().decompress(stored, max_output_size=summary["raw"])
    elif codec == "none":
        body = stored
    else:
        raise SpecError(f"unknown codec {codec!r}")
    if len(body) != summary["raw"]:
        raise SpecError("body is not raw bytes long")
    directory, pos = _prefixed(body)  # 6.3
    if not isinstance(directory, list):
        raise SpecError("directory is not an array")
    n = summary["n"]
    cols: dict[str, list[Any]] = {}
    for entry in directory:
        size = entry["size"]
        data = body[pos : pos + size]
        if len(data) != size:
            raise SpecError("column runs past the body")
        if entry["type"] in INT_TYPES:
            cols[entry["name"]] = _ints(entry, n, data)
        elif entry["type"] == "str":
            cols[entry["name"]] = _strings(entry, n, data)
        # 6.6: any other type is skipped by its size
        pos += size
    return SpecChunk(offset, length, summary, directory, cols)


def read(data: bytes) -> SpecCapture:
    """Decode a whole capture held in memory (sections 3, 4, 15)."""
    if len(data) < 8 or data[:8] != MAGIC:
        raise SpecError("not an .aio capture (bad magic)")
    if len(data) < 16:
        raise SpecError("cut inside the preamble")
    major, minor, _flags = struct.unpack_from("<HHI", data, 8)
    if major != 1:
        raise SpecError(f"major version {major}")
    head = _block(data, 16)
    if isinstance(head, str) or head[0] != b"HEAD":
        raise SpecError("first block is not a valid HEAD")
    cap = SpecCapture(major, minor, _mp(head[1]))
    off = 16 + len(head[1]) + 16
    while off < len(data):
        got = _block(data, off)
        if isinstance(got, str):
            cap.damage.append((off, got))
            off = _resync(data, off + 1)  # 15.3
            if off < 0:
                break
            continue
        btype, payload = got
        if btype == b"CHNK":
            try:
                cap.chunks.append(decode_chunk(payload, off, len(payload) + 16))
            except (SpecError, KeyError, TypeError, ValueError, zstandard.ZstdError) as exc:
                cap.bad_chunks.append((off, str(exc)))
        elif btype == b"LOSS":
            cap.losses.append((off, _mp(payload)))
        elif btype == b"META":
            cap.metas.append((off, _mp(payload)))
        elif btype == b"TRLR" and off + 32 == len(data):  # 10
            index_offset, magic = struct.unpack("<Q8s", payload)
            if magic == b"AIOINDEX":
                idx = _block(data, index_offset)
                if not isinstance(idx, str) and idx[0] == b"INDX":
                    try:
                        cap.index, cap.index_offset = _mp(idx[1]), index_offset
                    except ValueError:
                        pass
        off += len(payload) + 16
    return cap


def _resync(data: bytes, start: int) -> int:
    """The next offset >= start where a block of a known type verifies, or -1."""
    for pos in range(start, len(data) - 15):
        if data[pos : pos + 4] in KNOWN and not isinstance(_block(data, pos), str):
            return pos
    return -1
