"""Churn and retention through the real broker -> worker -> /metrics and ``support-kpis``.

Lifecycle traffic of the simulator's churn profile (back-dated customer base, sign-ups, churns,
plan changes, reactivations, a churn wave; duplicates and out-of-order delivery) goes to the
``customer-lifecycle`` topic of a fresh deployment; the worker's customer KPIs must equal the
brute-force reference (:class:`reference.CustomerReference`), on ``/metrics`` and on the KPI
topic, also after ``kill -9`` and a restart that recovers the customers from their changelog
while more traffic arrives.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

import pytest
from aiokafka.partitioner import murmur2
from helpers.pipeline import (
    Deployment,
    WorkerProcess,
    decoded_events,
    latest_by_key,
    read_topic,
    wait_until,
)
from helpers.reference import CustomerReference, reference_customer_kpis
from helpers.schemas import validator
from prometheus_client.parser import text_string_to_metric_families

from streams.core import kpis
from streams.core.kpis import CustomerKpiKey
from streams.events import CustomerLifecycle, Event
from streams.simulation.model import LifecycleOptions, SimOptions, SimRecord
from streams.simulator import generate

pytestmark = pytest.mark.integration

WINDOWS = (("15m", 900.0), ("1h", 3600.0), ("today", 26 * 3600.0))
ZONE = "America/New_York"
GRACE = 300.0
KPI_SCHEMA = validator("support-kpis")
CUSTOMER_METRICS = {
    "support_" + name for name in (*kpis.CUSTOMER_WINDOWED_KPIS, *kpis.CUSTOMER_LIVE_KPIS)
}
CustomerValues = dict[CustomerKpiKey, float | None]


def lifecycle_records(seed: int, start: float, hours: float) -> list[SimRecord]:
    """Only the ``customer-lifecycle`` records of the churn profile (200 customers)."""
    records = generate(
        "churn",
        seed=seed,
        start=start,
        duration_seconds=hours * 3600,
        rate=120.0,
        options=SimOptions(duplicate_rate=0.05, out_of_order=0.1),
        lifecycle=LifecycleOptions(customers=200, wave_start=hours * 1800, wave_length=600.0),
    )
    return [r for r in records if r.topic == "customer-lifecycle"]


def lifecycle_record(customer: str, index: int, at: float) -> SimRecord:
    """A churn (even index) or a move to segment ``moved`` (odd) of a known customer."""
    body: dict[str, object] = {
        "event_id": f"after-crash-{index}",
        "occurred_at": datetime.fromtimestamp(at, UTC).isoformat(),
        "schema_version": 1,
        "customer_id": customer,
        "change": "churned" if index % 2 == 0 else "activated",
    }
    if index % 2:
        body["segment"] = "moved"
    value = json.dumps(body).encode()
    return SimRecord("customer-lifecycle", customer.encode(), value, at, at)


def expected(
    events: Sequence[Event],
    partitions: int,
    windows: Sequence[tuple[str, float]] = WINDOWS,
    zone: str = ZONE,
) -> CustomerValues:
    """Reference values at the customers' stream time (SUPPORT_CLOCK=stream)."""

    def partition_of(event: CustomerLifecycle) -> int:  # Kafka's default partitioner
        hashed: int = murmur2(event.customer_id.encode())
        return (hashed & 0x7FFFFFFF) % partitions

    lifecycle = [e for e in events if isinstance(e, CustomerLifecycle)]
    now = max(e.occurred_at.timestamp() for e in lifecycle)
    return reference_customer_kpis(
        lifecycle, windows, zone, GRACE, now=now, partition_of=partition_of
    )


def scraped(workers: Sequence[WorkerProcess]) -> tuple[CustomerValues, list[CustomerKpiKey]]:
    """Customer KPI series of every worker's /metrics, and keys exported more than once."""
    values: CustomerValues = {}
    doubles = []
    for worker in workers:
        text = worker.scrape()
        if text is None:
            continue
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name not in CUSTOMER_METRICS:
                    continue
                window = sample.labels.get("window", kpis.LIVE_WINDOW)
                key = CustomerKpiKey(
                    sample.name.removeprefix("support_"), window, sample.labels["segment"]
                )
                if key in values:
                    doubles.append(key)
                values[key] = sample.value
    return values, doubles


