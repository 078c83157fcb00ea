"""Shared test configuration.

Under CI (the CI environment variable set), a skipped test is a failure: tests that need
the kernel, root or bcc must really run there, never quietly skip. That covers every way
of not running a test: ``pytest.skip`` and skip marks, ``pytest.xfail`` (an imperative
xfail is a skip by another name) and xfail marks, and modules skipped at collection
(``pytest.skip(..., allow_module_level=True)``, ``importorskip`` at module level).
tests/test_ci_skips.py runs this on planted samples.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

IN_CI = bool(os.environ.get("CI"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, None]:
    outcome = yield
    rep = outcome.get_result()
    if IN_CI and rep.skipped:
        rep.outcome = "failed"
        if hasattr(rep, "wasxfail"):
            reason = f"xfail ({rep.wasxfail or 'no reason given'})"
        else:
            reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else rep.longrepr
        rep.longrepr = f"skipped under CI, which must run every test: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    rep = outcome.get_result()
    if IN_CI and rep.skipped:
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else rep.longrepr
        rep.outcome = "failed"
        rep.longrepr = f"module skipped under CI, which must run every test: {reason}"
