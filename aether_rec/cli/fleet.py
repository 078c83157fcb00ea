"""Fleet commands: ``sql`` over many captures (DuckDB). They parse options, call
aether_rec.ops, and print; data to stdout, messages to stderr."""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap
from typing import Any

import click

from aether_rec.cli import terminal
from aether_rec.cli.common import note, warn
from aether_rec.format.arrow import column_names
from aether_rec.ops.text import printable
from aether_rec.ops.units import fmt_count, iso_utc

_EVENT_COLUMNS = textwrap.fill(", ".join(column_names()), width=88, initial_indent=" " * 31,
                               subsequent_indent=" " * 12).lstrip()

SQL_HELP = f"""Run a SQL query (DuckDB) over captures.

FILES are capture paths or URLs (https://, s3://, ... with aether-rec[remote]); every one is
read together. Tables:

\b
  events    one row per event: {_EVENT_COLUMNS}
            (time: wall clock, UTC; ts: monotonic ns; lat, queue: ns; strings are dictionary
            encoded; source: host name or a merged capture's source; capture: index in FILES)
  losses    one row per loss record: source, capture, cpu, count, kind, real_loss,
            t_first, t_last, time_first, time_last
  captures  one row per capture: capture, path, source, hostname, capture_id, kernel,
            format_version, synthetic, command, events, chunks, lost, unmatched, bytes,
            has_index, time_first, time_last

Comparisons of ts, time, lat, pid, layer and op with constants, AND-ed in the WHERE clause of
a query over events, are pushed down to the chunk index: chunks that cannot match are never
decompressed (--explain shows how many were). Needs DuckDB: pip install 'aether-rec[sql]'.

\b
Examples:
  aether-rec sql "SELECT comm, quantile_cont(lat, 0.99) AS p99 FROM events GROUP BY comm" caps/*.aio
  aether-rec sql "SELECT source, count(*) FROM events WHERE lat > 5000000 GROUP BY 1" --csv *.aio
  aether-rec sql "SELECT * FROM events WHERE time >= TIMESTAMP '2026-01-01 10:00:00'
                  AND time < TIMESTAMP '2026-01-01 10:01:00' ORDER BY lat DESC LIMIT 20" run.aio
  aether-rec sql "SELECT hostname, events, lost FROM captures" --json caps/*.aio
"""


@click.command(help=SQL_HELP)
@click.argument("query")
@click.argument("files", nargs=-1, required=True)
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (with a header line).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of row objects.")
@click.option("--explain", is_flag=True, help="Say on stderr what was pushed down and what was read.")
@click.option("--strict", is_flag=True, help="Treat any damage in a capture as an error.")
@terminal.terminal_options
def sql(query: str, files: tuple[str, ...], as_csv: bool, as_json: bool, explain: bool, strict: bool) -> None:
    from aether_rec.ops import sql as sql_ops

    if as_csv and as_json:
        raise click.UsageError("--csv and --json exclude each other")
    with terminal.reading(files, "sql") as sources:  # URLs stay names (format/remote.py reads them)
        res = sql_ops.run(query, sources, strict=strict)
    for msg in res.warnings:
        warn(msg)
    names, rows = _rows(res.table)
    if as_json:
        click.echo(json.dumps([dict(zip(names, r)) for r in rows], indent=2, default=str))
    elif as_csv:
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        out.writerow(names)
        out.writerows(["" if v is None else v for v in r] for r in rows)
        click.echo(buf.getvalue(), nl=False)
    else:
        click.echo(_table(names, rows))
    if explain:
        pd, st = res.pushdown, res.scan
        pushed = [*pd.terms]
        if pd.time_min is not None:
            pushed.append(f"time >= {iso_utc(pd.time_min)}")
        if pd.time_max is not None:
            pushed.append(f"time <= {iso_utc(pd.time_max)}")
        note(f"pushed down: {' and '.join(pushed) or 'nothing'}; columns: "
             f"{', '.join(pd.columns) if pd.columns is not None else 'all'}")
        note(f"read {st.chunks_read} of {st.chunks_total} chunks, {fmt_count(st.bytes_read)} bytes "
             f"({fmt_count(st.bytes_decompressed)} decompressed), {fmt_count(st.events_read)} events")


def _rows(table: Any) -> tuple[list[str], list[list[Any]]]:
    """Column names and rows as plain values (timestamps as RFC 3339 UTC with ns)."""
    import pyarrow as pa

    cols = []
    for col in table.columns:
        if pa.types.is_timestamp(col.type):
            ns = col.cast(pa.timestamp("ns", tz=col.type.tz)).cast(pa.int64()).to_pylist()
            cols.append([iso_utc(v) for v in ns])
        elif pa.types.is_dictionary(col.type):
            cols.append(col.cast(col.type.value_type).to_pylist())
        else:
            cols.append(col.to_pylist())
    rows = [list(r) for r in zip(*cols)] if cols else []
    return list(table.column_names), rows


def _cell(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    return printable(str(v))


def _table(names: list[str], rows: list[list[Any]]) -> str:
    cells = [[_cell(v) for v in r] for r in rows]
    heads = [printable(n) for n in names]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(heads)]
    numeric = [all(isinstance(r[i], (int, float)) or r[i] is None for r in rows) for i in range(len(names))]

    def line(vals: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(vals, widths, numeric)).rstrip()

    out = [line(heads), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in cells)
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)
