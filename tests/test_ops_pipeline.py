"""The prefetching helper thread and the overlap test that decides what is copied whole."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from aether_rec.ops.pipeline import prefetch
from aether_rec.ops.rawcopy import isolated_ranges


def test_prefetch_yields_everything_in_order() -> None:
    assert list(prefetch(iter(range(1000)), depth=3)) == list(range(1000))


def test_prefetch_reraises_and_stops_early() -> None:
    def boom() -> Iterator[int]:
        yield 1
        raise ValueError("bad chunk")

    with pytest.raises(ValueError, match="bad chunk"):
        list(prefetch(boom()))
    produced = []

    def endless() -> Iterator[int]:
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    before = threading.active_count()
    g = prefetch(endless(), depth=2)
    assert next(g) == 0
    g.close()
    assert threading.active_count() == before  # the helper is gone
    assert len(produced) <= 5  # bounded read-ahead


@pytest.mark.parametrize(
    "ranges,want",
    [
        ([], []),
        ([(0, 10)], [True]),
        ([(0, 10), (11, 20), (21, 30)], [True, True, True]),
        ([(0, 10), (10, 20)], [False, False]),  # a shared instant counts as overlap
        ([(0, 100), (5, 6), (50, 60), (101, 110)], [False, False, False, True]),
        ([(0, 5), (6, 50), (7, 8), (60, 70)], [True, False, False, True]),
    ],
)
def test_isolated_ranges(ranges: list[tuple[int, int]], want: list[bool]) -> None:
    assert isolated_ranges(ranges) == want


def test_background_writer_keeps_order_and_reports_errors() -> None:
    from aether_rec.ops.pipeline import BackgroundWriter

    seen: list[int] = []
    with BackgroundWriter() as bw:
        for i in range(100):
            bw.submit(lambda i=i: seen.append(i))
    assert seen == list(range(100))

    def fail() -> None:
        raise OSError("disk full")

    bw = BackgroundWriter()
    bw.submit(fail)
    with pytest.raises(OSError, match="disk full"):
        for i in range(50):
            bw.submit(lambda i=i: seen.append(i))
        bw.close()


def test_parallel_map_keeps_order_reraises_and_stops_early() -> None:
    import time

    from aether_rec.ops.pipeline import parallel_map

    def slow_square(x: int) -> int:
        time.sleep(0.002 * (x % 3))  # later items often finish first
        return x * x

    got = list(parallel_map(slow_square, iter(range(200)), workers=2, depth=3))
    assert got == [x * x for x in range(200)]

    def fail_at(x: int) -> int:
        if x == 5:
            raise ValueError("bad chunk 5")
        return x

    got: list[int] = []
    with pytest.raises(ValueError, match="bad chunk 5"):
        for v in parallel_map(fail_at, iter(range(100))):
            got.append(v)
    assert got == [0, 1, 2, 3, 4]  # everything before the failure, in order

    def source_fails() -> Iterator[int]:
        yield 1
        raise OSError("read failed")

    with pytest.raises(OSError, match="read failed"):
        list(parallel_map(slow_square, source_fails()))

    produced = []

    def endless() -> Iterator[int]:
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    g = parallel_map(slow_square, endless(), workers=2, depth=2)
    assert next(g) == 0
    g.close()
    time.sleep(0.2)
    n = len(produced)
    time.sleep(0.2)
    assert len(produced) == n <= 8  # bounded read-ahead, and the reader has stopped
