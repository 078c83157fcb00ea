"""Copying a capture's blocks into a writer one by one, for the tools that rewrite a
capture without decoding its events (recover copies chunks as stored, redact rewrites
their dictionaries). Damage and malformed blocks are left out and listed, never raised."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Union

from aether_rec.errors import CaptureError, DamagedCaptureError
from aether_rec.format.blocks import (
    CHNK,
    HEAD,
    INDX,
    LOSS,
    META,
    PREAMBLE_SIZE,
    SUMM,
    TRLR,
    Block,
    Damage,
    check_preamble,
    frame,
    scan,
    unpack,
)
from aether_rec.format.chunk import ChunkInfo
from aether_rec.format.columns import read_summary
from aether_rec.format.records import Loss, Meta
from aether_rec.format.writer import CaptureWriter

ChunkFn = Callable[[bytes], tuple[bytes, ChunkInfo]]
MetaFn = Callable[[str, list[Any]], list[Any]]


@dataclass
class CopyReport:
    chunks: int = 0
    events: int = 0
    losses: int = 0
    metas: int = 0
    dropped: list[str] = field(default_factory=list)  # what was left out, and why
    had_index: bool = False
    index_stats: dict[str, Any] | None = None  # the source's recorder statistics


Source = Union[str, "os.PathLike[str]", BinaryIO]


def source_name(src: Source) -> str:
    """The file name of a capture given as a path or as an open file (its ``name``)."""
    if hasattr(src, "read"):
        return str(getattr(src, "name", "<stream>"))
    return os.fspath(src)


@contextlib.contextmanager
def scan_file(src: Source) -> Iterator[Iterator[Block | Damage]]:
    """The blocks of capture file ``src`` (after its preamble), read one at a time. ``src`` is
    a path, or a seekable file open for reading at its start (left open: its owner closes it,
    e.g. a byte-counting file of the CLI's progress bar)."""
    name = source_name(src)
    if hasattr(src, "read"):
        opened: Any = contextlib.nullcontext(src)
    else:
        try:
            opened = open(name, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise CaptureError(f"cannot open ({exc.strerror or exc})", name) from None
    with opened as f:
        try:
            check_preamble(f.read(PREAMBLE_SIZE))
        except CaptureError as exc:
            raise exc.at(name) from None
        yield scan(f, PREAMBLE_SIZE, seekable=True)


def as_stored(payload: bytes) -> tuple[bytes, ChunkInfo]:
    """A chunk payload unchanged, with the index entry its summary gives."""
    summary, _ = read_summary(payload)
    return payload, ChunkInfo.from_summary(summary, -1, 0)


def copy_blocks(
    items: Iterable[Block | Damage],
    writer: CaptureWriter,
    report: CopyReport,
    chunk: ChunkFn = as_stored,
    meta: MetaFn | None = None,
) -> None:
    """Write the chunks (through ``chunk``), losses and metadata (through ``meta``) of
    ``items`` to ``writer``; headers, summaries, indexes and trailers are not copied (the writer
    makes its own), blocks of unknown types are left out."""
    for item in items:
        if isinstance(item, Damage):
            report.dropped.append(f"offset {item.offset}: {item.reason}")
            continue
        try:
            if item.type == CHNK:
                payload, info = chunk(item.payload)
                writer.copy_chunk_block(frame(CHNK, payload), info)
                report.chunks += 1
                report.events += info.n
            elif item.type == LOSS:
                writer.write_loss(Loss.from_doc(unpack(item.payload, "loss block"), item.offset))
                report.losses += 1
            elif item.type == META:
                m = Meta.from_doc(unpack(item.payload, "meta block"), item.offset)
                writer.write_meta(m.table, meta(m.table, m.rows) if meta is not None else m.rows)
                report.metas += 1
            elif item.type == INDX:
                report.had_index = True
                index = unpack(item.payload, "index")
                stats = index.get("stats") if isinstance(index, dict) else None
                report.index_stats = stats if isinstance(stats, dict) else report.index_stats
            elif item.type not in (HEAD, TRLR, SUMM):  # the writer makes its own summary
                report.dropped.append(f"offset {item.offset}: unknown block type {item.type!r} not copied")
        except (DamagedCaptureError, AttributeError, KeyError, TypeError, ValueError) as exc:
            report.dropped.append(f"offset {item.offset}: malformed block left out ({exc})")
