"""``filter``: copy the events of a capture that match a selection into a new capture.

The output is a valid capture whose header keeps the original provenance (host, kernel, clock
mapping, command, hooks...) plus ``derived_from`` and the filters applied, and keeps the loss
records that fall inside the time window and the metadata tables. Chunks the index proves cannot
match are never decompressed; chunks it proves match entirely are copied without masking.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from aether_rec.format.chunk import Chunk, ChunkInfo
from aether_rec.format.output import refuse_same_file
from aether_rec.format.reader import Capture
from aether_rec.format.writer import CaptureWriter
from aether_rec.ops.pipeline import BackgroundWriter, prefetch
from aether_rec.ops.rawcopy import RawChunks, copy_chunk, isolated
from aether_rec.ops.text import MAX_DEPTH, pruned
from aether_rec.ops.window import Selection

# Header fields the writer sets itself for every new capture.
WRITER_OWNED = {
    "format_version",
    "capture_id",
    "created_ns",
    "created",
    "tool",
    "tool_version",
    "codec",
    "columns",
}


@dataclass
class FilterReport:
    events_in: int = 0
    events_out: int = 0
    chunks_total: int = 0
    chunks_read: int = 0
    chunks_copied: int = 0  # copied whole, without decoding
    losses_kept: int = 0
    losses_dropped: int = 0


def meta_tables(cap: Capture) -> list[str]:
    """Names of the metadata tables of a capture, in first-seen order."""
    return cap.meta_tables()


def derived_header(caps: list[Capture], **extra: Any) -> dict[str, Any]:
    """A header for a capture made from ``caps``: the first one's provenance, a
    ``derived_from`` list, and ``extra``."""
    base = {k: pruned(v) for k, v in caps[0].header.items() if k not in WRITER_OWNED}
    parents = []
    for cap in caps:
        h = cap.header
        parents.append(
            {
                "capture_id": h.get("capture_id"),
                "path": cap.name,
                "hostname": h.get("hostname"),
                "created": h.get("created"),
                "derived_from": pruned(h.get("derived_from"), MAX_DEPTH - 4),
            }
        )
    base["derived_from"] = parents
    base.update(extra)
    return base


def filter_capture(
    cap: Capture,
    out: str | os.PathLike[str] | BinaryIO,
    sel: Selection,
    *,
    overwrite: bool = False,
) -> FilterReport:
    """Write the events of ``cap`` selected by ``sel`` to ``out``."""
    rep = FilterReport()
    infos = cap.chunk_infos()
    rep.chunks_total = len(infos)
    rep.events_in = sum(i.n for i in infos)
    # ("filters" in a header is the recorder's own selection, a map: kept as provenance)
    previous = cap.header.get("filter_history")
    previous = list(previous) if isinstance(previous, list) else []
    text = sel.text
    header = derived_header(
        [cap],
        filter=text,
        filter_history=previous + ([text] if text else []),
        window={"t_min": sel.t_min, "t_max": sel.t_max},
    )
    # offline: zstd may use every CPU for each chunk (the recorder leaves them to the workload)
    refuse_same_file(out, [cap])
    with CaptureWriter(out, header, overwrite=overwrite, threads=-1, atomic=True) as w:
        for name in meta_tables(cap):
            rows = cap.meta(name)
            if rows:
                w.write_meta(name, rows)
        # compression runs on a helper thread while the next chunk is selected
        with BackgroundWriter() as bw:
            for chunk, raw in _selected(cap, sel):
                if raw is not None:
                    info, block = raw
                    bw.submit(functools.partial(copy_chunk, w, block, info))
                    rep.events_out += info.n
                    rep.chunks_copied += 1
                    continue
                assert chunk is not None
                bw.submit(functools.partial(w.write_events, chunk))
                rep.events_out += chunk.n
        for loss in cap.losses():
            if sel.keeps_loss(loss):
                w.write_loss(loss)
                rep.losses_kept += 1
            else:
                rep.losses_dropped += 1
    rep.chunks_read = sum(1 for i in infos if sel.can_match(i))
    return rep


def _selected(cap: Capture, sel: Selection) -> Iterator[tuple[Chunk | None, tuple[ChunkInfo, bytes] | None]]:
    """The selected events in time order: decoded chunks to write, or (None, (info, block)) for
    a chunk to copy whole. The copy path needs chunks that do not overlap in time and sit
    in the file in time order (what a recorder writes); otherwise everything is decoded."""
    infos = [i for i in cap.chunk_infos() if i.n]
    raw = RawChunks(cap)
    in_order = all(a.t_first <= b.t_first for a, b in zip(infos, infos[1:]))
    if not raw.available or not in_order or not all(isolated(infos)):
        for chunk in prefetch(sel.chunks(cap)):
            yield chunk, None
        return
    wanted = [i for i in infos if sel.can_match(i)]
    whole = {i.offset for i in wanted if sel.must_match(i)}
    decode = {i.offset for i in wanted if i.offset not in whole}
    # decoded in a helper thread (it owns the capture's file); raw blocks come through RawChunks' own
    decoded = prefetch(cap.chunks(where=lambda i: i.offset in decode, ordered=False))
    position = {i.offset: k for k, i in enumerate(infos)}
    ahead: Chunk | None = None
    try:
        for info in wanted:
            if info.offset in whole:
                block = raw.block(info)
                if block is not None:
                    yield None, (info, block)
                    continue
                # a damaged block: skipped with a warning, as the reader does
                cap.warn(f"chunk at offset {info.offset} is damaged; skipped it")
                continue
            if ahead is None:
                ahead = next(decoded, None)
            if ahead is None or ahead.info is None:
                continue
            if position[ahead.info.offset] > position[info.offset]:
                continue  # the reader skipped this one (damaged) with a warning
            chunk, ahead = ahead, None
            kept = sel.apply(chunk)
            if kept is not None:
                yield kept, None
    finally:
        decoded.close()  # stops the helper thread if we leave early
        raw.close()
