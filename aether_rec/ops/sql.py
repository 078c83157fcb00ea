"""``sql``: DuckDB over captures, with the WHERE clause pushed down to the chunk index.

Tables (``aether-rec sql --help`` lists their columns):

- ``events``: every event of every capture (schema: aether_rec/format/arrow.py), streamed
  chunk by chunk from the captures as Arrow record batches, strings dictionary-encoded;
- ``losses``: one row per loss record; ``captures``: one row per capture, with provenance.

Push-down. DuckDB's own parser (``json_serialize_sql``) gives the query's syntax tree. When
``events`` is the FROM table of the top-level SELECT, each AND-ed comparison of ``ts``, ``time``,
``lat``, ``pid``, ``layer`` or ``op`` with a constant (``lat > 5000000``, ``time >= TIMESTAMP
'...'``, ``ts BETWEEN a AND b``) becomes a bound the chunk index can test, so chunks that cannot
match are never read nor decompressed. Constants are evaluated by DuckDB itself (so every literal
form it accepts works) and rounded outwards; the full WHERE clause still runs in DuckDB, so
push-down only ever skips chunks, never changes an answer. Only the ``events`` columns the query
names are built. DuckDB is optional: ``pip install 'aether-rec[sql]'``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from aether_rec.errors import UsageError
from aether_rec.format import arrow
from aether_rec.format.reader import Capture
from aether_rec.ops.dataset import CaptureDataset, ScanStats
from aether_rec.optional import require

TABLES = ("events", "losses", "captures")
INDEXED = ("ts", "lat", "pid", "layer", "op")  # columns the chunk index bounds
FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "="}
COMPARE = {
    "COMPARE_EQUAL": "=",
    "COMPARE_GREATERTHAN": ">",
    "COMPARE_GREATERTHANOREQUALTO": ">=",
    "COMPARE_LESSTHAN": "<",
    "COMPARE_LESSTHANOREQUALTO": "<=",
}


@dataclass
class PushDown:
    """What the query lets the index skip: expression text (aether-rec's language) over
    indexed columns, wall-clock bounds (ns, inclusive), and the events columns to build."""

    terms: list[str] = field(default_factory=list)
    time_min: int | None = None
    time_max: int | None = None
    columns: list[str] | None = None  # None: all
    events_refs: int = 0

    @property
    def filter_text(self) -> str | None:
        return " and ".join(self.terms) if self.terms else None


@dataclass
class SqlResult:
    table: Any  # pyarrow.Table
    pushdown: PushDown
    scan: ScanStats
    warnings: list[str]


def duckdb() -> Any:
    return require("duckdb", "sql", "sql")


def _connect() -> Any:
    con = duckdb().connect(":memory:")
    for setting in ("SET TimeZone = 'UTC'", "SET autoinstall_known_extensions = false"):
        with _suppress():
            con.execute(setting).fetchall()
    return con


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: Any, exc: Any, tb: Any) -> bool:
        return typ is not None and issubclass(typ, Exception)


# -- analysing the query ---------------------------------------------------------------------------


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def _is_constant(node: Any) -> bool:
    """Only literals and casts of literals: safe to evaluate on their own."""
    if not isinstance(node, dict):
        return False
    cls = node.get("class")
    if cls == "CONSTANT":
        return True
    if cls == "CAST":
        return _is_constant(node.get("child"))
    return False


def _column(node: Any, aliases: set[str]) -> str | None:
    if not isinstance(node, dict) or node.get("class") != "COLUMN_REF":
        return None
    names = node.get("column_names") or []
    if len(names) == 1:
        return str(names[0]).lower()
    if len(names) == 2 and str(names[0]).lower() in aliases:
        return str(names[1]).lower()
    return None


def _conjuncts(node: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(node, dict):
        return
    if node.get("class") == "CONJUNCTION" and node.get("type") == "CONJUNCTION_AND":
        for c in node.get("children", []):
            yield from _conjuncts(c)
    else:
        yield node


def parse_tree(con: Any, query: str) -> dict[str, Any]:
    """DuckDB's syntax tree of ``query`` (one statement), or UsageError with its message."""
    out = con.execute("SELECT json_serialize_sql(?)", [query]).fetchall()[0][0]
    tree = json.loads(out)
    if tree.get("error"):
        raise UsageError(f"sql: {tree.get('error_message', 'cannot parse the query')}")
    stmts = tree.get("statements") or []
    if len(stmts) != 1:
        raise UsageError("sql: give exactly one SELECT statement")
    return dict(stmts[0])


def plan(con: Any, query: str) -> PushDown:
    """The push-down a query allows (conservative: anything unclear pushes nothing)."""
    stmt = parse_tree(con, query)
    pd = PushDown()
    names: set[str] = set()
    star = False
    for n in _walk(stmt):
        if n.get("type") == "BASE_TABLE" and str(n.get("table_name", "")).lower() == "events":
            pd.events_refs += 1
        cls = n.get("class")
        if cls == "COLUMN_REF":
            names.update(str(x).lower() for x in (n.get("column_names") or []))
        elif cls in ("STAR", "COLUMNS"):
            star = True
        using = n.get("using_columns")
        if isinstance(using, list):
            names.update(str(x).lower() for x in using)
    known = arrow.column_names()
    # a table needs one column even for count(*); ``capture`` costs no decoding
    pd.columns = None if star else ([c for c in known if c in names] or ["capture"])
    node = stmt.get("node") or {}
    src = node.get("from_table") or {}
    if (node.get("type") != "SELECT_NODE" or src.get("type") != "BASE_TABLE"
            or str(src.get("table_name", "")).lower() != "events" or pd.events_refs != 1):
        return pd
    aliases = {"events"} | ({str(src["alias"]).lower()} if src.get("alias") else set())
    for term in _conjuncts(node.get("where_clause")):
        _push(con, query, term, aliases, pd)
    return pd


def _push(con: Any, query: str, term: dict[str, Any], aliases: set[str], pd: PushDown) -> None:
    typ = term.get("type")
    if typ == "COMPARE_BETWEEN":
        col = _column(term.get("input"), aliases)
        lo, hi = term.get("lower"), term.get("upper")
        if col and _is_constant(lo) and _is_constant(hi):
            _bound(con, query, col, ">=", lo, pd)
            _bound(con, query, col, "<=", hi, pd)
        return
    op = COMPARE.get(str(typ))
    if op is None:
        return
    left, right = term.get("left"), term.get("right")
    col = _column(left, aliases)
    if col and _is_constant(right):
        _bound(con, query, col, op, right, pd)
        return
    col = _column(right, aliases)
    if col and _is_constant(left):
        _bound(con, query, col, FLIP[op], left, pd)


def _text(query: str, node: dict[str, Any]) -> str | None:
    """The constant's own text in the query (DuckDB gives each node's location)."""
    at, n = node.get("query_location"), node.get("query_location_length")
    if not isinstance(at, int) or not isinstance(n, int) or n <= 0 or at + n > len(query):
        return None
    return query[at : at + n]


def _value(con: Any, query: str, node: Any, as_time: bool) -> float | int | None:
    text = _text(query, node)
    if text is None and node.get("class") == "CAST":
        child = node.get("child") or {}
        ctext = _text(query, child)
        tname = str((node.get("type_expr") or {}).get("type_name", "")).upper()
        if ctext is None or not tname.replace("_", "").isalnum():
            return None
        text = f"CAST({ctext} AS {tname})"
    if text is None:
        return None
    try:
        if as_time:
            row = con.execute(f"SELECT epoch_ns(CAST(({text}) AS TIMESTAMPTZ))").fetchall()
        else:
            row = con.execute(f"SELECT CAST(({text}) AS DOUBLE)").fetchall()
    except Exception:  # noqa: BLE001  a constant DuckDB cannot read this way: no push-down
        return None
    v = row[0][0] if row else None
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return v


def _bound(con: Any, query: str, col: str, op: str, node: Any, pd: PushDown) -> None:
    if col == "time":
        v = _value(con, query, node, as_time=True)
        if v is None:
            return
        # widened by 1 us: a TIMESTAMP literal is microseconds, the column nanoseconds
        if op in (">", ">=", "="):
            t = int(v) - 1000
            pd.time_min = t if pd.time_min is None else max(pd.time_min, t)
        if op in ("<", "<=", "="):
            t = int(v) + 1000
            pd.time_max = t if pd.time_max is None else min(pd.time_max, t)
        return
    if col not in INDEXED:
        return
    v = _value(con, query, node, as_time=False)
    if v is None:
        return
    # rounded outwards, and strict bounds made inclusive: a looser bound only reads more
    if op in (">", ">="):
        pd.terms.append(f"{col} >= {math.floor(v)}")
    elif op in ("<", "<="):
        pd.terms.append(f"{col} <= {math.ceil(v)}")
    elif op == "=":
        pd.terms.append(f"{col} >= {math.floor(v)} and {col} <= {math.ceil(v)}")


# -- running ---------------------------------------------------------------------------------------


def run(query: str, sources: Sequence[str | Capture | BinaryIO], strict: bool = False) -> SqlResult:
    """Run ``query`` over the captures ``sources``; the result as a pyarrow Table."""
    con = _connect()
    try:
        pd = plan(con, query)
        with CaptureDataset(sources, strict=strict) as ds:
            kw: dict[str, Any] = {"filter": pd.filter_text, "time_min": pd.time_min, "time_max": pd.time_max}
            if pd.events_refs > 1:
                events: Any = ds.to_table(pd.columns, **kw)  # scanned more than once
            else:
                events = ds.to_reader(pd.columns, **kw)
            con.register("events", events)
            con.register("losses", ds.losses_table())
            con.register("captures", ds.captures_table())
            try:
                table = _arrow_result(con.sql(query))
            except duckdb().Error as exc:
                if ds.scan_error is not None:
                    raise ds.scan_error from None  # a damaged capture, not a bad query
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise UsageError(f"sql: {msg}") from None
            return SqlResult(table, pd, ds.scan_stats, ds.warnings)
    finally:
        con.close()


def _arrow_result(res: Any) -> Any:
    """The result as a pyarrow Table, across DuckDB versions' names for it."""
    for name in ("to_arrow_table", "fetch_arrow_table", "arrow"):
        fn = getattr(res, name, None)
        if fn is not None:
            out = fn()
            return out.read_all() if hasattr(out, "read_all") else out
    raise UsageError("sql: this DuckDB cannot return Arrow results")
