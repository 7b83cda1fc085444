"""A failed test's report ends with the log of every worker process it started.

A worker that stalls shows up in a test only as "the KPIs never converged" (or as
pytest-timeout's stack of the waiting test); what the worker was doing is in its log, in a
temporary directory CI does not keep. Registered by ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from helpers.pipeline import WorkerProcess

_LINES = 80  # per worker: its last lines, where a stall or a crash shows


def pytest_runtest_setup(item: pytest.Item) -> None:
    WorkerProcess.started.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and report.when == "call":
        for worker in WorkerProcess.started:
            state = "still running" if worker.alive() else f"now exited {worker.returncode}"
            report.sections.append(
                (f"worker {worker.name} ({state}), last {_LINES} lines", worker.log_tail(_LINES))
            )
    return report
