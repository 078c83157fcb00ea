"""The filter expression language: a tokenizer and a recursive-descent parser that compile an
expression to vectorised numpy masks over a chunk. Nothing is ever ``eval``-ed.

Grammar (keywords are case-insensitive)::

    expr       := or_expr
    or_expr    := and_expr (("or" | "||") and_expr)*
    and_expr   := not_expr (("and" | "&&") not_expr)*
    not_expr   := ("not" | "!") not_expr | primary
    primary    := "(" expr ")" | "true" | "false" | predicate
    predicate  := FIELD CMP value | value CMP FIELD
                | FIELD ["not"] "in" "(" value ("," value)* [","] ")"
                | FIELD ("=~" | "!~") STRING                  (regular expression, strings only)
                | FIELD "has" FLAG ("," FLAG)*                (flags only)
    CMP        := "==" | "=" | "!=" | "<" | "<=" | ">" | ">="
    value      := ["-"] NUMBER[UNIT] | STRING | NAME | MAJOR:MINOR

Units: durations ``ns us ms s`` on time fields (a bare number is ns); ``K M G T`` (powers of 1024)
on sizes and counts. Names: layers and ops (``op in (read, pread)``), errno names (``errno ==
EIO``, ``result == -EIO``), flag names (``flags has direct``). Strings compare with ``==``/``!=``
and are globs when they hold ``* ? [`` (``path == "/var/lib/*"``); bare words are accepted as
strings (``comm == postgres``).

Each compiled node also answers, from a chunk's index entry alone, whether the chunk *can* hold a
matching event and whether *every* event of it must match: the first lets readers skip chunks, the
second lets writers copy whole chunks without masking.
"""

from __future__ import annotations

import errno as _errno
import fnmatch
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from aether_rec.errors import UsageError
from aether_rec.ops.units import duration_factor, parse_duration, size_factor
from aether_rec.schema import COLUMN_BY_NAME, FLAGS, LAYER_CODE, LAYERS, OP_CODE, OPS

# -- the chunk protocol the expressions need ---------------------------------------------------


class ChunkLike(Protocol):
    n: int
    columns: dict[str, np.ndarray]
    dicts: dict[str, list[str]]

    def column(self, name: str) -> np.ndarray: ...


# -- errors ---------------------------------------------------------------------------------


class ExprError(UsageError):
    """A malformed expression. ``str()`` is a summary line, then the expression with a caret."""

    def __init__(self, message: str, text: str, start: int, end: int | None = None) -> None:
        self.summary = message
        self.text = text
        self.start = max(0, min(start, len(text)))
        self.end = max(self.start + 1, end if end is not None else self.start + 1)
        one_line = text.replace("\n", " ").replace("\t", " ")
        caret = " " * self.start + "^" * max(1, min(self.end, len(one_line) + 1) - self.start)
        super().__init__(f"bad expression: {message}\n  {one_line}\n  {caret}")


# -- fields ---------------------------------------------------------------------------------

# kind: time (ns, takes duration units), size (bytes, takes K/M/G), int (plain; K/M/G allowed),
# enum (layer/op names), flags, dev (major:minor), str (dictionary-coded), errno.


@dataclass(frozen=True)
class Field:
    name: str
    kind: str
    doc: str


def _kind_of(col: str) -> str:
    c = COLUMN_BY_NAME[col]
    if c.is_str:
        return "str"
    if col in ("layer", "op"):
        return "enum"
    if col == "flags":
        return "flags"
    if col == "dev":
        return "dev"
    if c.unit == "ns":
        return "time"
    if c.unit == "bytes" or col == "result":
        return "size"
    return "int"


FIELDS: dict[str, Field] = {c.name: Field(c.name, _kind_of(c.name), c.doc) for c in COLUMN_BY_NAME.values()}
FIELDS["source"] = Field("source", "str", "capture a merged event came from (host or capture id)")
FIELDS["service"] = Field("service", "time", "block layer: latency minus queue time")
FIELDS["errno"] = Field("errno", "errno", "error number when result < 0, else 0")
FIELDS["end"] = Field("end", "time", "end of the I/O: ts + lat")
ALIASES: dict[str, str] = {"latency": "lat", "size": "bytes", "process": "comm", "file": "path"}

