"""``info``: what a capture holds, like capinfos: provenance, span, counts, size, losses."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from aether_rec.format.reader import Capture
from aether_rec.ops.text import printable
from aether_rec.schema import is_real_loss, layer_name, op_name

INFO_SCHEMA_VERSION = 1


def iso_ns(real_ns: int) -> str:
    """UTC wall-clock time with microseconds, e.g. 2026-11-26T03:40:15.123456Z."""
    if not -(2**63) < int(real_ns) < 2**63 - 1:
        return "(no wall time)"  # a saturated conversion (format/clock.py)
    secs, ns = divmod(int(real_ns), 1_000_000_000)
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ns // 1000:06d}Z"
    except (OverflowError, OSError, ValueError):
        return f"(not a date: {int(real_ns)} ns)"


def capture_info(cap: Capture, verify: bool = False, index_only: bool = False,
                 summary: bool = True) -> dict[str, Any]:
    """A JSON-ready description of ``cap`` (schema version INFO_SCHEMA_VERSION).

    A 1.2 capture's SUMM block answers everything (``from_summary``; open the capture with
    ``lazy_index`` and nothing else is read: a few KB whatever its size), unless ``verify``
    or ``summary`` is False. Otherwise the index, and the chunks to count events per layer
    and op: with ``index_only`` no chunk is read (for remote captures), ``by_layer_op`` is
    then empty. numpy is imported only to count from chunks (tests/test_cli_startup.py)."""
    h = cap.header
    summ = cap.summary() if summary and not verify else None
    if summ is not None and not summ.complete:
        summ = None  # some chunk's histograms are missing: count from the chunks
    if summ is not None:
        index_n = n = summ.events
        per: Counter[tuple[int, int]] = Counter()
        for key, g in summ.hist.groups.items():
            per[(key >> 16, (key >> 8) & 0xFF)] += g.count
        n_chunks, t0, t1 = summ.chunks, summ.t_first, summ.t_last
        compressed, raw = summ.compressed, summ.raw
        loss_rows = [(x.cpu, x.kind, x.count, x.blocks, x.t_first, x.t_last) for x in summ.losses]
        index_only = False
    else:
        infos = cap.chunk_infos()
        index_n = sum(c.n for c in infos)  # what the index (or the summaries) claim
        per = Counter()
        # every column decoded: a chunk counts when it can be read whole, as stats and replay
        # read it (a chunk damaged in another column is skipped by them too); none with
        # index_only (a remote capture: the index says enough)
        for chunk in [] if index_only else cap.chunks(ordered=False):
            import numpy as np

            key = chunk.column("layer").astype(np.uint32) << 8 | chunk.column("op")
            vals, counts = np.unique(key, return_counts=True)
            for v, c in zip(vals.tolist(), counts.tolist()):
                per[(v >> 8, v & 0xFF)] += c
        # what can be read: the same count as stats and replay (with index_only, what the
        # index claims: nothing was read to check it)
        n = index_n if index_only else sum(per.values())
        n_chunks = len(infos)
        t0 = min((c.t_first for c in infos), default=None)
        t1 = max((c.t_last for c in infos), default=None)
        compressed = sum(c.length for c in infos)
        raw = sum(c.raw for c in infos)
        loss_rows = [(x.cpu, x.kind, x.count, 1, x.t_first, x.t_last) for x in cap.losses()]
    lost_by_cpu: Counter[int] = Counter()
    lost_by_kind: Counter[str] = Counter()
    unmatched = 0
    loss_blocks = 0
    lost_windows = []
    for cpu, kind, count, blocks, first, last in loss_rows:
        loss_blocks += blocks
        if not is_real_loss(kind):
            unmatched += count
            continue
        lost_by_cpu[cpu] += count
        lost_by_kind[kind] += count
        if count and first is not None and last is not None:
            lost_windows.append((first, last))
    out: dict[str, Any] = {
        "schema": "aether-rec/info",
        "schema_version": INFO_SCHEMA_VERSION,
        "file": cap.name,
        "file_bytes": cap.size,
        "format_version": f"{cap.major}.{cap.minor}",
        "capture_id": h.get("capture_id"),
        "synthetic": bool(h.get("synthetic", False)),
        "created": h.get("created"),
        "tool_version": h.get("tool_version"),
        "hostname": h.get("hostname"),
        "kernel": h.get("kernel"),
        "arch": h.get("arch"),
        "ncpu": h.get("ncpu"),
        "command": h.get("command"),
        "layers": h.get("layers"),
        "hooks": h.get("hooks"),
        "transport": h.get("transport"),
        "filters": h.get("filters"),
        "codec": h.get("codec"),
        "redacted": bool(h.get("redacted", False)),
        "events": n,
        "index_events": index_n,
        "derived": _derivation(h),
        "chunks": n_chunks,
        "indexed": summ is not None or cap.has_index,
        "from_summary": summ is not None,
        "first_ts": t0,
        "last_ts": t1,
        "start": _wall(cap, t0) if t0 is not None else None,
        "end": _wall(cap, t1) if t1 is not None else None,
        "duration_s": (t1 - t0) / 1e9 if t0 is not None and t1 is not None else 0.0,
        "bytes_per_event": compressed / n if n else None,
        "compression_ratio": raw / compressed if compressed and raw else None,
        "by_layer_op": [
            {"layer": layer_name(la), "op": op_name(op), "events": c}
            for (la, op), c in sorted(per.items())
        ],
        "lost": sum(lost_by_cpu.values()),
        "lost_by_cpu": {str(k): v for k, v in sorted(lost_by_cpu.items())},
        "lost_by_kind": dict(sorted(lost_by_kind.items())),
        "loss_blocks": loss_blocks,
        "lost_first": _wall(cap, min(w[0] for w in lost_windows)) if lost_windows else None,
        "lost_last": _wall(cap, max(w[1] for w in lost_windows)) if lost_windows else None,
        "unmatched": unmatched,
        "recorder_stats": cap.index_stats,
        "index_only": index_only,
        "warnings": list(cap.warnings),
    }
    if verify:
        problems = cap.verify()
        out["verify"] = {"ok": not problems, "problems": problems}
    return out


def _derivation(h: dict[str, Any]) -> dict[str, Any] | None:
    """How a derived capture was made (filter, merge, recover, redact), from its header."""
    parents = h.get("derived_from")
    recovered = h.get("recovered_from")
    if not isinstance(parents, list) and not isinstance(recovered, dict) and not h.get("redacted"):
        return None
    keys = ("path", "capture_id", "hostname", "created")
    made = [{k: p.get(k) for k in keys if not isinstance(p.get(k), (dict, list))}
            for p in (parents if isinstance(parents, list) else []) if isinstance(p, dict)]
    kind = "merge" if isinstance(h.get("merge"), dict) else "filter" if "filter" in h else (
        "recover" if isinstance(recovered, dict) else "redact" if h.get("redacted") else "derived")
    return {"by": kind, "filter": h.get("filter"), "from": made,
            "recovered_from": recovered.get("file") if isinstance(recovered, dict) else None}


def format_info(d: dict[str, Any]) -> str:
    """The text form of ``capture_info``."""

    def row(k: str, v: Any) -> str:
        return f"{k + ':':<22}{printable(str(v))}"

    lines = [
        row("File", d["file"]),
        row("File size", f"{d['file_bytes']:,} bytes"),
        row("Format version", d["format_version"] + ("  (indexed)" if d["indexed"] else "  (no index)")),
        row("Capture id", d["capture_id"]),
    ]
    if d["synthetic"]:
        lines.append(row("Synthetic", "yes (generated, not recorded)"))
    if d["redacted"]:
        lines.append(row("Redacted", "yes (names and paths are keyed hashes)"))
    cmd = d.get("command")
    derived = d.get("derived")
    lines += [
        row("Recorded on", f"{d['hostname']}  kernel {d['kernel']}  {d['arch']}  {d['ncpu']} CPUs"),
        row("Recorded by", f"aether-rec {d['tool_version']}: {_cmdline(cmd)}"),
    ]
    if derived:
        parents = derived["from"]
        if parents and parents[0].get("created"):
            lines.append(row("Recorded", parents[0]["created"]))
        what = derived["by"]
        if derived.get("filter"):
            what += f" {derived['filter']!r}"
        if parents:
            what += " of " + ", ".join(str(p.get("path") or p.get("capture_id")) for p in parents)
        elif derived.get("recovered_from"):
            what += f" of {derived['recovered_from']}"
        lines.append(row("Derived by", what))
        lines.append(row("Created", f"{d['created']} (this file)"))
    else:
        lines.append(row("Created", d["created"]))
    if d.get("hooks"):
        lines.append(row("Hooks", summarize_hooks(d["hooks"])))
    if d.get("filters"):
        f = d["filters"]
        lines.append(row("Filters", ", ".join(
            f"{k}={' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in f.items()
        ) if isinstance(f, dict) else f))
    lines += [
        row("First event", d["start"] or "-"),
        row("Last event", d["end"] or "-"),
        row("Duration", f"{d['duration_s']:.3f} s"),
        row("Events", f"{d['events']:,}" + (f"  (the index lists {d['index_events']:,})"
                                             if d["index_events"] != d["events"] else "")),
        row("Chunks", f"{d['chunks']:,}  codec {d['codec']}"),
    ]
    if d["bytes_per_event"] is not None:
        lines.append(row("Bytes per event", f"{d['bytes_per_event']:.2f}"))
    if d["compression_ratio"] is not None:
        lines.append(row("Compression ratio", f"{d['compression_ratio']:.1f}x"))
    if d.get("index_only"):
        lines.append(row("Events by layer/op", "not counted (index only; --scan reads every chunk)"))
    if d["by_layer_op"]:
        lines.append("Events by layer and op:")
        for e in d["by_layer_op"]:
            lines.append(f"  {e['layer']:<9}{e['op']:<18}{e['events']:>14,}")
    if d["lost"]:
        cpus = ", ".join(f"cpu{k}: {v:,}" for k, v in d["lost_by_cpu"].items())
        kinds = ", ".join(f"{k}: {v:,}" for k, v in d["lost_by_kind"].items())
        lines.append(row("LOST EVENTS", f"{d['lost']:,} ({cpus}; {kinds})"))
        lines.append(row("Lost between", f"{d['lost_first']} and {d['lost_last']}"))
    else:
        lines.append(row("Lost events", "0"))
    if d.get("unmatched"):
        lines.append(row("Unmatched completions", f"{d['unmatched']:,} (I/Os in flight when recording began; "
                         "not losses)"))
    if "verify" in d:
        v = d["verify"]
        lines.append(row("Verify", "ok: every checksum and chunk checks out" if v["ok"] else "FAILED"))
        lines += [f"  {p}" for p in v["problems"]]
    return "\n".join(lines)


def _wall(cap: Capture, mono: int) -> str:
    """The wall time of ``mono`` as every tool finds it (``ClockMap.to_real``'s value, numpy-free)."""
    return iso_ns(cap.clock_map().real_saturating(mono))


def summarize_hooks(hooks: Any) -> str:
    """'tracepoint:syscalls (read write ...); tracepoint:block (...)'."""
    groups: dict[str, list[str]] = {}
    for h in hooks if isinstance(hooks, list) else [hooks]:
        name = str(h.get("hook", "")) if isinstance(h, dict) else str(h)
        where, _, leaf = name.rpartition(":")
        for prefix in ("sys_enter_", "sys_exit_"):
            leaf = leaf.removeprefix(prefix)
        g = groups.setdefault(where or "hook", [])
        if leaf not in g:
            g.append(leaf)
    return "; ".join(f"{k} ({' '.join(v)})" for k, v in groups.items())


def _cmdline(cmd: Any) -> str:
    return " ".join(str(c) for c in cmd) if isinstance(cmd, list) else str(cmd)
