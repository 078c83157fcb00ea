"""The selection every offline command shares: an expression, a time window
(``--since/--until``) and the CLI shortcuts, given as a ``SelectionSpec``, resolved for one
capture into a ``Selection`` that applies itself (with index push-down)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from aether_rec.errors import UsageError
from aether_rec.format.chunk import Chunk, ChunkInfo
from aether_rec.format.columns import Body
from aether_rec.format.partial import ORIGIN, ChunkSkipped, RawChunk, decode_stored
from aether_rec.format.reader import Capture
from aether_rec.format.records import Loss
from aether_rec.ops.expr import MATCH_ALL, Compare, Filter, combine, shortcut_filter
from aether_rec.ops.pipeline import parallel_map
from aether_rec.ops.units import parse_time_bound


def capture_start(cap: Capture) -> int | None:
    """Monotonic ns of the first event (None for an empty capture)."""
    infos = cap.chunk_infos()
    return min((i.t_first for i in infos if i.n), default=None)


def real_to_mono(cap: Capture, real_ns: int) -> int:
    """Invert the capture's clock mapping (monotonic -> wall clock) at one instant."""
    clock = cap.clock_map()
    if not clock:
        raise UsageError(
            f"{cap.name}: the capture has no wall-clock mapping; give times relative to its start "
            "(e.g. --since +2.5s)"
        )
    return clock.to_mono(real_ns)


def resolve_bound(cap: Capture, text: str | None) -> int | None:
    """``+2.5s`` (from the first event) or an ISO time -> monotonic ns of this capture."""
    if text is None or not str(text).strip():
        return None
    kind, value = parse_time_bound(str(text))
    if kind == "rel":
        start = capture_start(cap)
        return None if start is None else start + value
    if kind == "tod":
        start = capture_start(cap)
        if start is None:
            return None
        first_real = cap.clock_map().real(start)
        day = first_real - first_real % DAY_NS
        real = day + value
        if real < first_real and real + DAY_NS <= cap.clock_map().real(capture_end(cap) or start):
            real += DAY_NS  # a capture over midnight: the time is on its second day
        return real_to_mono(cap, real)
    return real_to_mono(cap, value)


DAY_NS = 86_400 * 1_000_000_000


def capture_end(cap: Capture) -> int | None:
    """Monotonic ns of the last event's start (None for an empty capture)."""
    return max((i.t_last for i in cap.chunk_infos() if i.n), default=None)


