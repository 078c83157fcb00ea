"""Reading captures: from the index when the trailer is intact, by scanning otherwise.

Damage is never fatal unless ``strict``: a truncated last block is dropped and a block
with a bad checksum skipped, each with a warning in ``Capture.warnings`` that says what
was kept. Every size read from the file is checked against format/limits.py first.

Opening a capture and reading its SUMM block (``summary()``, all ``info`` needs of a 1.2
capture) imports neither numpy nor the modules that decode chunks: they are imported where
chunks, the index or arrays are first needed (tests/test_cli_startup.py checks it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from aether_rec.errors import CaptureError, DamagedCaptureError, LimitError
from aether_rec.format.blocks import (
    CHNK,
    HEAD,
    INDX,
    LOSS,
    META,
    PREAMBLE_SIZE,
    TRAILER_SIZE,
    Block,
    Damage,
    check_preamble,
    frame,
    parse_trailer,
    read_block,
    scan,
    unpack,
)
from aether_rec.format.clock import ClockMap, pairs_of
from aether_rec.format.limits import MAX_INDEX_ENTRIES
from aether_rec.format.records import Loss, Meta, MetaRef
from aether_rec.format.source import open_path as _open_path
from aether_rec.format.source import seekable as _seekable
from aether_rec.format.summary import CaptureSummary, summary_before
from aether_rec.schema import is_real_loss

if TYPE_CHECKING:  # imported where used (see the module's docstring)
    import numpy as np

    from aether_rec.format.chunk import Chunk, ChunkInfo
    from aether_rec.format.codecs import Codec
    from aether_rec.format.partial import RawChunk


def open(source: str | os.PathLike[str] | BinaryIO, strict: bool = False,  # noqa: A001
         lazy_index: bool = False) -> Capture:
    """Open a capture from a path or a binary file object (a pipe is spooled to a
    temporary file first). With ``lazy_index`` the index is read when first needed, so
    that what ``summary()`` answers costs a few KB whatever the capture's size."""
    return Capture(source, strict=strict, lazy_index=lazy_index)


