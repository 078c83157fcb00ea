"""``stats --from-index``: the per-(layer, op) part of ``stats`` from the latency histograms a
1.2 capture's index keeps for every chunk (format/summary.py), without decompressing a chunk.

Counts, bytes, errors and the span are exactly what ``stats`` finds; percentiles are what
merging the same histograms gives (within ``relative_error`` of the exact ones, like
``stats``). A chunk whose index entry has no histograms (a 1.0/1.1 capture, an index too long
to hold them) is read and summarised instead, and the document says how many were. A time
window selects whole chunks: every chunk that overlaps it counts entirely (said in the
warnings). Only what the histograms hold is available: no --by, --interval, --top, errnos,
block queue/service split or page-cache figures (they are None or empty in the document).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from aether_rec.errors import DamagedCaptureError, UsageError
from aether_rec.format.chunk import ChunkInfo
from aether_rec.format.reader import Capture
from aether_rec.format.summary import PRECISION, LatencyHist
from aether_rec.format.writer import HIST_COLUMNS
from aether_rec.ops import stats as st
from aether_rec.ops.histogram import GroupedHistograms, Histogram
from aether_rec.ops.window import Selection, source_name
from aether_rec.schema import STORAGE_FD_KINDS


def chunk_histograms(cap: Capture, infos: Sequence[ChunkInfo]) -> tuple[LatencyHist, int]:
    """The merged histograms of ``infos`` and how many of them had to be read (no usable
    histograms in their index entry)."""
    total = LatencyHist(PRECISION)
    missing: set[int] = set()
    for info in infos:
        if info.hist is None:
            missing.add(info.offset)
            continue
        try:
            h = LatencyHist.decode(info.hist)
        except DamagedCaptureError as exc:
            cap.warn(f"chunk at offset {info.offset}: index histograms unusable ({exc}); read the chunk")
            missing.add(info.offset)
            continue
        if h.precision != PRECISION:
            missing.add(info.offset)
            continue
        total.merge(h)
    if missing:
        for chunk in cap.chunks(where=lambda i: i.offset in missing, columns=HIST_COLUMNS, ordered=False):
            total.merge(LatencyHist.from_chunk(chunk, PRECISION))
    return total, len(missing)


def compute_from_index(
    caps: Sequence[Capture],
    opts: st.StatsOptions | None = None,
    per_input: Sequence[Selection] | None = None,
) -> dict[str, Any]:
    """The ``stats`` document of ``caps`` from their index histograms (see the module)."""
    opts = opts or st.StatsOptions()
    opts.by = st.grouping(opts.by)
    if opts.by or opts.interval_ns:
        raise UsageError("--from-index: the index holds latency per layer and op only (no --by, --interval)")
    selections = list(per_input) if per_input is not None else [
        Selection(opts.where, source=source_name(cap)) for cap in caps]
    if len(selections) != len(caps):
        raise ValueError("per_input needs one selection per capture")
    if any(not s.where.is_trivial for s in selections):
        raise UsageError("--from-index selects by time only (--since/--until), not by expression")
    inputs: list[st._Input] = []
    acc = st._Acc(opts, GroupedHistograms(PRECISION))
    windowed = False
    read = 0
    firsts: list[int] = []
    ends: list[int] = []
    use_real = True
    chunk_lists = []
    for k, cap in enumerate(caps):
        infos = [i for i in cap.chunk_infos() if i.n and selections[k].can_match(i)]
        clock = cap.clock_map()
        inputs.append(st._Input(k, cap, infos, bool(clock), source_name(cap), clock))
        use_real = use_real and bool(clock)
        windowed = windowed or selections[k].t_min is not None or selections[k].t_max is not None
        chunk_lists.append(infos)
    for inp, infos in zip(inputs, chunk_lists):
        hist, n_read = chunk_histograms(inp.cap, infos)
        read += n_read
        t0 = end = None
        for key, g in sorted(hist.groups.items()):
            fdkind = key & 0xFF
            if not opts.all_fds and fdkind not in STORAGE_FD_KINDS:
                acc.not_storage[fdkind] = acc.not_storage.get(fdkind, 0) + g.count
                continue
            lo = key >> 8  # layer << 8 | op, stats' key
            h = Histogram(PRECISION)
            h.base, h.counts, h.total = g.base, g.counts.copy(), g.count
            h.sum, h.min, h.max = g.sum, g.min, g.max
            acc.layer_op._get(lo).merge(h)
            acc.lo_bytes[lo] = acc.lo_bytes.get(lo, 0) + g.bytes
            if g.errors:
                acc.lo_errors[lo] = acc.lo_errors.get(lo, 0) + g.errors
            acc.events += g.count
            t0 = g.t0 if t0 is None else min(t0, g.t0)
            end = g.end if end is None else max(end, g.end)
        if t0 is not None and end is not None:
            firsts.append(t0 if not use_real else int(inp.to_real(np.array([t0], dtype=np.uint64))[0]))
            ends.append(end if not use_real else int(inp.to_real(np.array([end], dtype=np.uint64))[0]))
    acc.first_ts = min(firsts) if firsts else None
    acc.last_end = max(ends) if ends else None
    doc = st._document(acc, inputs, use_real)
    doc["from_index"] = {
        "chunks": sum(len(c) for c in chunk_lists),
        "chunks_read": read,  # chunks without usable histograms in the index: decoded
        "whole_chunks": windowed,
        "not_available": ["top", "errnos", "block", "page_cache", "would_block", "groups", "intervals"],
    }
    doc["block"] = None
    doc["would_block"] = None
    if windowed:
        doc["warnings"].append("--from-index: the time window selects whole chunks (every chunk that "
                               "overlaps it counts entirely)")
    return doc
