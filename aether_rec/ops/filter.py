"""``filter``: copy the events of a capture that match a selection into a new capture.

The output is a valid capture whose header keeps the original provenance (host, kernel, clock
mapping, command, hooks...) plus ``derived_from`` and the filters applied, and keeps the loss
records that fall inside the time window and the metadata tables. Chunks the index proves cannot
match are never decompressed; chunks it proves match entirely are copied without masking.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from aether_rec.format.reader import Capture
from aether_rec.format.writer import CaptureWriter
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
KNOWN_META_TABLES = ("procs", "fds", "devices", "clock", "cgroups", "hooks", "sources")


@dataclass
class FilterReport:
    events_in: int = 0
    events_out: int = 0
    chunks_total: int = 0
    chunks_read: int = 0
    losses_kept: int = 0
    losses_dropped: int = 0
    warnings: list[str] = field(default_factory=list)


def meta_tables(cap: Capture) -> list[str]:
    """Names of the metadata tables of a capture, in first-seen order."""
    names = getattr(cap, "meta_tables", None)
    if callable(names):
        return list(names())
    cap.chunk_infos()  # makes sure the index or a scan has been read
    seen: list[str] = []
    for entry in getattr(cap, "_metas", None) or []:
        name = entry[1] if isinstance(entry, (list, tuple)) else None
        if isinstance(name, str) and name not in seen:
            seen.append(name)
    for name in KNOWN_META_TABLES:
        if name not in seen and cap.meta(name):
            seen.append(name)
    return seen


def derived_header(caps: list[Capture], **extra: Any) -> dict[str, Any]:
    """A header for a capture made from ``caps``: the first one's provenance, a
    ``derived_from`` list, and ``extra``."""
    base = {k: v for k, v in caps[0].header.items() if k not in WRITER_OWNED}
    parents = []
    for cap in caps:
        h = cap.header
        parents.append(
            {
                "capture_id": h.get("capture_id"),
                "path": cap.name,
                "hostname": h.get("hostname"),
                "created": h.get("created"),
                "derived_from": h.get("derived_from"),
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
    f = sel.filter
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
    with CaptureWriter(out, header, overwrite=overwrite) as w:
        for name in meta_tables(cap):
            rows = cap.meta(name)
            if rows:
                w.write_meta(name, rows)
        for chunk in sel.chunks(cap):
            rep.events_out += chunk.n
            w.write_events(chunk)
        for loss in cap.losses():
            inside = (sel.t_min is None or loss.t_last >= sel.t_min) and (
                sel.t_max is None or loss.t_first < sel.t_max
            )
            if inside:
                w.write_loss(loss.cpu, loss.count, loss.t_first, loss.t_last, loss.kind)
                rep.losses_kept += 1
            else:
                rep.losses_dropped += 1
    rep.chunks_read = sum(1 for i in infos if f.is_trivial or f.can_match(i))
    rep.warnings = list(cap.warnings)
    return rep
