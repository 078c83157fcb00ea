"""Creating the recorder's output files safely.

The recorder runs as root, often in directories other users can write to (/tmp), so
every capture file it makes is:

* created exclusively (``O_CREAT|O_EXCL``): an existing name is refused unless
  ``--force``; with ``--force`` the old *name* is removed first and a new file created,
  so a hard link to some other file is never truncated or written through, and the new
  file never inherits the old one's mode or owner;
* never reached through a symbolic link: a symlink at the name is refused (with or
  without ``--force``), and ``O_NOFOLLOW``/``O_EXCL`` make the open itself refuse one
  planted after the check;
* mode 0600 whatever the umask (``fchmod`` after creation).

Rotated files (``run.0002.aio`` ...) are created the same way when they are due.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from typing import Any, BinaryIO

from aether_rec.format.writer import WriteError

MODE = 0o600


def refuse_reason(path: str, force: bool) -> str:
    """Why ``path`` cannot be created now ("" when it can), without creating it."""
    try:
        st = os.lstat(path)
    except OSError:
        return ""  # absent, or not ours to see: creating it will tell
    if stat.S_ISLNK(st.st_mode):
        return f"{path}: is a symbolic link; refusing to follow or replace it"
    if not force:
        return f"{path}: already exists (use --force to overwrite)"
    if not stat.S_ISREG(st.st_mode):
        return f"{path}: exists and is not a regular file; refusing to replace it"
    return ""


def create_output(path: str, force: bool = False) -> BinaryIO:
    """Create ``path`` for writing as described above; WriteError (one line) if not."""
    why = refuse_reason(path, force)
    if why:
        raise WriteError(why)
    if force:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise WriteError(f"{path}: cannot replace it ({exc.strerror or exc})") from None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, MODE)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ELOOP):
            # something was planted between the check and the open
            why = refuse_reason(path, False) or f"{path}: appeared while it was being created"
            raise WriteError(why) from None
        raise WriteError(f"{path}: cannot create ({exc.strerror or exc})") from None
    try:
        os.fchmod(fd, MODE)
    except OSError:
        os.close(fd)
        raise
    return os.fdopen(fd, "wb", buffering=0)


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