class Capture:
    """An open .aio capture. Use as a context manager or call ``close()``."""

    def __init__(self, source: str | os.PathLike[str] | BinaryIO, strict: bool = False,
                 lazy_index: bool = False) -> None:
        self.strict = strict
        self.warnings: list[str] = []
        self._owns = not hasattr(source, "read")
        if self._owns:
            self.name = os.fspath(source)  # type: ignore[arg-type]
            self._f: BinaryIO = _open_path(self.name)
        else:
            self.name = str(getattr(source, "name", "<stream>"))
            self._f = _seekable(source)  # type: ignore[arg-type]
            self._owns = self._f is not source
        self._codecs: dict[str, Codec] = {}
        self._chunks: list[ChunkInfo] | None = None
        self._losses: list[Loss] | None = None
        self._metas: list[MetaRef] | None = None
        self._scanned_meta: dict[int, Meta] = {}
        self._index_stats: dict[str, Any] = {}
        self._clock: ClockMap | None = None
        self._has_index: bool | None = None  # None: not looked at yet (lazy_index)
        self._summ: CaptureSummary | None = None
        self._summ_read = False
        try:
            self.major, self.minor = check_preamble(self._f.read(PREAMBLE_SIZE))
            self.header = self._read_header()
            self.size = self._f.seek(0, os.SEEK_END)
            self._index_offset = self._find_trailer()
            if not lazy_index:
                self._ensure_index()
        except CaptureError as exc:
            self.close()
            err = exc.at(self.name)
            if err is exc:
                raise
            raise err from None
        except BaseException:
            self.close()
            raise

    # -- opening ----------------------------------------------------------------
    def _read_header(self) -> dict[str, Any]:
        try:
            block = read_block(self._f, PREAMBLE_SIZE)
        except EOFError:
            raise DamagedCaptureError("capture has no header block", self.name) from None
        except Damage as dmg:
            raise DamagedCaptureError(f"header block damaged ({dmg.reason})", self.name) from None
        if block.type != HEAD:
            raise DamagedCaptureError("first block is not a header", self.name)
        header = unpack(block.payload, "header")
        if not isinstance(header, dict):
            raise DamagedCaptureError("header is not a map", self.name)
        self._first_block = PREAMBLE_SIZE + block.length
        return header

    def _find_trailer(self) -> int | None:
        """The index offset the trailer gives (None: no usable trailer)."""
        if self.size < self._first_block + TRAILER_SIZE:
            return None
        self._f.seek(self.size - TRAILER_SIZE)
        offset = parse_trailer(self._f.read(TRAILER_SIZE))
        if offset is None:
            return None  # no trailer: a file whose recorder was killed, or a cut one
        if not self._first_block <= offset < self.size - TRAILER_SIZE:
            self.warn("trailer points outside the file; reading by scanning")
            return None
        return offset

    @property
    def has_index(self) -> bool:  # whether the index is used (read now if lazy_index deferred it)
        return self._ensure_index()

    @property
    def index_stats(self) -> dict[str, Any]:
        """The recorder's statistics the index carries (from SUMM while the index is unread)."""
        if self._has_index is None and self.summary() is not None:
            assert self._summ is not None
            return self._summ.stats
        self._ensure_index()
        return self._index_stats

    def _ensure_index(self) -> bool:
        if self._has_index is None:
            self._has_index = self._load_index()
        return self._has_index

    def summary(self) -> CaptureSummary | None:
        """The SUMM block (format 1.2) found from the trailer, read once: None for older
        files, files without an index, and (with a warning) a damaged or missing one."""
        if not self._summ_read and self._index_offset is not None and (self.major, self.minor) >= (1, 2):
            self._summ, problem, hard = summary_before(self._f, self._index_offset, self._first_block)
            if problem:
                self.warn(problem, hard=hard)
        self._summ_read = True
        return self._summ

    def _load_index(self) -> bool:
        from aether_rec.format.chunk import ChunkInfo

        offset = self._index_offset
        if offset is None:
            return False
        self._f.seek(offset)
        try:
            block = read_block(self._f, offset)
            if block.type != INDX:
                raise Damage(offset, "trailer does not point at an index", False)
            index = unpack(block.payload, "index")
            chunks = [ChunkInfo.from_row(r) for r in _rows(index, "chunks")]
            losses = [Loss.from_row(r) for r in _rows(index, "losses")]
            metas = [MetaRef.from_row(r) for r in _rows(index, "meta")]
        except (Damage, DamagedCaptureError, TypeError, ValueError, IndexError, KeyError) as exc:
            self.warn(f"index unusable ({exc}); reading by scanning")
            return False
        for where, length in [(c.offset, c.length) for c in chunks] + [(m.offset, 16) for m in metas]:
            if not self._first_block <= where < offset or where + length > offset:
                self.warn("index points outside the file; reading by scanning")
                return False
        self._chunks, self._losses, self._metas = chunks, losses, metas
        stats = index.get("stats") if isinstance(index, dict) else None
        self._index_stats = stats if isinstance(stats, dict) else {}
        return True

    def _scan(self) -> None:
        """Walk every block once, building the chunk, loss and meta lists."""
        from aether_rec.format.chunk import ChunkInfo
        from aether_rec.format.columns import read_summary

        chunks: list[ChunkInfo] = []
        losses: list[Loss] = []
        metas: list[MetaRef] = []
        kept = 0
        self._f.seek(self._first_block)
        for item in scan(self._f, self._first_block, seekable=True):
            if isinstance(item, Damage):
                self.warn(
                    f"{item.reason} at offset {item.offset}; "
                    + ("dropped it" if item.truncated else "skipped it")
                    + f" (recovered {len(chunks)} chunks, {kept} events before it)"
                )
                continue
            try:
                if item.type == CHNK:
                    summary, _ = read_summary(item.payload)
                    chunks.append(ChunkInfo.from_summary(summary, item.offset, item.length))
                    kept += chunks[-1].n
                elif item.type == LOSS:
                    losses.append(Loss.from_doc(unpack(item.payload, "loss block"), item.offset))
                elif item.type == META:
                    m = Meta.from_doc(unpack(item.payload, "meta block"), item.offset)
                    self._scanned_meta[item.offset] = m
                    metas.append(MetaRef(item.offset, m.table))
                # HEAD (again), INDX, TRLR and unknown types: skipped.
            except (DamagedCaptureError, AttributeError, TypeError, ValueError, KeyError) as exc:
                self.warn(f"block at offset {item.offset} is malformed ({exc}); skipped it")
        self._chunks, self._losses, self._metas = chunks, losses, metas

    # -- summaries --------------------------------------------------------------
    def chunk_infos(self) -> list[ChunkInfo]:
        self._ensure_index()
        if self._chunks is None:
            self._scan()
        assert self._chunks is not None
        return self._chunks

    def losses(self) -> list[Loss]:
        self._ensure_index()
        if self._losses is None:
            self._scan()
        assert self._losses is not None
        return self._losses

    @property
    def n_events(self) -> int:
        return sum(c.n for c in self.chunk_infos())

    @property
    def lost(self) -> int:
        """Events of the recording window that are missing (see schema.LOSS_KINDS)."""
        return sum(loss.count for loss in self.losses() if is_real_loss(loss.kind))

    @property
    def unmatched(self) -> int:
        """Completions seen without their start (I/Os in flight when recording began)."""
        return sum(loss.count for loss in self.losses() if not is_real_loss(loss.kind))

    def meta(self, table: str) -> list[dict[str, Any]]:
        """All rows of metadata table ``table``, in file order."""
        self._ensure_index()
        if self._metas is None:
            self._scan()
        assert self._metas is not None
        rows: list[dict[str, Any]] = []
        for ref in self._metas:
            if ref.table != table:
                continue
            offset = ref.offset
            m = self._scanned_meta.get(offset)
            if m is None:
                block = self._block_at(offset, META)
                if block is None:
                    continue
                try:
                    m = Meta.from_doc(unpack(block.payload, "meta block"), offset)
                except DamagedCaptureError as exc:
                    self.warn(f"block at offset {offset} is malformed ({exc}); skipped it")
                    continue
            rows.extend(m.rows)
        return rows

    def meta_tables(self) -> list[str]:
        """Names of the metadata tables present, in first-seen order."""
        self._ensure_index()
        if self._metas is None:
            self._scan()
        assert self._metas is not None
        return list(dict.fromkeys(ref.table for ref in self._metas))

    def raw_chunk(self, info: ChunkInfo) -> bytes | None:
        """The framed CHNK block of ``info`` as stored (checksum verified), for copying
        it to another capture without decoding; None (with a warning) if damaged.
        Like every Capture method, not for use from two threads at once."""
        block = self._block_at(info.offset, CHNK)
        return None if block is None else frame(CHNK, block.payload)

    def clock_map(self) -> ClockMap:
        """The capture's clock mapping (header pairs and the ``clock`` table), read once:
        the one monotonic -> wall-clock conversion every tool uses (format/clock.py)."""
        if self._clock is None:
            summ = self.summary() if self._has_index is None else None
            if summ is not None and summ.clock is not None:  # index unread: SUMM has the table
                self._clock = ClockMap(pairs_of(self.header) + summ.clock)
            else:
                self._clock = ClockMap(pairs_of(self.header, self.meta("clock")))
        return self._clock

    def clock_pairs(self) -> np.ndarray:
        """(mono_ns, real_ns) pairs from the header and the ``clock`` table, by mono."""
        return self.clock_map().array()

    def mono_to_real(self, mono: Any) -> Any:
        """Wall-clock ns (CLOCK_REALTIME) for monotonic ns, through the clock mapping
        (unchanged without one); int64, saturating (see ClockMap.to_real)."""
        clock = self.clock_map()
        if not clock:
            return mono
        return clock.to_real(mono)

    # -- events -----------------------------------------------------------------
    def chunks(
        self,
        t_min: int | None = None,
        t_max: int | None = None,
        where: Callable[[ChunkInfo], bool] | None = None,
        columns: Sequence[str] | None = None,
        ordered: bool = True,
    ) -> Iterator[Chunk]:
        """Decoded chunks, skipping by index those outside [t_min, t_max] or refused by
        ``where``. With ``ordered`` (default), events come out in global ts order even
        where chunks overlap in time (an I/O that started early and completed late);
        ``columns`` limits what is decoded (``ts`` is always decoded when ordered)."""
        from aether_rec.format.chunk import in_time_order

        infos = self.infos_between(t_min, t_max, where)
        if columns is not None and ordered and "ts" not in columns:
            columns = [*columns, "ts"]
        if not ordered:
            for info in infos:
                chunk = self._decode(info, columns)
                if chunk is not None:
                    yield chunk
            return
        infos.sort(key=lambda c: (c.t_first, c.offset))
        yield from in_time_order(infos, lambda info: self._decode(info, columns), self.warn)

    def infos_between(
        self,
        t_min: int | None = None,
        t_max: int | None = None,
        where: Callable[[ChunkInfo], bool] | None = None,
    ) -> list[ChunkInfo]:
        """Entries of the chunks ``chunks`` reads (file order): the index's for [t_min, t_max]."""
        return [
            c for c in self.chunk_infos()
            if (t_min is None or c.t_last >= t_min)
            and (t_max is None or c.t_first <= t_max)
            and (where is None or where(c))
        ]

    def _decode(self, info: ChunkInfo, columns: Sequence[str] | None) -> Chunk | None:
        block = self._block_at(info.offset, CHNK)
        if block is None:
            return None
        return self.decode_payload(block.payload, info, columns, self._codecs)

    def raw_chunks(self, infos: Sequence[ChunkInfo]) -> Iterator[RawChunk]:
        """The stored CHNK payloads of ``infos`` in that order, checksums verified, not
        decoded (damaged ones skipped with a warning): read them in one thread, decode them
        in several with ``decode_payload``."""
        from aether_rec.format.partial import RawChunk

        for info in infos:
            block = self._block_at(info.offset, CHNK)
            if block is not None:
                yield RawChunk(info, block.payload)

    def decode_payload(
        self, payload: bytes, info: ChunkInfo, columns: Sequence[str] | None, codecs: dict[str, Codec]
    ) -> Chunk | None:
        """A payload of ``raw_chunks`` decoded, or None (with a warning) when damaged."""
        from aether_rec.format.partial import ChunkSkipped, decode_stored

        try:
            return decode_stored(payload, info, columns, codecs)[0]
        except ChunkSkipped as skip:
            self.warn(skip.message)
            return None

    def _block_at(self, offset: int, btype: bytes) -> Block | None:
        if not self._first_block <= offset < self.size:
            self.warn(f"block offset {offset} is outside the file; skipped it")
            return None
        self._f.seek(offset)
        try:
            block = read_block(self._f, offset)
        except (Damage, EOFError) as exc:
            reason = exc.reason if isinstance(exc, Damage) else "end of file"
            self.warn(f"block at offset {offset}: {reason}; skipped it")
            return None
        if block.type != btype:
            self.warn(f"block at offset {offset} is not the expected kind; skipped it")
            return None
        return block

    def events(self, **kw: Any) -> Iterator[dict[str, Any]]:
        """Events as dicts, in time order (slow: for tests and small captures)."""
        for chunk in self.chunks(**kw):
            yield from chunk.events()

    def to_numpy(self, columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """All events as numpy columns (strings as object arrays), in time order."""
        from aether_rec.format.chunk import Chunk

        return Chunk.concat(list(self.chunks(columns=columns))).arrays(columns)

    def to_arrow(self, columns: Sequence[str] | None = None, **chunk_kw: Any) -> Any:
        """All events as a ``pyarrow.Table`` in time order (schema: format/arrow.py); keyword
        arguments as for ``chunks`` (``t_min``, ``t_max``, ``where``). Needs pyarrow."""
        return self.to_arrow_reader(columns, **chunk_kw).read_all()

    def to_arrow_reader(self, columns: Sequence[str] | None = None, **chunk_kw: Any) -> Any:
        """A ``pyarrow.RecordBatchReader``, one batch per chunk, streamed. Needs pyarrow."""
        from aether_rec.format import arrow

        return arrow.capture_reader(self, columns, **chunk_kw)

    def to_pandas(self, columns: Sequence[str] | None = None) -> Any:
        try:
            import pandas as pd
        except ImportError:
            raise CaptureError("to_pandas() needs pandas: pip install pandas") from None
        return pd.DataFrame(self.to_numpy(columns))

    # -- integrity -----------------------------------------------------------------
    def verify(self) -> list[str]:
        """Check every block's checksum, decode every chunk, and check the index against
        the blocks it describes; return the problems (empty: the file is sound)."""
        from aether_rec.format.verify import verify_capture

        return verify_capture(self)

    # -- following a growing file ---------------------------------------------------
    def follow(
        self, stop: Callable[[], bool], poll: float = 0.25, meta: bool = False
    ) -> Iterator[Chunk | Loss | Meta]:
        """Chunks and losses (and with ``meta`` metadata blocks) in file order as a recorder
        appends them, until the trailer is written or ``stop()`` is true (like ``tail -f``)."""
        from aether_rec.format.follow import follow_capture

        return follow_capture(self, self._f, self._first_block, self._codecs, stop, poll, meta)

    # -- plumbing ---------------------------------------------------------------------
    def warn(self, msg: str, hard: bool = True) -> None:
        """Note damage: a warning (kept in ``warnings``), or with ``strict`` an error
        (DamagedCaptureError) unless ``hard`` is False. Tools that read a capture their
        own way report what they skip through this too, so --strict holds for them."""
        if self.strict and hard:
            raise DamagedCaptureError(msg, self.name)
        self.warnings.append(f"{self.name}: {msg}")

    def close(self) -> None:
        if self._owns and not self._f.closed:
            self._f.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _rows(index: Any, key: str) -> list[Any]:
    if not isinstance(index, dict):
        raise DamagedCaptureError("index is not a map")
    rows = index.get(key, [])
    if not isinstance(rows, list) or len(rows) > MAX_INDEX_ENTRIES:
        raise LimitError(f"index {key} list is malformed or too long")
    return rows
