"""Streaming capture writer: header first, whole blocks only, index and trailer at close.

The writer never seeks, so it works on pipes (``-o -``). Each block is written with one
``write`` and flushed, so a recorder killed at any moment leaves a file that reads up to
its last complete block; the index is a speed-up that ``recover`` can rebuild.
"""

from __future__ import annotations

import errno
import os
import platform
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

from aether_rec.errors import DamagedCaptureError, LimitError
from aether_rec.format.blocks import (
    BLOCK_HEAD,
    BLOCK_TAIL,
    CHNK,
    HEAD,
    INDX,
    LOSS,
    META,
    SUMM,
    VERSION_MAJOR,
    VERSION_MINOR,
    frame,
    pack,
    preamble,
    trailer,
)
from aether_rec.format.chunk import Chunk, ChunkInfo
from aether_rec.format.clock import pairs_of
from aether_rec.format.codecs import Codec, get_codec
from aether_rec.format.columns import ChunkTooLarge, compact_dictionary
from aether_rec.format.histfill import HIST_FIELDS
from aether_rec.format.limits import (
    MAX_CHUNK_EVENTS,
    MAX_INDEX_ENTRIES,
    MAX_META_ROWS,
    MAX_STR_LEN,
    MAX_SUMM_PAYLOAD,
)
from aether_rec.format.output import AtomicOutput, WriteError, create_output, open_output, refuse_reason
from aether_rec.format.records import Loss, Meta, MetaRef
from aether_rec.format.summary import CaptureSummary, LatencyHist
from aether_rec.schema import schema_for_header

# How outputs are created is format/output.py's rule; these names are part of the writer's API.
__all__ = ["AtomicOutput", "CaptureWriter", "WriteError", "base_header", "create_output", "open_output",
           "refuse_reason"]


def base_header(minor: int = VERSION_MINOR) -> dict[str, Any]:
    """Provenance fields every capture carries (format/SPEC.md, HEAD)."""
    from aether_rec import __version__

    uname = platform.uname()
    now_ns = time.time_ns()
    return {
        "format_version": f"{VERSION_MAJOR}.{minor}",
        "capture_id": uuid.uuid4().hex,
        "created_ns": now_ns,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ns / 1e9)),
        "tool": "aether-rec",
        "tool_version": __version__,
        "hostname": socket.gethostname(),
        "kernel": uname.release,
        "arch": uname.machine,
        "ncpu": os.cpu_count() or 0,
        "clock": [[time.monotonic_ns(), time.time_ns()]],
        "synthetic": False,
    }


