"""``diff``: did it get slower? Two profiles side by side, with a test on their histograms.

For each (layer, op), or each ``--by`` group, and for all events together: events, IOPS, mean,
p50/p90/p99/p99.9 and max before and after, the ratio after/before, and a **Mann-Whitney U
test** computed exactly from the two mergeable histograms (values in one histogram bucket are
ties, so differences below the histogram's 0.4 % resolution count as none). The test gives a
two-sided p-value (normal approximation with tie correction) and the effect size
``P(after > before) + P(tie)/2`` (0.5: no shift; 1: every I/O after is slower than every I/O
before). A row is ``slower`` or ``faster`` when ``p < alpha``, else ``no change``.

``--fail-if`` conditions (see ``parse_conditions``) turn the document into an exit status.
The JSON document is described in docs/diff-json.md.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from aether_rec.errors import UsageError
from aether_rec.ops.histogram import Histogram, pkey
from aether_rec.ops.profile import Profile
from aether_rec.ops.units import duration_factor
from aether_rec.schema import layer_name, op_name

SCHEMA_NAME = "aether-rec/diff"
SCHEMA_VERSION = 1
QS = (50.0, 90.0, 99.0, 99.9)
LAT_STATS = ("mean", *(pkey(q) for q in QS), "max")
STATS = ("events", "iops", *LAT_STATS)
DEFAULT_ALPHA = 0.01
TEST_NAME = "mann-whitney-u"
TEST_DESCRIPTION = (
    "Mann-Whitney U on the two latency histograms (ties = same bucket, 0.4 % wide), "
    "normal approximation with tie correction, two-sided"
)


@dataclass
class TestResult:
    u: float  # U statistic of the after sample
    z: float
    p_value: float
    effect: float  # P(after > before) + P(tie) / 2


def mann_whitney(before: Histogram, after: Histogram) -> TestResult | None:
    """The Mann-Whitney U test of ``after`` against ``before``, from bucket counts alone.
    None when either side is empty."""
    n1, n2 = before.total, after.total
    if n1 == 0 or n2 == 0:
        return None
    if before.precision != after.precision:
        raise ValueError("histograms of different precision")
    i1, c1 = before.nonzero()
    i2, c2 = after.nonzero()
    keys = np.union1d(i1, i2)
    b = np.zeros(keys.size, dtype=np.float64)
    a = np.zeros(keys.size, dtype=np.float64)
    b[np.searchsorted(keys, i1)] = c1
    a[np.searchsorted(keys, i2)] = c2
    below = np.cumsum(b) - b  # before-values strictly below each bucket
    u = float(np.sum(a * (below + 0.5 * b)))
    nn = float(n1) * float(n2)
    big_n = float(n1 + n2)
    t = a + b
    ties = float(np.sum(t**3 - t))
    var = nn / 12.0 * ((big_n + 1.0) - ties / (big_n * (big_n - 1.0))) if big_n > 1 else 0.0
    mean = nn / 2.0
    if var <= 0:
        z = 0.0
    else:
        z = (u - mean) / math.sqrt(var)
    p = math.erfc(abs(z) / math.sqrt(2.0))
    return TestResult(u, z, p, u / nn)


def _stats(h: Histogram, seconds: float | None) -> dict[str, Any]:
    s = h.summary(QS)
    return {
        "events": h.total,
        "iops": h.total / seconds if seconds else None,
        **{k: s[k] for k in LAT_STATS},
    }


def _ratio(a: Any, b: Any) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return float(a) / float(b)


def _row(layer: str, op: str, key: dict[str, Any] | None, hb: Histogram, ha: Histogram,
         sb: float | None, sa: float | None, alpha: float) -> dict[str, Any]:
    before, after = _stats(hb, sb), _stats(ha, sa)
    test = mann_whitney(hb, ha)
    if test is None or hb.total < 2 or ha.total < 2:
        verdict = "too few events"
    elif test.p_value < alpha:
        verdict = "slower" if test.effect > 0.5 else "faster"
    else:
        verdict = "no change"
    return {
        "layer": layer,
        "op": op,
        "key": key,
        "before": before,
        "after": after,
        "ratio": {k: _ratio(after[k], before[k]) for k in STATS},
        "u": None if test is None else test.u,
        "z": None if test is None else test.z,
        "p_value": None if test is None else test.p_value,
        "effect": None if test is None else test.effect,
        "verdict": verdict,
    }


def _side(p: Profile) -> dict[str, Any]:
    return {
        "path": p.path,
        "label": p.label,
        "events": p.events,
        "seconds": p.span_s,
        "filter": p.filter_text,
        "lost": sum(x["count"] for x in p.losses if x["real"]),
    }


def compare(before: Profile, after: Profile, alpha: float = DEFAULT_ALPHA) -> dict[str, Any]:
    """The ``diff --json`` document (docs/diff-json.md)."""
    if not 0 < alpha < 1:
        raise UsageError("--alpha must be between 0 and 1")
    sb, sa = before.span_s, after.span_s
    rows = []
    if before.by is not None and after.by is not None:
        names = before.by.names
        hb_by = {k: h for k, h, _, _ in before.by.rows()}
        ha_by = {k: h for k, h, _, _ in after.by.rows()}
        keys = sorted(set(hb_by) | set(ha_by), key=lambda k: (-(hb_by.get(k) or ha_by[k]).total, str(k)))
        for k in keys:
            empty = Histogram(before.by.precision)
            key = {n: _display(n, v) for n, v in zip(names, k)}
            rows.append(_row(str(key.get("layer", "")), str(key.get("op", "")), key,
                             hb_by.get(k, empty), ha_by.get(k, empty), sb, sa, alpha))
    else:
        for lo in sorted(set(before.layer_op) | set(after.layer_op)):
            hb = before.layer_op.get(lo) or Histogram()
            ha = after.layer_op.get(lo) or Histogram()
            rows.append(_row(layer_name(lo >> 8), op_name(lo & 0xFF), None, hb, ha, sb, sa, alpha))
    rows.append(_row("all", "", None, before.total_hist(), after.total_hist(), sb, sa, alpha))
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "test": {"name": TEST_NAME, "description": TEST_DESCRIPTION, "alpha": alpha},
        "before": _side(before),
        "after": _side(after),
        "by": list(before.by.names) if before.by is not None else None,
        "rows": rows,
        "conditions": [],
        "failed": False,
    }


def _display(name: str, v: Any) -> Any:
    if name == "layer":
        return layer_name(int(v))
    if name == "op":
        return op_name(int(v))
    if name == "dev":
        return f"{int(v) >> 20}:{int(v) & 0xFFFFF}"
    return v


# -- --fail-if ---------------------------------------------------------------------------------

CONDITION_HELP = """\b
Condition language (--fail-if; repeat it or join conditions with "or"):
  [SCOPE:] METRIC OP VALUE     or     [SCOPE:] slower
  SCOPE    a layer (block), layer/op (syscall/pread) or all; default: every row
  METRIC   events iops mean p50 p90 p99 p99.9 max
  OP       > >= < <=
  VALUE    1.2x     ratio after/before
           +20%     relative change (the same as 1.2x; -20% is 0.8x)
           +2ms     absolute change of a latency (after - before)
           5ms      the after value itself (latencies take ns us ms s)
           5000     the after value itself (events, iops)
  slower   the Mann-Whitney test says the row got slower (p < --alpha)
  A condition holds if it holds for any row in its scope; then diff exits with status 3."""

_METRICS = {"events": "events", "iops": "iops", "mean": "mean", "p50": "p50", "p90": "p90",
            "p99": "p99", "p99.9": "p99_9", "p99_9": "p99_9", "max": "max"}
_COND = re.compile(
    r"^\s*(?:(?P<scope>[A-Za-z_][\w]*(?:/[A-Za-z_]\w*)?)\s*:)?\s*"
    r"(?:(?P<slower>slower)|(?P<metric>[A-Za-z][\w.]*)\s*(?P<op>>=|<=|>|<)\s*(?P<value>\S+))\s*$"
)
_VALUE = re.compile(r"^(?P<sign>[+-])?(?P<num>\d+(?:\.\d*)?|\.\d+)(?P<unit>x|%|ns|us|µs|ms|s)?$")


@dataclass(frozen=True)
class Condition:
    text: str
    scope: str | None  # "block", "syscall/pread", "all" or None (every row)
    metric: str  # a key of STATS, or "slower"
    op: str = ">"
    kind: str = "slower"  # ratio, delta, absolute, slower
    value: float = 0.0

    def applies(self, row: dict[str, Any]) -> bool:
        if self.scope is None:
            return True
        if self.scope == "all":
            return row["layer"] == "all"
        if "/" in self.scope:
            lay, op = self.scope.split("/", 1)
            return row["layer"] == lay and row["op"] == op
        return row["layer"] == self.scope

    def observed(self, row: dict[str, Any]) -> float | None:
        if self.kind == "slower":
            return 1.0 if row["verdict"] == "slower" else 0.0
        a, b = row["after"].get(self.metric), row["before"].get(self.metric)
        if self.kind == "ratio":
            return _ratio(a, b)
        if self.kind == "delta":
            return None if a is None or b is None else float(a) - float(b)
        return None if a is None else float(a)

    def holds(self, row: dict[str, Any]) -> bool:
        v = self.observed(row)
        if v is None:
            return False
        if self.kind == "slower":
            return v > 0
        cmp = {">": v > self.value, ">=": v >= self.value, "<": v < self.value, "<=": v <= self.value}
        return cmp[self.op]


def parse_conditions(texts: Sequence[str]) -> list[Condition]:
    """Parse ``--fail-if`` texts (each may join several conditions with ``or`` or ``,``)."""
    out = []
    for text in texts:
        for part in re.split(r"\s+or\s+|,", text):
            if part.strip():
                out.append(_parse_one(part.strip()))
    return out


def _parse_one(text: str) -> Condition:
    m = _COND.match(text)
    if not m:
        raise UsageError(f"--fail-if: cannot read {text!r} (e.g. 'p99 > 1.2x', 'block:max > +5ms', 'slower')")
    scope = m.group("scope")
    if m.group("slower"):
        return Condition(text, scope, "slower")
    metric = _METRICS.get(m.group("metric").lower())
    if metric is None:
        raise UsageError(f"--fail-if: unknown metric {m.group('metric')!r} (one of: {', '.join(_METRICS)})")
    v = _VALUE.match(m.group("value"))
    if not v:
        raise UsageError(
            f"--fail-if: bad value {m.group('value')!r} in {text!r} (e.g. 1.2x, +20%, +2ms, 5ms)")
    num = float(v.group("num"))
    sign = -1.0 if v.group("sign") == "-" else 1.0
    unit = v.group("unit") or ""
    latency = metric in LAT_STATS
    if unit == "x":
        if v.group("sign"):
            raise UsageError(f"--fail-if: a ratio takes no sign: {text!r}")
        return Condition(text, scope, metric, m.group("op"), "ratio", num)
    if unit == "%":
        if not v.group("sign"):
            raise UsageError(f"--fail-if: a relative change needs a sign (+20% or -20%): {text!r}")
        return Condition(text, scope, metric, m.group("op"), "ratio", 1.0 + sign * num / 100.0)
    if unit:
        if not latency:
            raise UsageError(f"--fail-if: {m.group('metric')} is not a latency; {unit} does not apply")
        factor = duration_factor(unit)
        assert factor is not None
        kind = "delta" if v.group("sign") else "absolute"
        return Condition(text, scope, metric, m.group("op"), kind, sign * num * factor)
    if latency:
        raise UsageError(
            f"--fail-if: {text!r}: a latency needs a unit (ns, us, ms, s), a ratio (1.2x) or a %")
    kind = "delta" if v.group("sign") else "absolute"
    return Condition(text, scope, metric, m.group("op"), kind, sign * num)


def check(doc: dict[str, Any], conditions: Sequence[Condition]) -> list[dict[str, Any]]:
    """Evaluate ``conditions`` on ``doc``; records the results in it and returns those that
    held (``{"condition", "row", "observed"}``)."""
    held = []
    results = []
    for c in conditions:
        hits = []
        for row in doc["rows"]:
            if c.applies(row) and c.holds(row):
                what = row["layer"] + (f"/{row['op']}" if row["op"] else "")
                if row.get("key"):
                    what = " ".join(f"{k}={v}" for k, v in row["key"].items())
                hits.append({"condition": c.text, "row": what, "observed": c.observed(row)})
        results.append({"condition": c.text, "held": bool(hits), "rows": [h["row"] for h in hits]})
        held += hits
    doc["conditions"] = results
    doc["failed"] = bool(held)
    return held


# -- text --------------------------------------------------------------------------------------

_TEXT_STATS = (("p50", "P50"), ("p90", "P90"), ("p99", "P99"), ("p99_9", "P99.9"), ("max", "MAX"))


def render_diff(doc: dict[str, Any], style: Any = None) -> str:
    """The terminal view of a diff document. ``style(text, role)`` may colour verdicts."""
    from aether_rec.ops.report import table
    from aether_rec.ops.units import fmt_duration

    def paint(text: str, role: str) -> str:
        return style(text, role) if style else text

    b, a = doc["before"], doc["after"]
    out = [
        f"before: {b['path']}  ({b['events']:,} events)",
        f"after:  {a['path']}  ({a['events']:,} events)",
        f"test:   {doc['test']['description']}; alpha {doc['test']['alpha']:g}",
        "",
    ]
    heads = ["LAYER", "OP"] if not doc.get("by") else [n.upper() for n in doc["by"]]
    heads += ["EVENTS", "IOPS x", *(h for _, h in _TEXT_STATS), "P-VALUE", "VERDICT"]
    rows = []
    for r in doc["rows"]:
        if doc.get("by") and r["key"]:
            cells = [str(r["key"][n]) for n in doc["by"]]
        elif doc.get("by"):
            cells = ["all"] + [""] * (len(doc["by"]) - 1)
        else:
            cells = [r["layer"], r["op"]]
        ri = r["ratio"]["iops"]
        cells.append(f"{r['before']['events']:,} -> {r['after']['events']:,}")
        cells.append("-" if ri is None else f"{ri:.2f}x")
        for k, _ in _TEXT_STATS:
            ratio = r["ratio"][k]
            cells.append(f"{fmt_duration(r['before'][k])} -> {fmt_duration(r['after'][k])}"
                         + ("" if ratio is None else f" ({ratio:.2f}x)"))
        cells.append("-" if r["p_value"] is None else f"{r['p_value']:.1e}")
        cells.append(r["verdict"])
        rows.append(cells)
    lines = table(heads, rows, [False] * (len(heads) - len(_TEXT_STATS) - 4) + [True] * (len(_TEXT_STATS) + 3)
                  + [False])
    verdict_col = len(lines[0]) - len("VERDICT")
    for line in lines:
        v = line[verdict_col:].strip() if len(line) > verdict_col else ""
        if v in ("slower", "faster"):
            line = line[:verdict_col] + paint(line[verdict_col:], v)
        out.append("  " + line)
    for c in doc.get("conditions") or []:
        state = "HOLDS" if c["held"] else "does not hold"
        where = f" ({', '.join(c['rows'])})" if c["rows"] else ""
        out.append(paint(f"--fail-if {c['condition']!r}: {state}{where}", "error" if c["held"] else "ok"))
    return "\n".join(out)
