"""End to end on the real embedded broker: simulator -> Kafka -> worker(s) -> /metrics,
checked against the brute-force reference computed from the same records."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

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
from helpers.reference import US, Reference, differences, format_differences

from streams.core import kpis
from streams.core.kpis import KpiKey, KpiValues
from streams.simulation.model import SimOptions, SimRecord
from streams.simulator import generate

pytestmark = pytest.mark.integration


@pytest.fixture
def deployment(bootstrap_servers: str, unique_prefix: str) -> Deployment:
    deployment = Deployment(bootstrap_servers, unique_prefix)
    deployment.create_topics()
    return deployment


def converged(
    deployment: Deployment,
    workers: list[WorkerProcess],
    records: list[SimRecord],
    expected: KpiValues,
) -> Scrape:
    """A worker consumes ``records`` until every KPI it exports equals ``expected``; its
    /metrics then (one series per key)."""
    worker = WorkerProcess(deployment).start()
    workers.append(worker)
    worker.wait_ready()
    deployment.produce(records)
    assert_kpis_converge(lambda: scrape_all([worker]).values, expected)
    scrape = scrape_all([worker])
    assert not scrape.duplicates
    return scrape


def test_created_tickets_reach_metrics(
    deployment: Deployment, workers: list[WorkerProcess]
) -> None:
    """The walking skeleton: ticket-created events show up as support_tickets_created."""
    records = [r for r in simulated(seed=7, hours=0.5) if r.topic == "ticket-created"]
    worker = WorkerProcess(deployment).start()
    workers.append(worker)
    worker.wait_ready()
    deployment.produce(records)
    expected = float(len({r.key for r in records}))
    key = KpiKey("tickets_created", "1h")

    def arrived() -> bool:
        return scrape_all([worker]).values.get(key) == expected

    wait_until(arrived, 60, lambda: f"got {scrape_all([worker]).values.get(key)} not {expected}")


def test_kpis_equal_reference_with_noise(
    deployment: Deployment, workers: list[WorkerProcess]
) -> None:
    """Duplicates, out-of-order delivery and bad input: every KPI equals the reference."""
    records = simulated(
        seed=11, hours=2.0, duplicate_rate=0.03, out_of_order=0.1, bad_input_rate=0.02
    )
    expected = expected_kpis(decoded_events(records), deployment.engine_config())
    scrape = converged(deployment, workers, records, expected)
    bad = sum(1 for r in records if r.bad is not None and r.bad != "before_created")
    assert counter_total(scrape, "support_events_rejected_total") >= bad
    assert counter_total(scrape, "support_events_duplicate_total") > 0


def test_a_replayed_backlog_turns_no_reply_into_an_orphan(
    bootstrap_servers: str, unique_prefix: str, workers: list[WorkerProcess]
) -> None:
    """Five hours of every topic are in the broker before the worker starts (a replay, or a
    restart after an outage); Faust hands over what it fetched topic partition by topic
    partition, so replies can be read hours of event time ahead of their tickets' creations.
    With a 1 h orphan hold on the stream clock, none may become an orphan: the KPIs equal
    the reference fed in event-time order (SPEC §3)."""
    deployment = Deployment(bootstrap_servers, unique_prefix, env={"SUPPORT_ORPHAN_HOLD": "1h"})
    deployment.create_topics()
    records = simulated(seed=31, hours=5.0, rate=400.0)
    in_event_time = sorted(decoded_events(records), key=lambda event: event.occurred_at)
    expected = expected_kpis(in_event_time, deployment.engine_config())
    deployment.produce(records)
    worker = WorkerProcess(deployment).start()
    workers.append(worker)
    worker.wait_ready(90)
    assert_kpis_converge(lambda: scrape_all([worker]).values, expected)
    assert counter_total(scrape_all([worker]), "support_events_orphaned_total") == 0


def test_kill_9_mid_stream_then_restart(
    deployment: Deployment, workers: list[WorkerProcess]
) -> None:
    """kill -9 while processing, restart: the final KPIs equal an uninterrupted run."""
    records = simulated(seed=23, hours=2.0, duplicate_rate=0.02, out_of_order=0.05)
    expected = expected_kpis(decoded_events(records), deployment.engine_config())
    total = sum(1 for r in records if r.bad is None)
    first = WorkerProcess(deployment, "first").start()
    workers.append(first)
    first.wait_ready()
    deployment.produce(records)

    def some_processed() -> bool:
        processed = counter_total(scrape_all([first]), "support_events_processed_total")
        return processed >= total * 0.3

    wait_until(some_processed, 60, lambda: "the first worker processed too little")
    first.kill()
    second = WorkerProcess(deployment, "second").start()
    workers.append(second)
    second.wait_ready(90)
    assert_kpis_converge(lambda: scrape_all([second]).values, expected)


def test_two_workers_rebalance_exactly_one_series_per_key(
    deployment: Deployment, workers: list[WorkerProcess]
) -> None:
    """A second worker joins mid-stream and leaves again: the union of both /metrics has
    exactly one series per key, with the reference values, before and after."""
    records = simulated(seed=31, hours=2.0, out_of_order=0.05)
    half = len(records) // 2
    config = deployment.engine_config()
    one = WorkerProcess(deployment, "one").start()
    workers.append(one)
    one.wait_ready()
    deployment.produce(records[:half])
    assert_kpis_converge(
        lambda: scrape_all([one]).values, expected_kpis(decoded_events(records[:half]), config)
    )

    two = WorkerProcess(deployment, "two").start()
    workers.append(two)
    two.wait_ready(90)
    deployment.produce(records[half:])
    expected = expected_kpis(decoded_events(records), config)
    assert_kpis_converge(lambda: scrape_all([one, two]).values, expected)
    both = scrape_all([one, two])
    assert not both.duplicates, f"keys exported twice: {both.duplicates[:5]}"
    assert scrape_all([one]).values, "worker one owns no key"
    assert scrape_all([two]).values, "worker two owns no key"

    two.stop()
    assert_kpis_converge(lambda: scrape_all([one]).values, expected)
    assert not scrape_all([one]).duplicates


def zone_of_this_hours_midnight() -> str:
    """A whole-hour IANA zone (``Etc/GMT…``) whose local midnight was at the start of the
    current UTC hour."""
    hour = datetime.now(UTC).hour
    hours = -hour if hour <= 12 else 24 - hour  # the UTC offset that makes it 00:MM locally
    return f"Etc/GMT{-hours:+d}"  # the Etc zones' sign is inverted (Etc/GMT+5 is UTC-5)


def test_wall_clock_kpis_equal_reference_at_the_read_instant(
    deployment: Deployment, workers: list[WorkerProcess]
) -> None:
    """``SUPPORT_CLOCK=wall``, the production default: 50 minutes of events ending 3 minutes
    ago, noisy delivery; every exported KPI equals the reference computed at the instant
    /metrics was read (windows and live ages move with the wall clock: read at the stream
    time, 3 minutes earlier, windows and ages would differ), ``today`` included."""
    deployment.env["SUPPORT_CLOCK"] = "wall"
    # The calendar-day window too, in a zone whose local midnight fell at the start of this
    # UTC hour: inside the stream unless the test runs in the first 3 or the last 6 minutes
    # of an hour, so yesterday's events must leave ``today``.
    deployment.env["SUPPORT_WINDOWS"] = "15m,1h,24h,today"
    deployment.env["SUPPORT_TIMEZONE"] = zone_of_this_hours_midnight()
    start = time.time() - 53 * 60
    records = list(
        generate(
            "steady",
            seed=43,
            start=start,
            duration_seconds=50 * 60,
            rate=400.0,
            options=SimOptions(duplicate_rate=0.03, out_of_order=0.1, bad_input_rate=0.01),
        )
    )
    reference = Reference(deployment.engine_config())
    for event in decoded_events(records):
        reference.feed(event)
    worker = WorkerProcess(deployment).start()
    workers.append(worker)
    worker.wait_ready()
    deployment.produce(records)
    age = kpis.OLDEST_UNANSWERED_AGE
    last: list[str] = ["nothing read yet"]

    def agree() -> bool:
        before = time.time()
        actual = scrape_all([worker]).values
        after = time.time()
        if not actual:
            return False
        # Everything but the ages is a step function of the clock: equal to the reference at
        # the instant before or after the scrape (a bucket edge or an SLA target may fall
        # between); each age lies between the reference's ages at those two instants.
        expected = [reference.kpis(round(now * US)) for now in (before, after)]
        diffs = [
            differences(
                {k: v for k, v in actual.items() if k.kpi != age},
                {k: v for k, v in side.items() if k.kpi != age},
            )
            for side in expected
        ]
        if all(diffs):
            last[0] = format_differences(min(diffs, key=len), actual_name="exported")
            return False
        ages = {k: v for k, v in actual.items() if k.kpi == age}
        expected_ages = [{k: v for k, v in side.items() if k.kpi == age} for side in expected]
        if set(ages) != set(expected_ages[1]):
            last[0] = f"age series differ: {sorted(set(ages) ^ set(expected_ages[1]))[:5]}"
            return False
        for key, value in ages.items():
            low, high = expected_ages[0].get(key), expected_ages[1][key]
            if value is None or high is None or not (low or 0.0) - 1e-6 <= value <= high + 1e-6:
                last[0] = f"{key.topic_key()}: exported {value}, reference {low}..{high}"
                return False
        return True

    wait_until(agree, 120, lambda: last[0], step=1.0)


# -- business hours (issue 12) --------------------------------------------------------------


def _half_hours(first_minute: int, length: int) -> str:
    """Every hour of the day from ``first_minute`` for ``length`` minutes: a calendar whose
    business time differs from calendar time whatever the time of day the test runs."""
    spans = [f'"{h:02d}:{first_minute:02d}-{h:02d}:{first_minute + length:02d}"' for h in range(24)]
    return "[" + ", ".join(spans) + "]"


@pytest.fixture
def calendars_file(tmp_path: Path) -> Path:
    path = tmp_path / "calendars.toml"
    path.write_text(
        f"""
