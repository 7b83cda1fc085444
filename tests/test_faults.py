"""The fault matrix (issue 8, SPEC §7 reliability), on a real broker with real worker
processes; after each fault the KPIs must equal the brute-force reference.

- SIGTERM during catch-up (exit within 10 s), then ``kill -9`` in the middle of a flush, then
  ``kill -9`` during recovery itself, then a clean start: nothing lost, nothing counted twice;
- two workers, one killed (two -> one), a third joins (one -> two): exactly one series per key;
- the broker frozen (SIGSTOP) for 60 s, then more events: the worker neither exits nor
  restarts, keeps serving /metrics, its health metrics show the stall, and it resumes;
- the broker killed and restarted empty: the worker reports it (log and metric).

The self-kills at exact points come from ``helpers/crashing_worker.py`` (a test-only subclass).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from functools import partial

import pytest
from helpers.pipeline import (
    Deployment,
    Scrape,
    WorkerProcess,
    assert_kpis_converge,
    counter_total,
    decoded_events,
    expected_kpis,
    scrape_all,
    simulated,
    wait_until,
)

from streams_dev.broker import EmbeddedBroker
from streams_dev.processes import free_port

pytestmark = pytest.mark.integration

PROCESSED = "support_events_processed_total"


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """Unlike conftest's ``workers``, kill -9 at the end: after a frozen or restarted broker a
    graceful stop could wait for its full timeout."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill()


def processed(worker: WorkerProcess) -> float:
    return counter_total(scrape_all([worker]), PROCESSED)


def owns_keys(worker: WorkerProcess) -> bool:
    return bool(scrape_all([worker]).values)


def wait_dead(worker: WorkerProcess, timeout: float) -> int:
    assert worker.process is not None
    try:
        return worker.process.wait(timeout)
    except Exception:
        raise AssertionError(f"{worker.name} did not die; log:\n{worker.log_tail()}") from None


def pipeline_ready(scrape: Scrape) -> float | None:
    """``support_pipeline_ready`` (added by the readiness work), None while it does not exist.

    READINESS: once the gauge exists, the outage assertions below (``assert_not_ready``) check
    that it reads 0 during a broker outage and 1 after recovery; until then they check only
    that a present gauge agrees.
    """
    values = [v for (name, _), v in scrape.counters.items() if name == "support_pipeline_ready"]
    return min(values) if values else None


def assert_not_ready(scrape: Scrape) -> None:
    assert pipeline_ready(scrape) in (None, 0.0), "ready while the broker is unreachable"


def assert_ready(scrape: Scrape) -> None:
    assert pipeline_ready(scrape) in (None, 1.0), "not ready after recovery"


def test_sigterm_kill_9_in_a_flush_and_in_recovery_lose_and_double_count_nothing(
    bootstrap_servers: str, unique_prefix: str, workers: list[WorkerProcess]
) -> None:
    deployment = Deployment(bootstrap_servers, unique_prefix)
    deployment.create_topics()
    records = simulated(seed=71, hours=1.5, rate=600.0, duplicate_rate=0.02, out_of_order=0.05)
    expected = expected_kpis(decoded_events(records), deployment.engine_config())
    valid = sum(1 for r in records if r.bad is None)

    # 1. SIGTERM during catch-up: a clean, quick shutdown (commit, no hang).
    first = WorkerProcess(deployment, "first").start()
    workers.append(first)
    first.wait_ready()
    deployment.produce(records)
    wait_until(lambda: processed(first) >= valid * 0.1, 90, lambda: first.log_tail())
    at_sigterm = processed(first)
    assert at_sigterm < valid, "caught up before the SIGTERM: use a longer stream"
    assert first.process is not None
    began = time.monotonic()
    os.killpg(first.process.pid, signal.SIGTERM)
    code = wait_dead(first, 30)
    took = time.monotonic() - began
    assert took < 10, f"SIGTERM took {took:.1f}s; log:\n{first.log_tail()}"
    assert code == 0, f"exit code {code}; log:\n{first.log_tail()}"

    # 2. kill -9 in the middle of sending a flush's partials (self-inflicted, exact point).
    second = WorkerProcess(
        deployment, "second", module="helpers.crashing_worker", env={"TEST_CRASH_AT": "flush:30"}
    ).start()
    workers.append(second)
    assert wait_dead(second, 120) == -signal.SIGKILL
    assert "SIGKILL at partial 30" in second.log(), second.log_tail()

    # 3. kill -9 during recovery (after the changelog was read, while rebuilding).
    third = WorkerProcess(
        deployment, "third", module="helpers.crashing_worker", env={"TEST_CRASH_AT": "recovery"}
    ).start()
    workers.append(third)
    assert wait_dead(third, 120) == -signal.SIGKILL
    assert "SIGKILL during recovery" in third.log(), third.log_tail()

    # 4. a clean start ends on the reference: nothing lost, nothing counted twice.
    fourth = WorkerProcess(deployment, "fourth").start()
    workers.append(fourth)
    fourth.wait_ready(90)
    assert_kpis_converge(lambda: scrape_all([fourth]).values, expected, timeout=180)
    assert not scrape_all([fourth]).duplicates
    assert "Crashed" not in fourth.log()


