"""``diff``: a known 1.5x latency shift is slower at every percentile; a capture against
itself is no change; the test statistic against a brute-force rank computation; --fail-if
and --json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from jsonschema_mini import validate
from ops_common import make_capture, read_all

import aether_rec
from aether_rec.cli import main
from aether_rec.errors import UsageError
from aether_rec.format.writer import CaptureWriter
from aether_rec.ops.diff import check, compare, mann_whitney, parse_conditions
from aether_rec.ops.histogram import Histogram
from aether_rec.ops.profile import collect
from aether_rec.ops.window import select

DOCS = Path(__file__).resolve().parent.parent / "docs"
SCHEMA = json.loads((DOCS / "diff-json.schema.json").read_text())


def scaled_copy(src: Path, dst: Path, factor: float) -> Path:
    """``src`` with every latency multiplied by ``factor`` (all else equal)."""
    with aether_rec.open(str(src)) as cap, CaptureWriter(str(dst), dict(cap.header), overwrite=True) as w:
        for chunk in cap.chunks():
            lat = chunk.columns["lat"]
            chunk.columns["lat"] = np.rint(lat.astype(np.float64) * factor).astype(lat.dtype)
            chunk.info = None
            w.write_chunk(chunk)
    return dst


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("diff")
    base = make_capture(d / "base.aio", 120_000, seed=11)
    return base, scaled_copy(base, d / "slow.aio", 1.5)


def _prof(path: Path, by: list[str] | None = None):
    with aether_rec.open(str(path)) as cap:
        return collect(cap, select(cap, []), by=by, top=0)


def test_copy_really_is_slower(pair: tuple[Path, Path]) -> None:
    a, b = read_all(pair[0]), read_all(pair[1])
    assert (a["ts"] == b["ts"]).all()
    assert np.allclose(b["lat"], a["lat"] * 1.5, atol=1)


def test_shift_is_slower_at_every_percentile(pair: tuple[Path, Path]) -> None:
    doc = compare(_prof(pair[0]), _prof(pair[1]))
    assert validate(doc, SCHEMA) == []
    for row in doc["rows"]:
        if row["before"]["events"] < 200:
            continue
        assert row["verdict"] == "slower", row
        assert row["p_value"] < 0.01 and row["effect"] > 0.55  # lognormal sigma 1.2: 0.594
        if row["before"]["events"] > 5000:
            assert row["p_value"] < 1e-12
        for k in ("mean", "p50", "p90", "p99", "p99_9", "max"):
            assert row["ratio"][k] == pytest.approx(1.5, rel=0.01), (row["layer"], row["op"], k)
        assert row["ratio"]["events"] == 1.0
    assert doc["rows"][-1]["layer"] == "all"
    # and the other way round: faster
    back = compare(_prof(pair[1]), _prof(pair[0]))
    assert back["rows"][-1]["verdict"] == "faster"
    assert back["rows"][-1]["ratio"]["p99"] == pytest.approx(1 / 1.5, rel=0.01)


def test_self_is_no_change(pair: tuple[Path, Path]) -> None:
    p = _prof(pair[0])
    doc = compare(p, _prof(pair[0]))
    for row in doc["rows"]:
        assert row["verdict"] in ("no change", "too few events")
        if row["p_value"] is not None:
            assert row["p_value"] == 1.0 and row["effect"] == 0.5 and row["z"] == 0.0
        assert all(v in (None, 1.0) for v in row["ratio"].values())


def test_mann_whitney_against_ranks() -> None:
    """Exact values below 256 ns have a bucket each: U, z and p must equal the textbook
    computation from average ranks with the tie correction."""
    rng = np.random.default_rng(7)
    x = rng.integers(10, 60, 300)
    y = rng.integers(12, 64, 250)
    hx, hy = Histogram(), Histogram()
    hx.add(x)
    hy.add(y)
    r = mann_whitney(hx, hy)
    assert r is not None
    both = np.concatenate([x, y])
    order = np.argsort(both, kind="stable")
    ranks = np.empty(both.size)
    ranks[order] = np.arange(1, both.size + 1)
    for v in np.unique(both):  # average ranks over ties
        m = both == v
        ranks[m] = ranks[m].mean()
    u_y = ranks[x.size:].sum() - y.size * (y.size + 1) / 2
    assert r.u == pytest.approx(u_y)
    brute = sum(float((yy > x).sum()) + 0.5 * float((yy == x).sum()) for yy in y)
    assert r.u == pytest.approx(brute)
    n1, n2, n = x.size, y.size, both.size
    _, t = np.unique(both, return_counts=True)
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - float((t**3 - t).sum()) / (n * (n - 1))))
    z = (u_y - n1 * n2 / 2) / sigma
    assert r.z == pytest.approx(z)
    assert r.p_value == pytest.approx(math.erfc(abs(z) / math.sqrt(2)))
    assert r.effect == pytest.approx(u_y / (n1 * n2))
    assert mann_whitney(Histogram(), hy) is None


def test_conditions_parse_and_hold(pair: tuple[Path, Path]) -> None:
    doc = compare(_prof(pair[0]), _prof(pair[1]))
    cases = {
        "p99 > 1.2x": True,
        "p99 > 1.6x": False,
        "p50 >= +40%": True,
        "p50 > +60%": False,
        "block:p99.9 > +1us": True,
        "syscall/read:max < 1ns": False,
        "all:slower": True,
        "iops < 0.9x": False,
        "events >= 100": True,
        "all:max > 1000s": False,
    }
    for text, want in cases.items():
        held = check(doc, parse_conditions([text]))
        assert bool(held) is want, text
    held = check(doc, parse_conditions(["p99 > 1.6x or all:slower"]))
    assert doc["failed"] and {h["condition"] for h in held} == {"all:slower"}
    for bad in ("p99 > 1.2", "p99 >> 2x", "lat > 2x", "p99 > -1.2x", "p99 > 20%", "events > 5ms", "x"):
        with pytest.raises(UsageError):
            parse_conditions([bad])


def test_cli_exit_codes_and_json(pair: tuple[Path, Path]) -> None:
    runner = CliRunner()
    a, b = str(pair[0]), str(pair[1])
    r = runner.invoke(main, ["diff", a, b, "--fail-if", "p99 > 1.2x"])
    assert r.exit_code == 3, r.output
    assert "slower" in r.stdout and "holds" in r.stderr
    r = runner.invoke(main, ["diff", a, b, "--fail-if", "p99 > 2x"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["diff", a, a, "--fail-if", "all:slower", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert validate(doc, SCHEMA) == [] and doc["failed"] is False
    assert doc["conditions"] == [{"condition": "all:slower", "held": False, "rows": []}]
    r = runner.invoke(main, ["diff", a, b, "--by", "comm", "--json", "--layer", "block"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert validate(doc, SCHEMA) == [] and doc["by"] == ["comm"]
    assert {row["key"]["comm"] for row in doc["rows"][:-1]} >= {"postgres"}
    r = runner.invoke(main, ["diff", a, b, "--fail-if", "p99 > fast"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    r = runner.invoke(main, ["diff", a, b, "--alpha", "1.5"])
    assert r.exit_code == 2 and "--alpha" in r.output
    r = runner.invoke(main, ["diff", a, "/nonexistent.aio"])
    assert r.exit_code == 1 and "no such file" in r.output


def test_help_documents_the_test_and_language() -> None:
    r = CliRunner().invoke(main, ["diff", "--help"])
    assert "Mann-Whitney" in r.output and "--fail-if" in r.output and "1.2x" in r.output
    assert "docs/diff-json.md" in r.output
