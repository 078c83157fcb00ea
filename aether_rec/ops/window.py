"""Time windows (``--since/--until``) and the selection every offline command shares: an
expression, a window and the CLI shortcuts, compiled to one ``Filter`` with index push-down."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aether_rec.errors import UsageError
from aether_rec.format.chunk import Chunk
from aether_rec.format.reader import Capture
from aether_rec.ops.expr import MATCH_ALL, Compare, Filter, combine
from aether_rec.ops.units import parse_time_bound


def capture_start(cap: Capture) -> int | None:
    """Monotonic ns of the first event (None for an empty capture)."""
    infos = cap.chunk_infos()
    return min((i.t_first for i in infos if i.n), default=None)


def real_to_mono(cap: Capture, real_ns: int) -> int:
    """Invert the capture's clock mapping (monotonic -> wall clock) at one instant."""
    clock = cap.clock_map()
    if not clock:
        raise UsageError(
            f"{cap.name}: the capture has no wall-clock mapping; give times relative to its start "
            "(e.g. --since +2.5s)"
        )
    return clock.to_mono(real_ns)


def resolve_bound(cap: Capture, text: str | None) -> int | None:
    """``+2.5s`` (from the first event) or an ISO time -> monotonic ns of this capture."""
    if text is None or not str(text).strip():
        return None
    kind, value = parse_time_bound(str(text))
    if kind == "rel":
        start = capture_start(cap)
        return None if start is None else start + value
    return real_to_mono(cap, value)


@dataclass
class Selection:
    """What to keep: an expression plus a time window, resolved for one capture."""

    where: Filter = MATCH_ALL
    t_min: int | None = None  # inclusive, monotonic ns
    t_max: int | None = None  # exclusive
    texts: list[str] = field(default_factory=list)

    @property
    def filter(self) -> Filter:
        """The expression and the window as one filter (window as ``ts`` comparisons, so the
        index skips chunks outside it)."""
        f = self.where
        if self.t_min is not None:
            f = f & Filter(f"ts >= {self.t_min}", Compare("ts", ">=", self.t_min))
        if self.t_max is not None:
            f = f & Filter(f"ts < {self.t_max}", Compare("ts", "<", self.t_max))
        return f

    @property
    def text(self) -> str | None:
        return " and ".join(self.texts) if self.texts else None

    def chunks(self, cap: Capture, **kw: Any) -> Iterator[Chunk]:
        """The matching events of ``cap``, chunk by chunk (empty chunks dropped)."""
        f = self.filter
        it = cap.chunks(
            t_min=self.t_min,
            t_max=None if self.t_max is None else self.t_max - 1,
            where=None if f.is_trivial else f.can_match,
            **kw,
        )
        for chunk in it:
            info = chunk.info
            if f.is_trivial or (info is not None and f.must_match(info)):
                yield chunk
                continue
            mask = f.mask(chunk)
            n = int(np.count_nonzero(mask))
            if n == chunk.n:
                yield chunk
            elif n:
                out = chunk.take(mask)
                out.info = None
                yield out


def select(
    cap: Capture,
    expressions: Sequence[str | None] = (),
    since: str | None = None,
    until: str | None = None,
) -> Selection:
    """Compile expressions (ANDed) and a window for ``cap``."""
    where = combine(*expressions)
    t_min = resolve_bound(cap, since)
    t_max = resolve_bound(cap, until)
    if t_min is not None and t_max is not None and t_max <= t_min:
        raise UsageError(f"--until ({until}) is not after --since ({since})")
    texts = [] if where.is_trivial else [where.text]
    if since:
        texts.append(f"since {since}")
    if until:
        texts.append(f"until {until}")
    return Selection(where, t_min, t_max, texts)
