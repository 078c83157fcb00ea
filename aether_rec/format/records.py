"""The small records of a capture, each with its paired encode and decode (MCAP's
records.py habit): what a LOSS block holds, and the index rows for LOSS and META blocks.
Chunk summaries and their index rows are ``ChunkInfo`` (format/chunk.py).

Every ``from_*`` reads untrusted data: integers go through ``checked_int`` and anything
malformed raises DamagedCaptureError (format/SPEC.md, sections 7 and 9).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aether_rec.errors import DamagedCaptureError
from aether_rec.format.blocks import checked_int

LOSS_DOC_KEYS = ("cpu", "count", "t0", "t1", "kind")


@dataclass
class Loss:
    """``count`` events lost on ``cpu`` between t_first and t_last (CLOCK_MONOTONIC ns),
    of a kind from schema.LOSS_KINDS. The one loss record of the project: the recorder's
    transports report these, the writer stores them, readers return them."""

    cpu: int
    count: int
    t_first: int
    t_last: int
    kind: str
    offset: int = -1  # of the LOSS block in its file (-1: not stored in a file)

    # -- the LOSS block (section 7) --------------------------------------------------
    def to_doc(self) -> dict[str, Any]:
        return {"cpu": int(self.cpu), "count": int(self.count), "t0": int(self.t_first),
                "t1": int(self.t_last), "kind": str(self.kind)}

    @classmethod
    def from_doc(cls, doc: Any, offset: int = -1) -> Loss:
        if not isinstance(doc, dict):
            raise DamagedCaptureError("loss block is not a map")
        cpu, count, t0, t1 = (checked_int(doc.get(k), f"loss {k}") for k in ("cpu", "count", "t0", "t1"))
        return cls(cpu, count, t0, t1, str(doc.get("kind", "")), offset)

    # -- its index row (section 9): [offset, cpu, count, t0, t1, kind] ---------------
    def to_row(self) -> list[Any]:
        d = self.to_doc()
        return [int(self.offset), d["cpu"], d["count"], d["t0"], d["t1"], d["kind"]]

    @classmethod
    def from_row(cls, row: Any) -> Loss:
        if not isinstance(row, (list, tuple)) or len(row) < 6:
            raise DamagedCaptureError("index loss entry is malformed")
        v = [checked_int(x, "index loss entry") for x in row[:5]]
        return cls(v[1], v[2], v[3], v[4], str(row[5]), v[0])

    def moved(self, shift: int) -> Loss:
        """The same loss with its times shifted by ``shift`` ns (never below 0)."""
        return Loss(self.cpu, self.count, max(0, self.t_first + shift), max(0, self.t_last + shift),
                    self.kind, -1)


@dataclass
class MetaRef:
    """The index row of a META block (section 9): where it is and which table it holds."""

    offset: int
    table: str

    def to_row(self) -> list[Any]:
        return [int(self.offset), str(self.table)]

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> MetaRef:
        if not isinstance(row, (list, tuple)) or len(row) < 2:
            raise DamagedCaptureError("index meta entry is malformed")
        return cls(checked_int(row[0], "index meta entry"), str(row[1]))


@dataclass
class Meta:
    """A META block (section 8): rows of metadata table ``table``. Rows that are not maps
    (damage) are dropped when reading."""

    table: str
    rows: list[dict[str, Any]]
    offset: int = -1

    def to_doc(self) -> dict[str, Any]:
        return {"table": self.table, "rows": self.rows}

    @classmethod
    def from_doc(cls, doc: Any, offset: int = -1) -> Meta:
        if not isinstance(doc, dict):
            raise DamagedCaptureError("meta block is not a map")
        table, rows = doc.get("table"), doc.get("rows")
        if not isinstance(table, str) or not isinstance(rows, list):
            raise DamagedCaptureError("meta block is malformed")
        return cls(table, [r for r in rows if isinstance(r, dict)], offset)
