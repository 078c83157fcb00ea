"""The compiled expression tree: each node gives a vectorised mask over a chunk and, from a
chunk's index entry alone, whether the chunk can hold a match and whether every event of it
must match (index push-down)."""

from __future__ import annotations

import fnmatch
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from aether_rec.ops.expr.fields import ChunkLike, field_values, string_codes

# -- AST nodes ------------------------------------------------------------------------------

CMP_OPS = {"==", "!=", "<", "<=", ">", ">="}
FLIPPED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


class Node(ABC):
    @abstractmethod
    def mask(self, chunk: ChunkLike) -> np.ndarray:
        """Which events of the chunk the node selects (a boolean array)."""

    def bounds(self, info: Any) -> tuple[bool, bool]:
        """(can some event of the chunk match, must every event match), from the index only."""
        return True, False

    def fields(self) -> set[str]:
        return set()


@dataclass
class Const(Node):
    value: bool

    def mask(self, chunk: ChunkLike) -> np.ndarray:
        return np.full(chunk.n, self.value, dtype=bool)

    def bounds(self, info: Any) -> tuple[bool, bool]:
        return self.value, self.value


@dataclass
class Not(Node):
    child: Node

    def mask(self, chunk: ChunkLike) -> np.ndarray:
        return ~self.child.mask(chunk)

    def bounds(self, info: Any) -> tuple[bool, bool]:
        can, must = self.child.bounds(info)
        return not must, not can

    def fields(self) -> set[str]:
        return self.child.fields()


@dataclass
class And(Node):
    children: list[Node]

    def mask(self, chunk: ChunkLike) -> np.ndarray:
        out: np.ndarray | None = None
        for c in self.children:
            m = c.mask(chunk)
            out = m if out is None else (out & m)
            if not out.any():
                break
        assert out is not None
        return out

    def bounds(self, info: Any) -> tuple[bool, bool]:
        can, must = True, True
        for c in self.children:
            cc, cm = c.bounds(info)
            can &= cc
            must &= cm
        return can, must

    def fields(self) -> set[str]:
        return set().union(*(c.fields() for c in self.children))


@dataclass
class Or(Node):
    children: list[Node]

    def mask(self, chunk: ChunkLike) -> np.ndarray:
        out: np.ndarray | None = None
        for c in self.children:
            m = c.mask(chunk)
            out = m if out is None else (out | m)
            if out.all():
                break
        assert out is not None
        return out

    def bounds(self, info: Any) -> tuple[bool, bool]:
        can, must = False, False
        for c in self.children:
            cc, cm = c.bounds(info)
            can |= cc
            must |= cm
        return can, must

    def fields(self) -> set[str]:
        return set().union(*(c.fields() for c in self.children))


def _compare(arr: np.ndarray, op: str, v: int) -> np.ndarray:
    """``arr OP v`` that stays right when ``v`` is outside the dtype's range."""
    if arr.dtype.kind in "ui":
        info = np.iinfo(arr.dtype)
        if v < info.min or v > info.max:
            below = v < info.min  # every element is greater than v
            const = {
                "==": False,
                "!=": True,
                "<": not below,
                "<=": not below,
                ">": below,
                ">=": below,
            }[op]
            return np.full(arr.shape, const, dtype=bool)
        scalar: Any = arr.dtype.type(v)
    else:
        scalar = v
    if op == "==":
        return arr == scalar
    if op == "!=":
        return arr != scalar
    if op == "<":
        return arr < scalar
    if op == "<=":
        return arr <= scalar
    if op == ">":
        return arr > scalar
    return arr >= scalar


def _range_bounds(lo: int, hi: int, op: str, v: int) -> tuple[bool, bool]:
    if op == "==":
        return lo <= v <= hi, lo == hi == v
    if op == "!=":
        return not (lo == hi == v), v < lo or v > hi
    if op == "<":
        return lo < v, hi < v
    if op == "<=":
        return lo <= v, hi <= v
    if op == ">":
        return hi > v, lo > v
    return hi >= v, lo >= v


def _bit_values(mask: int) -> list[int]:
    return [b for b in range(mask.bit_length()) if mask >> b & 1]


def _known_values(info: Any, name: str) -> list[int] | None:
    """The exact set of values a chunk holds for ``name``, when its index entry says so."""
    if name in ("layer", "op"):
        bits = getattr(info, name + "s", None)
        if isinstance(bits, int) and bits > 0:
            return _bit_values(bits)
    if name == "pid":
        pids = getattr(info, "pids", None)
        if pids is not None:
            return list(pids)
    return None


