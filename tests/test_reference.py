"""The brute-force reference (helpers/reference.py) checked by hand: the cases of
``helpers/reference_cases.py`` (one rule at a time) and its own machinery (quantiles, window
bounds, comparison helpers, retirement and orphan expiry, independence of arrival order).

The differential tests trust the reference; these tests are why.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from helpers.calendar_oracle import oracle_business_us, ranges, specs
from helpers.reference import (
    US,
    BusinessCalendars,
    Reference,
    differences,
    format_differences,
    nearest_rank,
    reference_counts,
    reference_kpis,
    strict_differences,
    window_bounds,
)
from helpers.reference_cases import ATTRS, CASES, CFG, SHORT, Case, case_id, retired_ticket
from helpers.strategies import Builder, Scenario, generated, scenarios, ts
from hypothesis import given
from hypothesis import strategies as st

from streams.core import kpis as K
from streams.core.kpis import LIVE_WINDOW, KpiKey, KpiValues
from streams.events import Event, event_time


@pytest.fixture
def b() -> Builder:
    return Builder()


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_hand_computed_case(case: Case, b: Builder) -> None:
    """Each case of ``helpers/reference_cases.py`` on the reference itself."""
    case(b)


def test_nearest_rank_quantiles() -> None:
    assert nearest_rank([7.0], 1, 2) == 7.0
    assert nearest_rank([7.0], 9, 10) == 7.0
    assert nearest_rank([10.0, 20.0, 30.0], 1, 2) == 20.0
    assert nearest_rank([10.0, 20.0, 30.0], 9, 10) == 30.0
    ten = [float(i) for i in range(1, 11)]
    assert nearest_rank(ten, 1, 2) == 5.0
    assert nearest_rank(ten, 9, 10) == 9.0
    seventy = [float(i) for i in range(1, 71)]
    assert nearest_rank(seventy, 9, 10) == 63.0  # 0.9 * 70 is 63.000000000000001 in floats


def test_window_bounds_are_bucket_aligned() -> None:
    assert window_bounds(ts(600), 300, 60) == (ts(360), ts(660))
    assert window_bounds(ts(630.5), 300, 60) == (ts(360), ts(660))
    assert window_bounds(ts(659.875), 300, 60) == (ts(360), ts(660))


def test_late_counter_uses_the_stream_clock_and_horizon(b: Builder) -> None:
    horizon = CFG.horizon_seconds  # 3600 + 60
    assert horizon == 3660.0
    events: list[Event] = [
        b.created("t1", 0),
        b.created("t2", 10_000),  # clock 10 000
        b.replied("t1", 10_000 - horizon),  # exactly at the horizon: not late
        b.replied("t1", 10_000 - horizon - 0.125),  # late
        b.survey(100, "csat", 5),  # late
    ]
    counts = reference_counts(events, CFG)
    assert counts.late == 2
    assert counts.duplicates == counts.orphans == counts.before_created == 0


def test_duplicates_are_not_late_but_advance_nothing(b: Builder) -> None:
    first = b.created("t1", 0)
    events: list[Event] = [first, b.created("t2", 10_000), first]
    counts = reference_counts(events, CFG)
    assert counts.duplicates == 1
    assert counts.late == 0


# --- comparison helpers -------------------------------------------------------------------------


def test_normalize_treats_missing_counts_as_zero_and_others_as_none() -> None:
    created = KpiKey(K.TICKETS_CREATED, "1h")
    ratio = KpiKey(K.ESCALATION_RATIO, "1h")
    age = KpiKey(K.OLDEST_UNANSWERED_AGE, LIVE_WINDOW)
    assert not differences({created: 0.0, ratio: None, age: 0.0}, {})
    assert differences({created: 1.0}, {}) == [(created, 1.0, 0.0)]
    p90 = KpiKey(K.FIRST_RESPONSE_P90, "1h")
    assert not differences({p90: 100.9}, {p90: 100.0})
    assert differences({p90: 101.5}, {p90: 100.0})
    assert "tickets_created|1h|all|all|all" in format_differences(differences({created: 1.0}, {}))


def test_normalize_keeps_unknown_kpi_names() -> None:
    extra = KpiKey("requester_wait_p50_seconds", "1h")
    assert differences({extra: 5.0}, {}) == [(extra, 5.0, None)]


def test_strict_differences_report_series_on_one_side_only() -> None:
    created = KpiKey(K.TICKETS_CREATED, "1h")
    ratio = KpiKey(K.ESCALATION_RATIO, "1h")
    assert strict_differences({created: 0.0}, {}) == [(created, 0.0, "<missing>")]
    assert strict_differences({}, {ratio: None}) == [(ratio, "<missing>", None)]
    assert not strict_differences({created: 2.0, ratio: None}, {created: 2.0, ratio: None})


def test_held_events_become_orphans_after_the_hold_on_the_stream_clock(b: Builder) -> None:
    early = b.replied("t1", 100)
    events: list[Event] = [early, b.created("x", 699.875)]
    assert reference_counts(events[:1], SHORT).orphans == 1  # at the end, held = orphan
    counted = Reference(SHORT)
    for event in events:
        counted.feed(event)
    assert counted.counts.orphans == 0  # held at clock 100, due at 700
    counted.feed(b.created("y", 700))
    assert counted.counts.orphans == 1
    # Created after the hold: the reply is gone, the ticket is unanswered.
    counted.feed(b.created("t1", 50))
    values = counted.kpis(round(ts(700) * US))
    assert values[KpiKey(K.FIRST_RESPONSES, "1h", "support")] == 0
    assert values[KpiKey(K.UNANSWERED_TICKETS, LIVE_WINDOW)] == 3


def test_solved_ticket_without_attribute_retention_is_forgotten_and_a_late_event_is_held(
    b: Builder,
) -> None:
    solved = b.status("t1", 30, "solved")  # due at max(30 + 3660, 60 + 3660) = 3720
    reference = Reference(replace(SHORT, attribute_retention_seconds=SHORT.retention_seconds))
    events: list[Event] = [b.created("t1", 0), solved, b.created("x", 3719.875)]
    for event in events:
        reference.feed(event)
    assert "t1" in reference.entities
    reference.feed(b.created("y", 3720))
    assert "t1" not in reference.entities
    # A re-send of the solve is not known any more: it is held, then dropped as an orphan.
    reference.feed(solved)
    assert reference.counts.duplicates == 0
    reference.housekeeping(round(ts(3720 + 600) * US))
    assert reference.counts.orphans == 1


def test_solved_ticket_is_kept_until_its_last_bucket_expires(b: Builder) -> None:
    config = replace(CFG, retention_seconds=3660.0)
    solved = b.status("t1", 90, "solved")  # bucket [60, 120): expires at 120 + 3660
    reference = Reference(config)
    events: list[Event] = [b.created("t1", 0), solved, b.created("x", 90 + 3660)]
    for event in events:
        reference.feed(event)
    assert "t1" in reference.entities  # last + retention reached, the bucket not expired
    reference.feed(solved)
    assert reference.counts.duplicates == 1
    reference.feed(b.created("y", 120 + 3660))
    assert reference.entities["t1"].retired


def test_open_ticket_is_never_retired(b: Builder) -> None:
    reference = Reference(SHORT)
    events: list[Event] = [b.created("t1", 0), b.status("t1", 60, "pending"), b.created("x", 86400)]
    for event in events:
        reference.feed(event)
    assert "t1" in reference.entities


# --- attributes outlive state (SPEC §3): the reference's own machinery --------------------------
# (the KPI cases are in helpers/reference_cases.py)


def test_retired_ticket_keeps_its_attributes_until_the_attribute_retention(b: Builder) -> None:
    reference = Reference(ATTRS)
    for event in retired_ticket(b):
        reference.feed(event)
    entity = reference.entities["t1"]
    assert entity.retired
    assert not entity.seen  # its event ids are gone
    reference.feed(b.created("y", 30 + 86400 - 1))
    assert reference.entities["t1"].retired
    reference.feed(b.created("z", 30 + 86400))
    assert "t1" not in reference.entities


def test_old_events_of_a_retired_ticket_are_counted_as_duplicates(b: Builder) -> None:
    events = retired_ticket(b)
    resent = [events[0], events[2], events[3], b.status("t1", 25, "open")]
    reference = Reference(ATTRS)
    for event in [*events, *resent]:
        reference.feed(event)
    assert reference.counts.duplicates == len(resent)


# --- properties of the reference itself -------------------------------------------------------


def _assert_same(actual: KpiValues, expected: KpiValues) -> None:
    diffs = strict_differences(actual, expected)
    assert not diffs, format_differences(diffs, actual_name="permuted", expected_name="original")


@generated(60)
@given(scenarios(second_creates=False, future=False, late=False))
def test_reference_is_independent_of_arrival_order_and_resends(scenario: Scenario) -> None:
    """With nothing retired or dropped as an orphan during the stream (long hold and retention),
    arrival order and re-sends change no KPI."""
    config = replace(
        scenario.config, orphan_hold_seconds=30 * 86400.0, retention_seconds=60 * 86400.0
    )
    now = scenario.last_event_time
    expected = reference_kpis(scenario.arrivals, config, now=now)
    in_time_order = sorted(scenario.arrivals, key=event_time)
    _assert_same(reference_kpis(in_time_order, config, now=now), expected)
    shuffled = list(scenario.arrivals)
    random.Random(len(shuffled)).shuffle(shuffled)
    resent = shuffled + shuffled[: len(shuffled) // 3]
    _assert_same(reference_kpis(resent, config, now=now), expected)


@generated(25)
@given(st.data())
def test_business_time_from_running_totals_is_the_minute_by_minute_sum(data: st.DataObject) -> None:
    """The reference's business time (running totals of working minutes, asked about spans
    later than, earlier than and overlapping the ones before) equals the calendar oracle's
    walk over every minute of each span."""
    spec = data.draw(specs())
    around, _ = data.draw(ranges(spec))  # near a DST transition, a cache block bound, any time
    spread = data.draw(st.randoms(use_true_random=False))  # uniform: spans of hours, not µs
    calendars = BusinessCalendars(spec, {})
    for _ in range(4):
        start = around + spread.randint(-2 * 86400 * US, 2 * 86400 * US)
        end = start + spread.choice(
            [spread.randint(0, 86400 * US), 60 * US * spread.randint(0, 1440)]
        )
        assert calendars.business("any", start, end) == oracle_business_us(spec, start, end)
        assert calendars.business("any", end, start) == 0  # an empty span