def topic_values(deployment: Deployment) -> CustomerValues:
    """Latest customer KPI values on ``support-kpis``; every record is schema-valid and keyed
    ``kpi|window|segment`` after its content."""
    records = read_topic(deployment.bootstrap, deployment.topic("support-kpis"))
    values: CustomerValues = {}
    for raw_key, raw_value in latest_by_key(records).items():
        parts = raw_key.decode().split("|")
        if len(parts) != 3 or raw_value is None:
            continue
        document = json.loads(raw_value)
        errors = [e.message for e in KPI_SCHEMA.iter_errors(document)]
        assert not errors, (raw_key, errors)
        assert [document["kpi"], document["window"], document["dimensions"]["segment"]] == parts
        value = document["value"]
        values[CustomerKpiKey(*parts)] = None if value is None else float(value)
    return values


def differences(actual: Mapping[CustomerKpiKey, float | None], wanted: CustomerValues) -> str:
    """Exact agreement (counts are integers, ratios of integers); a missing series must be a
    ratio without value."""
    wrong = []
    for key in sorted(set(actual) | set(wanted)):
        a, e = actual.get(key), wanted.get(key)
        if a is None or e is None:
            if a != e:
                wrong.append(f"{key.topic_key()}: exported={a!r} reference={e!r}")
        elif abs(a - e) > 1e-9:
            wrong.append(f"{key.topic_key()}: exported={a!r} reference={e!r}")
    return "\n".join(wrong[:30])


def withheld_until_ready(worker: WorkerProcess, timeout: float = 120.0) -> int:
    """Scrape until support_pipeline_ready is 1; every scrape that said 0 must carry no
    customer series. Returns how many said 0."""
    deadline = time.monotonic() + timeout
    not_ready = 0
    while time.monotonic() < deadline:
        text = worker.scrape()
        if text is not None and "\nsupport_pipeline_ready " in text:
            if "\nsupport_pipeline_ready 1.0" in text:
                return not_ready
            not_ready += 1
            for family in text_string_to_metric_families(text):
                assert family.name not in CUSTOMER_METRICS, "customer KPIs while not ready"
        time.sleep(0.2)
    raise AssertionError(f"{worker.name} never ready; log:\n{worker.log_tail()}")


def converge(read: Callable[[], CustomerValues], wanted: CustomerValues, what: str) -> None:
    last = ["nothing read"]

    def agree() -> bool:
        actual = read()
        last[0] = differences(actual, wanted)
        return bool(actual) and not last[0]

    wait_until(agree, 120, lambda: f"{what} differs from the reference:\n{last[0]}", step=1.0)


