"""Many captures on a cluster, with Dask (distributed).

Why Dask: it is the cluster engine Python data users already run (``dask-scheduler`` /
``dask-worker``, Kubernetes, HPC job queues, cloud services), it schedules plain Python
functions, so a partition is read by aether-rec's own reader (index push-down, bounded
decoding) rather than by a re-implementation, and it reschedules the tasks of a worker that
dies. Spark's Python data source API would put a JVM in the path, and Ray Data a second
cluster manager, for no gain here.

A partition is a group of chunks of one capture (``plan``: whole chunks, about
``partition_events`` events each), chosen from the index, so chunks the selection rules out
are not scheduled at all.

- ``read_dask(sources, columns, filter)``: a ``dask.dataframe`` with one partition per chunk
  group, only ``columns`` decoded and built (schema: aether_rec/format/arrow.py).
- ``stats(sources, opts, scheduler=...)``: the ``stats --json`` document computed on the
  cluster. Each task summarises its chunks into the same mergeable accumulators the local
  ``stats`` uses (histograms, counters, per-group and per-interval histograms, top-N
  candidates); the client adds them up. Percentiles come from the merged histograms, never from
  averaged percentiles, so counts, sums, min/max and percentiles equal the local result exactly.
  One difference: with ``--by`` and more groups than ``--max-groups``, the local command keeps
  the first groups it meets and the distributed one keeps the largest; below the limit both
  are the same.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aether_rec.errors import AetherError, UsageError
from aether_rec.format import arrow
from aether_rec.format.chunk import ChunkInfo
from aether_rec.format.reader import Capture
from aether_rec.format.remote import is_url
from aether_rec.ops import stats as st
from aether_rec.ops.expr import MATCH_ALL, Filter
from aether_rec.ops.window import source_name
from aether_rec.optional import require

DEFAULT_PARTITION_EVENTS = 1 << 20
UNLIMITED_GROUPS = st.NO_LIMIT


@dataclass
class Partition:
    """Chunks of one capture, read by one task."""

    source: str  # path or URL, as workers will open it
    capture: int  # index among the inputs
    offsets: list[int]
    events: int
    where: Filter = MATCH_ALL


def dask_distributed() -> Any:
    return require("dask.distributed", "dask", "distributed stats")


def plan(
    caps: Sequence[Capture],
    sources: Sequence[str],
    filters: Sequence[Filter] | None = None,
    partition_events: int = DEFAULT_PARTITION_EVENTS,
) -> list[Partition]:
    """Partitions covering the chunks of ``caps`` that may match (index only)."""
    out: list[Partition] = []
    for k, cap in enumerate(caps):
        f = filters[k] if filters is not None else MATCH_ALL
        group: list[ChunkInfo] = []
        for info in cap.chunk_infos():
            if not info.n or not f.can_match(info):
                continue
            group.append(info)
            if sum(i.n for i in group) >= partition_events:
                out.append(Partition(sources[k], k, [i.offset for i in group], sum(i.n for i in group), f))
                group = []
        if group:
            out.append(Partition(sources[k], k, [i.offset for i in group], sum(i.n for i in group), f))
    return out


def worker_paths(sources: Sequence[str]) -> list[str]:
    """Local paths made absolute (workers do not share the client's working directory); URLs
    as they are."""
    return [s if is_url(s) else os.path.abspath(s) for s in sources]


# -- the dataframe reader ------------------------------------------------------------------------


def _frame(part: Partition, columns: list[str] | None, time_min: int | None, time_max: int | None) -> Any:
    from aether_rec.ops.dataset import CaptureDataset

    with Capture(part.source) as cap, CaptureDataset([cap]) as ds:
        wanted = set(part.offsets)
        ds.fragments = _only(ds.fragments, wanted)  # type: ignore[method-assign]
        batches = list(ds.to_batches(columns, filter=part.where, time_min=time_min, time_max=time_max))
        pa = arrow.pyarrow()
        table = pa.Table.from_batches(batches, schema=arrow.event_schema(columns))
        df = table.to_pandas()
        if "capture" in df.columns:
            df["capture"] = part.capture
        return df


def _only(fragments: Any, wanted: set[int]) -> Any:
    def inner(*a: Any, **kw: Any) -> Any:
        return [fr for fr in fragments(*a, **kw) if fr.info.offset in wanted]

    return inner


def read_dask(
    sources: Sequence[str],
    columns: Sequence[str] | None = None,
    filter: str | Filter | None = None,  # noqa: A002
    time_min: int | None = None,
    time_max: int | None = None,
    partition_events: int = DEFAULT_PARTITION_EVENTS,
) -> Any:
    """The events of ``sources`` (paths or URLs every worker can open) as a
    ``dask.dataframe.DataFrame``, one partition per group of chunks."""
    dd = require("dask.dataframe", "dask", "read_dask")
    from aether_rec.ops.expr import parse

    sources = worker_paths(sources)
    cols = arrow.check_columns(columns)
    f = parse(filter) if isinstance(filter, str) else (filter or MATCH_ALL)
    caps = [Capture(s) for s in sources]
    try:
        parts = plan(caps, list(sources), [f] * len(caps), partition_events)
    finally:
        for c in caps:
            c.close()
    meta = arrow.event_schema(cols).empty_table().to_pandas()
    if not parts:
        return dd.from_pandas(meta, npartitions=1)
    return dd.from_map(_frame, parts, columns=cols, time_min=time_min, time_max=time_max, meta=meta,
                       enforce_metadata=False)


# -- distributed stats ---------------------------------------------------------------------------


@dataclass
class PartialStats:
    """What one partition contributes to a ``stats`` document (picklable: no open files)."""

    acc: Any  # stats._Acc without its top rows
    top: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)  # (lat, -ts, event)


def partition_stats(
    part: Partition, opts: st.StatsOptions, use_real: bool, iv_origin: int, iv_last: int
) -> PartialStats:
    """Summarise one partition (runs on a worker)."""
    wopts = st.StatsOptions(by=list(opts.by), interval_ns=opts.interval_ns, top=opts.top,
                            where=part.where, max_groups=UNLIMITED_GROUPS, precision=opts.precision,
                            all_fds=opts.all_fds)
    acc = st.new_acc(wopts, iv_origin, iv_last)
    with Capture(part.source) as cap:
        wanted = set(part.offsets)
        infos = [i for i in cap.chunk_infos() if i.offset in wanted]
        clock = cap.clock_map()
        inp = st._Input(part.capture, cap, infos, bool(clock), source_name(cap), clock)
        where = part.where
        for chunk in cap.chunks(where=lambda i: i.offset in wanted, ordered=False):
            info = chunk.info
            if not where.is_trivial and not (info is not None and where.must_match(info)):
                mask = where.mask(chunk)
                n = int(np.count_nonzero(mask))
                if n == 0:
                    continue
                if n < chunk.n:
                    chunk = chunk.take(mask)
                    chunk.info = info
            st.add_chunk(acc, inp, chunk, use_real)
        if len(infos) != len(wanted):
            raise UsageError(f"{part.source}: the capture changed since it was planned")
        top = []
        for lat, nts, seq in acc.top:
            row_inp, row = acc.top_rows[seq]
            top.append((lat, nts, st._event_record(row_inp, row, 0, use_real)))
    acc.top, acc.top_rows = [], {}
    return PartialStats(acc, top)


def stats(
    sources: Sequence[str],
    opts: st.StatsOptions | None = None,
    per_input: Sequence[Filter] | None = None,
    *,
    scheduler: Any = None,
    partition_events: int = DEFAULT_PARTITION_EVENTS,
    strict: bool = False,
    progress: Callable[[int, int], None] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """The ``stats --json`` document of ``sources`` (paths or URLs that every worker can open),
    computed on a Dask cluster: ``scheduler`` is an address (``tcp://host:8786``) or a
    ``distributed.Client``. ``progress(done, total)`` is called as partitions arrive;
    ``timeout`` (seconds) bounds the wait for all of them."""
    distributed = dask_distributed()
    opts = opts or st.StatsOptions()
    opts.by = st.grouping(opts.by)
    if opts.interval_ns is not None and opts.interval_ns <= 0:
        raise UsageError("--interval must be positive")
    caps = [Capture(s, strict=strict) for s in sources]
    try:
        filters = list(per_input) if per_input is not None else [opts.where] * len(caps)
        if len(filters) != len(caps):
            raise ValueError("per_input needs one filter per capture")
        inputs = []
        for k, cap in enumerate(caps):
            infos = [i for i in cap.chunk_infos() if i.n and filters[k].can_match(i)]
            clock = cap.clock_map()
            inputs.append(st._Input(k, cap, infos, bool(clock), source_name(cap), clock))
        use_real = all(inp.has_clock for inp in inputs)
        iv_origin, iv_last = 0, -1
        if opts.interval_ns:
            firsts = [int(i.to_real(np.array([i.infos[0].t_first]))[0]) for i in inputs if i.infos]
            lasts = [int(i.to_real(np.array([max(x.t_last for x in i.infos)]))[0]) for i in inputs if i.infos]
            iv_origin = (min(firsts) // opts.interval_ns) * opts.interval_ns if firsts else 0
            iv_last = (max(lasts) - iv_origin) // opts.interval_ns if lasts else -1
            if iv_last + 1 > st.MAX_INTERVAL_ROWS:
                raise UsageError(f"--interval gives {iv_last + 1:,} rows over these captures (at most "
                                 f"{st.MAX_INTERVAL_ROWS:,}): use a coarser interval")
        parts = plan(caps, worker_paths(sources), filters, partition_events)
        acc = st.new_acc(st.StatsOptions(by=opts.by, interval_ns=opts.interval_ns, top=opts.top,
                                       where=opts.where, max_groups=UNLIMITED_GROUPS,
                                       precision=opts.precision), iv_origin, iv_last)
        top: list[tuple[int, int, dict[str, Any]]] = []
        client = scheduler if isinstance(scheduler, distributed.Client) else _connect(distributed, scheduler)
        try:
            futures = client.map(partition_stats, parts, opts=opts, use_real=use_real, iv_origin=iv_origin,
                                 iv_last=iv_last, pure=False)
            for done, (fut, part) in enumerate(distributed.as_completed(futures, with_results=True,
                                                                          timeout=timeout), 1):
                st.merge_acc(acc, part.acc, track_all=True)
                top.extend(part.top)
                top = sorted(top, key=lambda t: (t[0], t[1]), reverse=True)[: max(opts.top, 0)]
                fut.release()
                if progress is not None:
                    progress(done, len(futures))
        finally:
            if client is not scheduler:
                client.close()
        acc.opts = opts  # (the document keeps the largest groups and lumps the rest: stats._largest_groups)
        if opts.interval_ns:
            st._finish_intervals(acc, float("inf"))
        doc = st._document(acc, inputs, use_real)
        doc["top"] = [t[2] for t in top]
        return doc
    finally:
        for cap in caps:
            cap.close()


def _connect(distributed: Any, address: str) -> Any:
    try:
        return distributed.Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AetherError(f"cannot reach the Dask scheduler at {address} ({msg})") from None
