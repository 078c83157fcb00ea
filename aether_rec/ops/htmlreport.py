"""``report``: one self-contained HTML page from binned profiles (profile.py).

The page embeds its data as one JSON document (``<script type="application/json"
id="aether-data">``) and draws it with inline SVG and a small inline script: no network access,
no fonts or libraries fetched. Every number on the page is computed here from the mergeable
histograms; the script only lays them out, so the size of the page depends on the number of
time columns, latency rows and table rows, never on the number of events.

Strings from a capture (process names, paths, header fields) are untrusted: they reach the page
only inside the JSON document (``<`` escaped) and are inserted with ``textContent``, never as
markup.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from aether_rec.ops.heatmap import MAX_ROWS, Rows, cell_expression, choose_rows, heat, hist_rows, shared_rows
from aether_rec.ops.histogram import PERCENTILES, Histogram, pkey
from aether_rec.ops.htmlassets import PAGE
from aether_rec.ops.info import summarize_hooks
from aether_rec.ops.profile import Profile
from aether_rec.schema import layer_name, op_name

SCHEMA_NAME = "aether-rec/report"
SCHEMA_VERSION = 1
MAX_BYTES = 5 * 1024 * 1024
TABLE_ROWS = 200


def _num(v: float | None, nd: int = 3) -> float | None:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return round(float(v), nd)


def _summary(h: Histogram) -> dict[str, Any]:
    s = h.summary(PERCENTILES)
    return {k: s[k] for k in ("count", "min", "mean", *(pkey(q) for q in PERCENTILES), "max")}


def _cmdline(cmd: Any) -> str:
    if isinstance(cmd, list):
        return " ".join(str(c) for c in cmd)
    return "" if cmd is None else str(cmd)


def provenance(prof: Profile) -> dict[str, Any]:
    h = prof.header
    start = None if prof.real_offset is None or prof.first_ts is None else prof.first_ts + prof.real_offset
    end = None if prof.real_offset is None or prof.last_end is None else prof.last_end + prof.real_offset
    filters = h.get("filters")
    return {
        "file": prof.path,
        "host": h.get("hostname"),
        "kernel": h.get("kernel"),
        "arch": h.get("arch"),
        "ncpu": h.get("ncpu"),
        "capture_id": h.get("capture_id"),
        "synthetic": bool(h.get("synthetic", False)),
        "redacted": bool(h.get("redacted", False)),
        "command": _cmdline(h.get("command")),
        "tool_version": h.get("tool_version"),
        "hooks": summarize_hooks(h.get("hooks")) if h.get("hooks") else "",
        "recorder_filters": json.dumps(filters, sort_keys=True, default=str) if filters else "",
        "selection": prof.filter_text or "",
        "start": _iso(start),
        "end": _iso(end),
        "start_ns": start,
        "seconds": prof.span_s,
    }


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    dt = _dt.datetime.fromtimestamp(ns // 1_000_000_000, tz=_dt.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{(ns % 1_000_000_000) // 1000:06d}Z"


def _layer_section(prof: Profile, layer: int, rows: Rows, capture: str) -> dict[str, Any]:
    ht = heat(prof, layer, rows)
    w_s = prof.width / 1e9
    cols = prof.column_hists(layer)
    p50, p99, pmax, counts = [], [], [], []
    for h in cols:
        counts.append(h.total)
        if h.total:
            a, b = h.percentiles([50, 99])
            p50.append(a)
            p99.append(b)
            pmax.append(h.max)
        else:
            p50.append(None)
            p99.append(None)
            pmax.append(None)
    nbytes = prof.layer_col_bytes.get(layer, np.zeros(prof.ncols))
    errors = prof.layer_col_errors.get(layer, np.zeros(prof.ncols, dtype=np.int64))
    ops = []
    for k in sorted(prof.layer_op):
        if k >> 8 != layer:
            continue
        h = prof.layer_op[k]
        ops.append({
            "op": op_name(k & 0xFF),
            "events": h.total,
            "bytes": prof.layer_op_bytes.get(k, 0),
            "errors": prof.layer_op_errors.get(k, 0),
            "iops": _num(h.total / prof.span_s if prof.span_s else None),
            "latency": _summary(h),
            "rows": hist_rows(h, rows).tolist(),
        })
    total = prof.layer_hist(layer)
    return {
        "code": layer,
        "name": layer_name(layer),
        "events": total.total,
        "latency": _summary(total),
        "edges": rows.edges,
        "cells": ht.cells(),
        "col_totals": ht.counts.sum(axis=1).tolist(),
        "vmax": ht.vmax,
        "p50": p50,
        "p99": p99,
        "max": pmax,
        "iops": [_num(c / w_s, 1) for c in counts],
        "bps": [_num(float(b) / w_s, 1) for b in nbytes.tolist()],
        "errors": [int(e) for e in errors.tolist()],
        "ops": ops,
        "expr_example": cell_expression(prof, layer, rows, 0, 1),
        "where": prof.where_text or "",
        "capture": capture,
    }


def _table(prof: Profile, name: str) -> list[dict[str, Any]]:
    t = prof.tables.get(name)
    if t is None:
        return []
    out = []
    for key, h, nbytes, nerr in t.rows():
        value = key[0]
        if name == "dev":
            if value == 0:
                continue
            value = f"{int(value) >> 20}:{int(value) & 0xFFFFF}"
        s = h.summary([50, 99])
        out.append({
            "key": "" if value is None else str(value),
            "events": h.total,
            "bytes": nbytes,
            "errors": nerr,
            "p50": s["p50"],
            "p99": s["p99"],
            "max": h.max,
        })
        if len(out) >= TABLE_ROWS:
            break
    return out


def section(prof: Profile, rows: dict[int, Rows] | None = None, max_rows: int = MAX_ROWS) -> dict[str, Any]:
    """The page data of one profile (``rows`` fixes the latency rows per layer, for compare)."""
    layers = []
    for lay in prof.layers:
        r = (rows or {}).get(lay) or choose_rows(prof.layer_hist(lay), max_rows)
        layers.append(_layer_section(prof, lay, r, prof.path))
    lost = sum(x["count"] for x in prof.losses if x["real"])
    total = prof.total_hist()
    return {
        "label": prof.label,
        "provenance": provenance(prof),
        "events": prof.events,
        "latency": _summary(total),
        "iops": _num(prof.events / prof.span_s if prof.span_s else None),
        "lost": lost,
        "losses": prof.losses[:2000],
        "t0": prof.t0,
        "t0s": str(prof.t0),
        "t0_real_ns": None if prof.real_offset is None else prof.t0 + prof.real_offset,
        "width_ns": prof.width,
        "ncols": prof.ncols,
        "layers": layers,
        "tables": {name: _table(prof, name) for name in ("comm", "path", "dev")},
        "top": prof.top,
        "warnings": prof.warnings,
    }


def report_data(
    profiles: Sequence[Profile],
    *,
    command: str = "",
    compare: dict[str, Any] | None = None,
    scale: str = "sqrt",
    max_rows: int = MAX_ROWS,
) -> dict[str, Any]:
    """The JSON document the page draws. With ``compare`` (a ``diff`` document), the two
    profiles share latency rows and one colour scale per layer."""
    if scale not in ("sqrt", "log", "linear"):
        raise ValueError("scale must be sqrt, log or linear")
    rows: dict[int, Rows] | None = None
    if compare is not None:
        layers = sorted({lay for p in profiles for lay in p.layers})
        rows = {lay: shared_rows(profiles, lay, max_rows) for lay in layers}
    from aether_rec import __version__

    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "tool_version": __version__,
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "scale": scale,
        "mode": "compare" if compare is not None else "sections",
        "sections": [section(p, rows, max_rows) for p in profiles],
        "diff": compare,
    }


def _json_for_script(doc: Any) -> str:
    """JSON safe inside a <script> element: no ``<``, ``>``, ``&`` or line separators."""
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False, default=_default)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    raise TypeError(f"not JSON: {type(o).__name__}")


def render_html(doc: dict[str, Any]) -> str:
    """The page: the template with the JSON document inlined."""
    title = "aether-rec report"
    if doc["mode"] == "compare":
        title = "aether-rec: before / after"
    page = PAGE.replace("__TITLE__", title).replace("__DATA__", _json_for_script(doc))
    return page


def build(profiles: Sequence[Profile], **kw: Any) -> str:
    """``report_data`` rendered as a page; raises ValueError when it would exceed 5 MiB."""
    html = render_html(report_data(profiles, **kw))
    size = len(html.encode("utf-8"))
    if size > MAX_BYTES:
        raise ValueError(f"the report would be {size / 1048576:.1f} MiB (limit 5 MiB): use fewer --columns")
    return html
