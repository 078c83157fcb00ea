"""Commands that show captures as pictures: ``report`` (HTML), ``plot`` (PNG/SVG) and ``diff``."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Sequence

import click

from aether_rec.cli import terminal
from aether_rec.cli.common import note, open_captures, warn
from aether_rec.cli.selection import selection_options
from aether_rec.errors import AetherError, UsageError
from aether_rec.format.output import refuse_same_file
from aether_rec.format.reader import Capture
from aether_rec.ops.profile import (
    COLUMNS_LIMIT,
    DEFAULT_COLUMNS,
    TABLES,
    Profile,
    collect,
    collect_sources,
)
from aether_rec.ops.stats import check_by
from aether_rec.ops.text import printable
from aether_rec.ops.units import fmt_count
from aether_rec.ops.window import Selection, SelectionSpec

EXIT_CONDITION = 3


def _resolve(selection: SelectionSpec, cap: Capture) -> Selection:
    sel = selection.resolve(cap)
    for w in sel.warnings:
        warn(w)
    return sel


def _profiles(
    caps: Sequence[Capture],
    selection: SelectionSpec,
    *,
    columns: int = DEFAULT_COLUMNS,
    top: int = 20,
    by: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    tables: Sequence[str] = TABLES,
) -> list[Profile]:
    out = []
    for i, cap in enumerate(caps):
        sel = _resolve(selection, cap)
        label = labels[i] if labels else None
        out.append(collect(cap, sel, label=label, max_columns=columns, top=top, by=by, tables=tables))
    return out


def _loss_notes(profiles: Sequence[Profile]) -> None:
    for p in profiles:
        lost = sum(x["count"] for x in p.losses if x["real"])
        if lost:
            warn(terminal.paint_err(f"{p.path}: the capture lost {fmt_count(lost)} events; figures miss them",
                                    "loss"))


def _write_text(path: str, text: str, force: bool) -> None:
    """Write ``text`` to ``path`` whole or not at all (a temporary file renamed into place)."""
    if path == "-":
        sys.stdout.write(text)
        return
    if os.path.exists(path) and not force:
        raise click.ClickException(f"{path}: already exists (use --force to overwrite)")
    d = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".aether-", dir=d)
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _label(path: str, cap: Capture) -> str:
    host = cap.header.get("hostname")
    return f"{os.path.basename(path)}" + (f" ({host})" if host else "")


columns_option = click.option(
    "--columns",
    type=click.IntRange(1, COLUMNS_LIMIT),
    default=DEFAULT_COLUMNS,
    show_default=True,
    help="Time columns of the heatmaps and time series (the column width is a round number).",
)
scale_option = click.option(
    "--scale",
    type=click.Choice(["sqrt", "log", "linear"]),
    default="sqrt",
    show_default=True,
    help="Colour scale of the heatmap counts.",
)


# -- report ---------------------------------------------------------------------------------------


@click.command()
@click.argument("files", metavar="[CAPTURE]...", nargs=-1, type=click.Path(allow_dash=True))
@click.option("-o", "--output", required=True, type=click.Path(allow_dash=True),
              help="The HTML file to write ('-' for stdout).")
@click.option("--compare", nargs=2, metavar="BEFORE AFTER", type=click.Path(allow_dash=True), default=None,
              help="A before/after page of two captures: both heatmaps on one scale, histograms overlaid, "
                   "percentile deltas and the diff test.")
@columns_option
@scale_option
@click.option("--top", type=click.IntRange(0, 1000), default=20, show_default=True,
              help="How many of the slowest I/Os to list.")
@click.option("--by", "by", type=click.Choice(["source"]), default=None,
              help="One section per source of a merged capture (same time axis), still one pass.")
@click.option("--alpha", type=float, default=0.01, show_default=True, help="--compare: test level.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--strict", is_flag=True, help="Treat any damage in a capture as an error.")
@selection_options
@terminal.terminal_options
def report(files: tuple[str, ...], output: str, compare: tuple[str, str] | None, columns: int, scale: str,
           top: int, by: str | None, alpha: float, force: bool, strict: bool,
           selection: SelectionSpec) -> None:
    """Write one self-contained HTML page about captures: latency heatmaps, percentiles,
    IOPS and throughput over time, histograms, tables, the slowest I/Os, losses, provenance.

    The page needs no network: every script and style is inside it. It is built from
    binned histograms (one pass over each capture), so its size depends on --columns and
    the number of processes and files, not on the number of events (at most 5 MiB).
    Hover a heatmap cell for its numbers; click it for the `filter` command that extracts
    exactly its I/Os. Several captures give one section each.

    \b
    Examples:
      aether-rec report run.aio -o run.html
      aether-rec report run.aio -o pg.html --comm postgres --since +10s --until +40s
      aether-rec report db1.aio db2.aio -o fleet.html
      aether-rec report fleet.aio --by source -o fleet.html     # after a merge
      aether-rec report --compare before.aio after.aio -o cmp.html
    """
    from aether_rec.ops import htmlreport
    from aether_rec.ops.diff import compare as diff_compare

    if compare and files:
        raise UsageError("give either CAPTURE... or --compare BEFORE AFTER, not both")
    paths = list(compare or files)
    if not paths:
        raise UsageError("no capture given (CAPTURE... or --compare BEFORE AFTER)")
    if output != "-":
        refuse_same_file(output, [p for p in paths if p != "-"])
    if by == "source" and compare:
        raise UsageError("--by source cannot be combined with --compare")
    if compare and not 0 < alpha < 1:
        raise UsageError("--alpha must be between 0 and 1")
    if output != "-" and os.path.exists(output) and not force:
        raise click.ClickException(f"{output}: already exists (use --force to overwrite)")
    command = "aether-rec " + " ".join(printable(a) for a in sys.argv[1:]) if sys.argv else ""
    ctx = click.get_current_context()
    if ctx.get_parameter_source("columns") == click.core.ParameterSource.DEFAULT and len(paths) > 4:
        columns = max(40, 4 * DEFAULT_COLUMNS // len(paths))  # many sections: keep the page small
    with open_captures(paths, strict=strict, progress=terminal.progress_wanted()) as caps, \
            terminal.progress("report"):
        labels = [_label(p, c) for p, c in zip(paths, caps)]
        if compare:
            labels = [f"before: {labels[0]}", f"after: {labels[1]}"]
        if by == "source":
            profiles = []
            for cap in caps:
                try:
                    sel = _resolve(selection, cap)
                    profiles += collect_sources(cap, sel, max_columns=columns, top=top)
                except ValueError as exc:
                    raise UsageError(str(exc)) from None
        else:
            profiles = _profiles(caps, selection, columns=columns, top=top, labels=labels)
    _loss_notes(profiles)
    doc = diff_compare(profiles[0], profiles[1], alpha=alpha) if compare else None
    try:
        html = htmlreport.build(profiles, command=command, compare=doc, scale=scale)
    except ValueError as exc:
        raise AetherError(str(exc)) from None
    _write_text(output, html, force)
    if output != "-":
        note(f"wrote {output} ({len(html.encode()) / 1024:.0f} KiB, "
             f"{fmt_count(sum(p.events for p in profiles))} events)")


# -- plot -----------------------------------------------------------------------------------------


@click.command()
@click.argument("kind", type=click.Choice(["heatmap", "hist", "timeline", "percentiles"]))
@click.argument("src", metavar="CAPTURE", type=click.Path(allow_dash=True))
@click.option("-o", "--output", required=True, type=click.Path(), help="The picture: NAME.png or NAME.svg.")
@click.option("--format", "fmt", type=click.Choice(["png", "svg"]), default=None,
              help="Picture format (default: from the output's extension).")
@columns_option
@scale_option
@click.option("--title", default=None, help="Title of the picture.")
@click.option("--dpi", type=click.IntRange(30, 600), default=110, show_default=True, help="PNG resolution.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--strict", is_flag=True, help="Treat any damage in the capture as an error.")
@selection_options
@terminal.terminal_options
def plot(kind: str, src: str, output: str, fmt: str | None, columns: int, scale: str, title: str | None,
         dpi: int, force: bool, strict: bool, selection: SelectionSpec) -> None:
    """Draw a PNG or SVG: heatmap, hist (per op), timeline (IOPS and throughput) or
    percentiles (p50/p99/max over time), one panel per layer.

    Needs matplotlib: pip install 'aether-rec[plot]'.

    \b
    Examples:
      aether-rec plot heatmap run.aio -o heat.png
      aether-rec plot percentiles run.aio -o p99.svg --layer block
      aether-rec plot hist run.aio -o hist.png --comm postgres
      aether-rec plot timeline run.aio -o iops.png --since +5s --until +25s
    """
    from aether_rec.ops import plot as plot_mod

    plot_mod.output_format(output, fmt)
    plot_mod._pyplot()  # fail early, before reading anything, when matplotlib is missing
    if src != "-" and output != "-":
        refuse_same_file(output, [src])
    if os.path.exists(output) and not force:
        raise click.ClickException(f"{output}: already exists (use --force to overwrite)")
    layers = [x.strip() for v in selection.layers for x in v.split(",") if x.strip()]
    with open_captures([src], strict=strict, progress=terminal.progress_wanted()) as caps, \
            terminal.progress("plot"):
        prof = _profiles(caps, selection, columns=columns, top=0, labels=[_label(src, caps[0])], tables=())[0]
    _loss_notes([prof])
    try:
        plot_mod.draw(prof, kind, output, fmt=fmt, layers=layers or None, scale=scale, title=title, dpi=dpi)
    except OSError as exc:
        if os.path.exists(output):
            os.unlink(output)
        raise click.ClickException(f"{output}: cannot write ({exc.strerror or exc})") from None
    note(f"wrote {output}")


# -- diff -----------------------------------------------------------------------------------------

DIFF_HELP = """Compare two captures: did it get slower?

