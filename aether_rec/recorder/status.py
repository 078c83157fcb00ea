"""What a recording tells the user: the live status line while it runs, and the result
with its one-line summary when it ends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO

from aether_rec.recorder.losses import real_losses

#: said after the summary when events were lost
LOSS_ADVICE = (
    "events were lost: they are recorded as loss blocks ('aether-rec info' shows them); "
    "a bigger --buffer-pages or a --min-latency/--pid filter reduces losses"
)


@dataclass
class RecordResult:
    files: list[str]
    events: int
    bytes: int
    duration_s: float
    lost: dict[str, int]
    counters: dict[str, int]
    exit_code: int = 0
    stop_reason: str = ""


def summary_line(r: RecordResult) -> str:
    rate = r.events / r.duration_s if r.duration_s > 0 else 0.0
    per = r.bytes / r.events if r.events else 0.0
    files = r.files[0] if len(r.files) == 1 else f"{len(r.files)} files ({r.files[0]} .. {r.files[-1]})"
    real = real_losses(r.lost)
    lost = sum(real.values())
    parts = ", ".join(f"{k} {v:,}" for k, v in sorted(real.items()))
    line = (
        f"recorded {r.events:,} events in {r.duration_s:.1f} s ({rate:,.0f}/s) to {files}: "
        f"{r.bytes:,} bytes ({per:.1f} B/event); lost {lost:,}" + (f" ({parts})" if parts else "")
    )
    if r.lost.get("unmatched"):
        line += f"; {r.lost['unmatched']:,} completions without a recorded start (in flight at start)"
    if r.stop_reason:
        line += f"; stopped by {r.stop_reason}"
    return line


class StatusLine:
    """The live line on stderr (``--status``, default: when stderr is a terminal),
    rewritten in place and cleared before any other message."""

    def __init__(self, err: IO[str], enabled: bool | None) -> None:
        self.err = err
        self.enabled = enabled if enabled is not None else err.isatty()
        self._shown = False

    def show(self, events: int, elapsed: float, lost: dict[str, int], written: int) -> None:
        elapsed = max(elapsed, 1e-9)
        n_lost = sum(real_losses(lost).values())
        line = (
            f"\raether-rec: {events:,} events  {events / elapsed:,.0f}/s  "
            f"lost {n_lost:,}  written {written / 1048576:.1f} MiB  {elapsed:.0f}s "
        )
        self.err.write(line)
        self.err.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.err.write("\r\033[K")
            self.err.flush()
            self._shown = False
