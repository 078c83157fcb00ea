"""``aether-rec export``: events for other tools (jsonl, csv, Perfetto JSON and protobuf,
Parquet), written by the one output rule (format/output.py)."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

import click

from aether_rec.cli import terminal
from aether_rec.cli.common import note, open_captures, warn
from aether_rec.cli.offline import capture_loss_warning
from aether_rec.cli.selection import files_and_expression, resolved, resolved_all, selection_options
from aether_rec.errors import UsageError
from aether_rec.format.output import atomic_output, refuse_same_file
from aether_rec.ops.units import fmt_count
from aether_rec.ops.window import SelectionSpec

# -- export ---------------------------------------------------------------------------------------


@click.command()
@click.argument("args", metavar="FILE... [EXPR]", nargs=-1, required=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "perfetto", "perfetto-proto", "parquet"]),
    required=True,
)
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
@click.option(
    "--compression",
    type=click.Choice(["lz4", "zstd", "snappy", "none"]),
    default="lz4",
    show_default=True,
    help="parquet: the codec of column pages (zstd: about half the size, written 2-3x slower).",
)
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--strict", is_flag=True, help="Treat any damage in FILE as an error.")
@selection_options
@terminal.terminal_options
def export(
    args: tuple[str, ...],
    fmt: str,
    output: str,
    max_events: int,
    sample: bool,
    compression: str,
    force: bool,
    strict: bool,
    selection: SelectionSpec,
) -> None:
    """Export events for other tools: jsonl, csv, perfetto (Chrome JSON), perfetto-proto
    (Perfetto's native protobuf trace, no size cap), parquet.

    perfetto opens in ui.perfetto.dev: a track per process and thread, a slice per
    I/O (block requests as async slices), losses as instant events. parquet needs
    pyarrow (pip install 'aether-rec[parquet]').

    \b
    Examples:
      aether-rec export run.aio --format perfetto -o run.json
      aether-rec export big.aio --format perfetto-proto -o big.pftrace   # any size
      aether-rec export run.aio --format csv 'layer == block' > block.csv
      aether-rec export run.aio --format parquet -o run.parquet
      aether-rec export big.aio --format perfetto --sample --max-events 500000 -o big.json
      aether-rec export db1.aio db2.aio --format jsonl -o both.jsonl   # merged on the wall clock
    """
    from aether_rec.ops.export import (
        ExportReport,
        export_feed_rows,
        export_parquet,
        export_perfetto,
        export_rows,
    )
    from aether_rec.ops.feed import merged

    files, expression = files_and_expression(args)
    refuse_same_file(output, files)
    if output == "-" and fmt == "parquet":
        raise UsageError("parquet is written to a file: give -o FILE.parquet")
    if fmt == "perfetto-proto" and output == "-" and sys.stdout.isatty():
        raise UsageError("refusing to write a binary trace to a terminal; use -o FILE.pftrace or a pipe")
    spec = selection.with_expression(expression)
    if len(files) > 1:
        if fmt in ("perfetto", "perfetto-proto", "parquet"):
            raise UsageError(f"{fmt} exports one capture: merge them first (aether-rec merge ... -o all.aio)")
        wanted = terminal.progress_wanted(streams_to_stdout=output == "-")
        with open_captures(files, strict=strict, progress=wanted) as caps, terminal.progress("export"):
            feed = merged(caps, files, resolved_all(spec, caps))
            with _export_output(output, force) as binary, _text(binary) as out:
                rep = export_feed_rows(feed, out, fmt)
            for cap in caps:
                capture_loss_warning(cap, f"the {fmt} rows")
        if output != "-":
            note(f"exported {fmt_count(rep.events)} events to {output}")
        return
    wanted = terminal.progress_wanted(streams_to_stdout=output == "-")
    with open_captures(files, strict=strict, progress=wanted) as caps, terminal.progress("export"):
        cap = caps[0]
        sel = resolved(spec, cap)
        # a file appears under its name only when complete (format/output.py)
        with _export_output(output, force) as binary:
            if fmt == "parquet":
                assert binary is not None  # refused above for stdout
                rep = export_parquet(cap, binary, sel, compression=compression)
            elif fmt == "perfetto-proto":
                from aether_rec.ops.perfetto import export_perfetto_proto

                prep = export_perfetto_proto(cap, binary if binary is not None else sys.stdout.buffer, sel)
                rep = ExportReport(events=prep.events, slices=prep.slices, warnings=prep.warnings)
            else:
                with _text(binary) as out:
                    if fmt == "perfetto":
                        rep = export_perfetto(cap, out, sel, max_events=max_events, sample=sample)
                    else:
                        rep = export_rows(cap, out, sel, fmt)
        if fmt != "perfetto":  # perfetto shows losses as instant events; rows are events only
            capture_loss_warning(cap, f"the {fmt} rows")
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
