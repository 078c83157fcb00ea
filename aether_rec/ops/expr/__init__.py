"""The filter expression language: a tokenizer (lexer.py) and a recursive-descent parser
(parser.py) that compile an expression over the fields of fields.py to a tree of nodes
(nodes.py) giving vectorised numpy masks over a chunk. Nothing is ever ``eval``-ed.

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

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from aether_rec.ops.expr.fields import (
    ALIASES,
    FIELDS,
    ChunkLike,
    Field,
    enum_code,
    field_values,
    string_codes,
)
from aether_rec.ops.expr.lexer import ExprError, Token, tokenize
from aether_rec.ops.expr.nodes import And, Compare, Const, HasFlags, InSet, Node, Not, Or, StrMatch
from aether_rec.ops.expr.parser import Parser
from aether_rec.ops.units import parse_duration

__all__ = [
    "ALIASES", "FIELDS", "MATCH_ALL", "And", "ChunkLike", "Compare", "Const", "ExprError", "Field",
    "Filter", "HasFlags", "InSet", "Node", "Not", "Or", "Parser", "StrMatch", "Token", "combine",
    "enum_code", "field_values", "parse", "quote", "shortcut_filter", "shortcuts", "string_codes", "tokenize",
]


# -- the compiled filter --------------------------------------------------------------------


class Filter:
    """A compiled expression: ``mask(chunk)`` for events, ``can_match(info)`` for chunks."""

    def __init__(self, text: str, root: Node, notes: Sequence[str] = ()) -> None:
        self.text = text
        self.root = root
        self.notes = list(notes)  # warnings about how the text was read (bare numbers...)

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
        return Filter(f"({self.text}) and ({other.text})", And([self.root, other.root]),
                      self.notes + other.notes)

    def __repr__(self) -> str:
        return f"Filter({self.text!r})"


MATCH_ALL = Filter("true", Const(True))


def parse(text: str | None) -> Filter:
    """Compile an expression; None or blank matches every event."""
    if text is None or not text.strip():
        return MATCH_ALL
    parser = Parser(text)
    root = parser.parse()
    return Filter(text.strip(), root, parser.notes)


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


def shortcut_filter(
    *,
    pids: Sequence[int] = (),
    comms: Sequence[str] = (),
    min_latency: str | None = None,
    layers: Iterable[str] = (),
    ops: Iterable[str] = (),
) -> Filter:
    """The CLI's ``--pid --comm --min-latency --layer --op`` options compiled straight to
    nodes (their text, from ``shortcuts``, is only for showing the selection)."""
    layers, ops = list(layers), list(ops)
    text = shortcuts(pids=pids, comms=comms, min_latency=min_latency, layers=layers, ops=ops)
    nodes: list[Node] = []
    if pids:
        nodes.append(InSet("pid", [int(p) for p in pids]))
    if comms:
        nodes.append(StrMatch("comm", list(comms)))
    if min_latency:
        nodes.append(Compare("lat", ">=", parse_duration(min_latency)))
    lay = [x.strip() for v in layers for x in v.split(",") if x.strip()]
    if lay:
        nodes.append(InSet("layer", [enum_code("layer", x, "--layer") for x in lay]))
    op = [x.strip() for v in ops for x in v.split(",") if x.strip()]
    if op:
        nodes.append(InSet("op", [enum_code("op", x, "--op") for x in op]))
    if not nodes:
        return MATCH_ALL
    return Filter(text, nodes[0] if len(nodes) == 1 else And(nodes))


def combine(*texts: str | None) -> Filter:
    """Parse each non-empty expression and AND them (each parsed alone, so error carets point
    into the text the user wrote)."""
    out = MATCH_ALL
    for t in texts:
        if t and t.strip():
            out = out & parse(t)
    return out
