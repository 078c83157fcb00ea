"""Copying whole chunks without decoding them.

When the index proves that every event of a chunk is wanted unchanged (a filter that must match
it, a merge input that needs no time shift and no new column) and the chunk does not overlap
another chunk in time, its block is copied byte for byte: no decompression, no re-encoding. The
block's checksum is verified on the way (``read_block``), so damage is never copied silently.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import BinaryIO

from aether_rec.format.blocks import CHNK, Damage, frame, read_block
from aether_rec.format.chunk import ChunkInfo
from aether_rec.format.reader import Capture
from aether_rec.format.writer import CaptureWriter


class RawChunks:
    """Reads framed CHNK blocks of one capture by offset (None when it cannot).

    It reads through its own file handle, not ``Capture.raw_chunk``: the capture's
    handle is busy in the thread that decodes the other chunks."""

    def __init__(self, cap: Capture) -> None:
        self.cap = cap
        self._f: BinaryIO | None = None
        self.available = os.path.isfile(cap.name)

    def block(self, info: ChunkInfo) -> bytes | None:
        if not self.available:
            return None
        if self._f is None:
            self._f = open(self.cap.name, "rb")  # noqa: SIM115 - closed in close()
        self._f.seek(info.offset)
        try:
            block = read_block(self._f, info.offset)
        except (Damage, EOFError):
            return None  # let the decoding path report the damage as the reader does
        if block.type != CHNK:
            return None
        return frame(CHNK, block.payload)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def copy_chunk(w: CaptureWriter, raw: bytes, info: ChunkInfo) -> None:
    """Write an already framed chunk after everything queued before it."""
    w.flush()
    w.copy_chunk_block(raw, dataclasses.replace(info))


def isolated_ranges(ranges: Sequence[tuple[int, int]]) -> list[bool]:
    """For (first, last) ranges sorted by first: True where a range touches no other range.

    Range i touches an earlier one iff the largest ``last`` before it is >= its ``first``, and a
    later one iff its ``last`` is >= the next range's ``first`` (the smallest of the later ones)."""
    out = []
    prefix_max: int | None = None
    for i, (first, last) in enumerate(ranges):
        before = prefix_max is not None and prefix_max >= first
        after = i + 1 < len(ranges) and last >= ranges[i + 1][0]
        out.append(not (before or after))
        prefix_max = last if prefix_max is None else max(prefix_max, last)
    return out


def isolated(infos: Sequence[ChunkInfo]) -> list[bool]:
    """For chunks sorted by t_first: True where a chunk's time range touches no other chunk's."""
    return isolated_ranges([(i.t_first, i.t_last) for i in infos])