class CaptureWriter:
    """Write a capture: ``write_events`` batches, ``write_loss``/``write_meta`` tables,
    then ``close``. Chunks are cut by event count, raw bytes and age.

    Given a path, the file is created by format/output.py's rule. By default it is written
    in place, block by block, so that it can be read while it grows and after a crash (a
    recording); with ``atomic`` (the offline tools) it appears under its name only when
    ``close`` succeeds, and ``abort`` or an exception leaves nothing behind."""

    def __init__(
        self,
        out: str | os.PathLike[str] | BinaryIO,
        header: Mapping[str, Any] | None = None,
        *,
        codec: str = "zstd",
        level: int | None = None,
        threads: int = 0,
        chunk_events: int = 131072,
        chunk_bytes: int = 16 << 20,
        chunk_age: float = 1.0,
        overwrite: bool = False,
        atomic: bool = False,
        minor: int = VERSION_MINOR,
    ) -> None:
        """``minor``: the format version 1.minor to write (older ones for test vectors:
        its preamble, format_version and column schema)."""
        if not 1 <= chunk_events <= MAX_CHUNK_EVENTS:
            raise ValueError(f"chunk_events must be 1..{MAX_CHUNK_EVENTS}")
        if not 0 <= minor <= VERSION_MINOR:
            raise ValueError(f"minor must be 0..{VERSION_MINOR}")
        self._codec: Codec = get_codec(codec, level, threads)
        self.header: dict[str, Any] = base_header(minor)
        self.header.update(header or {})
        self.header["codec"] = self._codec.name
        self.header["columns"] = schema_for_header(minor)
        self._minor = minor
        head = frame(HEAD, pack(self.header, "header"))  # LimitError before creating the output
        self._owns = not hasattr(out, "write")
        self._atomic: AtomicOutput | None = None
        if self._owns and atomic:
            self._atomic = AtomicOutput(out, overwrite)  # type: ignore[arg-type]
            self._f: BinaryIO = self._atomic.file
        elif self._owns:
            self._f = open_output(out, overwrite)  # type: ignore[arg-type]
        else:
            self._f = out  # type: ignore[assignment]
        self.name = str(out) if self._owns else getattr(out, "name", "<stream>")
        self.chunk_events = chunk_events
        self.chunk_bytes = chunk_bytes
        self.chunk_age = chunk_age
        self.bytes_written = 0
        self.events_written = 0
        self.lost = 0
        self.closed = False
        self.indexed = False  # set by close() once the index and trailer are written
        self._pending: list[Chunk] = []
        # with compression threads (the offline tools, free to use every CPU), a chunk's
        # histograms for the index are built on a helper thread while the chunk is encoded
        self._helper: ThreadPoolExecutor | None = None
        self._use_helper = threads != 0
        self._pending_n = 0
        self._pending_bytes = 0
        self._pending_since = 0.0
        self._chunks: list[ChunkInfo] = []
        self._losses: list[Loss] = []
        self._metas: list[MetaRef] = []
        # 1.2: chunk histograms in the index and the SUMM block (not written for older minors)
        self._summary: CaptureSummary | None = CaptureSummary() if minor >= 2 else None
        self._clock_pairs: list[tuple[int, int]] = []
        self._hist_codecs: dict[str, Any] = {}
        self._write(preamble(minor))
        self._write(head)

    # -- events -------------------------------------------------------------------
    def write_events(self, batch: Any) -> None:
        """Queue a batch (Chunk, numpy structured array or dict of columns)."""
        chunk = Chunk.from_columns(batch)
        if chunk.n == 0:
            return
        if chunk is batch:  # ours to empty when it is written (the caller's stays whole)
            chunk = Chunk(chunk.n, dict(chunk.columns), dict(chunk.dicts))
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append(chunk)
        self._pending_n += chunk.n
        self._pending_bytes += sum(a.nbytes for a in chunk.columns.values())
        while self._pending_n >= self.chunk_events or self._pending_bytes >= self.chunk_bytes:
            self._cut(min(self._pending_n, self.chunk_events))

    def maybe_flush(self) -> None:
        """Cut the pending chunk if it is older than ``chunk_age`` seconds."""
        if self._pending and time.monotonic() - self._pending_since >= self.chunk_age:
            self.flush()

    def flush(self) -> None:
        while self._pending_n:
            self._cut(min(self._pending_n, self.chunk_events))

    def _cut(self, n: int) -> None:
        """Write the first ``n`` pending events as a chunk. Only the pieces that hold them
        are joined, column by column in ts order, each piece's column dropped once copied
        (the pending events are never held twice); a piece that alone holds them, already
        in order, is not copied, and the pieces after them stay as they are."""
        k, have = 0, 0
        while have < n:
            have += self._pending[k].n
            k += 1
        pieces, later = self._pending[:k], self._pending[k:]
        self._pending = []
        if have > n:  # the last piece holds events past the n-th: they stay pending
            last = pieces[-1]
            keep = last.n - (have - n)
            rest = last.take(slice(keep, last.n))
            # The slice keeps the whole dictionary; drop the strings it no longer uses,
            # or the carried-over dictionary grows with every cut.
            for name in rest.dicts:
                rest.columns[name], rest.dicts[name] = compact_dictionary(
                    rest.columns[name], rest.dicts[name])
            pieces[-1] = last.take(slice(0, keep))
            del last
            later.insert(0, rest)
        head = Chunk.concat(pieces, by_ts=True, release=True)
        del pieces
        self._pending = later
        self._pending_n = sum(c.n for c in later)
        self._pending_bytes = sum(a.nbytes for c in later for a in c.columns.values())
        self.write_chunk(head)
        self._pending_since = time.monotonic()

    def write_chunk(self, chunk: Chunk) -> ChunkInfo:
        """Encode and write one chunk now (events must be sorted by ts). A chunk that
        would break a reader limit is written as two halves (the last one's info is
        returned)."""
        from aether_rec.format.columns import encode_chunk

        hist_of = self._hist_later(chunk) if self._summary is not None else None
        try:
            payload, info = encode_chunk(chunk, self._codec)
        except ChunkTooLarge:  # (the whole's histograms, if started, are not waited for)
            if chunk.n < 2:
                raise
            half = chunk.n // 2
            self.write_chunk(chunk.take(slice(0, half)))
            return self.write_chunk(chunk.take(slice(half, chunk.n)))
        hist = None
        if hist_of is not None:
            hist = hist_of()
            try:
                info.hist = hist.encode()
            except LimitError:  # (a hostile chunk's): none, readers then read the chunk
                hist = None
                info.hist = b""  # not None: no second try in copy_chunk_block
        return self.copy_chunk_block(frame(CHNK, payload), info, hist)

    def _hist_later(self, chunk: Chunk) -> Callable[[], LatencyHist]:
        """The chunk's histograms, when called: started now on the helper thread (a writer
        with compression threads) or built when called."""
        if not self._use_helper:
            return lambda: LatencyHist.from_chunk(chunk)
        if self._helper is None:
            self._helper = ThreadPoolExecutor(1, thread_name_prefix="aether-hist")
        return self._helper.submit(LatencyHist.from_chunk, chunk).result

    def _stop_helper(self) -> None:
        if self._helper is not None:
            self._helper.shutdown(wait=True)
            self._helper = None

    def copy_chunk_block(self, block: bytes, info: ChunkInfo, hist: LatencyHist | None = None) -> ChunkInfo:
        """Write an already framed CHNK block (used by recover, which does not decode).
        ``info.hist`` (the chunk's stored histograms, or None: unknown) goes to the index;
        ``hist`` is the same decoded, if the caller has it."""
        tried = info.hist == b""  # write_chunk found them too large
        if self._summary is None or tried:
            info.hist = None
        elif info.hist is not None and hist is None:
            try:
                hist = LatencyHist.decode(info.hist)
            except DamagedCaptureError:
                info.hist = None
        if self._summary is not None and info.hist is None and hist is None and not tried:
            hist = _hist_of_block(block, info, self._hist_codecs)
            try:
                info.hist = None if hist is None else hist.encode()
            except LimitError:
                hist = None
        info.offset = self.bytes_written
        info.length = len(block)
        self._write(block)
        self._chunks.append(info)
        self.events_written += info.n
        if self._summary is not None:
            self._summary.add_chunk(info.n, info.t_first, info.t_last, info.length, info.raw, hist)
        return info

    # -- tables -------------------------------------------------------------------
    def write_loss(self, loss: Loss) -> None:
        """Write a LOSS block for ``loss`` (its ``offset`` is ignored: it gets its own)."""
        block = frame(LOSS, pack(loss.to_doc(), "loss block"))
        stored = Loss(loss.cpu, loss.count, loss.t_first, loss.t_last, loss.kind, self.bytes_written)
        self._write(block)
        self._losses.append(stored)
        self.lost += int(loss.count)
        if self._summary is not None:
            self._summary.add_loss(stored.cpu, stored.kind, stored.count, stored.t_first, stored.t_last)

    def write_meta(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Append rows to metadata table ``table`` (procs, fds, devices, clock, ...).

        Metadata is best effort: string values longer than MAX_STR_LEN characters (a
        huge command line) are cut to that length, and rows are spread over as many
        blocks as the block limit needs."""
        rows = [_clip(r) for r in rows]
        if table == "clock":
            self._clock_pairs.extend(pairs_of({}, rows))
        for i in range(0, len(rows), MAX_META_ROWS):
            self._write_meta(table, rows[i : i + MAX_META_ROWS])

    def _write_meta(self, table: str, rows: list[dict[str, Any]]) -> None:
        try:
            block = frame(META, pack(Meta(table, rows).to_doc(), "metadata block"))
        except LimitError:
            if len(rows) < 2:
                raise
            half = len(rows) // 2
            self._write_meta(table, rows[:half])
            self._write_meta(table, rows[half:])
            return
        ref = MetaRef(self.bytes_written, table)
        self._write(block)
        self._metas.append(ref)

    # -- end ------------------------------------------------------------------------
    def close(self, stats: Mapping[str, Any] | None = None) -> None:
        """Flush, write the index and the trailer, close the file if we opened it.

        An index that would break a reader limit (a very long recording) is left out:
        the file is then read by scanning, like one whose recorder was killed."""
        if self.closed:
            return
        try:
            self.flush()
            index: dict[str, Any] = {
                "chunks": [c.to_row() for c in self._chunks],
                "losses": [x.to_row() for x in self._losses],
                "meta": [m.to_row() for m in self._metas],
                "events": self.events_written,
                "stats": dict(stats or {}),
            }
            summ = b""
            if self._summary is not None:
                self._summary.clock = self._clock_pairs
                self._summary.stats = index["stats"]
                try:
                    doc = pack(self._summary.to_doc(), "summary")
                    summ = frame(SUMM, doc) if len(doc) <= MAX_SUMM_PAYLOAD else b""
                except LimitError:
                    summ = b""
            offset = self.bytes_written + len(summ)
            try:
                if max(len(self._chunks), len(self._losses), len(self._metas)) > MAX_INDEX_ENTRIES:
                    raise LimitError("index too long")
                try:
                    block = frame(INDX, pack(index, "index"))
                except LimitError:
                    # too long with the histograms: without them (chunks then read to learn them)
                    index["chunks"] = [c.to_row()[:12] for c in self._chunks]
                    block = frame(INDX, pack(index, "index"))
            except LimitError:
                block = b""
            if block:
                self._write(summ + block)
                self._write(trailer(offset))
                self.indexed = True
        except BaseException:
            self.abort()
            raise
        self.closed = True
        self._stop_helper()
        if self._atomic is not None:
            self._atomic.commit()
        elif self._owns:
            self._f.close()
        else:
            try:
                self._f.flush()
            except OSError:
                pass

    def abort(self) -> None:
        """Stop writing: a file this writer created is removed (it never appears under its
        name); a stream it was given stays as written, readable by scanning."""
        self.closed = True
        self._stop_helper()
        if self._atomic is not None:
            self._atomic.discard()
        elif self._owns:
            try:
                self._f.close()
            except OSError:
                pass

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _write(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                n = self._f.write(view)
                if n is None:
                    raise OSError(errno.EAGAIN, "non-blocking output would block")
                view = view[n:]
            self._f.flush()
        except BrokenPipeError:
            self.closed = True
            raise WriteError("reader went away (broken pipe)", self.name, broken_pipe=True) from None
        except OSError as exc:
            self.closed = True
            raise WriteError(f"write failed ({exc.strerror or exc})", self.name) from None
        self.bytes_written += len(data)


HIST_COLUMNS = HIST_FIELDS


def _hist_of_block(block: bytes, info: ChunkInfo, codecs: dict[str, Any]) -> LatencyHist | None:
    """The histograms of a framed chunk copied without them (recover, redact, a raw copy of a
    1.0/1.1 chunk): decoded for that; None when its body does not decode (the entry then
    says nothing, and readers read the chunk)."""
    from aether_rec.format.columns import decode_chunk

    try:
        chunk = decode_chunk(block[BLOCK_HEAD.size : -BLOCK_TAIL.size], info, codecs, HIST_COLUMNS)
    except DamagedCaptureError:
        return None
    return LatencyHist.from_chunk(chunk) if chunk.n == info.n else None


def _clip(row: Any) -> Any:
    if not isinstance(row, dict):
        return row
    return {k: v[:MAX_STR_LEN] if isinstance(v, str) and len(v) > MAX_STR_LEN else v for k, v in row.items()}