@dataclass
class Selection:
    """What to keep of one capture: an expression plus a time window, resolved for it. The
    one place a selection is applied: to a chunk (``apply``), to a whole capture
    (``chunks``), to an index entry (``can_match``) and to a loss record (``keeps_loss``)."""

    where: Filter = MATCH_ALL
    t_min: int | None = None  # inclusive, monotonic ns
    t_max: int | None = None  # exclusive
    texts: list[str] = field(default_factory=list)
    source: str | None = None  # the capture's source name, for events without a source column
    warnings: list[str] = field(default_factory=list)  # what the user may not have meant

    @property
    def filter(self) -> Filter:
        """The expression and the window as one filter (window as ``ts`` comparisons, so the
        index skips chunks outside it)."""
        f = self.where
        if self.t_min is not None:
            f = f & Filter(f"ts >= {self.t_min}", Compare("ts", ">=", self.t_min))
        if self.t_max is not None:
            f = f & Filter(f"ts < {self.t_max}", Compare("ts", "<", self.t_max))
        return f

    @property
    def text(self) -> str | None:
        return " and ".join(self.texts) if self.texts else None

    @property
    def is_trivial(self) -> bool:
        return self.filter.is_trivial

    def can_match(self, info: ChunkInfo) -> bool:
        """False when the index entry proves no event of the chunk is selected."""
        f = self.filter
        return f.is_trivial or f.can_match(info)

    def must_match(self, info: ChunkInfo) -> bool:
        """True when the index entry proves every event of the chunk is selected."""
        f = self.filter
        return f.is_trivial or f.must_match(info)

    def apply(self, chunk: Chunk) -> Chunk | None:
        """The selected events of ``chunk``: the chunk itself when all are (its index entry
        may prove it without a mask), a new chunk without ``info`` when some are, None when
        none is."""
        if not chunk.n:
            return None
        f = self.filter
        if f.is_trivial or (chunk.info is not None and f.must_match(chunk.info)):
            return chunk
        mask = f.mask(self._with_source(chunk, f))
        n = int(np.count_nonzero(mask))
        if n == chunk.n:
            return chunk
        if not n:
            return None
        return chunk.take(mask)

    def _with_source(self, chunk: Chunk, f: Filter) -> Chunk:
        """``source`` of an unmerged capture is its name for every event (what stats --by
        source and replay show), though no column holds it."""
        if self.source is None or "source" in chunk.columns or "source" not in f.fields():
            return chunk
        cols = {**chunk.columns, "source": np.zeros(chunk.n, np.uint32)}
        return Chunk(chunk.n, cols, {**chunk.dicts, "source": [self.source]}, chunk.info)

    def chunks(self, cap: Capture, workers: int = 1, **kw: Any) -> Iterator[Chunk]:
        """The selected events of ``cap``, chunk by chunk, in time order (empty chunks
        dropped); chunks the index rules out are not read. With ``workers`` > 1 and
        ``ordered=False``, chunks are decoded on that many threads (zstd and numpy release
        the GIL) while the caller works on the previous ones, still in file order."""
        f = self.filter
        t_max = None if self.t_max is None else self.t_max - 1
        where = None if f.is_trivial else f.can_match
        it: Iterator[Chunk]
        if workers > 1 and kw.get("ordered") is False:
            it = _decoded(cap, cap.infos_between(self.t_min, t_max, where), kw.get("columns"), workers)
        else:
            it = cap.chunks(t_min=self.t_min, t_max=t_max, where=where, **kw)
        for chunk in it:
            out = self.apply(chunk)
            if out is not None:
                yield out

    def each(self, cap: Capture, work: Callable[[Chunk, Body | None], None], columns: Sequence[str] | None,
             workers: int = 2) -> None:
        """``work(chunk, body)`` for the selected events of every chunk of ``cap``, called on
        the ``workers`` threads that decode them (in no set order: ``work`` keeps a state per
        thread, or locks). With ``columns``, only those are decoded, and ``body`` (else None)
        and an ``ORIGIN`` column give the other columns of the rows ``work`` keeps
        (``rows_of``). Damaged chunks are warned about in file order and skipped."""
        f = self.filter
        t_max = None if self.t_max is None else self.t_max - 1
        infos = cap.infos_between(self.t_min, t_max, None if f.is_trivial else f.can_match)
        local = threading.local()

        def run(raw: RawChunk) -> str | None:
            out = _decode(raw, columns, columns is not None, local)
            if isinstance(out, str):
                return out
            chunk, body = out
            kept = self.apply(chunk)
            if kept is not None:
                work(kept, body)
            return None

        for message in parallel_map(run, cap.raw_chunks(infos), workers=workers, depth=workers):
            if message is not None:
                cap.warn(message)

    def keeps_loss(self, loss: Loss) -> bool:
        """Whether a loss record overlaps the window (losses carry no event fields)."""
        return (self.t_min is None or loss.t_last >= self.t_min) and (
            self.t_max is None or loss.t_first < self.t_max)


