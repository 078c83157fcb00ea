"""The fields an expression can name: the schema's columns (driven by schema.COLUMNS, so
a column added there is a field here) plus derived ones (service, errno, end, source),
with the kind that decides which units and names their values take."""

from __future__ import annotations

import errno as _errno
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from aether_rec.errors import UsageError
from aether_rec.schema import COLUMN_BY_NAME, ENUMS, FLAGS

# -- the chunk protocol the expressions need ---------------------------------------------------


class ChunkLike(Protocol):
    n: int
    columns: dict[str, np.ndarray]
    dicts: dict[str, list[str]]

    def column(self, name: str) -> np.ndarray: ...


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
    if col in ENUMS:
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

ERRNO_CODE: dict[str, int] = {name: code for code, name in _errno.errorcode.items()}
FLAG_CODE: dict[str, int] = {name: bit for bit, name in FLAGS.items()}

U64_MAX = (1 << 64) - 1


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
        return end_times(chunk.column("ts"), chunk.column("lat"))
    return chunk.column(name)


def end_times(ts: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """``ts + lat`` as u64, saturating at 2**64 - 1 instead of wrapping (a hostile lat)."""
    end = ts.astype(np.uint64) + lat.astype(np.uint64)
    wrapped = end < ts
    if wrapped.any():
        end[wrapped] = np.uint64(2**64 - 1)
    return end


def string_codes(chunk: ChunkLike, name: str) -> tuple[np.ndarray, list[str]]:
    """Codes and dictionary of a string column (a missing column reads as all "")."""
    d = chunk.dicts.get(name)
    if d is None or name not in chunk.columns:
        return np.zeros(chunk.n, dtype=np.uint32), [""]
    return chunk.columns[name], d


def enum_code(fld: str, word: str, where: str = "") -> int:
    """The code of a layer, op or fdkind name; UsageError naming the known ones otherwise."""
    table = ENUMS[fld]
    code = {v: k for k, v in table.items()}.get(word.lower())
    if code is None:
        prefix = f"{where}: " if where else ""
        raise UsageError(f"{prefix}unknown {fld} {word!r} (known: {', '.join(table.values())})")
    return code
