"""Many captures as one Arrow dataset, with column and filter push-down to the chunk index.

``CaptureDataset(paths)`` behaves like a small ``pyarrow.dataset.Dataset``: ``to_batches``,
``to_reader``, ``to_table`` and ``count_rows`` take ``columns`` (only those are built, only the
chunk columns they need are decoded) and ``filter`` (an aether-rec expression such as
``'lat > 5ms and comm == "postgres"'``, see ``aether-rec filter --help``), plus ``time_min`` /
``time_max`` bounds on the wall clock (Unix ns, inclusive). Chunks that the index says cannot
match are never read nor decompressed; ``scan_stats`` counts what was.

One RecordBatch per chunk; strings stay dictionary arrays (schema: aether_rec/format/arrow.py).
Captures may be local paths or URLs (``https://``, ``s3://`` ... read by range, see
format/remote.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from aether_rec.format import arrow
from aether_rec.format.chunk import ChunkInfo
from aether_rec.format.reader import Capture
from aether_rec.ops.expr import MATCH_ALL, Filter, parse


@dataclass
class ScanStats:
    """What a scan read: chunks listed by the indexes, chunks decoded, their bytes."""

    chunks_total: int = 0
    chunks_read: int = 0
    bytes_read: int = 0  # CHNK blocks as stored (compressed)
    bytes_decompressed: int = 0  # decompressed chunk bodies
    events_read: int = 0
    events_out: int = 0
    skipped: list[tuple[int, int]] = field(default_factory=list)  # (capture, chunk offset)


@dataclass
class Fragment:
    """One chunk of one capture: the unit of a scan (and of a distributed partition)."""

    capture: int
    info: ChunkInfo


def _filter_columns(f: Filter) -> set[str]:
    out: set[str] = set()
    for n in f.fields():
        out |= {"service": {"lat", "queue"}, "errno": {"result"}, "end": {"ts", "lat"},
                "source": {"source"}}.get(n, {n})
    return out


class CaptureDataset:
    """Captures (paths, URLs, open files or open Captures) read together as Arrow."""

    def __init__(self, sources: Sequence[str | Capture | BinaryIO], strict: bool = False) -> None:
        self.captures: list[Capture] = []
        self._owned: list[Capture] = []
        try:
            for s in sources:
                cap = s if isinstance(s, Capture) else Capture(s, strict=strict)
                if not isinstance(s, Capture):
                    self._owned.append(cap)
                self.captures.append(cap)
        except BaseException:
            self.close()
            raise
        self._clocks = [arrow.real_clock(c) for c in self.captures]
        self._sources = [arrow.source_name(c) for c in self.captures]
        self.scan_stats = ScanStats()
        self.scan_error: Exception | None = None

    # -- planning ---------------------------------------------------------------------------
    @property
    def schema(self) -> Any:
        return arrow.event_schema()

    def _real(self, k: int, mono: int) -> int:
        to_real = self._clocks[k]
        return int(mono) if to_real is None else int(to_real(np.array([mono], dtype=np.int64))[0])

    def fragments(
        self,
        filter: str | Filter | None = None,  # noqa: A002  (pyarrow's name)
        time_min: int | None = None,
        time_max: int | None = None,
    ) -> list[Fragment]:
        """The chunks that may hold matching events, by the index alone (capture order, then
        file order)."""
        f = _as_filter(filter)
        out = []
        total = 0
        for k, cap in enumerate(self.captures):
            for info in cap.chunk_infos():
                total += 1
                if not info.n or (not f.is_trivial and not f.can_match(info)):
                    continue
                if time_min is not None and self._real(k, info.t_last) < time_min:
                    continue
                if time_max is not None and self._real(k, info.t_first) > time_max:
                    continue
                out.append(Fragment(k, info))
        self.scan_stats.chunks_total = total
        return out

    # -- scanning ---------------------------------------------------------------------------
    def to_batches(
        self,
        columns: Sequence[str] | None = None,
        filter: str | Filter | None = None,  # noqa: A002
        time_min: int | None = None,
        time_max: int | None = None,
    ) -> Iterator[Any]:
        """RecordBatches of the matching events, one per chunk that has any."""
        cols = arrow.check_columns(columns)
        schema = arrow.event_schema(cols)
        f = _as_filter(filter)
        need = arrow.chunk_columns(cols)
        if need is not None:
            extra = _filter_columns(f) | ({"ts"} if time_min is not None or time_max is not None else set())
            need = need + sorted(extra - set(need))
        frags = self.fragments(f, time_min, time_max)
        st = self.scan_stats
        for k, cap in enumerate(self.captures):
            wanted = {fr.info.offset for fr in frags if fr.capture == k}
            if not wanted:
                continue
            to_real = self._clocks[k]
            for chunk in cap.chunks(where=lambda i, w=wanted: i.offset in w,  # type: ignore[misc]
                                    columns=need, ordered=False):
                info = chunk.info
                st.chunks_read += 1
                st.events_read += chunk.n
                if info is not None:
                    st.bytes_read += info.length
                    st.bytes_decompressed += info.raw
                mask = None
                if not f.is_trivial and not (info is not None and f.must_match(info)):
                    mask = f.mask(chunk)
                if time_min is not None or time_max is not None:
                    ts = chunk.column("ts").astype(np.int64)
                    real = to_real(ts) if to_real is not None else ts
                    tm = np.ones(chunk.n, dtype=bool)
                    if time_min is not None:
                        tm &= real >= time_min
                    if time_max is not None:
                        tm &= real <= time_max
                    mask = tm if mask is None else mask & tm
                if mask is not None:
                    n = int(np.count_nonzero(mask))
                    if n == 0:
                        continue
                    if n < chunk.n:
                        chunk = chunk.take(mask)
                st.events_out += chunk.n
                yield arrow.chunk_to_batch(chunk, schema, source=self._sources[k], capture=k,
                                           to_real=to_real)

    def to_reader(self, columns: Sequence[str] | None = None, **kw: Any) -> Any:
        """A ``pyarrow.RecordBatchReader`` (streams: read it once). An error raised while a
        consumer such as DuckDB reads it is also kept in ``scan_error``, so that the caller can
        report it as itself rather than as the consumer's error."""
        pa = arrow.pyarrow()
        cols = arrow.check_columns(columns)
        return pa.RecordBatchReader.from_batches(arrow.event_schema(cols), self._guarded(cols, kw))

    def _guarded(self, cols: list[str] | None, kw: dict[str, Any]) -> Iterator[Any]:
        try:
            yield from self.to_batches(cols, **kw)
        except Exception as exc:
            self.scan_error = exc
            raise

    def to_table(self, columns: Sequence[str] | None = None, **kw: Any) -> Any:
        return self.to_reader(columns, **kw).read_all()

    def count_rows(self, **kw: Any) -> int:
        """Matching events; from the index alone when no filter needs the events."""
        if kw.get("filter") is None and kw.get("time_min") is None and kw.get("time_max") is None:
            return sum(fr.info.n for fr in self.fragments())
        return sum(b.num_rows for b in self.to_batches(["capture"], **kw))

    # -- other tables ---------------------------------------------------------------------------
    def losses_table(self) -> Any:
        """One row per loss record: ``source, capture, cpu, count, kind, real_loss, t_first,
        t_last`` (monotonic ns) and ``time_first, time_last`` (wall clock)."""
        pa = arrow.pyarrow()
        rows: dict[str, list[Any]] = {k: [] for k in (
            "source", "capture", "cpu", "count", "kind", "real_loss", "t_first", "t_last",
            "time_first", "time_last")}
        from aether_rec.schema import is_real_loss

        for k, cap in enumerate(self.captures):
            for loss in cap.losses():
                rows["source"].append(self._sources[k])
                rows["capture"].append(k)
                rows["cpu"].append(loss.cpu)
                rows["count"].append(loss.count)
                rows["kind"].append(loss.kind)
                rows["real_loss"].append(is_real_loss(loss.kind))
                rows["t_first"].append(loss.t_first)
                rows["t_last"].append(loss.t_last)
                rows["time_first"].append(self._real(k, loss.t_first))
                rows["time_last"].append(self._real(k, loss.t_last))
        ts = pa.timestamp("ns", tz="UTC")
        return pa.table({
            "source": pa.array(rows["source"], pa.string()),
            "capture": pa.array(rows["capture"], pa.int32()),
            "cpu": pa.array(rows["cpu"], pa.int64()),
            "count": pa.array(rows["count"], pa.int64()),
            "kind": pa.array(rows["kind"], pa.string()),
            "real_loss": pa.array(rows["real_loss"], pa.bool_()),
            "t_first": pa.array(rows["t_first"], pa.int64()),
            "t_last": pa.array(rows["t_last"], pa.int64()),
            "time_first": pa.array(rows["time_first"], ts),
            "time_last": pa.array(rows["time_last"], ts),
        })

    def captures_table(self) -> Any:
        """One row per capture, its provenance: ``capture, path, source, hostname, capture_id,
        kernel, format_version, synthetic, command, events, chunks, lost, unmatched, bytes,
        has_index, time_first, time_last``."""
        pa = arrow.pyarrow()
        recs = []
        for k, cap in enumerate(self.captures):
            h = cap.header
            infos = [i for i in cap.chunk_infos() if i.n]
            t0 = min((i.t_first for i in infos), default=None)
            t1 = max((i.t_last for i in infos), default=None)
            cmd = h.get("command")
            recs.append({
                "capture": k,
                "path": cap.name,
                "source": self._sources[k],
                "hostname": _str_or_none(h.get("hostname")),
                "capture_id": _str_or_none(h.get("capture_id")),
                "kernel": _str_or_none(h.get("kernel")),
                "format_version": f"{cap.major}.{cap.minor}",
                "synthetic": bool(h.get("synthetic", False)),
                "command": " ".join(map(str, cmd)) if isinstance(cmd, list) else _str_or_none(cmd),
                "events": sum(i.n for i in infos),
                "chunks": len(infos),
                "lost": cap.lost,
                "unmatched": cap.unmatched,
                "bytes": cap.size,
                "has_index": cap.has_index,
                "time_first": None if t0 is None else self._real(k, t0),
                "time_last": None if t1 is None else self._real(k, t1),
            })
        ts = pa.timestamp("ns", tz="UTC")
        schema = pa.schema([
            ("capture", pa.int32()), ("path", pa.string()), ("source", pa.string()),
            ("hostname", pa.string()), ("capture_id", pa.string()), ("kernel", pa.string()),
            ("format_version", pa.string()), ("synthetic", pa.bool_()), ("command", pa.string()),
            ("events", pa.int64()), ("chunks", pa.int64()), ("lost", pa.int64()),
            ("unmatched", pa.int64()), ("bytes", pa.int64()), ("has_index", pa.bool_()),
            ("time_first", ts), ("time_last", ts),
        ])
        return pa.Table.from_pylist(recs, schema=schema)

    # -- lifetime -----------------------------------------------------------------------------
    @property
    def warnings(self) -> list[str]:
        return [w for c in self.captures for w in c.warnings]

    def close(self) -> None:
        for cap in self._owned:
            cap.close()

    def __enter__(self) -> CaptureDataset:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _as_filter(f: str | Filter | None) -> Filter:
    if f is None:
        return MATCH_ALL
    return f if isinstance(f, Filter) else parse(f)


def _str_or_none(v: Any) -> str | None:
    return None if v is None else str(v)


def dataset(sources: Sequence[str | Capture], strict: bool = False) -> CaptureDataset:
    """``CaptureDataset(sources)``: like ``pyarrow.dataset.dataset``."""
    return CaptureDataset(sources, strict=strict)