[default]
timezone = "Asia/Kolkata"
hours = {{ mon-sun = {_half_hours(0, 30)} }}

[teams.Billing]
timezone = "America/St_Johns"
hours = {{ mon-sun = {_half_hours(10, 40)} }}
"""
    )
    return path


def test_business_kpis_through_the_pipeline_equal_the_reference(
    bootstrap_servers: str,
    unique_prefix: str,
    calendars_file: Path,
    workers: list[WorkerProcess],
) -> None:
    env = {
        "SUPPORT_CALENDARS_FILE": str(calendars_file),
        "SUPPORT_FIRST_RESPONSE_SLA_CLOCK": "business",
        "SUPPORT_RESOLUTION_SLA_CLOCK": "urgent=business,high=business",
        "SUPPORT_RESOLUTION_SLA_TARGETS": "urgent=2m,high=5m,normal=15m,low=30m",
    }
    deployment = Deployment(bootstrap_servers, unique_prefix, env=env)
    deployment.create_topics()
    records = simulated(seed=41, hours=1.0, rate=240.0)
    expected = expected_kpis(decoded_events(records), deployment.engine_config())
    # The stream exercises what it should: business time below calendar time, an SLA missed.
    overall = {k.kpi: v for k, v in expected.items() if k[1:] == ("1h", "all", "all", "all")}
    business = overall[kpis.REQUESTER_WAIT_BUSINESS_MEAN]
    calendar = overall[kpis.REQUESTER_WAIT_MEAN]
    assert business is not None
    assert calendar is not None
    assert 0 < business < calendar
    assert overall[kpis.RESOLUTION_SLA_ATTAINMENT] not in (None, 1.0)
    scrape = converged(deployment, workers, records, expected)
    assert KpiKey(kpis.FIRST_RESPONSE_BUSINESS_P90, "1h") in scrape.values