def _known_range(info: Any, name: str) -> tuple[int, int] | None:
    """An inclusive range that holds every value of ``name`` in the chunk, from its index entry."""
    g = getattr
    try:
        if name == "ts":
            lo, hi = g(info, "t_first", None), g(info, "t_last", None)
        elif name in ("lat", "service"):
            lo, hi = 0, g(info, "lat_max", None)
        elif name == "end":
            lo = g(info, "t_first", None)
            t_last, lat_max = g(info, "t_last", None), g(info, "lat_max", None)
            hi = None if t_last is None or lat_max is None else t_last + lat_max
        elif name == "pid":
            lo, hi = g(info, "pid_min", None), g(info, "pid_max", None)
        else:
            return None
    except Exception:  # an index entry of another shape: no push-down
        return None
    if lo is None or hi is None:
        return None
    return int(lo), int(hi)


@dataclass
class Compare(Node):
    field: str
    op: str
    value: int

    def mask(self, chunk: ChunkLike) -> np.ndarray:
        if self.field == "flags" and self.op in ("==", "!="):
            return _compare(chunk.column("flags"), self.op, self.value)
        return _compare(field_values(chunk, self.field), self.op, self.value)

    def bounds(self, info: Any) -> tuple[bool, bool]:
        vals = _known_values(info, self.field)
        if vals is not None:
            res = [_range_bounds(x, x, self.op, self.value)[0] for x in vals]
            return any(res), all(res)
        rng = _known_range(info, self.field)
        if rng is not None:
            return _range_bounds(rng[0], rng[1], self.op, self.value)
        return True, False

    def fields(self) -> set[str]:
        return {self.field}


@dataclass
class InSet(Node):
    field: str
    values: list[int]

    def mask(self, chunk: ChunkLike) -> np.ndarray:
        arr = field_values(chunk, self.field)
        vals = sorted(set(self.values))
        if arr.dtype.kind == "u" and arr.dtype.itemsize == 1:
            lut = np.zeros(256, dtype=bool)
            lut[[v for v in vals if 0 <= v < 256]] = True
            return lut[arr]
        if len(vals) <= 4:
            out = np.zeros(chunk.n, dtype=bool)
            for v in vals:
                out |= _compare(arr, "==", v)
            return out
        if arr.dtype.kind in "ui":
            info = np.iinfo(arr.dtype)
            vals = [v for v in vals if info.min <= v <= info.max]
        return np.isin(arr, np.array(vals, dtype=arr.dtype))

    def bounds(self, info: Any) -> tuple[bool, bool]:
        vs = set(self.values)
        known = _known_values(info, self.field)
        if known is not None:
            hit = [x in vs for x in known]
            return any(hit), all(hit)
        rng = _known_range(info, self.field)
        if rng is not None:
            lo, hi = rng
            return any(lo <= v <= hi for v in vs), lo == hi and lo in vs
        return True, False

    def fields(self) -> set[str]:
        return {self.field}


@dataclass
class HasFlags(Node):
    bits: int

    def mask(self, chunk: ChunkLike) -> np.ndarray:
        f = chunk.column("flags")
        b = f.dtype.type(self.bits)
        return (f & b) == b

    def fields(self) -> set[str]:
        return {"flags"}


@dataclass
class StrMatch(Node):
    """String equality / glob / regex on a dictionary-coded column: evaluated once per distinct
    string of the chunk's dictionary, then looked up by code."""

    field: str
    patterns: list[str]
    regex: bool = False

    def __post_init__(self) -> None:
        self._exact: set[str] = set()
        self._globs: list[re.Pattern[str]] = []
        for p in self.patterns:
            if self.regex:
                self._globs.append(re.compile(p))
            elif any(ch in p for ch in "*?["):
                self._globs.append(re.compile(fnmatch.translate(p)))
            else:
                self._exact.add(p)

    def match_one(self, s: str) -> bool:
        if s in self._exact:
            return True
        if self.regex:
            return any(g.search(s) for g in self._globs)
        return any(g.match(s) for g in self._globs)

    def mask(self, chunk: ChunkLike) -> np.ndarray:
        codes, d = string_codes(chunk, self.field)
        lut = np.fromiter((self.match_one(s) for s in d), dtype=bool, count=len(d))
        if lut.size == 0:
            return np.zeros(chunk.n, dtype=bool)
        return lut[codes]

    def fields(self) -> set[str]:
        return {self.field}
