"""No silent skips in CI: under ``CI=true`` a skipped test counts as failed.

A tool missing on the machine (promtool, prometheus, docker-compose) must not turn into a
green run that tested less; ``make test`` installs them (scripts/system-packages.sh), so a
skip in CI is a defect. Loaded by ``conftest.py``; locally a skip stays a skip.

The one exception is declared, not silent: ``@pytest.mark.optional_tool("why")`` marks a
test of a tool the project cannot install on its machines (not packaged on PyPI, npm or
Debian); such a test may skip in CI too, and its reason shows in the summary.
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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "optional_tool(reason): needs a tool the project cannot install; may skip in CI",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    optional = item.get_closest_marker("optional_tool") is not None
    if IN_CI and report.skipped and not hasattr(report, "wasxfail") and not optional:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where nothing may be skipped: {reason}"
    return report