_ERRNO_CODE: dict[str, int] = {name: code for code, name in _errno.errorcode.items()}
_FLAG_CODE: dict[str, int] = {name: bit for bit, name in FLAGS.items()}

_U64_MAX = (1 << 64) - 1


def field_values(chunk: ChunkLike, name: str) -> np.ndarray:
    """The numeric values of ``name`` in ``chunk``, derived fields included."""
    if name == "service":
        lat = chunk.column("lat")
        q = chunk.column("queue")
        return np.where(q <= lat, lat - np.minimum(q, lat), 0).astype(np.uint64, copy=False)
    if name == "errno":
        r = chunk.column("result")
        return np.where(r < 0, -r, 0)
    if name == "end":
        return chunk.column("ts") + chunk.column("lat")
    return chunk.column(name)


def string_codes(chunk: ChunkLike, name: str) -> tuple[np.ndarray, list[str]]:
    """Codes and dictionary of a string column (a missing column reads as all "")."""
    d = chunk.dicts.get(name)
    if d is None or name not in chunk.columns:
        return np.zeros(chunk.n, dtype=np.uint32), [""]
    return chunk.columns[name], d


# -- tokens ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # NAME NUMBER STRING DEV OP END
    text: str
    start: int
    end: int
    value: Any = None


_KEYWORDS = {"and", "or", "not", "in", "has", "true", "false"}
_OPS = ("==", "!=", "<=", ">=", "=~", "!~", "&&", "||", "<", ">", "=", "!", "(", ")", ",", "-")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_NUM_RE = re.compile(r"(0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)([A-Za-zµ]*)")
_DEV_RE = re.compile(r"(\d+):(\d+)")


def tokenize(text: str) -> list[Token]:
    toks: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "\"'":
            j = i + 1
            buf: list[str] = []
            while j < n and text[j] != ch:
                if text[j] == "\\" and j + 1 < n:
                    buf.append(text[j + 1])
                    j += 2
                    continue
                buf.append(text[j])
                j += 1
            if j >= n:
                raise ExprError("unterminated string", text, i, n)
            toks.append(Token("STRING", text[i : j + 1], i, j + 1, "".join(buf)))
            i = j + 1
            continue
        m = _DEV_RE.match(text, i)
        if m:
            major, minor = int(m.group(1)), int(m.group(2))
            if major >= 1 << 12 or minor >= 1 << 20:
                raise ExprError("device number out of range", text, i, m.end())
            toks.append(Token("DEV", m.group(0), i, m.end(), (major << 20) | minor))
            i = m.end()
            continue
        if ch.isdigit() or (ch == "." and i + 1 < n and text[i + 1].isdigit()):
            m = _NUM_RE.match(text, i)
            assert m is not None
            toks.append(Token("NUMBER", m.group(0), i, m.end(), (m.group(1), m.group(2))))
            i = m.end()
            continue
        m = _NAME_RE.match(text, i)
        if m:
            word = m.group(0)
            kind = "KW" if word.lower() in _KEYWORDS else "NAME"
            toks.append(Token(kind, word, i, m.end(), word.lower() if kind == "KW" else word))
            i = m.end()
            continue
        for op in _OPS:
            if text.startswith(op, i):
                toks.append(Token("OP", op, i, i + len(op), op))
                i += len(op)
                break
        else:
            raise ExprError(f"unexpected character {ch!r}", text, i)
    toks.append(Token("END", "", n, n))
    return toks


# -- AST nodes ------------------------------------------------------------------------------

_CMP = {"==", "!=", "<", "<=", ">", ">="}
_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


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


