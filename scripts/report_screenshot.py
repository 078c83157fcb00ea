#!/usr/bin/env python3
"""Make docs/report-screenshot.png, the README's picture of `aether-rec report`, from the
fixture fixtures/mixed.aio: the page opened in headless Chromium (tests/cdp.py), one heatmap
cell hovered, the block layer's heatmap and percentile chart captured.

    .venv/bin/python scripts/report_screenshot.py [-o docs/report-screenshot.png]
"""

from __future__ import annotations

import argparse
import base64
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from cdp import Browser  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default=str(ROOT / "docs" / "report-screenshot.png"))
    ap.add_argument("--capture", default=str(ROOT / "fixtures" / "mixed.aio"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        subprocess.run([str(ROOT / ".venv" / "bin" / "aether-rec"), "report", a.capture, "-o", str(page)],
                       check=True)
        with Browser(width=1100, height=1000) as b:
            b.call("Page.enable")
            b.call("Page.navigate", url=page.as_uri())
            b.wait_event("Page.loadEventFired")
            box = b.eval(
                "(() => { const h = Array.from(document.querySelectorAll('h3')).find(e => e.textContent.startsWith('block layer'));"
                " const hm = document.querySelector('svg.heatmap[data-layer=\"block\"]');"
                " const charts = Array.from(document.querySelectorAll('svg.chart'));"
                " const after = charts.find(c => c.compareDocumentPosition(hm) & Node.DOCUMENT_POSITION_PRECEDING);"
                " const top = h.getBoundingClientRect().top + scrollY - 8;"
                " const bottom = after.getBoundingClientRect().bottom + scrollY + 30;"
                " window.scrollTo(0, top - 40);"
                " const cells = Array.from(hm.querySelectorAll('rect.cell'));"
                " cells.sort((x, y) => y.dataset.n - x.dataset.n);"
                " const r = cells[Math.floor(cells.length / 3)].getBoundingClientRect();"
                " return {top: top, bottom: bottom, x: r.x + r.width / 2, y: r.y + r.height / 2}; })()"
            )
            b.call("Input.dispatchMouseEvent", type="mouseMoved", x=box["x"], y=box["y"])
            b.eval("document.getElementById('cmdbox').style.display = 'none'")
            shot = b.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                          clip={"x": 0, "y": box["top"], "width": 1080, "height": box["bottom"] - box["top"],
                                "scale": 1})
        Path(a.output).write_bytes(base64.b64decode(shot["data"]))
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
