"""CHNK payloads: the summary and the columnar body (format/SPEC.md, section 5); the codec
that compresses the body is format/codecs.py.

    payload   summary_len(u32) summary(msgpack map) body(compressed by the codec)
    body      directory_len(u32) directory(msgpack list) column data, back to back

Integer columns are frame-of-reference coded: ``value = base + stored`` modulo 2**64,
``stored`` an unsigned integer of 0, 1, 2, 4 or 8 bytes (0: every value equals
``base``). ``ts`` is delta coded first: stored values are the differences between
consecutive values and ``first`` is the first value. String columns are dictionary
coded: stored values index the entry's ``dict`` list.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from aether_rec.errors import DamagedCaptureError, LimitError
from aether_rec.format.blocks import pack, unpack
from aether_rec.format.chunk import Chunk, ChunkInfo
from aether_rec.format.codecs import Codec, get_codec
from aether_rec.format.limits import (
    MAX_BLOCK_PAYLOAD,
    MAX_CHUNK_DECODED,
    MAX_CHUNK_EVENTS,
    MAX_CHUNK_RAW,
    MAX_COLUMNS,
    MAX_DICT_ENTRIES,
    MAX_STR_LEN,
)
from aether_rec.schema import COLUMN_BY_NAME

U32 = struct.Struct("<I")
INT_TYPES = ("<u1", "<u2", "<u4", "<u8", "<i1", "<i2", "<i4", "<i8")
WIDTH_DTYPE: dict[int, np.dtype[Any]] = {w: np.dtype(f"<u{w}") for w in (1, 2, 4, 8)}
DELTA_COLUMNS = ("ts",)
STR_WIDTH = 4  # in-memory bytes per event of a string column (uint32 codes)


class ChunkTooLarge(LimitError):
    """A chunk would break a reader limit; the writer splits it and tries again."""


# -- integer coding ----------------------------------------------------------------
def _as_u64(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind == "i":
        return arr.astype(np.int64, copy=False).view(np.uint64)
    return arr.astype(np.uint64, copy=False)


def _width(max_value: int) -> int:
    for w in (1, 2, 4):
        if max_value < (1 << (8 * w)):
            return 0 if max_value == 0 else w
    return 8


def _encode_int(name: str, arr: np.ndarray, typ: str) -> tuple[dict[str, Any], bytes]:
    entry: dict[str, Any] = {"name": name, "type": typ}
    if arr.dtype.kind == "b":
        arr = arr.view(np.uint8)
    if name not in DELTA_COLUMNS or len(arr) == 0:
        return _encode_for(entry, arr)
    u = _as_u64(arr)
    if name in DELTA_COLUMNS and len(u) > 0:
        entry["enc"] = "delta"
        entry["first"] = int(u[0])
        u = u[1:] - u[:-1]
    else:
        entry["enc"] = "for"
    if len(u) == 0:
        base = 0
    elif arr.dtype.kind == "i" and entry["enc"] == "for":
        base = int(np.int64(arr.min()).view(np.uint64))
    else:
        base = int(u.min())
    stored = u - np.uint64(base)
    w = _width(int(stored.max())) if len(stored) else 0
    entry["base"] = base
    entry["w"] = w
    data = stored.astype(WIDTH_DTYPE[w]).tobytes() if w else b""
    return entry, data


def _encode_for(entry: dict[str, Any], arr: np.ndarray) -> tuple[dict[str, Any], bytes]:
    """Frame-of-reference coding done in the column's own width: the same bytes as
    widening to 64 bits first (the difference from the minimum fits the column's width,
    so modular arithmetic in that width is exact), in fewer and narrower passes."""
    entry["enc"] = "for"
    if len(arr) == 0:
        entry["base"], entry["w"] = 0, 0
        return entry, b""
    arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)  # the file is little-endian
    mn, mx = int(arr.min()), int(arr.max())
    w = _width(mx - mn)
    entry["base"] = mn & 0xFFFFFFFFFFFFFFFF  # two's complement bits of a negative minimum
    entry["w"] = w
    if not w:
        return entry, b""
    bits = 8 * arr.dtype.itemsize
    ut = np.dtype(f"<u{arr.dtype.itemsize}")
    stored = arr.view(ut) - ut.type(mn & ((1 << bits) - 1))
    return entry, (stored if w == arr.dtype.itemsize else stored.astype(WIDTH_DTYPE[w])).tobytes()


def _decode_for(typ: str, w: int, base: int, count: int, raw: bytes, pos: int) -> np.ndarray:
    """``base + stored`` modulo 2**(8 * itemsize) of the column type: the low bits of the
    64-bit sum the spec defines, computed in the column's own width."""
    target = np.dtype(typ)
    ut = np.dtype(f"<u{target.itemsize}")
    b = ut.type(base & ((1 << (8 * target.itemsize)) - 1))
    if not w:
        return np.full(count, b, dtype=ut).view(target)
    out = np.frombuffer(raw, WIDTH_DTYPE[w], count, pos).astype(ut)
    if b:
        out += b
    return out.view(target)


