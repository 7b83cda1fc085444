"""Recovery cost and readiness on the real embedded broker (issue 10).

- Recovery reads a bounded number of changelog records: the same bound after 1 and after 5
  rounds of updates to the same tickets (the embedded Tansu broker never compacts, so only
  the worker's checkpoints can bound it).
- ``support_pipeline_ready`` is 0 while a worker recovers or catches up, and no KPI series is
  exported then; the first scrape that says 1 already carries the complete values.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from helpers.pipeline import (
    Deployment,
    WorkerProcess,
    counter_total,
    decoded_events,
    expected_kpis,
    parse_metrics,
    scrape_all,
    wait_until,
)
from helpers.reference import differences, format_differences

from streams.simulation.model import SimOptions, SimRecord
from streams.simulator import generate

pytestmark = pytest.mark.integration

TICKETS = 200
CHECKPOINT_RECORDS = 100
_RECOVERED = re.compile(r"recovered (\d+) ticket records")


def _event(kind: str, ticket: int, at: datetime, serial: str, **fields: object) -> bytes:
    body = {
        "event_id": f"{kind}-{ticket}-{serial}",
        "occurred_at": at.isoformat().replace("+00:00", "Z"),
        "schema_version": 1,
        "ticket_id": f"T{ticket}",
        **fields,
    }
    return json.dumps(body).encode()


def _processed(worker: WorkerProcess) -> float:
    return counter_total(scrape_all([worker]), "support_events_processed_total")


def _recovered(worker: WorkerProcess) -> int:
    """Changelog records the worker read in its (last) recovery, from its log."""
    found = _RECOVERED.findall(worker.log())
    assert found, f"no recovery line in the log:\n{worker.log_tail()}"
    return int(found[-1])


def _restart(
    deployment: Deployment, old: WorkerProcess, name: str, env: dict[str, str] | None = None
) -> WorkerProcess:
    old.kill()
    new = WorkerProcess(deployment, name, env=env).start()
    new.wait_ready(90)
    return new


def test_recovery_reads_a_bounded_number_of_records(
    bootstrap_servers: str, unique_prefix: str, workers: list[WorkerProcess]
) -> None:
    deployment = Deployment(
        bootstrap_servers,
        unique_prefix,
        env={"SUPPORT_CHECKPOINT_RECORDS": str(CHECKPOINT_RECORDS)},
    )
    deployment.create_topics()
    start = datetime.now(UTC) - timedelta(hours=2)
    created = [
        (
            f"T{t}".encode(),
            _event(
                "c",
                t,
                start,
                "0",
                customer_id="c",
                team="Billing",
                channel="email",
                priority="normal",
            ),
        )
        for t in range(TICKETS)
    ]
    first = WorkerProcess(deployment, "first").start()
    workers.append(first)
    first.wait_ready()
    deployment.produce_raw("ticket-created", created)
    sent = float(TICKETS)

    def update_round(worker: WorkerProcess, number: int) -> None:
        nonlocal sent
        at = start + timedelta(minutes=number)
        status = "pending" if number % 2 else "open"
        items = [
            (f"T{t}".encode(), _event("s", t, at, str(number), status=status))
            for t in range(TICKETS)
        ]
        deployment.produce_raw("ticket-status-changed", items)
        sent += TICKETS
        wait_until(lambda: _processed(worker) >= sent, 60, lambda: "round not processed")
        time.sleep(3.5)  # past a commit: each round writes every ticket once more

    update_round(first, 1)
    second = _restart(deployment, first, "second")
    workers.append(second)
    after_one = _recovered(second)
    sent = _processed(second)
    for number in range(2, 7):
        update_round(second, number)
    # The second worker read the changelog while joining (the default); the third reads
    # only its assigned partitions, after the join: the same bound holds for both.
    third = _restart(deployment, second, "third", {"SUPPORT_RECOVERY_READ_AT_START": "false"})
    workers.append(third)
    after_five = _recovered(third)
    assert "tickets-changelog read at start" in second.log()
    assert "tickets-changelog read at start" not in third.log()

    # At most the state once (a checkpoint) plus the writes since it (fewer than the larger
    # of the state and SUPPORT_CHECKPOINT_RECORDS), plus a marker per partition.
    bound = TICKETS + max(TICKETS, CHECKPOINT_RECORDS) + deployment.partitions
    assert TICKETS <= after_one <= bound
    assert TICKETS <= after_five <= bound, (after_one, after_five)
    assert "tickets checkpoint:" in second.log()
    # ... while the changelog itself holds every round: 6 writes per ticket at least.
    assert after_five < 6 * TICKETS


def _simulated(seed: int) -> list[SimRecord]:
    start = time.time() - 2.5 * 3600
    return list(
        generate(
            "steady",
            seed=seed,
            start=start,
            duration_seconds=2 * 3600,
            rate=400.0,
            options=SimOptions(duplicate_rate=0.02, out_of_order=0.05),
        )
    )


def _watch_until_ready(worker: WorkerProcess, timeout: float = 120.0) -> tuple[int, str]:
    """Scrape every 0.2 s until support_pipeline_ready is 1; returns how many scrapes said 0
    (each must have exported no KPI series) and the first scrape that said 1."""
    deadline = time.monotonic() + timeout
    not_ready = 0
    while time.monotonic() < deadline:
        text = worker.scrape()
        if text is not None and "support_pipeline_ready" in text:
            ready = re.search(r"^support_pipeline_ready (\S+)$", text, re.M)
            assert ready is not None
            if float(ready.group(1)) == 1.0:
                return not_ready, text
            not_ready += 1
            assert not parse_metrics([text]).values, "KPI series exported while not ready"
        time.sleep(0.2)
    raise AssertionError(f"{worker.name} never ready; log:\n{worker.log_tail()}")


def test_pipeline_ready_only_with_complete_values(
    bootstrap_servers: str, unique_prefix: str, workers: list[WorkerProcess]
) -> None:
    deployment = Deployment(bootstrap_servers, unique_prefix, env={"SUPPORT_READY_MAX_LAG": "0"})
    deployment.create_topics()
    records = _simulated(seed=41)
    expected = expected_kpis(decoded_events(records), deployment.engine_config())
    deployment.produce(records)  # a backlog before the worker starts: it must catch up

    def check(worker: WorkerProcess) -> None:
        not_ready, text = _watch_until_ready(worker)
        assert not_ready > 0, "never seen catching up"
        diffs = differences(parse_metrics([text]).values, expected)
        assert not diffs, format_differences(diffs, actual_name="first ready scrape")

    first = WorkerProcess(deployment, "first").start()
    workers.append(first)
    check(first)
    # kill -9 and restart: 0 again while it recovers, then complete values at once.
    first.kill()
    second = WorkerProcess(deployment, "second").start()
    workers.append(second)
    check(second)
