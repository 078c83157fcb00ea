"""Where a capture is read from: a local path, a URL read by range (format/remote.py), or a
file object (a pipe is spooled to a temporary file, since reading needs to seek)."""

from __future__ import annotations

import builtins
import os
import shutil
import tempfile
from typing import IO, BinaryIO

from aether_rec.errors import CaptureError


def open_path(path: str) -> BinaryIO:
    from aether_rec.format.remote import is_url, open_url

    if is_url(path):  # https://, s3://...: read by range (format/remote.py)
        return open_url(path)  # type: ignore[return-value]
    try:
        if os.path.isdir(path):
            raise CaptureError("is a directory, not a capture", path)
        return builtins.open(path, "rb")
    except FileNotFoundError:
        raise CaptureError("no such file", path) from None
    except PermissionError:
        raise CaptureError("permission denied", path) from None
    except OSError as exc:
        raise CaptureError(f"cannot open ({exc.strerror or exc})", path) from None


def seekable(f: IO[bytes]) -> BinaryIO:
    try:
        if f.seekable():
            return f  # type: ignore[return-value]
    except (AttributeError, OSError, ValueError):
        pass
    spool = tempfile.TemporaryFile()
    shutil.copyfileobj(f, spool, 1 << 20)
    spool.seek(0)
    return spool