# -- parser ---------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    # helpers
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def next(self) -> Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def error(self, msg: str, tok: Token | None = None) -> ExprError:
        t = tok or self.tok
        return ExprError(msg, self.text, t.start, t.end if t.end > t.start else t.start + 1)

    def is_op(self, *ops: str) -> bool:
        return self.tok.kind == "OP" and self.tok.value in ops

    def is_kw(self, *kws: str) -> bool:
        return self.tok.kind == "KW" and self.tok.value in kws

    def expect_op(self, op: str, what: str) -> Token:
        if not self.is_op(op):
            raise self.error(f"expected {what}" + self._found())
        return self.next()

    def _found(self) -> str:
        t = self.tok
        return ", found end of expression" if t.kind == "END" else f", found {t.text!r}"

    # grammar
    def parse(self) -> Node:
        if self.tok.kind == "END":
            raise self.error("empty expression")
        node = self.or_expr()
        if self.tok.kind != "END":
            if self.is_op(")"):
                raise self.error("unbalanced parenthesis: ')' without '('")
            raise self.error("expected 'and', 'or' or end of expression" + self._found())
        return node

    def or_expr(self) -> Node:
        parts = [self.and_expr()]
        while self.is_kw("or") or self.is_op("||"):
            self.next()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else Or(parts)

    def and_expr(self) -> Node:
        parts = [self.not_expr()]
        while self.is_kw("and") or self.is_op("&&"):
            self.next()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else And(parts)

    def not_expr(self) -> Node:
        if self.is_kw("not") or self.is_op("!"):
            self.next()
            return Not(self.not_expr())
        return self.primary()

    def primary(self) -> Node:
        t = self.tok
        if self.is_op("("):
            self.next()
            node = self.or_expr()
            if not self.is_op(")"):
                if self.tok.kind == "END":
                    raise ExprError("unbalanced parenthesis: '(' is never closed", self.text, t.start)
                raise self.error("expected ')'" + self._found())
            self.next()
            return node
        if self.is_kw("true", "false"):
            self.next()
            return Const(t.value == "true")
        if t.kind == "NAME":
            fld = self.field_name(t)
            if fld is not None:
                self.next()
                return self.predicate(fld, t)
        if t.kind == "NAME":
            raise self.unknown_field(t)
        if t.kind in ("NUMBER", "STRING", "DEV") or self.is_op("-"):
            # value CMP field
            vstart = self.i
            self.skip_value()
            if not (self.tok.kind == "OP" and self.tok.value in _CMP | {"="}):
                raise self.error("expected a comparison (==, !=, <, <=, >, >=)" + self._found())
            op = "==" if self.next().value == "=" else self.toks[self.i - 1].value
            ft = self.tok
            fld = self.field_name(ft) if ft.kind == "NAME" else None
            if fld is None:
                if ft.kind == "NAME":
                    raise self.unknown_field(ft)
                raise self.error("expected a field name" + self._found())
            self.next()
            end = self.i
            self.i = vstart
            node = self.comparison(fld, _FLIP[op], ft)
            self.i = end
            return node
        if t.kind == "END":
            raise self.error("expression ends too early: expected a field, 'not' or '('")
        if self.is_op(")"):
            raise self.error("unbalanced parenthesis: ')' without '('")
        raise self.error(f"expected a field, 'not' or '(', found {t.text!r}")

    def skip_value(self) -> None:
        if self.is_op("-"):
            self.next()
        if self.tok.kind not in ("NUMBER", "STRING", "DEV", "NAME"):
            raise self.error("expected a value" + self._found())
        self.next()

    def field_name(self, t: Token) -> str | None:
        name = ALIASES.get(t.value.lower(), t.value.lower()) if t.kind == "NAME" else None
        return name if name in FIELDS else None

    def unknown_field(self, t: Token) -> ExprError:
        names = ", ".join(sorted(FIELDS))
        return self.error(f"unknown field {t.text!r} (fields: {names})", t)

    def predicate(self, fld: str, ftok: Token) -> Node:
        kind = FIELDS[fld].kind
        if self.is_kw("not"):
            nt = self.next()
            if not self.is_kw("in"):
                raise self.error("expected 'in' after 'not'", nt)
            self.next()
            return Not(self.in_list(fld))
        if self.is_kw("in"):
            self.next()
            return self.in_list(fld)
        if self.is_kw("has"):
            ht = self.next()
            if kind != "flags":
                raise self.error(f"'has' applies to flags, not to {fld}", ht)
            bits = self.flag_value()
            while self.is_op(","):
                self.next()
                bits |= self.flag_value()
            return HasFlags(bits)
        if self.is_op("=~", "!~"):
            ot = self.next()
            if kind != "str":
                raise self.error(f"{ot.text} (regular expression) applies to strings, not to {fld}", ot)
            st = self.tok
            if st.kind != "STRING":
                raise self.error("expected a quoted regular expression" + self._found())
            self.next()
            try:
                node: Node = StrMatch(fld, [st.value], regex=True)
            except re.error as exc:
                raise self.error(f"bad regular expression: {exc}", st) from exc
            return Not(node) if ot.value == "!~" else node
        if self.tok.kind == "OP" and self.tok.value in _CMP | {"="}:
            op = self.next().value
            return self.comparison(fld, "==" if op == "=" else op, ftok)
        raise self.error(f"expected a comparison, 'in' or 'has' after {ftok.text!r}" + self._found())

    def comparison(self, fld: str, op: str, ftok: Token) -> Node:
        kind = FIELDS[fld].kind
        if kind == "str":
            vt = self.tok
            if op not in ("==", "!="):
                raise self.error(f"{fld} is a string: compare it with == or != (globs allowed)", vt)
            s = self.string_value()
            node: Node = StrMatch(fld, [s])
            return Not(node) if op == "!=" else node
        v = self.value(fld)
        return Compare(fld, op, v)

    def in_list(self, fld: str) -> Node:
        open_tok = self.tok
        self.expect_op("(", "'(' after 'in'")
        kind = FIELDS[fld].kind
        strs: list[str] = []
        nums: list[int] = []
        while True:
            if self.is_op(")"):
                if not strs and not nums:
                    raise self.error("empty list")
                break
            if kind == "str":
                strs.append(self.string_value())
            else:
                nums.append(self.value(fld))
            if self.is_op(","):
                self.next()
                continue
            if self.is_op(")"):
                break
            if self.tok.kind == "END":
                raise ExprError("unbalanced parenthesis: '(' is never closed", self.text, open_tok.start)
            raise self.error("expected ',' or ')'" + self._found())
        self.next()
        if kind == "str":
            return StrMatch(fld, strs)
        return InSet(fld, nums)

    def string_value(self) -> str:
        t = self.tok
        if t.kind == "STRING":
            self.next()
            return str(t.value)
        if t.kind in ("NAME", "NUMBER"):
            self.next()
            return t.text
        raise self.error("expected a string" + self._found())

    def flag_value(self) -> int:
        t = self.tok
        if t.kind == "NAME" and t.value.lower() in _FLAG_CODE:
            self.next()
            return _FLAG_CODE[t.value.lower()]
        if t.kind == "NUMBER":
            return self.number(t, "int")
        raise self.error(f"unknown flag {t.text!r} (flags: {', '.join(_FLAG_CODE)})")

    def value(self, fld: str) -> int:
        kind = FIELDS[fld].kind
        neg = False
        if self.is_op("-"):
            self.next()
            neg = True
        t = self.tok
        if t.kind == "NUMBER":
            v = self.number(t, kind)
        elif t.kind == "DEV":
            if kind != "dev":
                raise self.error(f"major:minor is a device number; {fld} is not a device", t)
            self.next()
            v = int(t.value)
        elif t.kind in ("NAME", "STRING"):
            v = self.name_value(fld, kind, t)
        elif t.kind == "END":
            raise self.error(f"expected a value for {fld}, found end of expression")
        else:
            raise self.error(f"expected a value for {fld}, found {t.text!r}")
        return -v if neg else v

    def name_value(self, fld: str, kind: str, t: Token) -> int:
        word = str(t.value)
        key = word.lower()
        if kind == "enum":
            table, codes = (LAYERS, LAYER_CODE) if fld == "layer" else (OPS, OP_CODE)
            if key in codes:
                self.next()
                return codes[key]
            raise self.error(f"unknown {fld} {word!r} (known: {', '.join(table.values())})", t)
        if kind in ("errno", "size") and fld in ("errno", "result") and word.upper() in _ERRNO_CODE:
            self.next()
            return _ERRNO_CODE[word.upper()]
        if kind == "flags" and key in _FLAG_CODE:
            self.next()
            return _FLAG_CODE[key]
        if kind == "dev":
            raise self.error(f"a device is written major:minor (e.g. 8:0), not {word!r}", t)
        if t.kind == "STRING":
            raise self.error(f"{fld} is a number, not a string", t)
        if self.field_name(t) is not None:
            raise self.error(f"comparing two fields is not supported ({fld} vs {word})", t)
        raise self.error(f"expected a number for {fld}, found {word!r}", t)

    def number(self, t: Token, kind: str) -> int:
        raw, unit = t.value
        self.next()
        try:
            base: float | int = (
                int(raw, 16) if raw.lower().startswith("0x") else (int(raw) if raw.isdigit() else float(raw))
            )
        except ValueError as exc:  # pragma: no cover - the tokenizer checked the shape
            raise self.error(f"bad number {raw!r}", t) from exc
        factor = 1
        ut = Token("UNIT", unit, t.start + len(raw), t.end)
        if unit:
            if kind == "time":
                f = duration_factor(unit)
                if f is None:
                    hint = " (that is a size unit)" if size_factor(unit) else ""
                    raise self.error(f"bad unit {unit!r} for a duration{hint}: use ns, us, ms or s", ut)
                factor = f
            elif kind in ("size", "int"):
                f = size_factor(unit)
                if f is None:
                    hint = " (that is a duration unit)" if duration_factor(unit) else ""
                    raise self.error(f"bad unit {unit!r} for a size{hint}: use K, M or G", ut)
                factor = f
            else:
                raise self.error(f"bad unit {unit!r}: this field takes no unit", ut)
        elif isinstance(base, float) and kind not in ("time", "size", "int"):
            raise self.error("expected a whole number", t)
        value = base * factor
        if isinstance(value, float):
            value = round(value)
        if abs(value) > _U64_MAX:
            raise self.error("number out of range", t)
        return int(value)


