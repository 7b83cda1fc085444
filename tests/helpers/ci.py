"""No silent skips in CI: under ``CI=true`` a skipped test counts as failed.

A tool missing on the machine (promtool, prometheus, docker-compose) must not turn into a
green run that tested less; ``make test`` installs them (scripts/system-packages.sh), so a
skip in CI is a defect. Loaded by ``conftest.py``; locally a skip stays a skip.

Checks with tools the project cannot install (not packaged on PyPI, npm or Debian: Sloth)
are on-demand scripts in ``scripts/``, not tests that would always skip.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_tool(what: str) -> NoReturn:
    """Skip the calling test because ``what`` is not installed; in CI, fail it."""
    message = f"{what} is not installed"
    if IN_CI:
        pytest.fail(f"{message} (required in CI)")
    pytest.skip(f"{message}; install it to run this test (it is required in CI)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where nothing may be skipped: {reason}"
    return report
