"""Under CI every way of not running a test fails the run (tests/conftest.py), checked on
planted samples in a child pytest: a skip, a skip mark, an imperative xfail, an xfail
mark, and a module skipped at collection. Outside CI they stay skips."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

SAMPLES = {
    "test_a.py": (
        "import pytest\n"
        "def test_skip():\n    pytest.skip('no kernel')\n"
        "@pytest.mark.skipif(True, reason='mark')\ndef test_skipif():\n    pass\n"
        "def test_xfail():\n    pytest.xfail('not generated yet')\n"
        "@pytest.mark.xfail(reason='known')\ndef test_xfail_mark():\n    assert False\n"
        "def test_runs():\n    assert True\n"
    ),
    "test_b.py": "import pytest\npytest.skip('whole module', allow_module_level=True)\n"
                 "def test_never():\n    pass\n",
    "test_c.py": "import pytest\npytest.importorskip('no_such_module_aether')\n"
                 "def test_never():\n    pass\n",
}


def _run(tmp_path: Path, ci: bool, names: list[str]) -> tuple[int, str]:
    for name in names:
        (tmp_path / name).write_text(SAMPLES[name])
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "1"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        *[str(tmp_path / n) for n in names]],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    return r.returncode, r.stdout


def _count(out: str, word: str) -> int:
    m = re.search(rf"(\d+) {word}", out.splitlines()[-1] if out else "")
    return int(m.group(1)) if m else 0


def test_skips_and_xfails_fail_under_ci(tmp_path: Path) -> None:
    code, out = _run(tmp_path, True, ["test_a.py"])
    assert code != 0, out
    # a skip mark acts in the setup phase: it fails there, as an error
    assert (_count(out, "failed") + _count(out, "error"), _count(out, "passed")) == (4, 1), out
    assert "skipped" not in out.splitlines()[-1] and "xfailed" not in out.splitlines()[-1], out


@pytest.mark.parametrize("name", ["test_b.py", "test_c.py"])
def test_module_level_skips_fail_under_ci(tmp_path: Path, name: str) -> None:
    code, out = _run(tmp_path, True, [name])
    assert code != 0 and "module skipped under CI" in out, out


def test_outside_ci_they_stay_skips(tmp_path: Path) -> None:
    code, out = _run(tmp_path, False, sorted(SAMPLES))
    assert code == 0, out
    last = out.splitlines()[-1]
    assert (_count(out, "passed"), _count(out, "skipped"), _count(out, "xfailed")) == (1, 4, 2), last