# -- the compiled filter --------------------------------------------------------------------


class Filter:
    """A compiled expression: ``mask(chunk)`` for events, ``can_match(info)`` for chunks."""

    def __init__(self, text: str, root: Node) -> None:
        self.text = text
        self.root = root

    @property
    def is_trivial(self) -> bool:
        return isinstance(self.root, Const) and self.root.value

    def mask(self, chunk: ChunkLike) -> np.ndarray:
        return self.root.mask(chunk)

    def can_match(self, info: Any) -> bool:
        """False when the index says no event of the chunk can match (the chunk can be skipped)."""
        return self.root.bounds(info)[0]

    def must_match(self, info: Any) -> bool:
        """True when the index says every event of the chunk matches (no mask needed)."""
        return self.root.bounds(info)[1]

    def fields(self) -> set[str]:
        return self.root.fields()

    def __and__(self, other: Filter) -> Filter:
        if self.is_trivial:
            return other
        if other.is_trivial:
            return self
        return Filter(f"({self.text}) and ({other.text})", And([self.root, other.root]))

    def __repr__(self) -> str:
        return f"Filter({self.text!r})"


MATCH_ALL = Filter("true", Const(True))


def parse(text: str | None) -> Filter:
    """Compile an expression; None or blank matches every event."""
    if text is None or not text.strip():
        return MATCH_ALL
    return Filter(text.strip(), _Parser(text).parse())


