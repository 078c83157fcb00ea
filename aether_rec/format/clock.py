"""Monotonic -> wall-clock conversion of one capture (format/SPEC.md, section 13), in one
place and in exact integer arithmetic.

A ``ClockMap`` holds a capture's clock mapping pairs ``(mono_ns, real_ns)``. The offset
``real - mono`` is held constant before the first pair and after the last one, and
interpolated linearly between two pairs, rounded to the nearest nanosecond (halves
upwards). Everything is integer arithmetic (int64 when it cannot overflow, Python
integers otherwise), so every tool that shows or compares wall times gets the same
nanosecond for the same event: stats, replay, replay --follow, export, merge, info.

Monotonic values of 2**63 and more (legal u64 ``ts``, never real) and results beyond
the int64 range saturate to the int64 limits instead of wrapping or raising.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported by the array forms only: one instant needs none
    import numpy as np

I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1
_FAST = 1 << 61  # |offset step| * mono step below this: the int64 path cannot overflow


def _i64(v: Any) -> bool:
    return type(v) is int and I64_MIN <= v <= I64_MAX


def pairs_of(header: Mapping[str, Any], rows: Iterable[Mapping[str, Any]] = ()) -> list[tuple[int, int]]:
    """The valid clock pairs of a header's ``clock`` array and ``clock`` META rows."""
    out: list[tuple[int, int]] = []
    clock = header.get("clock") if isinstance(header, Mapping) else None
    for p in clock if isinstance(clock, list) else []:
        if isinstance(p, (list, tuple)) and len(p) == 2 and _i64(p[0]) and _i64(p[1]):
            out.append((p[0], p[1]))
    for row in rows:
        if isinstance(row, Mapping) and _i64(row.get("mono")) and _i64(row.get("real")):
            out.append((row["mono"], row["real"]))
    return out


def _round_div(num: int, den: int) -> int:
    """num / den rounded to the nearest integer, halves upwards (den > 0)."""
    return (2 * num + den) // (2 * den)