def test_churn_and_retention_end_to_end_with_kill_9(
    bootstrap_servers: str, unique_prefix: str, workers: list[WorkerProcess]
) -> None:
    """Windows 15m, 1h and today (New York): /metrics and support-kpis equal the reference,
    nothing is exported while the restarted worker recovers, and after kill -9 the
    recovered customers take later churns and segment moves."""
    deployment = Deployment(
        bootstrap_servers,
        unique_prefix,
        env={
            "SUPPORT_CUSTOMER_WINDOWS": ",".join(name for name, _ in WINDOWS),
            "SUPPORT_TIMEZONE": ZONE,
            "SUPPORT_GRACE": f"{GRACE:g}s",
        },
    )
    deployment.create_topics()
    start = time.time() - 3 * 3600
    first_batch = lifecycle_records(seed=7, start=start, hours=1.5)
    # After the crash: another population's traffic, and churns and segment changes of
    # customers the first worker knew (right only if their state was recovered).
    known = sorted(
        {e.customer_id for e in decoded_events(first_batch) if isinstance(e, CustomerLifecycle)}
    )[:40]
    second_batch = lifecycle_records(seed=8, start=start + 1.5 * 3600, hours=1.0) + [
        lifecycle_record(customer, index, start + 1.6 * 3600 + index)
        for index, customer in enumerate(known)
    ]
    redelivered = first_batch[: len(first_batch) // 3]  # at-least-once
    wanted_first = expected(decoded_events(first_batch), deployment.partitions)
    everything = decoded_events(first_batch + second_batch + redelivered)
    wanted_all = expected(everything, deployment.partitions)
    assert wanted_first[CustomerKpiKey(kpis.CUSTOMERS_CHURNED, "1h")], "no churn to measure"
    assert {k.segment for k in wanted_all} > {kpis.ALL, kpis.UNKNOWN, "moved"}

    first = WorkerProcess(deployment, "first").start()
    workers.append(first)
    first.wait_ready()
    deployment.produce(first_batch)
    converge(lambda: scraped([first])[0], wanted_first, "/metrics")
    converge(lambda: topic_values(deployment), wanted_first, "support-kpis")

    # kill -9, more traffic while nobody runs, a re-delivery of part of the first batch
    # (at-least-once), and a restart that recovers the customers from the changelog.
    first.kill()
    deployment.produce(second_batch + redelivered)
    second = WorkerProcess(deployment, "second").start()
    workers.append(second)
    assert withheld_until_ready(second) > 0, "never seen recovering"
    converge(lambda: scraped([second])[0], wanted_all, "/metrics after kill -9")
    converge(lambda: topic_values(deployment), wanted_all, "support-kpis after kill -9")
    assert not scraped([second])[1], "a series exported twice"
    assert "customers: stage 1 owns" in second.log()
    recovered = [line for line in second.log().splitlines() if "customer records" in line]
    assert recovered
    assert " 0 customer records" not in recovered[-1], recovered


def test_two_workers_one_customer_stage_2_and_no_stale_series(
    bootstrap_servers: str, unique_prefix: str, workers: list[WorkerProcess]
) -> None:
    """A second worker joins mid-stream: customer partitions are shared, exactly one worker
    (the owner of the customer stage-2 partition) exports customer series, with the reference
    values; the owner leaves: the other takes over, and the series never double."""
    deployment = Deployment(bootstrap_servers, unique_prefix)
    deployment.create_topics()
    start = time.time() - 2 * 3600
    records = lifecycle_records(seed=21, start=start, hours=1.5)
    half = len(records) // 2
    windows = (("7d", 7 * 86400.0), ("30d", 30 * 86400.0))  # the defaults

    def wanted(part: Sequence[SimRecord]) -> CustomerValues:
        return expected(decoded_events(part), deployment.partitions, windows, "UTC")

    one = WorkerProcess(deployment, "one").start()
    workers.append(one)
    one.wait_ready()
    deployment.produce(records[:half])
    converge(lambda: scraped([one])[0], wanted(records[:half]), "/metrics of one")

    two = WorkerProcess(deployment, "two").start()
    workers.append(two)
    two.wait_ready(90)
    deployment.produce(records[half:])
    everything = wanted(records)
    converge(lambda: scraped([one, two])[0], everything, "/metrics of both")
    assert not scraped([one, two])[1], "a customer series exported by both workers"
    owners = [w for w in (one, two) if scraped([w])[0]]
    assert len(owners) == 1, "customer series must come from the stage-2 owner only"
    for worker in (one, two):
        lines = [line for line in worker.log().splitlines() if "customers: stage 1 owns" in line]
        assert lines, f"{worker.name} never owned customer partitions"
        assert "partitions []" not in lines[-1], f"{worker.name}: {lines[-1]}"

    owner = owners[0]
    survivor = two if owner is one else one
    owner.stop()
    converge(lambda: scraped([survivor])[0], everything, f"/metrics of {survivor.name} alone")
    assert not scraped([survivor])[1]


def test_wall_clock_values_equal_the_reference_at_the_read_instant(
    bootstrap_servers: str, unique_prefix: str, workers: list[WorkerProcess]
) -> None:
    """``SUPPORT_CLOCK=wall`` (the production default): the windows end at the instant
    /metrics is read, not at the last event, and slide without events; every customer series
    equals the reference at the instant just before or just after the scrape."""
    windows = (("15m", 900.0), ("1h", 3600.0), ("today", 26 * 3600.0))
    zone = "Europe/Berlin"
    deployment = Deployment(
        bootstrap_servers,
        unique_prefix,
        env={
            "SUPPORT_CLOCK": "wall",
            "SUPPORT_CUSTOMER_WINDOWS": "15m,1h,today",
            "SUPPORT_TIMEZONE": zone,
        },
    )
    deployment.create_topics()
    records = lifecycle_records(seed=5, start=time.time() - 53 * 60, hours=50 / 60)
    reference = CustomerReference(windows, zone, GRACE)
    for event in decoded_events(records):
        if isinstance(event, CustomerLifecycle):
            reference.feed(event)
    worker = WorkerProcess(deployment).start()
    workers.append(worker)
    worker.wait_ready()
    deployment.produce(records)
    last = ["nothing read"]

    def agree() -> bool:
        before = time.time()
        actual = scraped([worker])[0]
        after = time.time()
        if not actual:
            return False
        diffs = [differences(actual, reference.kpis(round(t * 1e6))) for t in (before, after)]
        last[0] = min(diffs, key=len)
        return not all(diffs)

    wait_until(agree, 120, lambda: f"/metrics differs from the reference:\n{last[0]}", step=1.0)
    # The data tells the clocks apart: read at the last event time (3 minutes earlier), the
    # windows would hold other values.
    stream_time = max(e.occurred_at.timestamp() for e in decoded_events(records))
    at_stream_time = reference.kpis(round(stream_time * 1e6))
    assert differences(at_stream_time, reference.kpis(round(time.time() * 1e6)))
