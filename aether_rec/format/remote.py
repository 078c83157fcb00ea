"""Remote captures, read by range: ``https://``, ``s3://``, ``gs://``, ``az://`` ... through fsspec
(optional: ``pip install 'aether-rec[remote]'``, plus the protocol's own package, e.g. s3fs).

``RangeFile`` is a seekable, read-only file object whose every ``read(n)`` is one range request
for exactly those bytes, nothing read ahead. The reader already reads what it needs and no more:
the preamble and header, the trailer (the file's last 32 bytes), the index it points to, and
then only the chunks a command asks for, each block as its 8-byte head and then its body. So
``info`` on a capture of any size transfers its header and index, and a time window transfers
the chunks that overlap it. A capture without an index (a killed recorder) is still readable,
by a scan of every block: that transfers the whole file.
"""

from __future__ import annotations

import io
import os
import re
from typing import Any

from aether_rec.errors import CaptureError
from aether_rec.optional import require

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_url(path: str) -> bool:
    """Is ``path`` a URL (``scheme://...``) rather than a local path? ``file://`` counts."""
    return bool(_URL.match(path))


class RangeFile(io.RawIOBase):
    """A remote object as a seekable binary file, read by range requests."""

    def __init__(self, url: str, fs: Any = None) -> None:
        super().__init__()
        self.name = url
        if fs is None:
            fsspec = require("fsspec", "remote", f"reading {url.split('://')[0]}:// URLs")
            try:
                fs, self._path = fsspec.core.url_to_fs(url)
            except (ImportError, ValueError) as exc:
                raise CaptureError(f"{url}: cannot read this kind of URL ({exc})") from None
        else:
            self._path = url
        self._fs = fs
        self.requests = 0
        self.bytes_fetched = 0
        self._pos = 0
        try:
            self.size = int(fs.size(self._path))
        except FileNotFoundError:
            raise CaptureError(f"{url}: no such file") from None
        except Exception as exc:  # noqa: BLE001  any transport error: one line, not a traceback
            raise CaptureError(f"{url}: cannot open ({_reason(exc)})") from None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._pos + offset
        elif whence == os.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"bad whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), max(self.size - self._pos, 0))
        if n <= 0:
            return 0
        data = self.read_range(self._pos, self._pos + n)
        buf[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def read_range(self, start: int, end: int) -> bytes:
        """Bytes [start, end) in one request."""
        try:
            data = bytes(self._fs.cat_file(self._path, start=start, end=end))
        except Exception as exc:  # noqa: BLE001
            raise CaptureError(f"{self.name}: read of bytes {start}-{end} failed ({_reason(exc)})") from None
        self.requests += 1
        self.bytes_fetched += len(data)
        if len(data) > end - start:
            raise CaptureError(f"{self.name}: the server ignored a range request (sent "
                               f"{len(data)} bytes for {end - start}); it cannot serve captures by range")
        return data


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def open_url(url: str) -> RangeFile:
    return RangeFile(url)
