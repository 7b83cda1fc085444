"""A failed test's report ends with the log of every worker process it started, and the
health lines of its last /metrics page.

A worker that stalls shows up in a test only as "the KPIs never converged" (or as
pytest-timeout's stack of the waiting test); what the worker was doing is in its log, in a
temporary directory CI does not keep, and in its readiness, lag and event counters.
Registered by ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from helpers.pipeline import WorkerProcess
from streams_dev.metrics import fetch_page

_LINES = 80  # of each worker's log: its last lines, where a stall or a crash shows
_HEALTH = (
    "support_pipeline_ready",
    "support_consumer_lag_messages",
    "support_events_",
    "support_internal_errors",
    "support_offset_resets",
    "support_last_event_timestamp_seconds",
)
_ALWAYS = ("support_pipeline_ready", "support_consumer_lag_messages")  # shown also when 0


def pytest_runtest_setup(item: pytest.Item) -> None:
    WorkerProcess.started.clear()


def health(page: str | None) -> str:
    """The health lines of a /metrics page (counters only when not 0)."""
    if page is None:
        return "(no /metrics page: it did not answer)"
    lines = [
        line
        for line in page.splitlines()
        if line.startswith(_HEALTH)
        and (line.startswith(_ALWAYS) or line.rsplit(" ", 1)[-1] not in ("0.0", "0"))
    ]
    return "\n".join(lines) or "(no health lines)"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and report.when == "call":
        for worker in WorkerProcess.started:
            if worker.alive():  # (the ``workers`` fixture stops its workers after the report)
                state, page = "running", fetch_page(worker.url, timeout=2.0)
            else:
                state, page = f"exited {worker.returncode}, /metrics when stopped", worker.last_page
            report.sections.append((f"worker {worker.name} ({state})", health(page)))
            report.sections.append(
                (f"worker {worker.name}: last {_LINES} log lines", worker.log_tail(_LINES))
            )
    return report
