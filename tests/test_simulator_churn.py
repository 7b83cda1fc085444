"""The simulator's churn profile: customer lifecycle traffic, late surveys, late reopens."""

from __future__ import annotations

from collections import defaultdict

import msgspec
import pytest

from streams.core import kpis
from streams.core.customers import (
    CustomerConfig,
    CustomerEngine,
    CustomerKpiMerge,
    DictCustomerTable,
)
from streams.core.kpis import CustomerKpiKey
from streams.events import CustomerLifecycle, SurveySubmitted, TicketStatusChanged
from streams.simulation import LifecycleOptions, SimOptions, SimRecord, generate

START = 1_780_000_000.0  # 2026-05-28
HOUR = 3600.0
DAY = 86400.0


def lifecycle(records: list[SimRecord]) -> list[CustomerLifecycle]:
    return [
        msgspec.json.decode(r.value, type=CustomerLifecycle)
        for r in records
        if r.topic == "customer-lifecycle" and r.bad is None
    ]


@pytest.fixture(scope="module")
def churn() -> list[SimRecord]:
    return list(generate("churn", seed=3, start=START, duration_seconds=3 * HOUR))


def test_lifecycle_records_are_valid_and_keyed_by_customer(churn: list[SimRecord]) -> None:
    records = [r for r in churn if r.topic == "customer-lifecycle"]
    assert len(records) > 2000
    for record in records:
        event = msgspec.json.decode(record.value, type=CustomerLifecycle)
        assert record.key == event.customer_id.encode()
        assert record.deliver_at >= record.occurred_at
    # the initial customer base signed up before the run (back-dated, up to 400 days)
    before = [r for r in records if r.occurred_at < START]
    assert len(before) == 2000
    assert min(r.occurred_at for r in before) >= START - 400 * DAY


def test_sign_ups_churns_reactivations_and_plan_changes(churn: list[SimRecord]) -> None:
    events = lifecycle(churn)
    history: dict[str, list[CustomerLifecycle]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e.occurred_at):
        history[event.customer_id].append(event)
    changes = [[e.change for e in h] for h in history.values()]
    assert sum(c[-2:] == ["churned", "activated"] for c in changes) > 5  # came back
    assert any("churned" in c and c[0] == "activated" for c in changes)
    plan_changes = [
        h for h in history.values() if len({e.segment for e in h if e.segment is not None}) > 1
    ]
    assert plan_changes
    assert any(e.segment is None for e in events)  # counted as "unknown"


def test_the_churn_wave_shows_in_the_starter_segment(churn: list[SimRecord]) -> None:
    config = CustomerConfig()
    engine = CustomerEngine(0, DictCustomerTable(), config)
    store = CustomerKpiMerge(config)
    clock = 0
    for event in sorted(lifecycle(churn), key=lambda e: e.occurred_at):
        clock = max(clock, round(event.occurred_at.timestamp() * 1_000_000))
        engine.process(event, clock)
    for partial in engine.flush():
        store.apply(partial)
    values = store.values(round((START + 3 * HOUR) * 1_000_000))
    starter = values[CustomerKpiKey(kpis.CUSTOMER_CHURN_RATIO, "7d", "starter")]
    pro = values[CustomerKpiKey(kpis.CUSTOMER_CHURN_RATIO, "7d", "pro")]
    overall = values[CustomerKpiKey(kpis.CUSTOMER_CHURN_RATIO, "7d", kpis.ALL)]
    assert starter is not None
    assert starter > 0.4
    assert pro is not None
    assert pro < 0.1
    assert overall is not None
    assert 0.1 < overall < starter
    assert (values[CustomerKpiKey(kpis.CUSTOMERS_ACTIVE, "live", kpis.ALL)] or 0) > 1000


def test_surveys_days_after_the_solve_and_reopens_a_week_later() -> None:
    records = list(generate("churn", seed=5, start=START, duration_seconds=14 * DAY, rate=10))
    solved: dict[str, float] = {}
    late_surveys = 0
    late_reopens = 0
    for record in sorted(records, key=lambda r: r.occurred_at):
        if record.bad is not None or record.duplicate is not None:
            continue
        if record.topic == "ticket-status-changed":
            status = msgspec.json.decode(record.value, type=TicketStatusChanged)
            if status.status == "solved":
                solved[status.ticket_id] = record.occurred_at
            elif status.status == "open" and status.ticket_id in solved:
                late_reopens += record.occurred_at - solved[status.ticket_id] >= 7 * DAY
        elif record.topic == "survey-submitted":
            survey = msgspec.json.decode(record.value, type=SurveySubmitted)
            if survey.ticket_id in solved and survey.kind == "csat":
                late_surveys += record.occurred_at - solved[survey.ticket_id] >= 7 * DAY
    assert late_surveys > 3
    assert late_reopens > 3


def test_lifecycle_traffic_leaves_the_ticket_traffic_alone() -> None:
    steady = list(generate("steady", seed=9, start=START, duration_seconds=2 * HOUR))
    quiet = SimOptions(late_survey_share=0.0, late_reopen_share=0.0)
    churn = list(generate("churn", seed=9, start=START, duration_seconds=2 * HOUR, options=quiet))
    assert [r for r in churn if r.topic != "customer-lifecycle"] == steady
    assert len(churn) > len(steady)
    none = LifecycleOptions(customers=0)
    only_tickets = generate(
        "churn", seed=9, start=START, duration_seconds=HOUR, options=quiet, lifecycle=none
    )
    assert list(only_tickets) == [r for r in steady if r.occurred_at < START + HOUR]


def test_churn_profile_is_deterministic_and_noise_applies() -> None:
    noise = SimOptions(duplicate_rate=0.05, out_of_order=0.1, bad_input_rate=0.02)

    def run() -> list[SimRecord]:
        return list(generate("churn", seed=4, start=START, duration_seconds=HOUR, options=noise))

    first = run()
    assert first == run()
    bad = [r for r in first if r.topic == "customer-lifecycle" and r.bad is not None]
    assert bad


def test_bad_churn_options_are_refused() -> None:
    with pytest.raises(ValueError, match="customers"):
        LifecycleOptions(customers=-1)
    with pytest.raises(ValueError, match="wave_share"):
        LifecycleOptions(wave_share=1.5)
    with pytest.raises(ValueError, match="wave_length"):
        LifecycleOptions(wave_length=0.0)
    with pytest.raises(ValueError, match="late_survey_share"):
        SimOptions(late_survey_share=-0.1)