class ClockMap:
    """The clock mapping of one capture (build it once: ``Capture.clock_map()``)."""

    def __init__(self, pairs: Iterable[tuple[int, int]] = ()) -> None:
        by_mono: dict[int, int] = {}
        for mono, real in sorted((int(m), int(r)) for m, r in pairs):
            by_mono.setdefault(mono, real)  # one pair per mono: the smallest real
        self.pairs: list[tuple[int, int]] = sorted(by_mono.items())
        monos = [m for m, _ in self.pairs]
        offs = [r - m for m, r in self.pairs]
        self._monos = monos
        self._offs = offs
        steps = [(offs[i + 1] - offs[i], monos[i + 1] - monos[i]) for i in range(len(monos) - 1)]
        self._fast = (all(abs(d) * dm < _FAST and dm < _FAST for d, dm in steps) and bool(self.pairs)
                      and all(abs(o) < _FAST for o in offs) and all(I64_MIN < m < I64_MAX for m in monos))
        self._np: tuple[np.ndarray, np.ndarray] | None = None  # monos and offsets, for _offsets

    # -- what it knows ----------------------------------------------------------------
    def __bool__(self) -> bool:
        return bool(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def array(self) -> np.ndarray:
        """The pairs as an (n, 2) int64 array sorted by mono."""
        import numpy as np

        return np.array(self.pairs, dtype=np.int64).reshape(-1, 2)

    def shifted(self, shift: int) -> list[tuple[int, int]]:
        """The pairs for this capture's events moved by ``shift`` ns of monotonic time."""
        return [(m + shift, r) for m, r in self.pairs]

    # -- one instant, exact ---------------------------------------------------------------
    def offset(self, mono: int) -> int:
        """``real - mono`` at monotonic time ``mono`` (0 when there is no pair)."""
        monos, offs = self._monos, self._offs
        if not monos:
            return 0
        if mono <= monos[0]:
            return offs[0]
        if mono >= monos[-1]:
            return offs[-1]
        lo, hi = 0, len(monos) - 1  # monos[lo] <= mono < monos[hi]
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if monos[mid] <= mono:
                lo = mid
            else:
                hi = mid
        return offs[lo] + _round_div((offs[hi] - offs[lo]) * (mono - monos[lo]), monos[hi] - monos[lo])

    def real(self, mono: int) -> int:
        """Wall-clock ns for monotonic ns ``mono`` (a Python int: never saturates)."""
        return int(mono) + self.offset(int(mono))

    def real_saturating(self, mono: int) -> int:
        """``to_real`` of one value (0 <= mono < 2**64) as a Python int, without numpy: the
        same nanosecond, saturating at the int64 limits as it does."""
        mono = int(mono)
        if mono > I64_MAX:
            return I64_MAX
        return min(max(self.real(mono), I64_MIN), I64_MAX)

    def to_mono(self, real: int) -> int:
        """The smallest monotonic time whose wall time is at or after ``real`` (where wall
        time goes backwards across a clock step, the first such time)."""
        if not self.pairs:
            return int(real)
        m = int(real) - self.offset_for_real(int(real))
        # the estimate is within a few ns: step to the exact boundary
        while self.real(m) >= real and self.real(m - 1) >= real:
            m -= 1
        while self.real(m) < real:
            m += 1
        return m

    def offset_for_real(self, real: int) -> int:
        """Approximate offset at wall time ``real`` (for to_mono's first estimate)."""
        reals = [m + o for m, o in zip(self._monos, self._offs)]
        for i in range(len(reals) - 1):
            if reals[i] <= real < reals[i + 1]:
                dm = self._monos[i + 1] - self._monos[i]
                do = self._offs[i + 1] - self._offs[i]
                if dm + do <= 0:
                    return self._offs[i]
                return self._offs[i] + _round_div(do * (real - reals[i]), dm + do)
        return self._offs[0] if real < reals[0] else self._offs[-1]

    # -- many instants ----------------------------------------------------------------
    def to_real(self, mono: Any) -> np.ndarray:
        """Wall-clock ns (int64 array) for monotonic ns (an int or an array of any integer
        dtype); without pairs the values themselves. Saturates at the int64 limits."""
        import numpy as np

        arr = np.asarray(mono)
        if arr.dtype.kind not in "iu":
            arr = arr.astype(np.int64)
        if arr.dtype.kind == "u" and arr.size and int(arr.max()) > I64_MAX:
            big = arr > np.uint64(I64_MAX)
            m = np.where(big, np.uint64(I64_MAX), arr).astype(np.int64)
        else:
            big = None
            m = arr.astype(np.int64, copy=False)
        if not self.pairs:
            return m.copy() if m is arr else m
        if not self._fast:
            flat = [self.real(int(x)) for x in m.reshape(-1).tolist()]
            out = np.array([min(max(v, I64_MIN), I64_MAX) for v in flat], dtype=np.int64).reshape(m.shape)
        else:
            off = self._offsets(m)
            over = (off > 0) & (m > I64_MAX - np.maximum(off, 0))
            under = (off < 0) & (m < I64_MIN - np.minimum(off, 0))
            with np.errstate(over="ignore"):
                out = m + off
            if over.any() or under.any():
                out = np.where(over, I64_MAX, np.where(under, I64_MIN, out))
        if big is not None and big.any():
            out = np.where(big, I64_MAX, out)
        return out

    def _offsets(self, m: np.ndarray) -> np.ndarray:
        import numpy as np

        if self._np is None:
            self._np = np.array(self._monos, dtype=np.int64), np.array(self._offs, dtype=np.int64)
        monos, offs = self._np
        if len(monos) == 1:
            return np.full(m.shape, offs[0], dtype=np.int64)
        mc = np.clip(m, monos[0], monos[-1])
        seg = np.clip(np.searchsorted(monos, mc, side="right") - 1, 0, len(monos) - 2)
        dx = mc - monos[seg]
        den = monos[seg + 1] - monos[seg]
        num = (offs[seg + 1] - offs[seg]) * dx
        out: np.ndarray = offs[seg] + (2 * num + den) // (2 * den)
        return out
