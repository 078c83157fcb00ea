"""Chunks decoded in part, and apart from reading them.

A reader thread takes the stored payloads (``Capture.raw_chunks``), worker threads decode
them (``decode_stored``: only the columns asked for, keeping the decompressed body), and
the rows a tool keeps get their other columns from that body (``decode_rows``) without
decoding whole columns or reading the file again.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import NamedTuple

import numpy as np

from aether_rec.errors import DamagedCaptureError
from aether_rec.format.chunk import Chunk, ChunkInfo
from aether_rec.format.codecs import Codec
from aether_rec.format.columns import (
    INT_TYPES,
    WIDTH_DTYPE,
    Body,
    _decode_int,
    _u64,
    decode_body,
    open_body,
)
from aether_rec.format.limits import MAX_DICT_ENTRIES, MAX_STR_LEN
from aether_rec.schema import COLUMN_BY_NAME

# A column that chunks decoded in part carry: each event's row in its stored chunk. It
# survives selections (Chunk.take), so a kept event's other columns can be decoded from the
# chunk's body (decode_rows) after any filtering.
ORIGIN = "_row"


class RawChunk(NamedTuple):
    """A CHNK payload as stored (``Capture.raw_chunks``) and its index entry."""

    info: ChunkInfo
    payload: bytes


class ChunkSkipped(Exception):
    """A stored chunk that cannot be decoded; ``message`` is the warning to give for it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def decode_stored(
    payload: bytes, info: ChunkInfo, columns: Sequence[str] | None, codecs: dict[str, Codec]
) -> tuple[Chunk, Body]:
    """A stored payload decoded (``columns`` only, when given), with its decompressed body;
    ChunkSkipped when damaged (its message says which chunk, as ``Capture`` warns). No file
    access and no warning: safe in any thread, given a ``codecs`` cache of that thread's own
    (a decompressor must not be shared between threads)."""
    try:
        body = open_body(payload, codecs)
        chunk = decode_body(body, info, columns)
    except DamagedCaptureError as exc:
        raise ChunkSkipped(f"chunk at offset {info.offset}: {exc}; skipped it") from None
    if chunk.n != info.n:
        raise ChunkSkipped(f"chunk at offset {info.offset} disagrees with the index; skipped it")
    return chunk, body


def rows_of(chunk: Chunk, body: Body, picked: np.ndarray) -> Chunk:
    """Events ``picked`` (indexes into ``chunk``, a chunk decoded in part from ``body`` and
    then perhaps selected: it has the ``ORIGIN`` column) with every stored column: those
    ``chunk`` has are taken from it, the others decoded from ``body`` for those rows only."""
    part = chunk.take(picked)
    origin = part.columns.pop(ORIGIN)
    rest = decode_rows(body, origin, skip=part.columns.keys())
    return Chunk(part.n, {**rest.columns, **part.columns}, {**rest.dicts, **part.dicts})


def decode_rows(body: Body, rows: np.ndarray, skip: Collection[str] = ()) -> Chunk:
    """Events ``rows`` (indexes into the chunk) of every column of an opened body but those
    in ``skip``, without decoding whole columns: the stored values of those rows only (a
    delta-coded column is summed whole). Damage -> DamagedCaptureError, as decode_body."""
    raw, n = body.raw, body.summary["n"]
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and (int(rows.min()) < 0 or int(rows.max()) >= n):
        raise ValueError("rows outside the chunk")
    pos = body.data_at
    cols: dict[str, np.ndarray] = {}
    dicts: dict[str, list[str]] = {}
    for entry in body.directory:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise DamagedCaptureError("chunk directory entry is malformed")
        cname, size, typ = entry["name"], entry.get("size"), entry.get("type")
        if not isinstance(size, int) or size < 0 or pos + size > len(raw):
            raise DamagedCaptureError(f"column {cname!r} runs past the chunk body")
        known = COLUMN_BY_NAME.get(cname)
        if known is not None and typ != known.type:
            raise DamagedCaptureError(f"column {cname!r} has type {typ!r}, the schema says {known.type!r}")
        if cname in cols:
            raise DamagedCaptureError(f"column {cname!r} appears twice in the chunk directory")
        if cname in skip:
            pos += size
            continue
        if typ == "str":
            w, words = entry.get("w"), entry.get("dict")
            if w not in (0, 1, 2, 4) or not isinstance(words, list) or size != n * w:
                raise DamagedCaptureError(f"string column {cname!r} is malformed")
            if len(words) > MAX_DICT_ENTRIES or not all(
                isinstance(x, str) and len(x) <= MAX_STR_LEN for x in words
            ):
                raise DamagedCaptureError(f"dictionary of column {cname!r} is malformed")
            codes = (np.frombuffer(raw, WIDTH_DTYPE[w], n, pos)[rows].astype(np.uint32) if w
                     else np.zeros(rows.size, np.uint32))
            if rows.size and (not words or int(codes.max()) >= len(words)):
                raise DamagedCaptureError(f"column {cname!r} has codes outside its dictionary")
            cols[cname], dicts[cname] = codes, words
        elif typ in INT_TYPES:
            w, enc = entry.get("w"), entry.get("enc")
            if enc == "for" and w in (0, 1, 2, 4, 8):
                if pos + n * w > len(raw) or n * w != size:
                    raise DamagedCaptureError(f"column {cname!r} has the wrong size")
                target = np.dtype(typ)
                ut = np.dtype(f"<u{target.itemsize}")
                b = ut.type(_u64(entry.get("base", 0)) & ((1 << (8 * target.itemsize)) - 1))
                if w:
                    out = np.frombuffer(raw, WIDTH_DTYPE[w], n, pos)[rows].astype(ut)
                    out += b
                else:
                    out = np.full(rows.size, b, dtype=ut)
                cols[cname] = out.view(target)
            else:
                whole, end = _decode_int(entry, n, raw, pos)
                if end != pos + size:
                    raise DamagedCaptureError(f"column {cname!r} has the wrong size")
                cols[cname] = whole[rows]
        pos += size
    return Chunk(int(rows.size), cols, dicts)
