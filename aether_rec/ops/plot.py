"""``plot``: PNG or SVG pictures of a profile for slides and tickets, drawn with matplotlib.

matplotlib is an optional dependency (``pip install 'aether-rec[plot]'``); without it every
function here raises :class:`PlotUnavailable`, a one-line error that names the extra. The
pictures draw the same binned data as the HTML report (heatmap.py, profile.py): the heatmap's
cells are exactly the report's cells.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from aether_rec.errors import AetherError, UsageError
from aether_rec.ops.heatmap import MAX_ROWS, Rows, choose_rows, heat, hist_rows
from aether_rec.ops.profile import Profile
from aether_rec.ops.units import fmt_duration
from aether_rec.schema import layer_name, op_name

KINDS = ("heatmap", "hist", "timeline", "percentiles")
FORMATS = ("png", "svg")


class PlotUnavailable(AetherError):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable(
            "plot needs matplotlib, which is not installed: pip install 'aether-rec[plot]'"
        ) from None
    return plt


def output_format(path: str, fmt: str | None = None) -> str:
    """``png`` or ``svg``, from ``fmt`` or the file's extension."""
    f = (fmt or os.path.splitext(path)[1].lstrip(".")).lower()
    if f not in FORMATS:
        raise UsageError(f"cannot tell the picture format of {path!r}: use a .png or .svg name, or --format")
    return f


def _row_labels(rows: Rows) -> list[str]:
    out = []
    for r in range(rows.n):
        lo, hi = rows.bounds(r)
        if lo is None:
            out.append(f"< {fmt_duration(hi)}")
        elif hi is None:
            out.append(f">= {fmt_duration(lo)}")
        else:
            out.append(fmt_duration(lo))
    return out


def _layers(prof: Profile, layers: Sequence[str] | None) -> list[int]:
    got = prof.layers
    if layers:
        want = {x for x in layers}
        got = [g for g in got if layer_name(g) in want]
    if not got:
        raise AetherError("nothing to plot: no events in the selection")
    return got


def _seconds(prof: Profile) -> np.ndarray:
    return (np.arange(prof.ncols) + 0.5) * prof.width / 1e9


def draw(prof: Profile, kind: str, out: str, *, fmt: str | None = None, layers: Sequence[str] | None = None,
         scale: str = "sqrt", title: str | None = None, dpi: int = 110) -> None:
    """Draw ``kind`` (heatmap, hist, timeline, percentiles) of ``prof`` into ``out``."""
    if kind not in KINDS:
        raise UsageError(f"unknown plot {kind!r} (one of: {', '.join(KINDS)})")
    f = output_format(out, fmt)
    plt = _pyplot()
    lays = _layers(prof, layers)
    fig, axes = plt.subplots(len(lays), 1, figsize=(10, 3.2 * len(lays) + 0.6), squeeze=False)
    try:
        for ax, lay in zip(axes[:, 0], lays):
            {"heatmap": _heatmap, "hist": _hist, "timeline": _timeline, "percentiles": _percentiles}[kind](
                ax, prof, lay, scale)
        fig.suptitle(title or f"{prof.label}: {kind}", fontsize=11)
        fig.tight_layout()
        fig.savefig(out, format=f, dpi=dpi)
    finally:
        plt.close(fig)


def _heatmap(ax: Any, prof: Profile, lay: int, scale: str) -> None:
    from matplotlib import colors

    rows = choose_rows(prof.layer_hist(lay), MAX_ROWS)
    ht = heat(prof, lay, rows)
    data = np.ma.masked_equal(ht.counts.T.astype(float), 0)
    vmax = max(ht.vmax, 1)
    norm = {"log": colors.LogNorm(vmin=1, vmax=vmax), "linear": colors.Normalize(vmin=0, vmax=vmax),
            "sqrt": colors.PowerNorm(0.5, vmin=0, vmax=vmax)}[scale]
    x = np.arange(prof.ncols + 1) * prof.width / 1e9
    y = np.arange(rows.n + 1)
    mesh = ax.pcolormesh(x, y, data, cmap="YlOrRd", norm=norm, shading="flat")
    labels = _row_labels(rows)
    step = max(1, rows.n // 12)
    ticks = list(range(0, rows.n, step))
    if rows.n - 1 not in ticks:
        ticks.append(rows.n - 1)
    ax.set_yticks([t + 0.5 for t in ticks])
    ax.set_yticklabels([labels[t] for t in ticks], fontsize=7)
    ax.axhline(1, color="#888", lw=0.6, ls="--")
    ax.axhline(rows.n - 1, color="#888", lw=0.6, ls="--")
    ax.set_xlabel("seconds from the first event")
    ax.set_ylabel(f"{layer_name(lay)} latency")
    ax.figure.colorbar(mesh, ax=ax, label=f"I/Os per cell ({scale})")


def _hist(ax: Any, prof: Profile, lay: int, scale: str) -> None:
    rows = choose_rows(prof.layer_hist(lay), MAX_ROWS)
    labels = _row_labels(rows)
    x = np.arange(rows.n)
    keys = [k for k in sorted(prof.layer_op) if k >> 8 == lay]
    bottom = np.zeros(rows.n)
    for k in keys:
        counts = hist_rows(prof.layer_op[k], rows).astype(float)
        ax.bar(x, counts, bottom=bottom, width=0.9, label=op_name(k & 0xFF))
        bottom += counts
    step = max(1, rows.n // 12)
    ax.set_xticks(x[::step])
    ax.set_xticklabels(labels[::step], rotation=45, ha="right", fontsize=7)
    if scale == "log":
        ax.set_yscale("log")
    ax.set_ylabel("I/Os")
    ax.set_title(f"{layer_name(lay)} latency histogram", fontsize=9)
    ax.legend(fontsize=7, ncol=4)


def _timeline(ax: Any, prof: Profile, lay: int, scale: str) -> None:
    t = _seconds(prof)
    w = prof.width / 1e9
    counts = np.array([h.total for h in prof.column_hists(lay)], dtype=float)
    ax.plot(t, counts / w, color="#2ca02c", label="IOPS")
    ax.set_ylabel("IOPS")
    ax.set_xlabel("seconds from the first event")
    ax2 = ax.twinx()
    nbytes = prof.layer_col_bytes.get(lay, np.zeros(prof.ncols))
    ax2.plot(t, nbytes / w / 1048576, color="#9467bd", label="MiB/s")
    ax2.set_ylabel("MiB/s")
    ax.set_title(f"{layer_name(lay)}: IOPS (green) and throughput (purple)", fontsize=9)


def _percentiles(ax: Any, prof: Profile, lay: int, scale: str) -> None:
    t = _seconds(prof)
    lines: dict[str, list[float]] = {"p50": [], "p99": [], "max": []}
    for h in prof.column_hists(lay):
        if h.total:
            a, b = h.percentiles([50, 99])
            lines["p50"].append(float(a or 0))
            lines["p99"].append(float(b or 0))
            lines["max"].append(float(h.max or 0))
        else:
            for v in lines.values():
                v.append(np.nan)
    for name, color in (("p50", "#1f77b4"), ("p99", "#ff7f0e"), ("max", "#d62728")):
        ax.plot(t, np.array(lines[name]) / 1e6, label=name, color=color)
    ax.set_yscale("log")
    ax.set_ylabel(f"{layer_name(lay)} latency (ms)")
    ax.set_xlabel("seconds from the first event")
    ax.legend(fontsize=7)
