"""``report`` without a browser: the page is self-contained, its size does not grow with the
number of events, hostile strings stay data, sections and compare, and the CLI's errors."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from ops_common import make_capture, read_all

from aether_rec.cli import main
from aether_rec.format.writer import CaptureWriter
from aether_rec.ops.htmlreport import MAX_BYTES

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
HOSTILE = '</script><script>alert("x")</script><img src=x onerror=alert(1)>'


class _Scan(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, Any]]] = []
        self.scripts: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in = tag

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.scripts.append(data)


def report(tmp: Path, *args: str, name: str = "r.html") -> tuple[str, dict[str, Any]]:
    out = tmp / name
    r = CliRunner().invoke(main, ["report", *args, "-o", str(out), "--force"])
    assert r.exit_code == 0, r.output
    html = out.read_text(encoding="utf-8")
    m = re.search(r'<script type="application/json" id="aether-data">(.*?)</script>', html, re.S)
    assert m
    return html, json.loads(m.group(1))


def test_self_contained(tmp_path: Path) -> None:
    html, doc = report(tmp_path, str(FIXTURES / "mixed.aio"))
    scan = _Scan()
    scan.feed(html)
    for tag, attrs in scan.tags:
        for k in ("src", "href", "xlink:href"):
            assert k not in attrs, (tag, attrs)  # nothing loaded from anywhere
        assert tag not in ("link", "iframe", "img", "object", "embed")
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html
    csp = next(a for t, a in scan.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp["content"]
    assert doc["schema"] == "aether-rec/report" and doc["schema_version"] == 1
    sec = doc["sections"][0]
    d = read_all(FIXTURES / "mixed.aio")
    assert sec["events"] == d["ts"].size
    for lay in sec["layers"]:
        m = d["layer"] == lay["code"]
        assert sum(n for _, _, n in lay["cells"]) == int(m.sum()) == lay["events"]
        assert sum(lay["col_totals"]) == int(m.sum())
        assert sum(sum(op["rows"]) for op in lay["ops"]) == int(m.sum())
        w = sec["width_ns"] / 1e9
        assert sum(v * w for v in lay["iops"]) == pytest.approx(int(m.sum()), rel=1e-3)
        assert sum(v * w for v in lay["bps"]) == pytest.approx(float(d["bytes"][m].sum()), rel=1e-3)
    prov = sec["provenance"]
    assert prov["host"] == "vm" and "block_rq_issue" in prov["hooks"] and "workload" in prov["command"]


def test_size_does_not_grow_with_events(tmp_path: Path) -> None:
    small = make_capture(tmp_path / "s.aio", 20_000, seed=1)
    large = make_capture(tmp_path / "l.aio", 400_000, seed=1)
    a, _ = report(tmp_path, str(small), name="a.html")
    b, _ = report(tmp_path, str(large), name="b.html")
    assert len(b) < 1.6 * len(a)
    assert len(b.encode()) <= MAX_BYTES


def test_many_names_stay_bounded(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "names.aio"
    with CaptureWriter(str(path), {"hostname": "h"}, overwrite=True) as w:
        n = 60_000
        w.write_events({
            "ts": np.arange(n, dtype=np.uint64) * 10_000 + 1_000_000_000,
            "lat": rng.lognormal(10, 2, n).astype(np.uint64),
            "layer": np.ones(n, dtype=np.uint8),
            "op": np.ones(n, dtype=np.uint8),
            "comm": np.array([f"c{i % 3000}" for i in range(n)], dtype=object),
            "path": np.array([f"/p/{i % 20000}" for i in range(n)], dtype=object),
        })
    html, doc = report(tmp_path, str(path), "--columns", "1000")
    assert len(html.encode()) <= MAX_BYTES
    comm = doc["sections"][0]["tables"]["comm"]
    assert len(comm) <= 200
    assert sum(r["events"] for r in comm) <= 60_000


def test_hostile_strings_stay_data(tmp_path: Path) -> None:
    path = tmp_path / "hostile.aio"
    n = 1000
    with CaptureWriter(str(path), {"hostname": HOSTILE, "command": [HOSTILE]}, overwrite=True) as w:
        w.write_events({
            "ts": np.arange(n, dtype=np.uint64) * 1000 + 5_000_000,
            "lat": np.full(n, 5000, dtype=np.uint64),
            "layer": np.ones(n, dtype=np.uint8),
            "op": np.ones(n, dtype=np.uint8),
            "comm": np.array([HOSTILE] * n, dtype=object),
            "path": np.array(["\u2028/x\u2029" + HOSTILE] * n, dtype=object),
        })
    html, doc = report(tmp_path, str(path))
    assert html.count("</script>") == 2  # the two of the page itself
    assert "<img" not in html and "alert(" not in html.split('id="aether-data">')[0]
    assert doc["sections"][0]["tables"]["comm"][0]["key"] == HOSTILE  # intact as data
    assert doc["sections"][0]["provenance"]["host"] == HOSTILE
    assert "innerHTML" not in html and "document.write" not in html


def test_sections_compare_and_by_source(tmp_path: Path) -> None:
    a = make_capture(tmp_path / "a.aio", 30_000, seed=1, header={"hostname": "db1"})
    b = make_capture(tmp_path / "b.aio", 30_000, seed=2, header={"hostname": "db2"})
    _, doc = report(tmp_path, str(a), str(b))
    assert [s["label"] for s in doc["sections"]] == ["a.aio (db1)", "b.aio (db2)"]
    assert doc["mode"] == "sections" and doc["diff"] is None
    _, doc = report(tmp_path, "--compare", str(a), str(b), "--layer", "block")
    assert doc["mode"] == "compare" and [r["layer"] for r in doc["diff"]["rows"]][-1] == "all"
    assert {lay["name"] for s in doc["sections"] for lay in s["layers"]} == {"block"}
    merged = tmp_path / "m.aio"
    r = CliRunner().invoke(main, ["merge", str(a), str(b), "-o", str(merged)])
    assert r.exit_code == 0, r.output
    _, doc = report(tmp_path, str(merged), "--by", "source")
    secs = doc["sections"]
    assert [s["label"] for s in secs] == ["db1", "db2"]
    assert [s["events"] for s in secs] == [30_000, 30_000]
    assert secs[0]["t0"] == secs[1]["t0"] and secs[0]["width_ns"] == secs[1]["width_ns"]
    assert 'source == "db2"' in secs[1]["layers"][0]["expr_example"]


def test_cli_errors(tmp_path: Path) -> None:
    run = CliRunner().invoke
    fix = str(FIXTURES / "mixed.aio")
    r = run(main, ["report", "-o", str(tmp_path / "x.html")])
    assert r.exit_code == 2 and "no capture" in r.output
    r = run(main, ["report", fix, "--compare", fix, fix, "-o", str(tmp_path / "x.html")])
    assert r.exit_code == 2
    out = tmp_path / "exists.html"
    out.write_text("keep")
    r = run(main, ["report", fix, "-o", str(out)])
    assert r.exit_code == 1 and "already exists" in r.output and out.read_text() == "keep"
    r = run(main, ["report", str(tmp_path / "missing.aio"), "-o", str(out)])
    assert r.exit_code == 1 and "Traceback" not in r.output and out.read_text() == "keep"
    r = run(main, ["report", fix, "-o", fix, "--force"])
    assert r.exit_code == 2 and "would overwrite the input" in r.output
    r = run(main, ["report", str(tmp_path / "missing.aio"), "-o", str(tmp_path / "y.html")])
    assert r.exit_code == 1 and "no such file" in r.output and not (tmp_path / "y.html").exists()
    r = run(main, ["report", fix, "-o", "-"])
    assert r.exit_code == 0 and r.stdout.startswith("<!DOCTYPE html>")
    r = run(main, ["report", fix, "-o", str(tmp_path / "z.html"), "-e", "lat >"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    r = run(main, ["report", fix, "-o", str(tmp_path / "no" / "such" / "dir.html")])
    assert r.exit_code == 1 and "cannot write" in r.output and "Traceback" not in r.output
    r = run(main, ["report", "--help"])
    assert "Examples" in r.output and "--compare" in r.output


def test_damaged_captures_give_a_page_or_a_clean_error(tmp_path: Path) -> None:
    """The fuzzer's hostile cases through report and diff: a CaptureError or a page, never
    another exception."""
    from fuzzing import default_seeds, make_case

    from aether_rec.errors import CaptureError
    from aether_rec.format.reader import Capture
    from aether_rec.ops import htmlreport
    from aether_rec.ops.diff import compare
    from aether_rec.ops.profile import collect
    from aether_rec.ops.window import select

    seeds = default_seeds()
    path = tmp_path / "case.aio"
    pages = errors = 0
    for case in range(150):
        _, data = make_case(seeds, 99, case)
        path.write_bytes(data)
        try:
            with Capture(str(path)) as cap:
                prof = collect(cap, select(cap, []))
            html = htmlreport.build([prof])
            compare(prof, prof)
            assert len(html.encode()) <= MAX_BYTES
            pages += 1
        except CaptureError:
            errors += 1
    assert pages > 20 and errors > 5
