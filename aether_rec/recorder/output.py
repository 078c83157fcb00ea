"""The recorder's output streams. Capture files themselves are created by
aether_rec.format.writer.create_output (exclusive, 0600, never through a symlink), shared
with every tool that writes a capture; this module adds stdout."""

from __future__ import annotations

import io
import os
from typing import Any

from aether_rec.format.writer import create_output, refuse_reason

__all__ = ["StdoutStream", "create_output", "refuse_reason", "stdout_stream"]


class StdoutStream(io.RawIOBase):
    """Unbuffered writes to fd 1 (never closed here): a write that fails (a reader that
    went away) leaves nothing in a buffer for the interpreter to trip over at exit.
    ``blocked`` is true while a write waits for the reader, so that a second stop signal
    can give up on a reader that does not read (see Session._on_signal)."""

    name = "<stdout>"

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
