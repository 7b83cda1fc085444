"""Differential tests: the real engine (``streams.core.replay``) against the brute-force reference.

Every generated stream first goes through the real decoder, as in the pipeline: far-future events
are rejected there, and only accepted events reach the engine and the reference. Both sides are
read at the same ``now`` and compared after normalization (missing count = 0, missing
ratio/mean/quantile = None); quantiles may differ by 1% relative, everything else by 1e-9.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import differences, format_differences, reference_kpis
from strategies import Builder, Scenario, encode, scenarios, topic_of, ts

from streams.core import kpis as K
from streams.core.kpis import ALL, LIVE_WINDOW, EngineConfig, KpiKey, KpiValues
from streams.core.replay import replay
from streams.decoding import Rejection, decode
from streams.events import Event, event_time

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def decoded(scenario: Scenario) -> list[Event]:
    """The scenario's arrivals as the decoder accepts them (far-future events dropped)."""
    accepted: list[Event] = []
    for event in scenario.arrivals:
        result = decode(
            topic_of(event),
            encode(event),
            now=scenario.wall,
            future_tolerance_seconds=scenario.config.future_tolerance_seconds,
        )
        if isinstance(result, Rejection):
            # The generator only produces valid events; the only expected rejection is the future.
            assert result.reason == "future_timestamp", (result, event)
            continue
        accepted.append(result)
    return accepted


def describe(events: Sequence[Event], scenario: Scenario, now: float) -> str:
    return (
        f"{len(events)} accepted of {len(scenario.arrivals)} arrivals, now={now}, "
        f"config={scenario.config}, injected={scenario.notes}"
    )


def assert_agree(
    actual: KpiValues, expected: KpiValues, context: str, *, names: tuple[str, str]
) -> None:
    diffs = differences(actual, expected)
    if diffs:
        report = format_differences(diffs, actual_name=names[0], expected_name=names[1])
        raise AssertionError(f"{report}\n{context}")


def check(scenario: Scenario, *, partitions: int = 1, later_by: float = 0.0) -> None:
    """Engine == reference for the scenario, read at the last event time plus ``later_by``."""
    events = decoded(scenario)
    if not events:
        return
    now = max(event_time(e) for e in events) + later_by
    expected = reference_kpis(events, scenario.config, now=now)
    actual = replay(events, scenario.config, now=now, partitions=partitions)
    assert_agree(actual, expected, describe(events, scenario, now), names=("engine", "reference"))


@SETTINGS
@given(scenarios(delivery="shuffled", duplicates=False, late=False, future=False))
def test_fully_shuffled_delivery_matches_reference(scenario: Scenario) -> None:
    check(scenario)


@SETTINGS
@given(scenarios(delivery="bounded"))
def test_bounded_cross_topic_reordering_matches_reference(scenario: Scenario) -> None:
    check(scenario)


@SETTINGS
@given(scenarios(duplicates=True, second_creates=True, late=False, future=False))
def test_duplicates_and_second_creates_match_reference(scenario: Scenario) -> None:
    check(scenario)


@SETTINGS
@given(scenarios(late=True, future=True, orphans=True, before_created=True))
def test_late_future_orphan_and_early_events_match_reference(scenario: Scenario) -> None:
    check(scenario)


@SETTINGS
@given(scenarios(reopen_bias=True))
def test_reopen_cycles_match_reference(scenario: Scenario) -> None:
    check(scenario)


@SETTINGS
@given(scenarios(escalation_bias=True))
def test_escalations_across_teams_match_reference(scenario: Scenario) -> None:
    check(scenario)


@SETTINGS
@given(scenarios())
def test_three_partitions_equal_one_partition_and_reference(scenario: Scenario) -> None:
    events = decoded(scenario)
    if not events:
        return
    now = max(event_time(e) for e in events)
    single = replay(events, scenario.config, now=now, partitions=1)
    multi = replay(events, scenario.config, now=now, partitions=3)
    context = describe(events, scenario, now)
    assert_agree(multi, single, context, names=("3 partitions", "1 partition"))
    expected = reference_kpis(events, scenario.config, now=now)
    assert_agree(multi, expected, context, names=("3 partitions", "reference"))


# How long after the last event the KPIs are read: a few buckets, exact bucket edges, hours.
_LATER = st.one_of(
    st.integers(1, 8 * 600).map(lambda n: n * 0.125),
    st.integers(1, 180).map(lambda n: n * 60.0),
    st.integers(1, 4 * 3600).map(float),
)


@SETTINGS
@given(scenarios(), _LATER)
def test_reads_after_the_last_event_match_reference(scenario: Scenario, later_by: float) -> None:
    check(scenario, later_by=later_by)


def _windowed(values: KpiValues, kpi: str, window: str) -> float | None:
    return values.get(KpiKey(kpi, window, ALL, ALL, ALL))


def test_windows_slide_and_values_decay_without_events() -> None:
    config = EngineConfig(
        windows=(("5m", 300.0), ("1h", 3600.0)),
        bucket_seconds=60.0,
        grace_seconds=60.0,
        sla_targets={"urgent": 600.0, "high": 1800.0, "normal": 3600.0, "low": 7200.0},
    )
    b = Builder()
    events: list[Event] = [
        b.created("a", 0, team="tier1", priority="urgent"),
        b.replied("a", 90),
        b.status("a", 400, "solved"),
        b.created("b", 600, team="tier2", channel="chat"),
        b.replied("b", 650, author="bot"),
        b.escalated("b", 700, to_team="tier1"),
        b.created("c", 1200, team="tier2", priority="high"),  # never answered
        b.survey(1250, "csat", 5, ticket="a"),
        b.survey(1260, "nps", 3),
        b.survey(1270, "enps", 10, team="tier2"),
        b.created("d", 1500, team="tier1"),
        b.replied("d", 1790.5),
    ]
    last = ts(1790.5)
    assert replay(events, config) == replay(events, config, now=last)  # default now: last event

    def read(now: float) -> KpiValues:
        expected = reference_kpis(events, config, now=now)
        actual = replay(events, config, now=now)
        assert_agree(actual, expected, f"now={now}", names=("engine", "reference"))
        return expected

    at_last = read(last)
    assert _windowed(at_last, K.TICKETS_CREATED, "5m") == 1  # d (5m window [1500, 1800))
    assert _windowed(at_last, K.TICKETS_CREATED, "1h") == 4
    assert _windowed(at_last, K.FIRST_RESPONSES, "1h") == 2

    five_minutes_on = read(last + 300)  # the 5m window has moved past every event
    assert not _windowed(five_minutes_on, K.TICKETS_CREATED, "5m")
    assert _windowed(five_minutes_on, K.FIRST_RESPONSE_MEAN, "5m") is None
    assert _windowed(five_minutes_on, K.TICKETS_CREATED, "1h") == 4

    for later_by in (45 * 60.0, 55 * 60.0, 3600.0):  # the 1h window empties bucket by bucket
        read(last + later_by)

    hours_on = read(last + 3 * 3600)
    windowed = {k: v for k, v in hours_on.items() if k.window != LIVE_WINDOW}
    assert not windowed  # nothing left in any window ...
    live = KpiKey(K.OPEN_TICKETS, LIVE_WINDOW)
    assert hours_on[live] == 3  # ... but the backlog remains (b, c, d)
    unanswered_age = hours_on[KpiKey(K.OLDEST_UNANSWERED_AGE, LIVE_WINDOW)]
    assert unanswered_age == last + 3 * 3600 - ts(600)  # b: only a bot replied
    assert hours_on[KpiKey(K.UNANSWERED_PAST_SLA, LIVE_WINDOW)] == 2
