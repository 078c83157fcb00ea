"""Shared test configuration.

Under CI (the CI environment variable set), a skipped test is a failure: tests that need
the kernel, root or bcc must really run there, never quietly skip.
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
    if IN_CI and rep.skipped and not hasattr(rep, "wasxfail"):
        rep.outcome = "failed"
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else rep.longrepr
        rep.longrepr = f"skipped under CI, which must run every test: {reason}"