def test_two_to_one_to_two_workers_with_a_kill(
    bootstrap_servers: str, unique_prefix: str, workers: list[WorkerProcess]
) -> None:
    deployment = Deployment(bootstrap_servers, unique_prefix)
    deployment.create_topics()
    records = simulated(seed=73, hours=2.0, out_of_order=0.05)
    config = deployment.engine_config()
    cut1, cut2 = len(records) // 3, 2 * len(records) // 3
    one = WorkerProcess(deployment, "one").start()
    two = WorkerProcess(deployment, "two").start()
    workers += [one, two]
    one.wait_ready(90)
    two.wait_ready(90)
    deployment.produce(records[:cut1])
    assert_kpis_converge(
        lambda: scrape_all([one, two]).values, expected_kpis(decoded_events(records[:cut1]), config)
    )

    two.kill()  # 2 -> 1, mid-stream
    deployment.produce(records[cut1:cut2])
    assert_kpis_converge(
        lambda: scrape_all([one]).values,
        expected_kpis(decoded_events(records[:cut2]), config),
        timeout=120,
    )

    three = WorkerProcess(deployment, "three").start()  # 1 -> 2
    workers.append(three)
    three.wait_ready(90)
    deployment.produce(records[cut2:])
    expected = expected_kpis(decoded_events(records), config)
    assert_kpis_converge(lambda: scrape_all([one, three]).values, expected, timeout=120)
    both = scrape_all([one, three])
    assert not both.duplicates, f"keys exported twice: {both.duplicates[:5]}"
    for worker in (one, three):  # a busy worker may miss one scrape's timeout: retry
        wait_until(partial(owns_keys, worker), 30, lambda: "a worker owns no key")
    assert not scrape_all([one, three]).duplicates


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    """A broker of this test alone (it gets frozen or restarted), on a fixed port."""
    broker = EmbeddedBroker(port=free_port())
    broker.start()
    yield broker
    if broker.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(broker.pid, signal.SIGCONT)
    broker.stop()


FREEZE_SECONDS = 60.0


def test_broker_frozen_60_s_then_more_events(
    own_broker: EmbeddedBroker, unique_prefix: str, workers: list[WorkerProcess]
) -> None:
    deployment = Deployment(own_broker.bootstrap_servers, unique_prefix, partitions=2)
    deployment.create_topics()
    records = simulated(seed=79, hours=1.0)
    half = len(records) // 2
    config = deployment.engine_config()
    worker = WorkerProcess(deployment, "frozen").start()
    workers.append(worker)
    worker.wait_ready()
    deployment.produce(records[:half])
    assert_kpis_converge(
        lambda: scrape_all([worker]).values, expected_kpis(decoded_events(records[:half]), config)
    )
    assert_ready(scrape_all([worker]))
    assert worker.process is not None
    pid = worker.process.pid
    before = processed(worker)

    assert own_broker.pid is not None
    os.killpg(own_broker.pid, signal.SIGSTOP)
    frozen_at = time.monotonic()
    answered = 0
    while time.monotonic() - frozen_at < FREEZE_SECONDS:
        assert worker.alive(), f"the worker exited during the outage:\n{worker.log_tail()}"
        scrape = worker.scrape()  # /metrics keeps answering from memory
        if scrape is not None:
            answered += 1
            current = scrape_all([worker])
            assert counter_total(current, PROCESSED) == before
            if time.monotonic() - frozen_at > 20:
                assert_not_ready(current)
        time.sleep(5)
    assert answered >= FREEZE_SECONDS / 5 - 2, "/metrics stopped answering during the outage"
    os.killpg(own_broker.pid, signal.SIGCONT)

    deployment.produce(records[half:])  # events keep arriving after the outage
    expected = expected_kpis(decoded_events(records), config)
    assert_kpis_converge(lambda: scrape_all([worker]).values, expected, timeout=120)
    assert worker.alive()
    assert worker.process.pid == pid, "the worker was restarted"
    log = worker.log()
    assert "Crashed" not in log, worker.log_tail()
    assert log.count("[^Worker]: Ready") <= 1, "the worker restarted its services"
    assert_ready(scrape_all([worker]))


def test_broker_restarted_empty_is_reported_and_the_documented_recovery_works(
    unique_prefix: str, workers: list[WorkerProcess]
) -> None:
    """The broker loses everything (in-memory storage, restarted on the same port). The
    worker stays up and says so (error log naming the cause, support_offset_resets_total);
    the procedure of docs/operations.md (re-create the topics, restart the workers) gives a
    worker whose KPIs equal the reference of what the new broker holds."""
    port = free_port()
    broker = EmbeddedBroker(port=port).start()
    try:
        deployment = Deployment(broker.bootstrap_servers, unique_prefix, partitions=2)
        deployment.create_topics()
        worker = WorkerProcess(deployment, "before").start()
        workers.append(worker)
        worker.wait_ready()
        records = simulated(seed=83, hours=1.0)
        deployment.produce(records)
        config = deployment.engine_config()
        assert_kpis_converge(
            lambda: scrape_all([worker]).values, expected_kpis(decoded_events(records), config)
        )
        assert counter_total(scrape_all([worker]), "support_offset_resets_total") == 0

        broker.stop()
        broker = EmbeddedBroker(port=port).start()  # same address, no data

        def reported() -> bool:
            return counter_total(scrape_all([worker]), "support_offset_resets_total") > 0

        wait_until(reported, 90, lambda: f"not reported; log:\n{worker.log_tail()}")
        assert worker.alive()
        assert "the broker lost the partition's data" in worker.log()

        # What docs/operations.md says to do: stop every worker, re-create the topics, start
        # the workers. (Stopped after the topics exist again, the old worker could still
        # write its stale tickets into the new changelog.)
        worker.stop()
        deployment.create_topics()
        fresh = WorkerProcess(deployment, "after").start()
        workers.append(fresh)
        fresh.wait_ready()
        later = simulated(seed=89, hours=0.5)
        deployment.produce(later)
        assert_kpis_converge(
            lambda: scrape_all([fresh]).values, expected_kpis(decoded_events(later), config)
        )
        assert counter_total(scrape_all([fresh]), "support_offset_resets_total") == 0
    finally:
        broker.stop()
