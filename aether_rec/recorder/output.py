"""The recorder's output streams and their names. Capture files themselves are created by
aether_rec.format.writer.create_output (exclusive, 0600, never through a symlink), shared
with every tool that writes a capture; this module adds stdout and the numbered names of
a rotating recording (aether_rec.recorder.rotation switches between them)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from aether_rec.format.writer import create_output, refuse_reason

__all__ = ["StdoutStream", "create_output", "file_name", "refuse_reason", "rotated_name", "stdout_stream"]

STDOUT_NAME = "<stdout>"


def rotated_name(output: str, index: int) -> str:
    """``run.aio`` -> ``run.0001.aio`` (index from 1)."""
    p = Path(output)
    suffix = p.suffix or ".aio"
    stem = p.name[: -len(p.suffix)] if p.suffix else p.name
    return str(p.with_name(f"{stem}.{index:04d}{suffix}"))


def file_name(output: str, index: int, rotating: bool, to_stdout: bool) -> str:
    """File ``index`` (from 1) of a recording into ``output``: OUTPUT itself, or numbered
    when rotating (and for the files a SIGHUP starts: run.aio, then run.0002.aio, ...)."""
    if to_stdout:
        return STDOUT_NAME
    if rotating or index > 1:
        return rotated_name(output, index)
    return output


class StdoutStream(io.RawIOBase):
    """Unbuffered writes to fd 1 (never closed here): a write that fails (a reader that
    went away) leaves nothing in a buffer for the interpreter to trip over at exit.
    ``blocked`` is true while a write waits for the reader, so that a second stop signal
    can give up on a reader that does not read (see Session._on_signal)."""

    name = STDOUT_NAME

    def __init__(self) -> None:
        super().__init__()
        self.blocked = False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return 1

    def write(self, b: Any) -> int:
        self.blocked = True
        try:
            return os.write(1, b)
        finally:
            self.blocked = False


def stdout_stream() -> StdoutStream:
    return StdoutStream()
