"""The HTML report opened as a person would: in headless Chromium (Debian's `chromium`),
driven over the DevTools protocol (tests/cdp.py), with the network disabled."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cdp import Browser, find_chromium
from click.testing import CliRunner
from ops_common import read_all

import aether_rec
from aether_rec.cli import main
from aether_rec.ops.heatmap import Rows, cell_expression
from aether_rec.ops.profile import Profile, collect
from aether_rec.ops.window import select

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

pytestmark = pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (scripts/setup.sh)")


@pytest.fixture(scope="module")
def browser() -> Any:
    with Browser() as b:
        b.call("Page.enable")
        b.call("Runtime.enable")
        b.call("Log.enable")
        b.call("Network.enable")
        b.call("Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1,
               uploadThroughput=-1)
        yield b


def _profile(path: Path) -> Profile:
    with aether_rec.open(str(path)) as cap:
        return collect(cap, select(cap, []))


def _report(tmp: Path, *args: str) -> Path:
    out = tmp / "report.html"
    r = CliRunner().invoke(main, ["report", *args, "-o", str(out), "--force"])
    assert r.exit_code == 0, r.output
    return out


def _open(b: Browser, path: Path) -> dict[str, Any]:
    b.events.clear()
    b.call("Page.navigate", url=path.as_uri())
    b.wait_event("Page.loadEventFired")
    assert b.eval("document.body.dataset.ready") == "1"
    doc = json.loads(b.eval("document.getElementById('aether-data').textContent"))
    return doc


def _errors(b: Browser) -> list[Any]:
    out = []
    for e in b.events:
        m, p = e["method"], e.get("params", {})
        if m == "Runtime.exceptionThrown":
            out.append(p)
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(p)
        elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
            out.append(p["entry"])
    return out


def _requests(b: Browser) -> list[str]:
    return [e["params"]["request"]["url"] for e in b.events if e["method"] == "Network.requestWillBeSent"]


def _center(b: Browser, selector: str) -> tuple[float, float]:
    r = b.eval(
        f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
        " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
        " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
    )
    assert r is not None, selector
    return float(r[0]), float(r[1])


def _expected_grid(path: Path, sec: dict[str, Any], lay: dict[str, Any]) -> np.ndarray:
    """Counts per (column, row) from the raw events, with numpy, using only the page's axes."""
    d = read_all(path)
    m = d["layer"] == lay["code"]
    col = (d["ts"][m].astype(np.int64) - int(sec["t0s"])) // sec["width_ns"]
    row = np.searchsorted(np.array(lay["edges"]), d["lat"][m], side="right")
    grid = np.zeros((sec["ncols"], len(lay["edges"]) + 1), dtype=np.int64)
    np.add.at(grid, (col, row), 1)
    return grid


