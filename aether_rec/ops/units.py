"""Units: parsing durations, sizes, offsets and times, and formatting them for people.

Durations accept ``ns us ms s`` (also ``µs``, ``m``, ``h`` for long spans); sizes accept ``K M G T``
as powers of 1024 (``4K`` is a 4096-byte I/O, as block tools count), with an optional trailing
``B``/``iB``. Everything parsed here is an integer number of nanoseconds or bytes.
"""

from __future__ import annotations

import datetime as _dt
import re
from decimal import Decimal, InvalidOperation

from aether_rec.errors import UsageError

NS_PER: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "min": 60_000_000_000,
    "h": 3_600_000_000_000,
}
TIME_UNITS: tuple[str, ...] = ("ns", "us", "ms", "s")  # the ones the docs promise

SIZE_MULT: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "m": 1 << 20,
    "g": 1 << 30,
    "t": 1 << 40,
}

_NUM_UNIT = re.compile(r"^\s*([+-]?)(\d+(?:\.\d*)?|\.\d+)(?:e([+-]?\d+))?\s*([A-Za-zµ]*)\s*$")


def _split(text: str) -> tuple[int, Decimal, str]:
    m = _NUM_UNIT.match(text)
    if not m:
        raise UsageError(f"not a number with a unit: {text!r}")
    sign = -1 if m.group(1) == "-" else 1
    try:
        value = Decimal(m.group(2))
        if m.group(3):
            value = value.scaleb(int(m.group(3)))
    except InvalidOperation as exc:  # pragma: no cover - the regex already checked
        raise UsageError(f"not a number: {text!r}") from exc
    return sign, value, m.group(4)


def duration_factor(unit: str) -> int | None:
    """Nanoseconds per ``unit``, or None when ``unit`` is not a duration unit."""
    return NS_PER.get(unit)


def size_factor(unit: str) -> int | None:
    """Bytes per ``unit`` (``K``, ``MiB``, ``GB``...), or None when it is not a size unit."""
    u = unit.lower()
    if u.endswith("ib"):
        u = u[:-2]
    elif u.endswith("b") and len(u) == 2:
        u = u[:-1]
    return SIZE_MULT.get(u)


def parse_duration(text: str, *, default_unit: str | None = None, allow_negative: bool = False) -> int:
    """``"5ms"`` -> 5_000_000. A bare number needs ``default_unit``."""
    sign, value, unit = _split(text)
    if not unit:
        if default_unit is None:
            raise UsageError(f"duration {text!r} needs a unit (ns, us, ms, s)")
        unit = default_unit
    factor = duration_factor(unit)
    if factor is None:
        raise UsageError(f"bad unit {unit!r} in {text!r}: durations take ns, us, ms or s")
    if sign < 0 and not allow_negative:
        raise UsageError(f"duration {text!r} must not be negative")
    return sign * int(value * factor)


def parse_size(text: str) -> int:
    """``"4K"`` -> 4096."""
    sign, value, unit = _split(text)
    factor = size_factor(unit)
    if factor is None:
        raise UsageError(f"bad unit {unit!r} in {text!r}: sizes take K, M, G (powers of 1024)")
    return sign * int(value * factor)


def parse_offset(text: str) -> int:
    """A signed duration such as ``+12ms`` or ``-1.5s`` (for ``merge --offset``)."""
    return parse_duration(text, allow_negative=True)


def parse_wallclock(text: str) -> int:
    """An ISO 8601 time to UTC nanoseconds. Without a zone it is UTC, like every time
    aether-rec prints (a local-time reading would select nothing or everything depending
    on the TZ of whoever runs it)."""
    t = text.strip()
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    try:
        dt = _dt.datetime.fromisoformat(t)
    except ValueError as exc:
        raise UsageError(
            f"bad time {text!r}: use +SECONDS from the capture start (e.g. +2.5s) "
            "or ISO 8601 (e.g. 2024-05-01T12:00:03.5)"
        ) from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_dt.timezone.utc)
    epoch = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    delta = dt - epoch
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


