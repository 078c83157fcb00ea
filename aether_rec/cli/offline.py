"""Offline commands: stats, filter, merge, replay, export. They run anywhere (no root, no
kernel); they parse options, call aether_rec.ops, and print. Data goes to stdout, messages to
stderr; domain errors become one line and exit 1 (2 for usage errors) in the main group."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, TypeVar

import click

from aether_rec.cli.common import CAPTURE_PATH, note, open_captures, warn
from aether_rec.cli.selection import files_and_expression, resolved, resolved_all, selection_options
from aether_rec.errors import UsageError
from aether_rec.format.output import atomic_output, refuse_same_file
from aether_rec.ops.filter import filter_capture
from aether_rec.ops.report import render_stats
from aether_rec.ops.stats import StatsOptions
from aether_rec.ops.stats import compute as compute_stats
from aether_rec.ops.text import json_safe, printable_doc
from aether_rec.ops.units import fmt_count, parse_duration
from aether_rec.ops.window import SelectionSpec

F = TypeVar("F", bound=Callable[..., Any])


# -- shared options -------------------------------------------------------------------------------


def _output(path: str) -> str | BinaryIO:
    if path == "-":
        if sys.stdout.isatty():
            raise UsageError("refusing to write a binary capture to a terminal; use -o FILE or a pipe")
        return sys.stdout.buffer
    return path


def _loss_warning(doc: dict[str, Any], what: str = "figures") -> None:
    """The one warning about losses, for stats (from its document) and for the commands
    whose rows cannot carry them (replay --format jsonl/csv, export)."""
    losses = doc["losses"]
    if losses["total"]:
        cpus = ", ".join(f"cpu{c}" for c in sorted(losses["by_cpu"], key=int))
        warn(
            f"the capture lost {fmt_count(losses['total'])} events ({cpus}) in "
            f"{len(losses['records'])} loss record(s); {what} miss them"
        )


def _capture_loss_warning(cap: Any, what: str) -> None:
    by_cpu: dict[str, int] = {}
    for loss in cap.losses():
        by_cpu[str(loss.cpu)] = by_cpu.get(str(loss.cpu), 0) + loss.count
    doc = {"losses": {"total": sum(by_cpu.values()), "by_cpu": by_cpu, "records": cap.losses()}}
    _loss_warning(doc, what)


# -- stats ----------------------------------------------------------------------------------------


@click.command()
@click.argument("files", nargs=-1, required=True, type=CAPTURE_PATH)
@click.option(
    "--by",
    "by",
    metavar="COLS",
    help="Group by these columns (comma list: comm, pid, op, layer, path, dev, source...).",
)
@click.option("--interval", metavar="DURATION", help="Add a time series: one row per DURATION (e.g. 1s).")
@click.option(
    "--top", type=click.IntRange(0), default=10, show_default=True, help="Show the N slowest events."
)
@click.option(
    "--max-groups",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="With --by, lump groups beyond this many into (other).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the versioned JSON document (schema aether-rec/stats v1, docs/stats-json.md).",
)
@click.option("--no-histogram", is_flag=True, help="Leave out the log2 latency histograms.")
@click.option("--strict", is_flag=True, help="Treat any damage in a capture as an error.")
@selection_options
def stats(
    files: tuple[str, ...],
    by: str | None,
    interval: str | None,
    top: int,
    max_groups: int,
    as_json: bool,
    no_histogram: bool,
    strict: bool,
    selection: SelectionSpec,
) -> None:
    """Summarise captures: span, IOPS, throughput, latency percentiles, errors, histograms.

    Several files are summarised together (their histograms add). Percentiles are
    accurate to 0.4 %. A capture that lost events says so loudly.

    \b
    Examples:
      aether-rec stats run.aio
      aether-rec stats run.aio --by comm,op --top 20
      aether-rec stats run.aio --interval 1s --layer block
      aether-rec stats host1.aio host2.aio --by source --json > summary.json
      aether-rec stats run.aio -e 'lat > 5ms and comm == "postgres"'
    """
    with open_captures(files, strict=strict) as caps:
        sels = resolved_all(selection, caps)
        opts = StatsOptions(
            filter_text=sels[0].text if sels else None,
            by=(by or "").split(","),
            interval_ns=parse_duration(interval) if interval else None,
            top=top,
            max_groups=max_groups,
        )
        doc = compute_stats(caps, opts, per_input=sels)
    _loss_warning(doc)
    if as_json:
        click.echo(json.dumps(json_safe(doc), indent=2, allow_nan=False))
    else:
        click.echo(render_stats(printable_doc(doc), histograms=not no_histogram))


# -- filter ---------------------------------------------------------------------------------------

FILTER_HELP = """Copy the events of IN that match EXPR (and the options) into a new capture.

