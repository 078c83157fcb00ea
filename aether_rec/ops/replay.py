"""``replay``: print events in time order, optionally paced like the original.

Pacing is measured from one fixed start: event ``i`` is due at ``start + (ts_i - ts_0) / speed``
on the monotonic clock, so sleeping late once does not delay everything after it (errors do not
add up over a long replay). Lines that are due are written together, so a fast capture costs one
write per batch, not one sleep per event.

``follow`` keeps reading a capture that is still being recorded, like ``tail -f``, until the
recorder writes the index (the capture is complete) or ``stop()`` says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from aether_rec.errors import UsageError
from aether_rec.format.chunk import Chunk
from aether_rec.format.clock import ClockMap, pairs_of
from aether_rec.format.reader import Capture
from aether_rec.format.records import Loss, Meta
from aether_rec.ops import feed
from aether_rec.ops.expr import Filter
from aether_rec.ops.pipeline import prefetch
from aether_rec.ops.rows import FORMATS, block, byte_sink, header_line, slice_bytes, slices
from aether_rec.ops.window import Selection, source_name

Clock = Callable[[], float]
Sleep = Callable[[float], None]


@dataclass
class ReplayReport:
    events: int = 0
    losses: int = 0
    max_late_s: float = 0.0  # worst lateness of a paced line


def _loss_line(fmt: str, loss: Loss) -> str | None:
    if fmt == "text":
        return (
            f"# LOST {loss.count} events on cpu{loss.cpu} ({loss.kind}) "
            f"between ts {loss.t_first} and {loss.t_last}\n"
        )
    return None  # jsonl/csv carry events only; losses are in stats and the capture itself


def _rows(data: bytes, ends: np.ndarray, i: int, j: int) -> bytes:
    """Rows i..j-1 of rows built together (rows.slices)."""
    return data[(int(ends[i - 1]) if i else 0):(int(ends[j - 1]) if j else 0)]


def _joined(parts: Iterator[tuple[bytes, np.ndarray]]) -> tuple[bytes, np.ndarray]:
    """Slices of rows (rows.slices) as one: the bytes, and every row's end offset."""
    datas: list[bytes] = []
    ends: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    base = 0
    for data, e in parts:
        datas.append(data)
        ends.append(e + base)
        base += len(data)
    return b"".join(datas), np.concatenate(ends)


def replay(cap: Capture, out: IO[str], sel: Selection, **options: Any) -> ReplayReport:
    """Write the selected events of ``cap`` to ``out`` in time order (options as for
    replay_feed: fmt, speed, header, clock, sleep)."""
    return replay_feed(feed.single(cap, sel), out, **options)


def replay_feed(
    source: feed.Feed,
    out: IO[str],
    *,
    fmt: str = "text",
    speed: float = 0.0,
    header: bool = True,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> ReplayReport:
    """Write the events of a feed (one capture, or several merged) to ``out`` in time order."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if speed < 0:
        raise UsageError("--speed must be >= 0 (0 = as fast as possible)")
    rep = ReplayReport()
    to_real = source.clock.to_real if source.clock else None
    src = source.source
    write = byte_sink(out)
    head = header_line(fmt) if header else None
    if head:
        write(head.encode())
    losses = source.losses
    li = 0
    start: float | None = None
    t0 = 0
    for chunk in prefetch(source.chunks(), depth=1):  # decoded ahead, as export_feed_rows does
        ts = chunk.column("ts")
        # loss markers in time order between events (text only): a loss goes after the
        # events that started before it
        if speed <= 0:
            cuts: list[tuple[int, Loss]] = []  # (row, loss before it)
            while li < len(losses) and losses[li].t_first <= int(ts[-1]):
                cuts.append((int(np.searchsorted(ts, losses[li].t_first, side="left")), losses[li]))
                li += 1
            if not cuts:  # nothing between rows: the slices' bytes as they come
                for data in slice_bytes(fmt, chunk, to_real, src):
                    write(data)
                rep.events += chunk.n
                continue
            base = 0
            for data, ends in slices(fmt, chunk, to_real, src):
                at = 0
                while cuts and cuts[0][0] < base + len(ends):
                    cut, loss = cuts.pop(0)
                    write(_rows(data, ends, at, max(cut - base, at)))
                    at = max(cut - base, at)
                    line = _loss_line(fmt, loss)
                    if line:
                        write(line.encode())
                    rep.losses += 1
                write(_rows(data, ends, at, len(ends)))
                base += len(ends)
            for _cut, loss in cuts:  # at the end of the chunk
                line = _loss_line(fmt, loss)
                if line:
                    write(line.encode())
                rep.losses += 1
            rep.events += chunk.n
            continue
        # paced: losses are placed between chunks
        while li < len(losses) and losses[li].t_first <= int(ts[0]):
            line = _loss_line(fmt, losses[li])
            if line:
                write(line.encode())
            rep.losses += 1
            li += 1
        data, ends = _joined(slices(fmt, chunk, to_real, src))
        if start is None:
            start, t0 = clock(), int(ts[0])
        due = start + (ts.astype(np.float64) - t0) / (1e9 * speed)
        i = 0
        while i < chunk.n:
            now = clock()
            k = int(np.searchsorted(due, now, side="right"))
            if k > i:
                write(_rows(data, ends, i, k))
                out.flush()
                rep.max_late_s = max(rep.max_late_s, now - float(due[i]))
                rep.events += k - i
                i = k
                continue
            sleep(max(0.0, float(due[i]) - now))
    while li < len(losses):
        line = _loss_line(fmt, losses[li])
        if line:
            write(line.encode())
        rep.losses += 1
        li += 1
    out.flush()
    return rep


def follow(
    cap: Capture,
    out: IO[str],
    sel: Selection | Filter,
    *,
    fmt: str = "text",
    stop: Callable[[], bool] = lambda: False,
    poll: float = 0.25,
    header: bool = True,
) -> ReplayReport:
    """Print chunks as a recorder appends them (file order), until the capture is complete.

    Wall times come from the same ClockMap as ``replay``'s, grown as the recorder appends
    clock rows: a chunk whose last event is past the newest clock pair waits for the next
    one (or the end of the file), so that its times are the ones ``replay`` prints later."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if isinstance(sel, Filter):
        sel = Selection(sel)
    rep = ReplayReport()
    pairs = pairs_of(cap.header)
    clock = ClockMap(pairs)
    src = source_name(cap)
    head = header_line(fmt) if header else None
    if head:
        out.write(head)
        out.flush()
    held: list[Chunk | Loss] = []

    def ready(item: Chunk | Loss) -> bool:
        if not clock or not isinstance(item, Chunk) or not item.n:
            return True
        return int(item.column("ts").max()) <= clock.pairs[-1][0]

    def emit(item: Chunk | Loss) -> None:
        if isinstance(item, Chunk):
            out.write(block(fmt, item, clock.to_real if clock else None, src)[0])
            rep.events += item.n
        else:
            line = _loss_line(fmt, item)
            if line:
                out.write(line)
            rep.losses += 1

    def release(everything: bool = False) -> None:
        while held and (everything or ready(held[0])):
            emit(held.pop(0))
        out.flush()

    for item in cap.follow(stop, poll=poll, meta=True):
        if isinstance(item, Meta):
            if item.table == "clock":
                pairs += pairs_of({}, item.rows)
                clock = ClockMap(pairs)
                release()
            continue
        if isinstance(item, Chunk):
            kept = sel.apply(item)
            if kept is None:
                continue
            item = kept
        held.append(item)
        release()
    release(everything=True)
    return rep
