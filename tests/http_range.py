"""A range-capable HTTP file server on 127.0.0.1 for tests, counting the body bytes it serves."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass
class Served:
    bytes: int = 0
    requests: int = 0
    ranges: list[tuple[str, int, int]] = field(default_factory=list)  # (path, start, end excl.)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.bytes = 0
            self.requests = 0
            self.ranges.clear()


@contextmanager
def serve(root: Path, honour_ranges: bool = True) -> Iterator[tuple[str, Served]]:
    """Serve ``root`` at the yielded base URL until the block ends."""
    served = Served()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            return

        def _target(self) -> Path | None:
            p = (root / self.path.lstrip("/").split("?")[0]).resolve()
            if root.resolve() not in p.parents or not p.is_file():
                self.send_error(404)
                return None
            return p

        def do_HEAD(self) -> None:  # noqa: N802
            p = self._target()
            if p is None:
                return
            self.send_response(200)
            self.send_header("Content-Length", str(p.stat().st_size))
            self.send_header("Accept-Ranges", "bytes" if honour_ranges else "none")
            self.end_headers()
            with served.lock:
                served.requests += 1

        def do_GET(self) -> None:  # noqa: N802
            p = self._target()
            if p is None:
                return
            size = p.stat().st_size
            start, end = 0, size
            m = RANGE.match(self.headers.get("Range", ""))
            if m and honour_ranges:
                a, b = m.groups()
                if a:
                    start, end = int(a), min(int(b) + 1 if b else size, size)
                else:
                    start, end = max(size - int(b), 0), size
                if start >= size:
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(end - start))
            self.end_headers()
            with open(p, "rb") as f:
                f.seek(start)
                data = f.read(end - start)
            self.wfile.write(data)
            with served.lock:
                served.bytes += len(data)
                served.requests += 1
                served.ranges.append((os.path.basename(p), start, end))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()
