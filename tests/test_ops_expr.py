"""The filter language: masks agree with a per-event reference, the index push-down is sound,
and every malformed expression is refused with a caret under the bad token."""

from __future__ import annotations

import fnmatch
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ops_common import random_chunk

from aether_rec.errors import UsageError
from aether_rec.ops.expr import ExprError, parse, shortcuts, tokenize

Event = dict[str, Any]
Pred = Callable[[Event], bool]

CMP: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
SIZES = {"": 1, "K": 1024, "M": 1 << 20}


def _events(chunk: Any) -> list[Event]:
    cols = {k: (chunk.strings(k) if chunk.is_str(k) else chunk.columns[k]) for k in chunk.columns}
    return [
        {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in cols.items()} for i in range(chunk.n)
    ]


@st.composite
def atoms(draw: st.DrawFn) -> tuple[str, Pred]:
    kind = draw(st.sampled_from(["time", "size", "int", "enum", "str", "flags", "errno", "service", "in"]))
    op = draw(st.sampled_from(sorted(CMP)))
    f = CMP[op]
    if kind == "time":
        field = draw(st.sampled_from(["lat", "queue", "ts"]))
        unit = draw(st.sampled_from(sorted(UNITS)))
        v = draw(st.integers(0, 20_000 if unit != "s" else 5))
        return f"{field} {op} {v}{unit}", lambda e: f(e[field], v * UNITS[unit])
    if kind == "size":
        field = draw(st.sampled_from(["bytes", "offset", "result"]))
        unit = draw(st.sampled_from(sorted(SIZES)))
        v = draw(st.integers(-2, 5000))
        text = f"{field} {op} {v}{unit}"
        return text, lambda e: f(e[field], v * SIZES[unit])
    if kind == "int":
        field = draw(st.sampled_from(["pid", "tid", "cpu", "fd"]))
        v = draw(st.integers(-2, 8))
        return f"{field} {op} {v}", lambda e: f(e[field], v)
    if kind == "enum":
        if draw(st.booleans()):
            name, code = draw(st.sampled_from([("syscall", 1), ("block", 2)]))
            return f"layer == {name}", lambda e: e["layer"] == code
        names = draw(
            st.lists(st.sampled_from([("read", 1), ("write", 2), ("pread", 3), ("fsync", 11)]), min_size=1)
        )
        codes = {c for _, c in names}
        return f"op in ({', '.join(n for n, _ in names)})", lambda e: e["op"] in codes
    if kind == "str":
        field = draw(st.sampled_from(["comm", "path"]))
        pat = draw(st.sampled_from(["postgres", "k*", "/var/*", "", "*", "ba?h", "/tmp/x"]))
        neg = draw(st.booleans())
        text = f'{field} {"!=" if neg else "=="} "{pat}"'
        return text, lambda e: fnmatch.fnmatchcase(e[field], pat) != neg
    if kind == "flags":
        name, bit = draw(st.sampled_from([("sync", 1), ("direct", 32), ("queued", 128)]))
        return f"flags has {name}", lambda e: (e["flags"] & bit) == bit
    if kind == "errno":
        if draw(st.booleans()):
            return "errno == EIO", lambda e: e["result"] == -5
        return "result == -EAGAIN", lambda e: e["result"] == -11
    if kind == "service":
        v = draw(st.integers(0, 20))
        return f"service {op} {v}ms", lambda e: f(
            e["lat"] - e["queue"] if e["queue"] <= e["lat"] else 0, v * 1_000_000
        )
    vals = draw(st.lists(st.integers(0, 7), min_size=1, max_size=6))
    neg = draw(st.booleans())
    text = f"pid {'not in' if neg else 'in'} ({', '.join(map(str, vals))})"
    return text, lambda e: (e["pid"] in vals) != neg


def exprs() -> st.SearchStrategy[tuple[str, Pred]]:
    def extend(inner: st.SearchStrategy[tuple[str, Pred]]) -> st.SearchStrategy[tuple[str, Pred]]:
        def both(pair: tuple[tuple[str, Pred], tuple[str, Pred], str]) -> tuple[str, Pred]:
            (ta, fa), (tb, fb), how = pair
            if how == "and":
                return f"({ta}) and ({tb})", lambda e: fa(e) and fb(e)
            return f"({ta}) or ({tb})", lambda e: fa(e) or fb(e)

        def neg(p: tuple[str, Pred]) -> tuple[str, Pred]:
            t, fn = p
            return f"not ({t})", lambda e: not fn(e)

        return st.one_of(
            st.tuples(inner, inner, st.sampled_from(["and", "or"])).map(both),
            inner.map(neg),
        )

    return st.recursive(atoms(), extend, max_leaves=6)


CHUNK = random_chunk(np.random.default_rng(11), 300)
EVENTS = _events(CHUNK)


@settings(max_examples=300, deadline=None)
@given(exprs())
def test_mask_matches_reference(pair: tuple[str, Pred]) -> None:
    text, pred = pair
    got = parse(text).mask(CHUNK)
    want = np.array([pred(e) for e in EVENTS])
    assert got.dtype == bool
    np.testing.assert_array_equal(got, want, err_msg=text)


@settings(max_examples=300, deadline=None)
@given(exprs(), st.integers(0, 10_000), st.integers(1, 40))
def test_index_pushdown_is_sound(pair: tuple[str, Pred], seed: int, n: int) -> None:
    text, _ = pair
    chunk = random_chunk(np.random.default_rng(seed), n)
    info = chunk.compute_info()
    f = parse(text)
    mask = f.mask(chunk)
    if not f.can_match(info):
        assert not mask.any(), text
    if f.must_match(info):
        assert mask.all(), text