def quote(s: str) -> str:
    """A string literal for the expression language."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def shortcuts(
    *,
    pids: Sequence[int] = (),
    comms: Sequence[str] = (),
    min_latency: str | None = None,
    layers: Iterable[str] = (),
    ops: Iterable[str] = (),
) -> str:
    """The expression text for the CLI's ``--pid --comm --min-latency --layer --op`` options."""
    parts: list[str] = []
    if pids:
        parts.append("pid in (" + ", ".join(str(int(p)) for p in pids) + ")")
    if comms:
        parts.append("comm in (" + ", ".join(quote(c) for c in comms) + ")")
    if min_latency:
        parse_duration(min_latency)  # a unit is required here: "5" alone is ambiguous
        parts.append(f"lat >= {min_latency.strip()}")
    lay = [x.strip() for v in layers for x in v.split(",") if x.strip()]
    if lay:
        parts.append("layer in (" + ", ".join(lay) + ")")
    op = [x.strip() for v in ops for x in v.split(",") if x.strip()]
    if op:
        parts.append("op in (" + ", ".join(op) + ")")
    return " and ".join(parts)


def combine(*texts: str | None) -> Filter:
    """Parse each non-empty expression and AND them (each parsed alone, so error carets point
    into the text the user wrote)."""
    out = MATCH_ALL
    for t in texts:
        if t and t.strip():
            out = out & parse(t)
    return out
