"""Chunk bodies rewritten without decoding their columns: a chunk's string dictionaries
replaced (redaction renames names and paths) while the column bytes are copied as they are."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aether_rec.errors import DamagedCaptureError, LimitError
from aether_rec.format.chunk import ChunkInfo
from aether_rec.format.codecs import Codec
from aether_rec.format.columns import INT_TYPES, ChunkTooLarge, open_body, prefixed
from aether_rec.format.limits import MAX_BLOCK_PAYLOAD, MAX_CHUNK_RAW, MAX_STR_LEN

# Keys of a summary and of a directory entry this version writes (others are dropped
# when a chunk is rewritten: they could be anything a later version added).
SUMMARY_KEYS = ("n", "t0", "t1", "lat_max", "layers", "ops", "pid_min", "pid_max", "pids", "codec", "raw")
ENTRY_KEYS = ("name", "type", "enc", "w", "base", "first", "size", "dict")


def rewrite_dictionaries(
    payload: bytes,
    rename: Callable[[str, list[str]], list[str]],
    codecs: dict[str, Codec],
    dropped: Callable[[str], None] | None = None,
) -> tuple[bytes, ChunkInfo]:
    """A CHNK payload whose string dictionaries are replaced by ``rename(column, words)``
    (same length: the codes stay valid), without decoding any column: the body is
    decompressed, its directory rewritten, the column bytes copied, the body compressed
    again with the chunk's codec. Columns of a type this version does not know are left
    out (``dropped(name)`` is told). The result obeys the limits the writer enforces
    (ChunkTooLarge / LimitError otherwise); damage -> DamagedCaptureError."""
    body = open_body(payload, codecs)
    summary, raw, pos = body.summary, body.raw, body.data_at
    entries: list[dict[str, Any]] = []
    data: list[bytes] = []
    for entry in body.directory:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise DamagedCaptureError("chunk directory entry is malformed")
        size = entry.get("size")
        if type(size) is not int or size < 0 or pos + size > len(raw):
            raise DamagedCaptureError(f"column {entry['name']!r} runs past the chunk body")
        typ = entry.get("type")
        if typ == "str":
            words = entry.get("dict")
            if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                raise DamagedCaptureError(f"dictionary of column {entry['name']!r} is malformed")
            new = rename(entry["name"], words)
            if len(new) != len(words):
                raise ValueError("rename must keep the dictionary's length")
            if any(len(w) > MAX_STR_LEN for w in new):
                raise LimitError(f"column {entry['name']!r} would hold a string longer than {MAX_STR_LEN}")
            entry = dict(entry, dict=new)
        elif typ not in INT_TYPES:
            if dropped is not None:
                dropped(entry["name"])
            pos += size
            continue
        entries.append({k: entry[k] for k in ENTRY_KEYS if k in entry})
        data.append(raw[pos : pos + size])
        pos += size
    new_body = prefixed(entries, "chunk directory") + b"".join(data)
    if len(new_body) > MAX_CHUNK_RAW:
        raise ChunkTooLarge(f"chunk body of {len(new_body)} bytes exceeds {MAX_CHUNK_RAW}")
    out_summary = {k: summary[k] for k in SUMMARY_KEYS if k in summary}
    out_summary["raw"] = len(new_body)
    info = ChunkInfo.from_summary(out_summary, -1, 0)
    out = prefixed(out_summary, "chunk summary") + body.codec.compress(new_body)
    if len(out) > MAX_BLOCK_PAYLOAD:
        raise ChunkTooLarge(f"chunk block of {len(out)} bytes exceeds {MAX_BLOCK_PAYLOAD}")
    return out, info
