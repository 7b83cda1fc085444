"""Business hours end to end on the real embedded broker: simulator -> Kafka -> worker ->
/metrics with a calendar file and SLA targets on the business clock, checked against the
brute-force reference computed from the same records."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline import (
    Deployment,
    WorkerProcess,
    assert_kpis_converge,
    decoded_events,
    expected_kpis,
    scrape_all,
)

from streams.core import kpis
from streams.core.kpis import KpiKey
from streams.simulator import generate

pytestmark = pytest.mark.integration


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


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


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
        "SUPPORT_RESOLUTION_SLA_TARGETS": "urgent=20m,high=1h,normal=2h,low=3h",
    }
    deployment = Deployment(bootstrap_servers, unique_prefix, env=env)
    deployment.create_topics()
    start = time.time() - 3600 - 600
    records = list(generate("steady", seed=41, start=start, duration_seconds=3600, rate=240))
    expected = expected_kpis(decoded_events(records), deployment.engine_config())
    # The stream exercises what it should: business time below calendar time, an SLA missed.
    overall = {k.kpi: v for k, v in expected.items() if k[1:] == ("1h", "all", "all", "all")}
    business = overall[kpis.REQUESTER_WAIT_BUSINESS_MEAN]
    calendar = overall[kpis.REQUESTER_WAIT_MEAN]
    assert business is not None
    assert calendar is not None
    assert 0 < business < calendar
    assert overall[kpis.RESOLUTION_SLA_ATTAINMENT] not in (None, 1.0)
    worker = WorkerProcess(deployment).start()
    workers.append(worker)
    worker.wait_ready()
    deployment.produce(records)
    assert_kpis_converge(lambda: scrape_all([worker]).values, expected)
    scrape = scrape_all([worker])
    assert not scrape.duplicates
    assert KpiKey(kpis.FIRST_RESPONSE_BUSINESS_P90, "1h") in scrape.values