The output keeps the original provenance, the loss records inside the window and the
metadata; its header records the filter. Chunks the index rules out are skipped unread.

\b
Expression language:
  fields      ts lat queue service end pid tid comm cpu layer op fd dev offset bytes
              result errno cgroup flags path source
  compare     == != < <= > >=      lat > 5ms    bytes >= 1M    dev == 8:0
  logic       and or not ( )       also && || !
  sets        op in (read, pread)  pid not in (1, 2)
  strings     comm == "postgres"   path == "/var/lib/*" (glob)   comm =~ "^kworker" (regex)
  units       ns us ms s on times; K M G (powers of 1024) on sizes
  names       layer == block  errno == EIO  result == -EIO  flags has direct

\b
Examples:
  aether-rec filter run.aio -o slow.aio 'lat > 5ms and comm == "postgres" and op in (read, pread)'
  aether-rec filter run.aio -o window.aio --since +10s --until +20s
  aether-rec filter run.aio -o pg.aio --comm postgres --layer block --min-latency 1ms
  aether-rec filter run.aio -o errors.aio 'result < 0'
  aether-rec filter db1.aio db2.aio -o slow.aio 'lat > 10ms'   # several: merged on the wall clock
"""


@click.command(name="filter", help=FILTER_HELP)
@click.argument("args", metavar="IN... [EXPR]", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(allow_dash=True),
    help="Where to write the filtered capture ('-' for stdout).",
)
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--strict", is_flag=True, help="Treat any damage in IN as an error.")
@selection_options
def filter_cmd(
    args: tuple[str, ...], output: str, force: bool, strict: bool, selection: SelectionSpec
) -> None:
    files, expression = files_and_expression(args)
    refuse_same_file(output, files)
    spec = selection.with_expression(expression)
    if len(files) > 1:
        _filter_several(files, spec, output, force, strict)
        return
    with open_captures(files, strict=strict) as caps:
        cap = caps[0]
        sel = resolved(spec, cap)
        if not sel.texts:
            note("no expression or option given: copying every event")
        rep = filter_capture(cap, _output(output), sel, overwrite=force)
    skipped = rep.chunks_total - rep.chunks_read
    note(
        f"kept {fmt_count(rep.events_out)} of {fmt_count(rep.events_in)} events; "
        f"{skipped} of {rep.chunks_total} chunks skipped by the index; "
        f"{rep.losses_kept} loss record(s) kept"
    )


def _filter_several(files: list[str], spec: SelectionSpec, output: str, force: bool, strict: bool) -> None:
    """filter of several captures: their selected events merged on the wall clock (merge)."""
    from aether_rec.ops.merge import MergeInput, merge_captures

    with open_captures(files, strict=strict) as caps:
        sels = resolved_all(spec, caps)
        text = sels[0].text
        rep = merge_captures([MergeInput(cap, label) for cap, label in zip(caps, files)], _output(output),
                             overwrite=force, selections=sels,
                             extra_header={"filter": text, "filter_history": [text] if text else []})
    for w in rep.warnings:
        warn(w)
    note(f"kept {fmt_count(rep.events_out)} events of {len(files)} captures, merged on the wall clock; "
         f"{rep.losses} loss record(s) kept")


# -- merge ----------------------------------------------------------------------------------------


@click.command()
@click.argument("files", nargs=-1, required=True, type=CAPTURE_PATH)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(allow_dash=True),
    help="Where to write the merged capture ('-' for stdout).",
)
@click.option(
    "--no-align",
    is_flag=True,
    help="Do not align inputs on wall-clock time (keep each monotonic clock as is).",
)
@click.option(
    "--offset",
    "offsets",
    multiple=True,
    metavar="FILE=+DURATION",
    help="Shift one input's events by DURATION (e.g. b.aio=+12ms, a.aio=-1.5s); repeatable.",
)
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--strict", is_flag=True, help="Treat any damage in an input as an error.")
def merge(
    files: tuple[str, ...], output: str, no_align: bool, offsets: tuple[str, ...], force: bool, strict: bool
) -> None:
    """Merge captures into one, in time order, with a `source` column.

    Rotated pieces of one recording merge back into one capture. Captures from several
    hosts are aligned on wall-clock time through each header's clock mapping. The same
    capture given twice, or overlapping copies, are detected and not counted twice.

    \b
    Examples:
      aether-rec merge run-1.aio run-2.aio run-3.aio -o run.aio
      aether-rec merge db1.aio db2.aio web1.aio -o fleet.aio
      aether-rec stats fleet.aio --by source
      aether-rec merge db1.aio db2.aio -o both.aio --offset db2.aio=+12ms
    """
    from aether_rec.ops.merge import MergeInput, merge_captures, parse_offsets

    refuse_same_file(output, files)
    shifts = parse_offsets(offsets, files)
    with open_captures(files, strict=strict) as caps:
        inputs = [MergeInput(cap, label) for cap, label in zip(caps, files)]
        rep = merge_captures(inputs, _output(output), align=not no_align, offsets=shifts, overwrite=force)
    for w in rep.warnings:
        warn(w)
    if rep.duplicate_chunks:
        warn(
            f"skipped {fmt_count(rep.duplicate_events)} events in {rep.duplicate_chunks} chunks "
            "already taken from an earlier input (same capture given twice, or overlapping copies)"
        )
    for inp in rep.inputs:
        if inp.shift:
            note(f"{inp.label}: shifted by {inp.shift / 1e6:+.3f} ms (source {inp.source})")
    note(f"merged {fmt_count(rep.events_out)} events from {len(files)} captures")


# -- replay ---------------------------------------------------------------------------------------


@click.command()
@click.argument("args", metavar="FILE... [EXPR]", nargs=-1, required=True)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "jsonl", "csv"]), default="text", show_default=True
)
@click.option(
    "--speed",
    type=float,
    default=0.0,
    show_default=True,
    help="Replay with the original pacing scaled by X (2 = twice as fast); 0 = as fast as possible.",
)
@click.option(
    "--follow", "-f", is_flag=True, help="Keep reading a capture that is still being recorded (like tail -f)."
)
@click.option("--no-header", is_flag=True, help="Leave out the header line (text, csv).")
@click.option("--strict", is_flag=True, help="Treat any damage in FILE as an error.")
@selection_options
def replay(
    args: tuple[str, ...],
    fmt: str,
    speed: float,
    follow: bool,
    no_header: bool,
    strict: bool,
    selection: SelectionSpec,
) -> None:
    """Print events in time order, one line each (or jsonl/csv), optionally paced.

    Text lines show wall-clock time (UTC), comm, pid/tid, layer, op, latency, bytes,
    offset, result and the file or device. EXPR and the options select events as for
    `filter`.

    \b
    Examples:
      aether-rec replay run.aio | less
      aether-rec replay run.aio 'lat > 10ms' --format jsonl | jq .
      aether-rec replay run.aio --speed 1 --since +5s      # in real time
      aether-rec replay live.aio --follow --layer block    # while recording
      aether-rec replay db1.aio db2.aio 'lat > 10ms'       # several, merged on the wall clock
    """
    from aether_rec.ops.feed import merged
    from aether_rec.ops.replay import follow as follow_capture
    from aether_rec.ops.replay import replay as replay_capture
    from aether_rec.ops.replay import replay_feed

    files, expression = files_and_expression(args)
    out = sys.stdout
    if follow:
        if len(files) > 1:
            raise UsageError("--follow reads one capture")
        if speed:
            raise UsageError("--speed cannot be combined with --follow (events are shown as they arrive)")
        if selection.has_window:
            raise UsageError("--since/--until cannot be combined with --follow")
        if files == ["-"]:
            raise UsageError("--follow needs a file, not stdin")
    spec = selection.with_expression(expression)
    with open_captures(files, strict=strict) as caps:
        if follow:
            follow_capture(caps[0], out, resolved(spec, caps[0]), fmt=fmt, header=not no_header)
        elif len(caps) == 1:
            replay_capture(caps[0], out, resolved(spec, caps[0]), fmt=fmt, speed=speed, header=not no_header)
        else:
            replay_feed(merged(caps, files, resolved_all(spec, caps)), out, fmt=fmt, speed=speed,
                        header=not no_header)
        if fmt != "text":  # text shows each loss in place; jsonl and csv rows are events only
            for cap in caps:
                _capture_loss_warning(cap, f"the {fmt} rows")


# -- export ---------------------------------------------------------------------------------------


@click.command()
@click.argument("args", metavar="FILE... [EXPR]", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "perfetto", "parquet"]), required=True)
@click.option(
    "-o",
    "--output",
    default="-",
    show_default=True,
    type=click.Path(allow_dash=True),
    help="Output file ('-' for stdout; parquet needs a file).",
)
@click.option(
    "--max-events",
    type=click.IntRange(1),
    default=1_000_000,
    show_default=True,
    help="perfetto: refuse (or, with --sample, thin out) beyond this many slices.",
)
@click.option("--sample", is_flag=True, help="perfetto: keep every k-th event to stay within --max-events.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--strict", is_flag=True, help="Treat any damage in FILE as an error.")
@selection_options
def export(
    args: tuple[str, ...],
    fmt: str,
    output: str,
    max_events: int,
    sample: bool,
    force: bool,
    strict: bool,
    selection: SelectionSpec,
) -> None:
    """Export events for other tools: jsonl, csv, perfetto (Chrome JSON), parquet.

    perfetto opens in ui.perfetto.dev: a track per process and thread, a slice per
    I/O (block requests as async slices), losses as instant events. parquet needs
    pyarrow (pip install 'aether-rec[parquet]').

    \b
    Examples:
      aether-rec export run.aio --format perfetto -o run.json
      aether-rec export run.aio --format csv 'layer == block' > block.csv
      aether-rec export run.aio --format parquet -o run.parquet
      aether-rec export big.aio --format perfetto --sample --max-events 500000 -o big.json
      aether-rec export db1.aio db2.aio --format jsonl -o both.jsonl   # merged on the wall clock
    """
    from aether_rec.ops.export import export_feed_rows, export_parquet, export_perfetto, export_rows
    from aether_rec.ops.feed import merged

    files, expression = files_and_expression(args)
    refuse_same_file(output, files)
    if output == "-" and fmt == "parquet":
        raise UsageError("parquet is written to a file: give -o FILE.parquet")
    spec = selection.with_expression(expression)
    if len(files) > 1:
        if fmt in ("perfetto", "parquet"):
            raise UsageError(f"{fmt} exports one capture: merge them first (aether-rec merge ... -o all.aio)")
        with open_captures(files, strict=strict) as caps:
            feed = merged(caps, files, resolved_all(spec, caps))
            with _export_output(output, force) as binary, _text(binary) as out:
                rep = export_feed_rows(feed, out, fmt)
            for cap in caps:
                _capture_loss_warning(cap, f"the {fmt} rows")
        if output != "-":
            note(f"exported {fmt_count(rep.events)} events to {output}")
        return
    with open_captures(files, strict=strict) as caps:
        cap = caps[0]
        sel = resolved(spec, cap)
        # a file appears under its name only when complete (format/output.py)
        with _export_output(output, force) as binary:
            if fmt == "parquet":
                assert binary is not None  # refused above for stdout
                rep = export_parquet(cap, binary, sel)
            else:
                with _text(binary) as out:
                    if fmt == "perfetto":
                        rep = export_perfetto(cap, out, sel, max_events=max_events, sample=sample)
                    else:
                        rep = export_rows(cap, out, sel, fmt)
        if fmt != "perfetto":  # perfetto shows losses as instant events; rows are events only
            _capture_loss_warning(cap, f"the {fmt} rows")
    for w in rep.warnings:
        warn(w)
    if output != "-":
        note(f"exported {fmt_count(rep.events)} events to {output}")


@contextlib.contextmanager
def _export_output(path: str, force: bool) -> Iterator[BinaryIO | None]:
    """The binary file to export into (None: stdout)."""
    if path == "-":
        yield None
        return
    with atomic_output(path, force) as f:
        yield f


@contextlib.contextmanager
def _text(binary: BinaryIO | None) -> Iterator[Any]:
    if binary is None:
        yield sys.stdout
        return
    text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
    try:
        yield text
        text.flush()
    finally:
        text.detach()  # the binary file is committed or discarded by its owner