_TIME_OF_DAY = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$")


def parse_time_bound(text: str) -> tuple[str, int]:
    """``--since/--until`` values, one rule for each form (docs/offline.md, Times):

    * ``+2.5s`` (or ``2.5s``): ``("rel", ns)`` after the capture's first event; the unit is
      required, as for every duration on the command line;
    * ``03:54:56.123456``, a time of day as ``replay`` prints it (UTC): ``("tod", ns since
      midnight)``, taken on the capture's own date;
    * an ISO 8601 date and time, ``Z``/offset or none (then UTC): ``("abs", unix_ns)``."""
    t = text.strip()
    if not t:
        raise UsageError("empty time")
    tod = _TIME_OF_DAY.match(t)
    if tod:
        h, m, s = int(tod.group(1)), int(tod.group(2)), int(tod.group(3))
        if h > 23 or m > 59 or s > 59:
            raise UsageError(f"bad time of day {text!r}")
        frac = int((tod.group(4) or "0").ljust(9, "0"))
        return "tod", ((h * 60 + m) * 60 + s) * 1_000_000_000 + frac
    if t[0] == "+" or (t[0].isdigit() and _NUM_UNIT.match(t) and "-" not in t[1:]):
        sign, value, unit = _split(t)
        if not unit:
            raise UsageError(f"time {text!r} needs a unit: +{t.lstrip('+')}s from the capture start, "
                             "or a time of day such as 03:54:56")
        factor = duration_factor(unit)
        if factor is None:
            raise UsageError(f"bad unit {unit!r} in {text!r}: use ns, us, ms or s")
        return "rel", int(value * factor)
    return "abs", parse_wallclock(t)


# -- formatting -----------------------------------------------------------------------------


def fmt_duration(ns: float | int | None) -> str:
    """Short human duration: ``950ns``, ``12.3us``, ``4.56ms``, ``1.23s``."""
    if ns is None:
        return "-"
    v = float(ns)
    a = abs(v)
    if a < 1_000:
        return f"{v:.0f}ns"
    if a < 1_000_000:
        return f"{v / 1e3:.3g}us" if a < 100_000 else f"{v / 1e3:.0f}us"
    if a < 1_000_000_000:
        return f"{v / 1e6:.3g}ms" if a < 100_000_000 else f"{v / 1e6:.0f}ms"
    return f"{v / 1e9:.3g}s" if a < 100e9 else f"{v / 1e9:.0f}s"


def fmt_bytes(n: float | int) -> str:
    v = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024 or unit == "TiB":
            return f"{v:.0f}{unit}" if unit == "B" else f"{v:.1f}{unit}"
        v /= 1024
    return f"{v:.1f}TiB"  # pragma: no cover


def fmt_count(n: float | int) -> str:
    return f"{int(round(n)):,}"


def fmt_rate(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e4:
        return f"{n / 1e3:.1f}K"
    return f"{n:.0f}" if n >= 10 else f"{n:.2g}"


def fmt_wallclock(unix_ns: int | None, *, date: bool = True, utc: bool = False) -> str:
    """``2024-05-01 12:00:03.123456`` in local time (or UTC)."""
    if unix_ns is None:
        return "-"
    tz = _dt.timezone.utc if utc else None
    dt = _dt.datetime.fromtimestamp(int(unix_ns) // 1_000_000_000, tz=tz)
    us = (int(unix_ns) % 1_000_000_000) // 1_000
    body = dt.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")
    return f"{body}.{us:06d}"


def iso_utc(unix_ns: int | None) -> str | None:
    """RFC 3339 UTC with nanoseconds, for JSON."""
    if unix_ns is None or not -(2**63) < int(unix_ns) < 2**63 - 1:
        return None  # None, or a saturated conversion (format/clock.py): no wall time
    try:
        dt = _dt.datetime.fromtimestamp(int(unix_ns) // 1_000_000_000, tz=_dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None  # beyond what a calendar date can say (a u64 ts of 2**63 and more)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{int(unix_ns) % 1_000_000_000:09d}Z"