Per layer and op (or per --by group) and for all events: events, IOPS, p50, p90, p99,
p99.9 and max before and after, the ratio after/before, and whether the difference is
beyond noise: a Mann-Whitney U test computed from the two latency histograms (values in
one 0.4 % bucket are ties; normal approximation with tie correction, two-sided). A row is
"slower" or "faster" when p < --alpha, else "no change". P(after>before) is the effect
size: 0.5 means no shift.

--json prints the document described in docs/diff-json.md (schema aether-rec/diff v1).
With --fail-if, diff exits with status 3 when a condition holds (for CI gates).

"""

DIFF_EXAMPLES = """
\b
Examples:
  aether-rec diff before.aio after.aio
  aether-rec diff before.aio after.aio --layer block --by op
  aether-rec diff before.aio after.aio --fail-if 'p99 > 1.2x' --fail-if 'block:max > +50ms'
  aether-rec diff base.aio pr.aio --fail-if 'all:slower' --json > diff.json
"""


def _diff_help() -> str:
    from aether_rec.ops.diff import CONDITION_HELP

    return DIFF_HELP + CONDITION_HELP + "\n" + DIFF_EXAMPLES


@click.command(help=_diff_help())
@click.argument("before", type=click.Path(allow_dash=True))
@click.argument("after", type=click.Path(allow_dash=True))
@click.option("--by", "by", metavar="COLS", help="Group by these columns (as stats --by: comm, op, dev...).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document (docs/diff-json.md).")
@click.option("--fail-if", "fail_if", multiple=True, metavar="CONDITION",
              help="Exit with status 3 when CONDITION holds (repeatable; see above).")
@click.option("--alpha", type=float, default=0.01, show_default=True, help="Significance level of the test.")
@click.option("--strict", is_flag=True, help="Treat any damage in a capture as an error.")
@selection_options
@terminal.terminal_options
def diff(before: str, after: str, by: str | None, as_json: bool, fail_if: tuple[str, ...], alpha: float,
         strict: bool, selection: SelectionSpec) -> None:
    from aether_rec.ops.diff import check, compare, parse_conditions, render_diff

    conditions = parse_conditions(fail_if)  # usage errors before any reading
    if not 0 < alpha < 1:
        raise UsageError("--alpha must be between 0 and 1")
    by_cols = check_by([c for c in (by or "").split(",") if c.strip()]) or None
    with open_captures([before, after], strict=strict, progress=terminal.progress_wanted()) as caps, \
            terminal.progress("diff"):
        pb, pa = _profiles(caps, selection, top=0, by=by_cols, columns=1, tables=())
    _loss_notes([pb, pa])
    doc = compare(pb, pa, alpha=alpha)
    held = check(doc, conditions)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(render_diff(doc, terminal.styler(sys.stdout)), color=terminal.color_enabled(sys.stdout))
    if held:
        for h in held:
            terminal.echo_err(terminal.paint_err(
                f"aether-rec: --fail-if {h['condition']!r} holds for {h['row']}", "error"))
        raise SystemExit(EXIT_CONDITION)