@dataclass(frozen=True)
class SelectionSpec:
    """A selection as the user gave it (the CLI's EXPR, ``-e``, ``--since/--until`` and the
    shortcut options), typed but not yet checked: ``resolve`` checks it and turns it into
    the Selection of one capture (times are relative to each capture)."""

    expressions: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    pids: tuple[int, ...] = ()
    comms: tuple[str, ...] = ()
    min_latency: str | None = None
    layers: tuple[str, ...] = ()
    ops: tuple[str, ...] = ()

    def with_expression(self, text: str | None) -> SelectionSpec:
        """This spec with a positional expression in front of the others."""
        if not text:
            return self
        return replace(self, expressions=(text, *self.expressions))

    @property
    def has_window(self) -> bool:
        return bool(self.since or self.until)

    def where(self) -> Filter:
        """The expressions (each parsed alone, so carets point into what the user wrote)
        ANDed with the shortcut options (compiled directly, not through text)."""
        short = shortcut_filter(pids=self.pids, comms=self.comms, min_latency=self.min_latency,
                                layers=self.layers, ops=self.ops)
        return combine(*self.expressions) & short

    def resolve(self, cap: Capture) -> Selection:
        return _resolve(cap, self.where(), self.since, self.until)


def select(
    cap: Capture,
    expressions: Sequence[str | None] = (),
    since: str | None = None,
    until: str | None = None,
) -> Selection:
    """Compile expressions (ANDed) and a window for ``cap``."""
    return _resolve(cap, combine(*expressions), since, until)


def _resolve(cap: Capture, where: Filter, since: str | None, until: str | None) -> Selection:
    t_min = resolve_bound(cap, since)
    t_max = resolve_bound(cap, until)
    if t_min is not None and t_max is not None and t_max <= t_min:
        raise UsageError(f"--until ({until}) is not after --since ({since})")
    texts = [] if where.is_trivial else [where.text]
    if since:
        texts.append(f"since {since}")
    if until:
        texts.append(f"until {until}")
    notes = list(where.notes)
    first, last = capture_start(cap), capture_end(cap)
    if t_min is not None and last is not None and t_min > last:
        notes.append(f"{cap.name}: --since {since} is after the capture's last event: nothing is selected")
    if t_max is not None and first is not None and t_max <= first:
        notes.append(f"{cap.name}: --until {until} is before the capture's first event: nothing is selected")
    return Selection(where, t_min, t_max, texts, source_name(cap), notes)


def source_name(cap: Capture) -> str:
    """What ``source`` means for the events of a capture without a source column: its host
    name, else its capture id, else its path (stats --by source, replay, export)."""
    h = cap.header
    return str(h.get("hostname") or h.get("capture_id") or cap.name)


def _decoded(cap: Capture, infos: Sequence[ChunkInfo], columns: Sequence[str] | None,
             workers: int) -> Iterator[Chunk]:
    """``cap``'s chunks of ``infos`` decoded on ``workers`` threads, in file order; a damaged
    one is warned about (here, in order, as ``Capture.chunks`` does) and skipped."""
    local = threading.local()

    def decode(raw: RawChunk) -> Chunk | str:
        out = _decode(raw, columns, False, local)
        return out if isinstance(out, str) else out[0]

    # as many chunks in flight as threads: the binning keeps up, so more only holds memory
    for out in parallel_map(decode, cap.raw_chunks(infos), workers=workers, depth=workers):
        if isinstance(out, str):
            cap.warn(out)
        else:
            yield out


def _decode(raw: RawChunk, columns: Sequence[str] | None, keep: bool,
            local: threading.local) -> tuple[Chunk, Body | None] | str:
    """One stored chunk decoded on this thread (``columns`` only, when given): the chunk and,
    with ``keep``, its body and an ``ORIGIN`` column; or the message saying why it was
    skipped."""
    codecs = getattr(local, "codecs", None)
    if codecs is None:
        codecs = local.codecs = {}  # a decompressor per thread
    try:
        chunk, body = decode_stored(raw.payload, raw.info, columns, codecs)
    except ChunkSkipped as skip:
        return skip.message
    if not keep:
        return chunk, None
    chunk.columns[ORIGIN] = np.arange(chunk.n, dtype=np.uint32)  # rows survive selections
    return chunk, body
