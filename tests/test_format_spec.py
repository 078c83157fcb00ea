"""format/SPEC.md says what the code does: the worked example is the vector byte for byte,
and the limits, schema, layer, op and flag tables match the code's definitions."""

from __future__ import annotations

import re
from pathlib import Path

from aether_rec.format import limits
from aether_rec.format.blocks import MAGIC, TRAILER_MAGIC, TRAILER_SIZE
from aether_rec.schema import COLUMNS, FD_KINDS, FLAGS, LAYERS, OPS

ROOT = Path(__file__).resolve().parent.parent
SPEC = (ROOT / "format" / "SPEC.md").read_text()


def section(title: str) -> str:
    start = SPEC.index(f"\n## {title}")
    end = SPEC.find("\n## ", start + 1)
    return SPEC[start:end]


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_worked_example_is_the_vector_byte_for_byte() -> None:
    data = (ROOT / "format" / "vectors" / "001-minimal.aio").read_bytes()
    example = section("21. Worked example")
    assert "2327 bytes" in example and len(data) == 2327
    checked = 0
    for line in example.splitlines():
        m = re.match(r"^([0-9a-f]{4})  ((?:[0-9a-f]{2} )*[0-9a-f]{2})(?:\s|$)", line)
        if not m:
            continue
        offset = int(m.group(1), 16)
        raw = bytes.fromhex(m.group(2))
        assert data[offset : offset + len(raw)] == raw, line
        checked += len(raw)
    assert checked > 700  # the preamble, parts of the header, all of CHNK, INDX and TRLR
    covered: set[int] = set()
    for line in example.splitlines():
        m = re.match(r"^([0-9a-f]{4})  ((?:[0-9a-f]{2} )*[0-9a-f]{2})(?:\s|$)", line)
        if m:
            o = int(m.group(1), 16)
            covered.update(range(o, o + len(bytes.fromhex(m.group(2)))))
    assert set(range(0x684, len(data))) <= covered  # every byte from the chunk on is shown


def test_limits_table_matches_limits_py() -> None:
    rows = {r[0]: r[1] for r in table_rows(section("18. Limits")) if r[0].startswith("MAX_")}
    names = [n for n in dir(limits) if n.startswith("MAX_")]
    assert sorted(rows) == sorted(names)
    for name in names:
        value = getattr(limits, name)
        written = rows[name].split()[0].replace(",", "")
        assert int(written) == value, (name, rows[name])
    text = section("18. Limits")
    assert f"| RESYNC_READ_FACTOR  | {limits.RESYNC_READ_FACTOR} " in text
    ml = limits.MSGPACK_LIMITS
    assert f"{ml['max_str_len']:,} bytes" in text and f"{ml['max_array_len']:,} elements" in text
    assert f"{ml['max_map_len']:,} pairs" in text and ml["max_ext_len"] == 0


def test_column_table_matches_schema() -> None:
    rows = table_rows(section("11. The event schema").split("### 11.2")[0])
    cols = [r for r in rows if r[0].startswith("`")]
    assert [r[0].strip("`") for r in cols] == [c.name for c in COLUMNS]
    for row, col in zip(cols, COLUMNS):
        assert row[1].strip("`") == col.type, col.name
        assert row[2] == col.unit, col.name
        assert row[3] == (f'"{col.default}"' if col.is_str else str(col.default)), col.name


def test_code_tables_match_schema() -> None:
    text = section("11. The event schema")
    layers = text.split("### 11.2")[1].split("### 11.3")[0]
    assert {int(r[0]): r[1].strip("`") for r in table_rows(layers) if r[0].isdigit()} == LAYERS
    ops_text = text.split("### 11.3")[1].split("### 11.4")[0]
    ops = {}
    for row in table_rows(ops_text):
        for code, name in zip(row[0::2], row[1::2]):
            if code.isdigit():
                ops[int(code)] = name.strip("`")
    assert ops == OPS
    flags_text = text.split("### 11.4")[1].split("### 11.5")[0]
    flags = {int(r[1], 16): r[2].strip("`") for r in table_rows(flags_text) if r[0].isdigit()}
    assert flags == FLAGS
    kinds_text = text.split("### 11.5")[1]
    assert {int(r[0]): r[1].strip("`") for r in table_rows(kinds_text) if r[0].isdigit()} == FD_KINDS


def test_since_column_of_the_schema_matches_the_spec() -> None:
    """Columns added by 1.1 say so in the spec; the 1.0 ones do not."""
    rows = table_rows(section("11. The event schema").split("### 11.2")[0])
    for row, col in zip([r for r in rows if r[0].startswith("`")], COLUMNS):
        assert ("Since 1.1." in row[4]) == (col.since == 1), col.name


def test_framing_constants() -> None:
    pre = section("3. Preamble")
    assert " ".join(f"{b:02X}" for b in MAGIC) in pre
    trl = section("10. TRLR: the trailer")
    assert TRAILER_MAGIC.decode() in trl and f"always {TRAILER_SIZE} bytes" in trl
