"""Overlapping decompression with analysis.

zstd releases the GIL while it decompresses, and so do numpy's bulk operations, so reading the
next chunk in a helper thread while the current one is analysed uses the second core. The queue
holds at most ``depth`` decoded chunks, so memory stays bounded. The consumer must not touch the
capture's file while a prefetching iterator is live (the helper thread owns the file position).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_DONE = object()
STOP_WAIT_S = 0.5  # how long stopping early waits for a helper thread (every tool stops within 1 s)


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
        # bounded: after Ctrl-C the helper may be inside a long decompression; it is a
        # daemon and stops at its next put, so nobody waits for it longer than this
        t.join(timeout=STOP_WAIT_S)


def parallel_map(
    func: Callable[[T], R], source: Iterator[T], workers: int = 2, depth: int = 4
) -> Generator[R, None, None]:
    """``func`` of every item of ``source``, in order, computed on ``workers`` threads (for
    work that releases the GIL: decompression, numpy); ``source`` itself is iterated in one
    helper thread (it may read a file). At most ``depth`` items are in flight, so memory
    stays bounded. Exceptions (of the source or of ``func``) are re-raised here in order;
    leaving the loop early stops the helpers."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aether-decode")
    futures = prefetch(_submitting(pool, func, source), depth=depth)
    try:
        for fut in futures:
            yield fut.result()
    finally:
        futures.close()  # stops the reading thread (bounded wait)
        pool.shutdown(wait=False, cancel_futures=True)


def _submitting(pool: ThreadPoolExecutor, func: Callable[[T], R], source: Iterator[T]) -> Iterator[Future[R]]:
    for item in source:
        yield pool.submit(func, item)


class BackgroundWriter:
    """Runs write operations (closures over one CaptureWriter) in order on a helper thread, so
    compressing one chunk overlaps with merging or filtering the next. ``submit`` re-raises a
    failure of an earlier operation; ``close`` drains the queue and joins the thread. Nothing
    else may use the writer between the first ``submit`` and ``close``."""

    def __init__(self, depth: int = 2) -> None:
        self._q: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._abandon = threading.Event()
        self._t = threading.Thread(target=self._run, name="aether-writer", daemon=True)
        self._t.start()

    def _run(self) -> None:
        while True:
            op = self._q.get()
            if op is None:
                return
            if self._error is not None or self._abandon.is_set():
                continue  # drain without writing after a failure or when abandoned
            try:
                op()
            except BaseException as exc:
                self._error = exc

    def submit(self, op: Callable[[], None]) -> None:
        if self._error is not None:
            self.close()
        self._q.put(op)

    def close(self) -> None:
        if self._t.is_alive():
            self._q.put(None)
            self._t.join()
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def __enter__(self) -> BackgroundWriter:
        return self

    def abandon(self, wait: float | None = STOP_WAIT_S) -> None:
        """Stop without finishing the queued writes and without waiting long (the output is
        being thrown away: an exception, Ctrl-C); ``wait=None`` waits for the operation under
        way to end (it is not interrupted either way)."""
        self._abandon.set()
        while True:
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        try:
            self._q.put_nowait(None)
        except queue.Full:
            pass
        self._t.join(timeout=wait)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()  # the first error is the one to report
