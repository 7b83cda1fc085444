"""Attributes outlive state through the real broker -> worker -> /metrics path (SPEC §3).

Short windows and retention (1 h + 1 min), so that solved tickets retire within the stream:
a late survey of a retired ticket counts with its team, channel and priority, and a late
reopen brings it back to the live backlog, also when the worker was killed (``kill -9``)
between the retirement and the late events: the attribute records are recovered from the
tickets changelog like ticket state (into memory, or into a new worker's RocksDB files). The
exported KPIs must equal the reference's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
from aiokafka.partitioner import murmur2
from helpers.pipeline import (
    Deployment,
    WorkerProcess,
    assert_kpis_converge,
    counter_total,
    scrape_all,
    wait_until,
)
from helpers.reference import reference_kpis
from helpers.strategies import Builder, encode, topic_of

from streams.core import kpis as K
from streams.core.kpis import ALL, LIVE_WINDOW, KpiKey, KpiValues
from streams.events import Channel, Event, event_time, routing_key

pytestmark = pytest.mark.integration

PARTITIONS = 4
SETTINGS = {
    "SUPPORT_WINDOWS": "15m,1h",
    "SUPPORT_GRACE": "1m",
    "SUPPORT_RETENTION": "61m",
    "SUPPORT_ATTRIBUTE_RETENTION": "7d",
}


def partition_of(event: Event) -> int:
    """The input partition Kafka's default partitioner gives the event's key."""
    hashed: int = murmur2(routing_key(event).encode())
    return (hashed & 0x7FFFFFFF) % PARTITIONS


def _clock_pushers(b: Builder, at: float) -> list[Event]:
    """One ticket creation per input partition at ``at``: every partition's stream clock moves
    on (and its housekeeping retires what is due)."""
    found: dict[int, Event] = {}
    n = 0
    while len(found) < PARTITIONS:
        event = b.created(f"P{at:.0f}-{n}", at, team="ops")
        found.setdefault(partition_of(event), event)
        n += 1
    return list(found.values())


def _processed(worker: WorkerProcess) -> float:
    return counter_total(scrape_all([worker]), "support_events_processed_total")


def _produce(deployment: Deployment, worker: WorkerProcess, events: Sequence[Event]) -> None:
    """Produce ``events`` in order and wait until the worker has processed all of them."""
    before = _processed(worker)
    for event in events:
        deployment.produce_raw(topic_of(event), [(routing_key(event).encode(), encode(event))])
    wait_until(
        lambda: _processed(worker) >= before + len(events),
        90,
        lambda: f"not processed; log:\n{worker.log_tail()}",
    )


def _expected(events: Sequence[Event], deployment: Deployment) -> KpiValues:
    now = max(event_time(event) for event in events)
    return reference_kpis(events, deployment.engine_config(), now=now, partition_of=partition_of)


def _start(workers: list[WorkerProcess], deployment: Deployment, name: str) -> WorkerProcess:
    worker = WorkerProcess(deployment, name)
    workers.append(worker)  # conftest's fixture stops it
    worker.start().wait_ready(120)
    return worker


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_late_survey_and_reopen_after_retirement_count_also_after_kill_9(
    bootstrap_servers: str, unique_prefix: str, workers: list[WorkerProcess], store: str
) -> None:
    env = {**SETTINGS, "SUPPORT_STORE": store}
    deployment = Deployment(bootstrap_servers, unique_prefix, PARTITIONS, env=env)
    deployment.create_topics()
    b = Builder(unique_prefix)
    solved: list[Event] = []
    tickets: tuple[tuple[str, str, Channel], ...] = (
        ("T1", "billing", "chat"),
        ("T2", "tech", "email"),
    )
    for ticket, team, channel in tickets:
        solved += [
            b.created(ticket, 0, team=team, channel=channel, priority="high"),
            b.replied(ticket, 300),
            b.status(ticket, 600, "solved"),
        ]
    solved += [b.created("T3", 0, team="sales"), b.status("T3", 600, "solved")]
    # Retired at the end of the solve's bucket + 61 min (4320 s); the pushers move every
    # partition's clock past it.
    retire = _clock_pushers(b, 4400)
    late_survey = b.survey(4800, "csat", 5, ticket="T1")

    first = _start(workers, deployment, "first")
    _produce(deployment, first, [*solved, *retire])
    _produce(deployment, first, [late_survey])
    events = [*solved, *retire, late_survey]
    expected = _expected(events, deployment)
    assert expected[KpiKey(K.CSAT_RESPONSES, "1h", "billing", ALL, ALL)] == 1
    assert expected[KpiKey(K.CSAT_RESPONSES, "1h", ALL, "chat", ALL)] == 1
    assert expected[KpiKey(K.CSAT_RESPONSES, "1h", ALL, ALL, "high")] == 1
    assert_kpis_converge(lambda: scrape_all([first]).values, expected)

    # kill -9 between the retirement and the next late events (past a commit first: the
    # consumer commits, and the ticket record cache is written, every few seconds).
    time.sleep(4)
    first.kill()
    second = _start(workers, deployment, "second")
    later: list[Event] = [
        b.survey(5000, "csat", 2, ticket="T2"),
        b.status("T3", 5100, "open"),
        b.created("T1", 0, team="other"),  # a re-sent creation: a duplicate
        b.status("T2", 600, "solved"),  # a re-sent old event: a duplicate
    ]
    _produce(deployment, second, later)
    events += later
    expected = _expected(events, deployment)
    assert expected[KpiKey(K.CSAT_RESPONSES, "1h", "tech", ALL, ALL)] == 1
    assert expected[KpiKey(K.CSAT_RESPONSES, "1h", ALL, ALL, ALL)] == 2
    assert expected[KpiKey(K.TICKETS_REOPENED, "15m", "sales", ALL, ALL)] == 1
    assert expected[KpiKey(K.OPEN_TICKETS, LIVE_WINDOW, "sales", ALL, ALL)] == 1
    assert KpiKey(K.OPEN_TICKETS, LIVE_WINDOW, "billing", ALL, ALL) not in expected
    assert_kpis_converge(lambda: scrape_all([second]).values, expected)
    assert counter_total(scrape_all([second]), "support_events_duplicate_total") >= 2