def _decode_int(entry: dict[str, Any], n: int, raw: bytes, pos: int) -> tuple[np.ndarray, int]:
    _check_column(entry, n, raw, pos, entry["size"])  # fields, bounds, size (directory-checked int)
    typ, w, enc = entry["type"], entry["w"], entry["enc"]
    count = n - 1 if enc == "delta" and n > 0 else n
    size = count * w
    if enc == "for":
        return _decode_for(typ, w, _u64(entry.get("base", 0)), count, raw, pos), pos + size
    base = np.uint64(_u64(entry.get("base", 0)))
    if w:
        u = np.frombuffer(raw, WIDTH_DTYPE[w], count, pos).astype(np.uint64)
        u += base
    else:
        u = np.full(count, base, dtype=np.uint64)
    if enc == "delta" and n > 0:
        out = np.empty(n, dtype=np.uint64)
        out[0] = np.uint64(_u64(entry.get("first", 0)))
        np.cumsum(u, out=out[1:])
        out[1:] += out[0]
        u = out
    target = np.dtype(typ)
    if target.kind == "i":
        return u.view(np.int64).astype(target, copy=False), pos + size
    return u.astype(target, copy=False), pos + size


def _decode_str(entry: dict[str, Any], n: int, raw: bytes, pos: int,
                size: int) -> tuple[np.ndarray, list[str]]:
    _check_column(entry, n, raw, pos, size)  # dictionary, width, codes within it
    w = entry["w"]
    codes = np.frombuffer(raw, WIDTH_DTYPE[w], n, pos).astype(np.uint32) if w else np.zeros(n, np.uint32)
    return codes, entry["dict"]


def _check_column(entry: dict[str, Any], n: int, raw: bytes, pos: int, size: int) -> None:
    """What decoding a column checks, without materialising it (DamagedCaptureError, LimitError)."""
    cname = entry["name"]
    if entry.get("type") == "str":
        w, words = entry.get("w"), entry.get("dict")
        if w not in (0, 1, 2, 4) or not isinstance(words, list) or size != n * w:
            raise DamagedCaptureError(f"string column {cname!r} is malformed")
        if len(words) > MAX_DICT_ENTRIES:
            raise LimitError(f"dictionary of {len(words)} strings exceeds {MAX_DICT_ENTRIES}")
        if not all(isinstance(x, str) and len(x) <= MAX_STR_LEN for x in words):
            raise DamagedCaptureError(f"dictionary of column {cname!r} is malformed")
        top = int(np.frombuffer(raw, WIDTH_DTYPE[w], n, pos).max()) if w and n else 0
        if n and (not words or top >= len(words)):
            raise DamagedCaptureError(f"column {cname!r} has codes outside its dictionary")
        return
    typ, w, enc = entry.get("type"), entry.get("w"), entry.get("enc")
    if typ not in INT_TYPES or w not in (0, 1, 2, 4, 8) or enc not in ("for", "delta"):
        raise DamagedCaptureError(f"column {cname!r}: bad encoding fields")
    count = n - 1 if enc == "delta" and n > 0 else n
    if pos + count * w > len(raw):
        raise DamagedCaptureError(f"column {cname!r} runs past the chunk body")
    _u64(entry.get("base", 0))
    if enc == "delta" and n > 0:
        _u64(entry.get("first", 0))
    if count * w != size:
        raise DamagedCaptureError(f"column {cname!r} has the wrong size")


def _u64(v: Any) -> int:
    if not isinstance(v, int) or v < 0 or v >= 1 << 64:
        raise DamagedCaptureError("integer field out of range in a column entry")
    return v


# -- chunk bodies --------------------------------------------------------------------
def _int_type(name: str, arr: np.ndarray) -> str:
    """The stored type of an integer column: the schema's, else from the array."""
    col = COLUMN_BY_NAME.get(name)
    if col is not None:
        if col.is_str:
            raise ValueError(f"string column {name!r} given without its dictionary")
        return col.type
    if arr.dtype.kind == "b":
        return "<u1"
    if arr.dtype.kind in "iu":
        return f"<{arr.dtype.kind}{arr.dtype.itemsize}"  # "<u1", not numpy's "|u1"
    raise ValueError(f"column {name!r} has unsupported dtype {arr.dtype}")


