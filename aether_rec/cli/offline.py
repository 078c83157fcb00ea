"""Offline commands: stats, filter, merge, replay, export. They run anywhere (no root, no
kernel); they parse options, call aether_rec.ops, and print. Data goes to stdout, messages to
stderr; domain errors become one line and exit 1 (2 for usage errors) in the main group."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar

import click

from aether_rec.cli import terminal
from aether_rec.cli.common import CAPTURE_PATH, note, open_captures, warn
from aether_rec.cli.selection import files_and_expression, resolved, resolved_all, selection_options
from aether_rec.errors import UsageError
from aether_rec.format.output import refuse_same_file
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
        warn(terminal.paint_err(
            f"the capture lost {fmt_count(losses['total'])} events ({cpus}) in "
            f"{len(losses['records'])} loss record(s); {what} miss them", "loss"
        ))


def capture_loss_warning(cap: Any, what: str) -> None:
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
@click.option("--all-fds", is_flag=True, help="Include I/O on pipes, sockets, terminals (not storage).")
@click.option(
    "--unit",
    type=click.Choice(["ns", "us", "ms"]),
    default="us",
    show_default=True,
    help="Unit of the log2 histogram rows (like biolatency -m).",
)
@click.option("--strict", is_flag=True, help="Treat any damage in a capture as an error.")
@click.option("--from-index", is_flag=True,
              help="Latency per layer and op from the histograms a 1.2 capture's index keeps, without "
                   "decompressing any chunk (reads well under 1 %% of the file). Only --since/--until "
                   "select, by whole chunks; no --by, --interval, top events, errno or block split.")
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Compute on a Dask cluster (tcp://host:8786); workers open FILES themselves (paths they "
    "see, or URLs). Needs aether-rec[dask].",
)
@selection_options
@terminal.terminal_options
def stats(
    files: tuple[str, ...],
    by: str | None,
    interval: str | None,
    top: int,
    max_groups: int,
    as_json: bool,
    no_histogram: bool,
    all_fds: bool,
    unit: str,
    strict: bool,
    selection: SelectionSpec,
    scheduler: str | None = None,
    from_index: bool = False,
) -> None:
    """Summarise captures: span, IOPS, throughput, latency percentiles, errors, histograms.

    Several files are summarised together (their histograms add). Percentiles are
    accurate to 0.4 %. A capture that lost events says so loudly. Only storage I/O (files,
    block devices) unless --all-fds; EAGAIN is not an error; reads show the cache hit ratio.

    \b
    Examples:
      aether-rec stats run.aio
      aether-rec stats run.aio --by comm,op --top 20
      aether-rec stats run.aio --interval 1s --layer block
      aether-rec stats host1.aio host2.aio --by source --json > summary.json
      aether-rec stats run.aio -e 'lat > 5ms and comm == "postgres"'
      aether-rec stats run.aio --all-fds -e 'fdkind == pipe'
      aether-rec stats --scheduler tcp://10.0.0.5:8786 /shared/caps/*.aio --json
    """
    with open_captures(files, strict=strict, progress=terminal.progress_wanted()) as caps, terminal.progress(
        "stats"
    ):
        sels = resolved_all(selection, caps)
        opts = StatsOptions(
            filter_text=sels[0].text if sels else None,
            by=(by or "").split(","),
            interval_ns=parse_duration(interval) if interval else None,
            top=top,
            max_groups=max_groups,
            all_fds=all_fds,
        )
        if from_index:
            from aether_rec.ops.stats_index import compute_from_index

            if scheduler:
                raise UsageError("--from-index reads only the indexes: no --scheduler needed")
            doc = compute_from_index(caps, opts, per_input=sels)
        elif scheduler:
            from aether_rec.ops import distributed

            if "-" in files:
                raise UsageError("--scheduler: workers open the files themselves; stdin cannot be shared")
            doc = distributed.stats(list(files), opts, per_input=[sel.filter for sel in sels],
                                    scheduler=scheduler, strict=strict)
        else:
            doc = compute_stats(caps, opts, per_input=sels)
    _loss_warning(doc)
    if as_json:
        click.echo(json.dumps(json_safe(doc), indent=2, allow_nan=False))
    else:
        text = render_stats(
            printable_doc(doc), histograms=not no_histogram, unit=unit, style=terminal.styler(sys.stdout)
        )
        click.echo(text, color=terminal.color_enabled(sys.stdout))


# -- filter ---------------------------------------------------------------------------------------

FILTER_HELP = """Copy the events of IN that match EXPR (and the options) into a new capture.

The output keeps the original provenance, the loss records inside the window and the
metadata; its header records the filter. Chunks the index rules out are skipped unread.

\b
Expression language:
  fields      ts lat queue service end pid tid comm cpu layer op fd dev offset bytes
              result errno cgroup flags path link pages_missed fdkind source
  compare     == != < <= > >=      lat > 5ms    bytes >= 1M    dev == 8:0
  logic       and or not ( )       also && || !
  sets        op in (read, pread)  pid not in (1, 2)
  strings     comm == "postgres"   path == "/var/lib/*" (glob)   comm =~ "^kworker" (regex)
  units       ns us ms s on times; K M G (powers of 1024) on sizes
  names       layer == block  errno == EIO  flags has direct  fdkind == pipe

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
@terminal.terminal_options
def filter_cmd(
    args: tuple[str, ...], output: str, force: bool, strict: bool, selection: SelectionSpec
) -> None:
    files, expression = files_and_expression(args)
    refuse_same_file(output, files)
    spec = selection.with_expression(expression)
    if len(files) > 1:
        _filter_several(files, spec, output, force, strict)
        return
    wanted = terminal.progress_wanted(streams_to_stdout=output == "-")
    with open_captures(files, strict=strict, progress=wanted) as caps, terminal.progress("filter"):
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

    wanted = terminal.progress_wanted(streams_to_stdout=output == "-")
    with open_captures(files, strict=strict, progress=wanted) as caps, terminal.progress("filter"):
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
@terminal.terminal_options
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
    wanted = terminal.progress_wanted(streams_to_stdout=output == "-")
    with open_captures(files, strict=strict, progress=wanted) as caps, terminal.progress("merge"):
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
@terminal.terminal_options
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
    wanted = terminal.progress_wanted(streams_to_stdout=True) and not follow and not speed
    with open_captures(files, strict=strict, progress=wanted) as caps, terminal.progress("replay"):
        if follow:
            follow_capture(caps[0], out, resolved(spec, caps[0]), fmt=fmt, header=not no_header)
        elif len(caps) == 1:
            replay_capture(caps[0], out, resolved(spec, caps[0]), fmt=fmt, speed=speed, header=not no_header)
        else:
            replay_feed(merged(caps, files, resolved_all(spec, caps)), out, fmt=fmt, speed=speed,
                        header=not no_header)
        if fmt != "text":  # text shows each loss in place; jsonl and csv rows are events only
            for cap in caps:
                capture_loss_warning(cap, f"the {fmt} rows")
