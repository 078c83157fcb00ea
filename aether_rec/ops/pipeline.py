"""Overlapping decompression with analysis.

zstd releases the GIL while it decompresses, and so do numpy's bulk operations, so reading the
next chunk in a helper thread while the current one is analysed uses the second core. The queue
holds at most ``depth`` decoded chunks, so memory stays bounded. The consumer must not touch the
capture's file while a prefetching iterator is live (the helper thread owns the file position).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(source: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """Iterate ``source`` in a helper thread, ``depth`` items ahead. Exceptions raised by the
    source are re-raised here; leaving the loop early stops the helper."""
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in source:
                if not put(item):
                    return
        except BaseException as exc:  # handed to the consumer
            put(_Failure(exc))
            return
        put(_DONE)

    t = threading.Thread(target=run, name="aether-prefetch", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        t.join()
