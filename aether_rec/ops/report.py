"""The terminal view of ``stats``, rendered from the ``stats --json`` document.

Times are shown in UTC (a capture is often read far from where it was recorded), durations with
their unit, counts with thousands separators.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from aether_rec.ops.histogram import Histogram, render_log2
from aether_rec.ops.units import fmt_bytes, fmt_count, fmt_duration

LAT_COLS = (
    ("min", "MIN"),
    ("p50", "P50"),
    ("p90", "P90"),
    ("p99", "P99"),
    ("p99_9", "P99.9"),
    ("max", "MAX"),
)


def _utc(iso: str | None, *, date: bool = True) -> str:
    if not iso:
        return "-"
    body = iso.replace("T", " ").rstrip("Z")
    if "." in body:
        head, frac = body.split(".", 1)
        body = f"{head}.{frac[:6]}"
    return body if date else body.split(" ", 1)[1]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> list[str]:
    widths = [len(h) for h in headers]
    for r in rows:
        for i, cell in enumerate(r):
            widths[i] = max(widths[i], len(cell))

    def fmt(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
        return "  ".join(parts).rstrip()

    return [fmt(headers)] + [fmt(r) for r in rows]


def _lat_cells(lat: dict[str, Any]) -> list[str]:
    return [fmt_duration(lat.get(k)) for k, _ in LAT_COLS]


BOX_WIDTH = 78
HIST_UNITS = {"ns": "nsecs", "us": "usecs", "ms": "msecs"}
_BARS = re.compile(r"\|([*+]+)")


def fmt_iops(v: float) -> str:
    """IOPS, one way for every row: thousands separators and one decimal (``3,758.0``,
    ``11,612.4``, ``0.9``), so a column of them lines up and reads at a glance."""
    return f"{v:,.1f}"


def _opt_rate(v: float | None) -> str:
    return "-" if v is None else fmt_iops(v)


def loss_box(text_lines: Sequence[str], width: int = BOX_WIDTH) -> list[str]:
    """A box of ``!`` around text, wrapped so that no line is wider than ``width``."""
    out = ["!" * width]
    for para in text_lines:
        for line in textwrap.wrap(para, width - 6, break_long_words=True, break_on_hyphens=False) or [""]:
            out.append(f"!! {line.ljust(width - 6)} !!")
    out.append("!" * width)
    return out


def _opt_bps(v: float | None) -> str:
    return "-" if v is None else fmt_bytes(v) + "/s"


def render_stats(
    doc: dict[str, Any],
    *,
    histograms: bool = True,
    unit: str = "us",
    style: Callable[[str, str], str] | None = None,
) -> str:
    """The text view; ``unit`` (ns, us, ms) is the histograms' row unit, ``style(text, role)``
    (roles ``loss``, ``bar``) colours the loss banner and the histogram bars."""
    if unit not in HIST_UNITS:
        raise ValueError(f"unit must be one of {', '.join(HIST_UNITS)}")

    def paint(text: str, role: str) -> str:
        return style(text, role) if style else text

    out: list[str] = []
    inputs = doc["inputs"]
    title = f"aether-rec stats: {len(inputs)} capture{'s' if len(inputs) != 1 else ''}"
    title += f", {fmt_count(doc['events'])} events"
    if doc.get("filter"):
        title += f"  (filter: {doc['filter']})"
    out.append(title)
    for inp in inputs:
        bits = [inp["path"], f"host {inp.get('hostname') or '?'}", f"kernel {inp.get('kernel') or '?'}"]
        if inp.get("capture_id"):
            bits.append(f"capture {str(inp['capture_id'])[:12]}")
        if inp.get("synthetic"):
            bits.append("SYNTHETIC")
        if inp.get("filter"):
            bits.append(f"filtered: {inp['filter']}")
        out.append("  " + "   ".join(bits))
    span = doc["span"]
    if span.get("seconds") is not None or span.get("start_ns") is not None:
        if doc["clock"] == "realtime":
            out.append(
                f"span      {_utc(span['start'])} -> {_utc(span['end'])} UTC"
                f"  ({fmt_duration((span['seconds'] or 0) * 1e9)})"
            )
        else:
            out.append(
                f"span      {fmt_duration((span['seconds'] or 0) * 1e9)} (monotonic clock only: "
                "no wall-clock mapping in the capture)"
            )
    losses = doc["losses"]
    if losses["total"]:
        out.append("")
        cpus = ", ".join(
            f"cpu{c}: {fmt_count(n)}" for c, n in sorted(losses["by_cpu"].items(), key=lambda kv: int(kv[0]))
        )
        firsts = [r["first"] for r in losses["records"] if r.get("first")]
        lasts = [r["last"] for r in losses["records"] if r.get("last")]
        when = (
            f" between {_utc(min(firsts), date=False)} and {_utc(max(lasts), date=False)} UTC"
            if firsts
            else ""
        )
        kinds = sorted({r["kind"] for r in losses["records"]})
        box = loss_box([
            f"LOST EVENTS: {fmt_count(losses['total'])} events were lost ({cpus}){when}, "
            f"in {len(losses['records'])} loss record(s) [{', '.join(kinds)}].",
            "Counts, rates and percentiles below miss those events.",
        ])
        out += [paint(line, "loss") for line in box]
    out.append("")
    out.append(
        f"events {fmt_count(doc['events'])}   IOPS {_opt_rate(doc['iops'])}   "
        f"bytes {fmt_bytes(doc['bytes'])}   throughput {_opt_bps(doc['bytes_per_s'])}   "
        f"errors {fmt_count(doc['errors'])}"
    )
    if not doc["events"]:
        out.append("no events" + (" match the filter" if doc.get("filter") else ""))
    else:
        out.append("")
        out.append(f"latency (percentiles within {doc['relative_error'] * 100:.2g} %)")
        rows = []
        for r in doc["by_layer_op"]:
            rows.append(
                [
                    r["layer"],
                    r["op"],
                    fmt_count(r["events"]),
                    _opt_rate(r["iops"]),
                    fmt_bytes(r["bytes"]),
                    _opt_bps(r["bytes_per_s"]),
                    fmt_count(r["errors"]),
                    *_lat_cells(r["latency"]),
                ]
            )
        if len(rows) > 1:
            rows.append(
                [
                    "all",
                    "",
                    fmt_count(doc["events"]),
                    _opt_rate(doc["iops"]),
                    fmt_bytes(doc["bytes"]),
                    _opt_bps(doc["bytes_per_s"]),
                    fmt_count(doc["errors"]),
                    *_lat_cells(doc["latency"]),
                ]
            )
        heads = ["LAYER", "OP", "EVENTS", "IOPS", "BYTES", "THROUGHPUT", "ERRORS", *(h for _, h in LAT_COLS)]
        out += ["  " + line for line in table(heads, rows, [False, False] + [True] * (len(heads) - 2))]
    ns = doc.get("not_storage")
    if ns and ns["events"]:
        by_kind = sorted(ns["by_kind"].items(), key=lambda kv: -kv[1])
        kind_text = ", ".join(f"{k} {fmt_count(c)}" for k, c in by_kind)
        n_ns = fmt_count(ns["events"])
        out.append(f"not storage (left out, --all-fds includes it): {n_ns} events ({kind_text})")
    if doc.get("would_block"):
        out.append(f"would block (EAGAIN, not counted as errors): {fmt_count(doc['would_block'])}")
    pc = doc.get("page_cache")
    if pc and pc["hit_ratio"] is not None:
        out.append(
            f"page cache: {pc['hit_ratio'] * 100:.1f} % of {fmt_count(pc['read_pages'])} pages read were "
            f"hits ({fmt_count(pc['missed_pages'])} pages had to be read from storage)"
        )
    if doc["errnos"]:
        out.append("")
        out.append("errors by errno")
        rows = [[e["name"], str(e["errno"]), fmt_count(e["count"])] for e in doc["errnos"]]
        out += ["  " + line for line in table(["ERROR", "ERRNO", "COUNT"], rows, [False, True, True])]
    blk = doc.get("block")
    if blk:
        out.append("")
        out.append(
            f"block layer: queue vs service time ({fmt_count(blk['events'])} requests, "
            f"{fmt_count(blk['queued_events'])} with a queue time)"
        )
        rows = [
            ["queue", fmt_count(blk["queue"]["count"]), *_lat_cells(blk["queue"])],
            ["service", fmt_count(blk["service"]["count"]), *_lat_cells(blk["service"])],
        ]
        heads = ["", "EVENTS", *(h for _, h in LAT_COLS)]
        out += ["  " + line for line in table(heads, rows, [False] + [True] * (len(heads) - 1))]
    groups = doc.get("groups")
    if groups:
        out.append("")
        out.append(f"by {', '.join(groups['by'])}")
        rows = []
        for g in groups["rows"]:
            lat = g["latency"]
            rows.append(
                [str(g["key"][k]) for k in groups["by"]]
                + [
                    fmt_count(g["events"]),
                    _opt_rate(g["iops"]),
                    fmt_bytes(g["bytes"]),
                    fmt_count(g["errors"]),
                    fmt_duration(lat["p50"]),
                    fmt_duration(lat["p99"]),
                    fmt_duration(lat["max"]),
                ]
            )
        heads = [k.upper() for k in groups["by"]] + ["EVENTS", "IOPS", "BYTES", "ERRORS", "P50", "P99", "MAX"]
        right = [False] * len(groups["by"]) + [True] * 7
        out += ["  " + line for line in table(heads, rows, right)]
        if groups.get("lumped_events"):
            out.append(
                f"  (more than {groups['max_groups']} groups: the rest are lumped into (other); "
                "raise --max-groups to see them)"
            )
    intervals = doc.get("intervals")
    if intervals:
        out.append("")
        out.append(f"every {fmt_duration(intervals['interval_ns'])}")
        rows = []
        for r in intervals["rows"]:
            lat = r["latency"]
            rows.append(
                [
                    _utc(r["start"], date=False),
                    fmt_count(r["events"]),
                    _opt_rate(r["iops"]),
                    _opt_bps(r["bytes_per_s"]),
                    fmt_count(r["errors"]),
                    fmt_duration(lat["p50"]),
                    fmt_duration(lat["p99"]),
                    fmt_duration(lat["max"]),
                ]
            )
        heads = ["TIME (UTC)", "EVENTS", "IOPS", "THROUGHPUT", "ERRORS", "P50", "P99", "MAX"]
        out += ["  " + line for line in table(heads, rows, [False] + [True] * 7)]
    if histograms:
        for layer in doc["by_layer"]:
            h = Histogram.from_dict(layer["histogram"])
            if not h.total:
                continue
            out.append("")
            out.append(f"latency histogram: {layer['layer']} layer ({fmt_count(h.total)} events)")
            for line in render_log2(h, HIST_UNITS[unit]):
                out.append(_BARS.sub(lambda m: "|" + paint(m.group(1), "bar"), line) if style else line)
    if doc["top"]:
        out.append("")
        out.append(f"top {len(doc['top'])} slowest")
        rows = []
        for e in doc["top"]:
            where = (
                e["path"]
                or (f"dev {e['dev']}" if e.get("dev") else "")
                or (f"fd {e['fd']}" if e["fd"] >= 0 else "")
            )
            res = e["error"] if e.get("error") else str(e["result"])
            rows.append(
                [
                    _utc(e["time"], date=False) if e.get("time") else str(e["ts"]),
                    fmt_duration(e["lat"]),
                    e["comm"],
                    f"{e['pid']}/{e['tid']}",
                    e["layer"],
                    e["op"],
                    fmt_bytes(e["bytes"]),
                    str(e["offset"]) if e["offset"] >= 0 else "-",
                    res,
                    where,
                ]
            )
        heads = [
            "TIME (UTC)",
            "LAT",
            "COMM",
            "PID/TID",
            "LAYER",
            "OP",
            "BYTES",
            "OFFSET",
            "RESULT",
            "FILE/DEVICE",
        ]
        right = [False, True, False, True, False, False, True, True, True, False]
        out += ["  " + line for line in table(heads, rows, right)]
    for w in doc.get("warnings") or []:
        out.append(f"warning: {w}")
    return "\n".join(out)
