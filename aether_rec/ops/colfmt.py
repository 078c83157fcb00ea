"""Whole columns formatted at once, for replay and export rows.

Rows are made by one ``%`` format per row (a C call, no Python frame per event); the values
it is given are prepared here a column at a time: low-cardinality transformations (names,
durations, sizes, errno names, dates) are computed once per distinct value and gathered with
numpy, times of day are split into integer fields. Every function here gives exactly what the
per-value function it replaces (ops/units.py, ops/text.py) gives, for every input: the tests
compare them on random columns.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from aether_rec.ops.units import fmt_bytes, fmt_duration, iso_utc

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
NS = 1_000_000_000
DAY_NS = 86_400 * NS


def gather(words: Sequence[Any], codes: np.ndarray) -> list[Any]:
    """``[words[c] for c in codes]`` without a Python step per element."""
    table = np.empty(len(words), dtype=object)
    table[:] = list(words)
    return table[codes].tolist()


def by_value(values: np.ndarray, fn: Callable[[Any], Any]) -> list[Any]:
    """``[fn(v) for v in values]``, calling ``fn`` once per distinct value."""
    if not values.size:
        return []
    uniq, inv = np.unique(values, return_inverse=True)
    return gather([fn(v) for v in uniq.tolist()], inv.reshape(-1))


# fmt_duration prints 3 significant digits (or whole units): its text depends on the value
# only through (decade, value // q, which side of q/2 the rest falls). Mapping every value to a
# representative of its class leaves few distinct values to format. Values of 1e11 ns and more
# go through float rounding the classes do not model: they are their own representatives.
_DECADES = np.array([10**k for k in range(3, 12)], dtype=np.uint64)  # 1e3 .. 1e11
_QUANTA = np.array([1, 10, 100, 1000, 10**4, 10**5, 10**6, 10**7, 10**8], dtype=np.uint64)


def durations(ns: np.ndarray) -> list[str]:
    """``[fmt_duration(v) for v in ns]`` for an unsigned ns column."""
    v = ns.astype(np.uint64, copy=False)
    q = _QUANTA[np.searchsorted(_DECADES[:-1], v, side="right")]
    big = v >= _DECADES[-1]
    base = v - v % q
    rest2 = (v % q) * np.uint64(2)
    rep = np.where(rest2 == q, base + q // np.uint64(2), np.where(rest2 < q, base, base + q - np.uint64(1)))
    rep = np.where((q == 1) | big, v, rep)
    return by_value(rep, fmt_duration)


def sizes(n: np.ndarray) -> list[str]:
    """``[fmt_bytes(v) for v in n]`` (I/O sizes repeat: one call per distinct size)."""
    return by_value(n, fmt_bytes)


def errnames(result: np.ndarray) -> list[str | None]:
    """The errno name of every negative result, None for the others (rows.py's ``error``)."""
    return by_value(result, lambda r: _errno.errorcode.get(-r, str(-r)) if r < 0 else None)


def wall_parts(real: np.ndarray | None, n: int) -> tuple[np.ndarray, ...]:
    """A wall-clock ns column split for formatting: (valid, day, hour, minute, second, ns of
    the second) arrays, ``valid`` False where ``iso_utc`` has no wall time (no clock mapping,
    or a saturated value). Fields of invalid rows are 0."""
    if real is None:
        z = np.zeros(n, dtype=np.int64)
        return np.zeros(n, dtype=bool), z, z, z, z, z
    r = real.astype(np.int64, copy=False)
    valid = (r != I64_MIN) & (r != I64_MAX)
    r = np.where(valid, r, 0)
    sec = r // NS  # floor, as iso_utc's fromtimestamp(ns // 1e9)
    sod = sec % 86_400
    day = sec // 86_400
    return valid, day, sod // 3600, sod // 60 % 60, sod % 60, r % NS


def dates(day: np.ndarray) -> list[str]:
    """``YYYY-MM-DDT`` of each day number since the epoch, as iso_utc writes it."""
    return by_value(day, lambda d: (iso_utc(d * DAY_NS) or "?")[:11])
