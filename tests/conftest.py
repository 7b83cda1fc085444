"""Shared pytest fixtures.

- ``broker``: one embedded Kafka-API broker (Tansu) per test session, on a free port.
  If it cannot start, every test using it errors with the broker's output: never a skip.
  Tests using it are marked ``integration`` automatically.
- ``bootstrap_servers``: ``"127.0.0.1:PORT"`` of that broker (checks it is still alive).
- ``unique_prefix``: a name prefix unique to the test, for topics, group ids, Faust app
  ids, so tests sharing the session broker never see each other's data.
- ``make_topics``: creates topics under the test's prefix with explicit partition counts.
- ``workers``: a list the test appends the worker processes it starts to; each is stopped
  (SIGTERM, then SIGKILL) and its working directory removed at the end.

Two pytest-xdist workers (``-n 2`` in pyproject.toml; ``-n 0``: everything in this process): one
runs the tests of ``INTEGRATION_MODULES``, in order as without xdist, while both share the others
(``tests/helpers/scheduling.py``). A marked test outside those modules is a collection error.

A failed test's report ends with the logs and health lines of the workers it started
(``tests/helpers/worker_logs.py``).

Under ``CI=true`` a skipped test fails (``tests/helpers/ci.py``): CI must not test less in silence.

Clients talking to the broker should use a short consumer session timeout
(``streams_dev.broker.SHORT_SESSION_TIMEOUT_SECONDS``): Tansu's group join waits half of it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping

import pytest
from helpers import worker_logs
from helpers.ci import pytest_runtest_makereport  # noqa: F401  (the hook: no silent skips in CI)
from helpers.pipeline import WorkerProcess
from helpers.scheduling import IntegrationTogether

from streams_dev.broker import EmbeddedBroker, create_topics

MakeTopics = Callable[..., dict[str, str]]

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


# Every module with integration tests (marked ``integration``, or using ``broker``).
INTEGRATION_MODULES = frozenset(
    {
        "test_attributes_pipeline.py",
        "test_broker.py",
        "test_changelog_reader.py",
        "test_changelog_writer.py",
        "test_containment.py",
        "test_customers_pipeline.py",
        "test_demo.py",
        "test_exposure.py",
        "test_faults.py",
        "test_outputs.py",
        "test_pipeline.py",
        "test_prometheus_integration.py",
        "test_recovery.py",
        "test_rocksdb.py",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("integration") and item.path.name not in INTEGRATION_MODULES:
            raise pytest.UsageError(
                f"{item.nodeid} is an integration test: add {item.path.name} to "
                "INTEGRATION_MODULES in tests/conftest.py (xdist runs those on one worker)"
            )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(worker_logs, "worker_logs")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> IntegrationTogether:
    return IntegrationTogether(config, log, modules=INTEGRATION_MODULES)


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """The session's embedded broker (started once, stopped at the end of the session)."""
    with EmbeddedBroker() as embedded:
        yield embedded


@pytest.fixture
def bootstrap_servers(broker: EmbeddedBroker) -> str:
    if not broker.running:
        pytest.fail(f"the session broker has died; its output:\n{broker.log_tail()}")
    return broker.bootstrap_servers


@pytest.fixture
def unique_prefix(request: pytest.FixtureRequest) -> str:
    """``<test name>-<8 hex>``: safe in topic names, group ids and Faust app ids."""
    name = _UNSAFE.sub("_", request.node.name).strip("_")[:60] or "test"
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_topics(bootstrap_servers: str, unique_prefix: str) -> MakeTopics:
    """``make_topics({"events": 3}, compacted=["kpis"])`` -> ``{"events": "<prefix>.events"}``.

    Creates the topics (prefixed with the test's unique prefix) on the session broker and
    returns the full names. For sync tests; async code calls ``create_topics`` itself.
    """

    def make(topics: Mapping[str, int], *, compacted: Iterable[str] = ()) -> dict[str, str]:
        names = {short: f"{unique_prefix}.{short}" for short in topics}
        asyncio.run(
            create_topics(
                bootstrap_servers,
                {names[short]: count for short, count in topics.items()},
                compacted=[names.get(short, short) for short in compacted],
            )
        )
        return names

    return make


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()
        shutil.rmtree(worker.workdir, ignore_errors=True)