def _png_stats(png: bytes) -> tuple[int, int, float, int]:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    px = np.asarray(img).reshape(-1, 3)
    nonwhite = float((px.min(axis=1) < 235).mean())
    colours = len(np.unique(px[:: max(1, px.shape[0] // 200_000)], axis=0))
    return img.width, img.height, nonwhite, colours


def test_report_in_a_real_browser(browser: Browser, tmp_path: Path) -> None:
    path = FIXTURES / "mixed.aio"
    page = _report(tmp_path, str(path))
    doc = _open(browser, page)
    assert _errors(browser) == []
    assert _requests(browser) == [page.as_uri()]  # nothing fetched but the page itself
    sec = doc["sections"][0]
    total_cells = 0
    for lay in sec["layers"]:
        grid = _expected_grid(path, sec, lay)
        q = f"svg.heatmap[data-layer=\"{lay['name']}\"] rect.cell"
        n_dom = browser.eval(f"document.querySelectorAll('{q}').length")
        assert n_dom == int(np.count_nonzero(grid)) > 10
        total_cells += n_dom
    assert browser.eval("document.querySelectorAll('rect.cell').length") == total_cells
    # hover the busiest block cell: the tooltip shows its range, count, percent and cumulative
    lay = next(x for x in sec["layers"] if x["name"] == "block")
    grid = _expected_grid(path, sec, lay)
    c, r = (int(v) for v in np.unravel_index(int(np.argmax(grid)), grid.shape))
    sel = f'svg.heatmap[data-layer="block"] rect.cell[data-c="{c}"][data-r="{r}"]'
    x, y = _center(browser, sel)
    browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
    tip = browser.eval("document.getElementById('tip').textContent")
    assert browser.eval("getComputedStyle(document.getElementById('tip')).display") == "block"
    n, col_total = int(grid[c, r]), int(grid[c].sum())
    assert f"count    {n:,} I/Os" in tip
    assert f"{100 * n / col_total:.1f} % of this interval" in tip
    assert f"{100 * grid[c, : r + 1].sum() / col_total:.1f} % at or below" in tip
    w = sec["width_ns"] / 1e9
    assert f"+{c * w:.3f} s .. +{(c + 1) * w:.3f} s" in tip
    lo, hi = lay["edges"][r - 1], lay["edges"][r]
    assert re.search(r"latency\s+\S+ \.\. \S+", tip)
    # click: the command selects exactly this cell's I/Os
    browser.call("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left", clickCount=1)
    browser.call("Input.dispatchMouseEvent", type="mouseReleased", x=x, y=y, button="left", clickCount=1)
    expr = browser.eval("document.getElementById('cmd').dataset.expr")
    assert f"lat >= {lo} and lat < {hi}" in expr and "layer == block" in expr
    cmdline = browser.eval("document.getElementById('cmd').textContent")
    assert cmdline.startswith("aether-rec filter ") and expr in cmdline
    out = tmp_path / "cell.aio"
    res = CliRunner().invoke(main, ["filter", str(path), "-o", str(out), expr])
    assert res.exit_code == 0, res.output
    assert read_all(out)["ts"].size == n
    # the page builds the same expression as the library, for every kind of row
    prof = _profile(path)
    for li, lay in enumerate(sec["layers"]):
        rows = Rows(lay["edges"])
        for c, r in ((0, 0), (1, 1), (sec["ncols"] - 1, rows.n - 1), (3, rows.n // 2)):
            js = browser.eval(f"cellExpr(0, {li}, {c}, {r})")
            assert js == cell_expression(prof, lay["code"], rows, c, r)
    # sortable tables: a click on EVENTS orders the per-file table by events, descending
    hx, hy = _center(browser, "table.t-path th:nth-child(2)")
    browser.call("Input.dispatchMouseEvent", type="mousePressed", x=hx, y=hy, button="left", clickCount=1)
    browser.call("Input.dispatchMouseEvent", type="mouseReleased", x=hx, y=hy, button="left", clickCount=1)
    vals = browser.eval(
        "Array.from(document.querySelectorAll('table.t-path tbody tr')).map(r => +r.cells[1].dataset.v)")
    assert vals == sorted(vals, reverse=True) and len(vals) > 2
    # a screenshot that is not blank
    browser.eval("window.scrollTo(0, 0)")
    png = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    width, height, nonwhite, colours = _png_stats(png)
    assert width >= 800 and height >= 600
    assert nonwhite > 0.03 and colours > 20
    assert _errors(browser) == []


def test_losses_and_compare_pages(browser: Browser, tmp_path: Path) -> None:
    page = _report(tmp_path, str(FIXTURES / "losses.aio"))
    doc = _open(browser, page)
    assert _errors(browser) == []
    banner = browser.eval("document.getElementById('loss-banner').textContent")
    assert "lost 102,369 events" in banner
    assert browser.eval("document.querySelectorAll('rect.loss').length") == sum(
        1 for x in doc["sections"][0]["losses"] if x["real"])
    before, after = FIXTURES / "rotated.0001.aio", FIXTURES / "rotated.0002.aio"
    cmp = _report(tmp_path, "--compare", str(before), str(after))
    doc = _open(browser, cmp)
    assert _errors(browser) == []
    assert doc["mode"] == "compare" and doc["diff"]["rows"]
    b, a = doc["sections"]
    for lb in b["layers"]:
        la = next(x for x in a["layers"] if x["name"] == lb["name"])
        assert lb["edges"] == la["edges"]  # one latency scale for both
    heatmaps = browser.eval("document.querySelectorAll('svg.heatmap').length")
    assert heatmaps == 2 * len({x["name"] for x in b["layers"]})
    rows = browser.eval("document.querySelectorAll('table.t-diff tbody tr').length")
    assert rows == len(doc["diff"]["rows"])