def test_pushdown_skips_what_it_can() -> None:
    chunk = random_chunk(np.random.default_rng(1), 100)
    info = chunk.compute_info()
    assert not parse(f"lat > {info.lat_max}").can_match(info)
    assert not parse(f"ts < {info.t_first}").can_match(info)
    assert parse(f"ts >= {info.t_first}").must_match(info)
    assert not parse("layer == vfs").can_match(info)
    assert not parse("pid == 99").can_match(info)
    assert parse("not (pid == 99)").must_match(info)
    assert not parse("op in (fdatasync, msync)").can_match(info)


def test_example_from_the_issue() -> None:
    f = parse('lat > 5ms and comm == "postgres" and op in (read, pread)')
    want = [e["lat"] > 5_000_000 and e["comm"] == "postgres" and e["op"] in (1, 3) for e in EVENTS]
    np.testing.assert_array_equal(f.mask(CHUNK), want)


def test_syntax_variants() -> None:
    same = [
        "lat > 5ms && !(pid == 3) || comm = bash",
        "(lat > 5000000 and not pid == 3) or comm == 'bash'",
        '5ms < lat AND NOT pid == 3 OR comm == "bash"',
    ]
    masks = [parse(t).mask(CHUNK) for t in same]
    for m in masks[1:]:
        np.testing.assert_array_equal(m, masks[0])
    np.testing.assert_array_equal(parse("dev == 8:0").mask(CHUNK), [e["dev"] == 8 << 20 for e in EVENTS])
    np.testing.assert_array_equal(parse("bytes >= 1M").mask(CHUNK), [e["bytes"] >= 1 << 20 for e in EVENTS])
    np.testing.assert_array_equal(parse("lat < 1.5ms").mask(CHUNK), [e["lat"] < 1_500_000 for e in EVENTS])
    np.testing.assert_array_equal(
        parse('comm =~ "^k"').mask(CHUNK), [e["comm"].startswith("k") for e in EVENTS]
    )
    np.testing.assert_array_equal(parse("latency > 1ms").mask(CHUNK), parse("lat > 1ms").mask(CHUNK))
    assert parse(None).is_trivial and parse("  ").is_trivial


def test_out_of_range_constants() -> None:
    np.testing.assert_array_equal(parse("lat > -1").mask(CHUNK), np.ones(CHUNK.n, bool))
    np.testing.assert_array_equal(parse("cpu == 70000").mask(CHUNK), np.zeros(CHUNK.n, bool))
    np.testing.assert_array_equal(parse("pid < -5").mask(CHUNK), np.zeros(CHUNK.n, bool))


def test_string_with_escapes_and_missing_column() -> None:
    toks = tokenize(r'comm == "a\"b"')
    assert toks[2].value == 'a"b'
    from aether_rec.format.chunk import Chunk

    bare = Chunk(3, {"lat": np.array([1, 2, 3], dtype=np.uint64)})
    np.testing.assert_array_equal(parse('comm == ""').mask(bare), [True] * 3)
    np.testing.assert_array_equal(parse('source == "x"').mask(bare), [False] * 3)


def test_shortcuts_compose() -> None:
    text = shortcuts(pids=[1, 2], comms=['we"ird'], min_latency="2ms", layers=["block"], ops=["read,write"])
    want = 'pid in (1, 2) and comm in ("we\\"ird") and lat >= 2ms and layer in (block)'
    assert text == want + " and op in (read, write)"
    parse(text)


BAD = [
    # text, message fragment, caret start, caret width
    ("latt > 5ms", "unknown field 'latt'", 0, 4),
    ("lat > 5K", "bad unit 'K' for a duration", 7, 1),
    ("bytes > 3ms", "bad unit 'ms' for a size", 9, 2),
    ("lat > 5 parsecs", "expected 'and', 'or' or end of expression", 8, 7),
    ("(lat > 5ms", "'(' is never closed", 0, 1),
    ("lat > 5ms)", "')' without '('", 9, 1),
    ("op in (read, frob)", "unknown op 'frob'", 13, 4),
    ("layer == disk", "unknown layer 'disk'", 9, 4),
    ('comm > "x"', "comm is a string", 7, 3),
    ("lat >", "expected a value for lat", 5, 1),
    ("lat > 5ms and", "expression ends too early", 13, 1),
    ('comm == "abc', "unterminated string", 8, 4),
    ("pid @ 3", "unexpected character '@'", 4, 1),
    ("pid in ()", "empty list", 8, 1),
    ("pid in (1, 2", "'(' is never closed", 7, 1),
    ("flags has nothing", "unknown flag 'nothing'", 10, 7),
    ("lat has sync", "'has' applies to flags", 4, 3),
    ("dev == sda", "a device is written major:minor", 7, 3),
    ('lat =~ "x"', "applies to strings", 4, 2),
    ("pid == lat", "comparing two fields", 7, 3),
    ("", "empty expression", 0, 1),
    ("lat > 5ms and and", "expected a field", 14, 3),
]


@pytest.mark.parametrize("text,fragment,start,width", BAD)
def test_errors_point_at_the_bad_token(text: str, fragment: str, start: int, width: int) -> None:
    if text == "":
        from aether_rec.ops.expr import Parser

        with pytest.raises(ExprError) as ei:
            Parser(text).parse()
    else:
        with pytest.raises(ExprError) as ei:
            parse(text)
    err = ei.value
    assert isinstance(err, UsageError)
    lines = str(err).split("\n")
    assert fragment in lines[0]
    assert lines[1] == "  " + text
    caret = lines[2][2:]
    assert caret == " " * start + "^" * width, (caret, start, width)
