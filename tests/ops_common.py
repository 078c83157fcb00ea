"""Helpers shared by the tests of the offline tools (tests/test_ops_*.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import aether_rec
from aether_rec.format.chunk import Chunk
from aether_rec.format.synth import generate


def make_capture(path: Path, n: int, seed: int = 0, **kw: Any) -> Path:
    generate(str(path), n, seed=seed, overwrite=True, **kw)
    return path


def read_all(path: Path | str) -> dict[str, np.ndarray]:
    with aether_rec.open(str(path)) as cap:
        return cap.to_numpy()


def random_chunk(rng: np.random.Generator, n: int) -> Chunk:
    """A chunk with every schema column, values spread so every predicate sees both sides."""
    comms = np.array(["postgres", "bash", "kworker/0:1", "java", ""], dtype=object)
    paths = np.array(["/var/lib/pg/a", "/tmp/x", "", "/var/log/syslog"], dtype=object)
    cols: dict[str, Any] = {
        "ts": np.sort(rng.integers(1_000_000, 5_000_000_000, n)).astype(np.uint64),
        "lat": rng.integers(0, 20_000_000, n).astype(np.uint64),
        "pid": rng.integers(1, 6, n).astype(np.uint32),
        "tid": rng.integers(1, 10, n).astype(np.uint32),
        "comm": comms[rng.integers(0, len(comms), n)],
        "cpu": rng.integers(0, 4, n).astype(np.uint16),
        "layer": rng.integers(1, 3, n).astype(np.uint8),
        "op": rng.choice([1, 2, 3, 4, 11], n).astype(np.uint8),
        "fd": rng.integers(-1, 6, n).astype(np.int32),
        "dev": rng.choice([(8 << 20) | 0, (259 << 20) | 1], n).astype(np.uint32),
        "offset": rng.integers(-1, 1 << 20, n).astype(np.int64),
        "bytes": rng.choice([0, 512, 4096, 1 << 20], n).astype(np.uint64),
        "result": rng.choice([-5, -11, 0, 4096], n).astype(np.int64),
        "queue": rng.integers(0, 5_000_000, n).astype(np.uint64),
        "cgroup": np.full(n, 7, dtype=np.uint64),
        "flags": rng.integers(0, 256, n).astype(np.uint32),
        "path": paths[rng.integers(0, len(paths), n)],
    }
    return Chunk.from_columns(cols)


UNDECODABLE = "column 'lat' runs past the chunk body"


def make_undecodable(monkeypatch: Any, offsets: set[int]) -> None:
    """Chunks at ``offsets`` fail to decode (DamagedCaptureError, message UNDECODABLE) in the
    decoder every reading path shares (format/partial.decode_body), on any thread."""
    from aether_rec.errors import DamagedCaptureError
    from aether_rec.format import partial

    real = partial.decode_body

    def failing(body: Any, info: Any, columns: Any = None) -> Any:
        if info is not None and info.offset in offsets:
            raise DamagedCaptureError(UNDECODABLE)
        return real(body, info, columns)

    monkeypatch.setattr(partial, "decode_body", failing)