def compact_dictionary(codes: np.ndarray, words: list[str]) -> tuple[np.ndarray, list[str]]:
    """Drop dictionary entries no code uses (a slice of a chunk keeps the whole table)."""
    if len(codes) and int(codes.max()) >= len(words):
        raise ValueError("string codes outside their dictionary")
    used = np.bincount(codes, minlength=len(words)).astype(bool)
    if used.all():
        return codes, words
    remap = (np.cumsum(used) - 1).astype(np.uint32)
    return remap[codes], [w for w, u in zip(words, used.tolist()) if u]


def encode_chunk(chunk: Chunk, codec: Codec) -> tuple[bytes, ChunkInfo]:
    """The CHNK payload for ``chunk`` (which must already be sorted by ts).

    Raises ChunkTooLarge when the chunk would break a limit that splitting it cures,
    LimitError when a single value does (a string longer than MAX_STR_LEN)."""
    if chunk.n > MAX_CHUNK_EVENTS:
        raise ChunkTooLarge(f"chunk of {chunk.n} events exceeds {MAX_CHUNK_EVENTS}")
    directory: list[dict[str, Any]] = []
    parts: list[bytes] = []
    decoded = 0
    for name, arr in chunk.columns.items():
        if chunk.is_str(name):
            codes, words = compact_dictionary(arr, chunk.dicts[name])
            if len(words) > MAX_DICT_ENTRIES:
                raise ChunkTooLarge(f"dictionary of {len(words)} strings exceeds {MAX_DICT_ENTRIES}")
            if any(len(word) > MAX_STR_LEN for word in words):
                raise LimitError(f"column {name!r} holds a string longer than {MAX_STR_LEN} characters")
            w = _width(max(len(words) - 1, 0))
            entry = {"name": name, "type": "str", "enc": "dict", "w": w, "dict": words}
            data = codes.astype(WIDTH_DTYPE[w]).tobytes() if w else b""
            decoded += chunk.n * STR_WIDTH
        else:
            typ = _int_type(name, arr)
            entry, data = _encode_int(name, arr, typ)
            decoded += chunk.n * np.dtype(typ).itemsize
        entry["size"] = len(data)
        directory.append(entry)
        parts.append(data)
    if decoded > MAX_CHUNK_DECODED:
        raise ChunkTooLarge(f"chunk decodes to {decoded} bytes (limit {MAX_CHUNK_DECODED})")
    body = b"".join([prefixed(directory, "chunk directory"), *parts])  # one copy, not two
    del parts
    if len(body) > MAX_CHUNK_RAW:
        raise ChunkTooLarge(f"chunk body of {len(body)} bytes exceeds {MAX_CHUNK_RAW}")
    info = chunk.compute_info()
    summary = info.summary()
    summary["codec"] = codec.name
    summary["raw"] = info.raw = len(body)
    payload = prefixed(summary, "chunk summary") + codec.compress(body)
    if len(payload) > MAX_BLOCK_PAYLOAD:
        raise ChunkTooLarge(f"chunk block of {len(payload)} bytes exceeds {MAX_BLOCK_PAYLOAD}")
    return payload, info


def read_summary(payload: bytes) -> tuple[dict[str, Any], int]:
    """The summary map of a CHNK payload and the offset of the body within it."""
    summary, body_at = read_prefixed(payload, "chunk summary", "chunk block too short for its summary",
                                     "chunk summary runs past the block")
    if not isinstance(summary, dict):
        raise DamagedCaptureError("chunk summary is not a map")
    for key in ("n", "t0", "t1", "raw"):
        v = summary.get(key)
        if type(v) is not int or v < 0:  # not isinstance: msgpack's true is an int there
            raise DamagedCaptureError(f"chunk summary field {key!r} is missing or invalid")
    if summary["n"] > MAX_CHUNK_EVENTS:
        raise LimitError(f"chunk declares {summary['n']} events (limit {MAX_CHUNK_EVENTS})")
    if summary["raw"] > MAX_CHUNK_RAW:
        raise LimitError(f"chunk declares {summary['raw']} bytes decompressed (limit {MAX_CHUNK_RAW})")
    return summary, body_at


