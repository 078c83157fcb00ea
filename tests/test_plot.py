"""``plot``: every kind as PNG (decodes, size, non-blank pixels) and SVG (parses, has drawn
shapes), and a one-line error naming the extra when matplotlib is missing."""

from __future__ import annotations

import builtins
import io
import struct
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from aether_rec.cli import main

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
KINDS = ("heatmap", "hist", "timeline", "percentiles")

pytest.importorskip("matplotlib", reason="matplotlib not installed (pip install '.[plot]')")


def png_pixels(data: bytes) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG with zlib alone (independent of the writer)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", 0
    h = ctype = 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos: pos + 8])
        body = data[pos + 8: pos + 8 + n]
        crc = struct.unpack(">I", data[pos + 8 + n: pos + 12 + n])[0]
        assert zlib.crc32(kind + body) == crc, kind
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    out = np.zeros((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=y * (stride + 1) + 1).astype(np.int32)
        if f == 0:
            cur = line
        elif f == 1:
            cur = (np.cumsum(line.reshape(w, bpp), axis=0) & 0xFF).reshape(-1)
        elif f == 2:
            cur = (line + prev) & 0xFF
        else:
            cur = _unfilter_slow(f, line, prev, bpp)
        out[y] = cur
        prev = cur
    return out.reshape(h, w, bpp)[:, :, :3]


def _unfilter_slow(f: int, line: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    cur = np.zeros(line.size, dtype=np.int32)
    for x in range(line.size):
        a = cur[x - bpp] if x >= bpp else 0
        b = prev[x]
        c = prev[x - bpp] if x >= bpp else 0
        if f == 3:
            p = (a + b) // 2
        else:
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        cur[x] = (line[x] + p) & 0xFF
    return cur


@pytest.mark.parametrize("kind", KINDS)
def test_png(kind: str, tmp_path: Path) -> None:
    out = tmp_path / f"{kind}.png"
    r = CliRunner().invoke(main, ["plot", kind, str(FIXTURES / "mixed.aio"), "-o", str(out), "--dpi", "40"])
    assert r.exit_code == 0, r.output
    px = png_pixels(out.read_bytes())
    h, w, _ = px.shape
    assert w >= 300 and h >= 150
    flat = px.reshape(-1, 3)
    assert float((flat.min(axis=1) < 200).mean()) > 0.01  # something drawn
    assert len(np.unique(flat, axis=0)) > 8  # in more than a couple of colours


@pytest.mark.parametrize("kind", KINDS)
def test_svg(kind: str, tmp_path: Path) -> None:
    out = tmp_path / f"{kind}.svg"
    fix = str(FIXTURES / "mixed.aio")
    r = CliRunner().invoke(main, ["plot", kind, fix, "-o", str(out), "--layer", "block"])
    assert r.exit_code == 0, r.output
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    shapes = [e for e in root.iter() if e.tag.split("}")[-1] in ("path", "rect", "use")]
    assert len(shapes) > 20


def test_heatmap_png_draws_the_cells(tmp_path: Path) -> None:
    """More cells in the data, more coloured pixels: a heatmap of one op is sparser than all."""
    fix = str(FIXTURES / "mixed.aio")
    a, b = tmp_path / "all.png", tmp_path / "fsync.png"
    for out, extra in ((a, []), (b, ["--op", "fsync"])):
        args = ["plot", "heatmap", fix, "-o", str(out), "--dpi", "40", "--layer", "syscall", *extra]
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, r.output

    def warm(p: Path) -> int:
        px = png_pixels(p.read_bytes()).astype(int)
        return int(((px[:, :, 0] > 200) & (px[:, :, 2] < 150)).sum())  # yellow..red cells

    assert warm(a) > warm(b) > 0


def test_bad_output_names_and_existing_files(tmp_path: Path) -> None:
    fix = str(FIXTURES / "mixed.aio")
    r = CliRunner().invoke(main, ["plot", "heatmap", fix, "-o", str(tmp_path / "x.gif")])
    assert r.exit_code == 2 and ".png or .svg" in r.output
    cap = tmp_path / "cap.png"
    cap.write_bytes((FIXTURES / "mixed.aio").read_bytes())
    r = CliRunner().invoke(main, ["plot", "heatmap", str(cap), "-o", str(cap), "--force"])
    assert r.exit_code == 2 and cap.read_bytes() == (FIXTURES / "mixed.aio").read_bytes()
    out = tmp_path / "x.png"
    out.write_bytes(b"keep")
    r = CliRunner().invoke(main, ["plot", "heatmap", fix, "-o", str(out)])
    assert r.exit_code == 1 and "already exists" in r.output and out.read_bytes() == b"keep"
    r = CliRunner().invoke(main, ["plot", "hist", fix, "-o", str(tmp_path / "no" / "dir" / "x.png")])
    assert r.exit_code == 1 and "cannot write" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["plot", "hist", fix, "-o", str(tmp_path / "e.png"), "-e", "lat > 1000s"])
    assert r.exit_code == 1 and "no events" in r.output and "Traceback" not in r.output


def test_missing_matplotlib_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = builtins.__import__

    def fake(name: str, *a: Any, **k: Any) -> Any:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    args = ["plot", "heatmap", str(FIXTURES / "mixed.aio"), "-o", str(tmp_path / "h.png")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1
    assert "pip install 'aether-rec[plot]'" in r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert not (tmp_path / "h.png").exists()


def test_png_decoder_agrees_with_pillow(tmp_path: Path) -> None:
    """The test's own decoder, checked once against Pillow (a matplotlib dependency)."""
    pil = pytest.importorskip("PIL.Image")
    out = tmp_path / "p.png"
    args = ["plot", "percentiles", str(FIXTURES / "mixed.aio"), "-o", str(out), "--dpi", "30"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    ours = png_pixels(out.read_bytes())
    theirs = np.asarray(pil.open(io.BytesIO(out.read_bytes())).convert("RGB"))
    assert (ours == theirs).all()