def read_prefixed(buf: bytes, what: str, short: str, past: str) -> tuple[Any, int]:
    """The msgpack document at the front of ``buf`` behind its u32 length, and where what
    follows it starts; ``short``/``past`` say what is wrong when it does not fit."""
    if len(buf) < 4:
        raise DamagedCaptureError(short)
    (n,) = U32.unpack_from(buf)
    if 4 + n > len(buf):
        raise DamagedCaptureError(past)
    return unpack(buf[4 : 4 + n], what), 4 + n


def prefixed(doc: Any, what: str) -> bytes:
    """A msgpack document behind its u32 length (read back by read_prefixed)."""
    data = pack(doc, what)
    return U32.pack(len(data)) + data


@dataclass
class Body:
    """A CHNK payload opened: its summary, codec, decompressed body, column directory,
    and where the column data starts in the body."""

    summary: dict[str, Any]
    codec: Codec
    raw: bytes
    directory: list[Any]
    data_at: int


def open_body(payload: bytes, codecs: dict[str, Codec]) -> Body:
    """Decompress a CHNK payload (bounded by its summary) and decode its directory;
    ``codecs`` caches codec objects by name. Damage -> DamagedCaptureError."""
    summary, body_at = read_summary(payload)
    name = summary.get("codec", "zstd")
    if not isinstance(name, str):
        raise DamagedCaptureError("chunk codec is not a name")
    codec = codecs.get(name)
    if codec is None:
        codec = codecs[name] = get_codec(name)
    raw = codec.decompress(payload[body_at:], summary["raw"])
    directory, data_at = read_prefixed(raw, "chunk directory", "chunk body too short",
                                       "chunk directory runs past the body")
    if not isinstance(directory, list) or len(directory) > MAX_COLUMNS:
        raise DamagedCaptureError("chunk directory is not a list of columns")
    return Body(summary, codec, raw, directory, data_at)


def decode_chunk(
    payload: bytes,
    info: ChunkInfo,
    codecs: dict[str, Codec],
    columns: Sequence[str] | None = None,
) -> Chunk:
    """Decode a CHNK payload; ``columns`` limits which columns are materialised."""
    return decode_body(open_body(payload, codecs), info, columns)


def decode_body(body: Body, info: ChunkInfo | None, columns: Sequence[str] | None = None) -> Chunk:
    """The chunk of an opened body (``open_body``); ``columns`` limits which columns are
    materialised (the body may be kept to decode rows of the others: ``decode_rows``)."""
    raw, directory, n = body.raw, body.directory, body.summary["n"]
    # First check the whole directory, so that nothing is allocated for a chunk that
    # is refused; then decode the wanted columns of known types.
    pos = body.data_at
    wanted: list[tuple[dict[str, Any], int, int]] = []  # (entry, offset, size)
    unwanted: list[tuple[dict[str, Any], int, int]] = []
    seen: set[str] = set()
    decoded = 0
    for entry in directory:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise DamagedCaptureError("chunk directory entry is malformed")
        cname = entry["name"]
        if cname in seen:
            raise DamagedCaptureError(f"column {cname!r} appears twice in the chunk directory")
        seen.add(cname)
        size = entry.get("size")
        if not isinstance(size, int) or size < 0 or pos + size > len(raw):
            raise DamagedCaptureError(f"column {cname!r} runs past the chunk body")
        typ = entry.get("type")
        known = COLUMN_BY_NAME.get(cname)
        if known is not None and typ != known.type:
            raise DamagedCaptureError(f"column {cname!r} has type {typ!r}, the schema says {known.type!r}")
        # Unwanted columns, and columns of a type from a later minor version, are
        # skipped by their size.
        if typ == "str" or typ in INT_TYPES:
            # every column counts and is checked, wanted or not: a chunk decoded in part is
            # accepted or refused exactly as when decoded whole
            decoded += n * (STR_WIDTH if typ == "str" else np.dtype(typ).itemsize)
            if columns is None or cname in columns:
                wanted.append((entry, pos, size))
            else:
                unwanted.append((entry, pos, size))
        pos += size
    if decoded > MAX_CHUNK_DECODED:
        raise LimitError(f"chunk decodes to {decoded} bytes (limit {MAX_CHUNK_DECODED})")
    for entry, pos, size in unwanted:
        _check_column(entry, n, raw, pos, size)
    cols: dict[str, np.ndarray] = {}
    dicts: dict[str, list[str]] = {}
    for entry, pos, size in wanted:
        cname = entry["name"]
        if entry["type"] == "str":
            cols[cname], dicts[cname] = _decode_str(entry, n, raw, pos, size)
        else:
            cols[cname], _ = _decode_int(entry, n, raw, pos)  # size checked in it
    return Chunk(n, cols, dicts, info)
