"""The hand-computed KPI cases (SPEC §3 to §4), one rule at a time, for any implementation.

Each case builds a few events with a :class:`~helpers.strategies.Builder`, reads KPIs with
:func:`run` and asserts the values worked out by hand. They run on the brute-force reference
(``test_reference.py``: why the differential tests trust it) and through the engine
(``test_ticket_engine.py``); :func:`running_on` chooses what :func:`run` calls. Times are seconds
after ``strategies.BASE_TIME`` (aligned to the minute).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, NamedTuple

import pytest

from helpers.reference import (
    normalize,
    reference_counts,
    reference_kpis,
)
from helpers.strategies import Builder, ts
from streams.core import kpis as K
from streams.core.calendar import Calendar, CalendarSet
from streams.core.kpis import (
    ALL,
    LIVE_WINDOW,
    UNKNOWN,
    EngineConfig,
    KpiKey,
    KpiValues,
    SlaClock,
)
from streams.events import Event

CFG = EngineConfig(
    windows=(("5m", 300.0), ("1h", 3600.0)),
    bucket_seconds=60.0,
    grace_seconds=60.0,
    sla_targets={"urgent": 900.0, "high": 3600.0, "normal": 14400.0, "low": 28800.0},
)


class Implementation(NamedTuple):
    """What the cases read KPIs from: ``run(events, now, config)`` (``now`` in seconds after
    ``BASE_TIME``) and the relative tolerance of its quantiles."""

    run: Callable[[Sequence[Event], float, EngineConfig], KpiValues]
    quantile_rel: float


def _reference_run(events: Sequence[Event], now: float, config: EngineConfig) -> KpiValues:
    return reference_kpis(events, config, now=ts(now))


# The reference's nearest rank is exact; the engine reports quantiles within 1%.
REFERENCE = Implementation(_reference_run, quantile_rel=0.0)
_running: list[Implementation] = [REFERENCE]


@contextmanager
def running_on(implementation: Implementation) -> Iterator[None]:
    """Within the block the cases read their KPIs from ``implementation``."""
    _running.append(implementation)
    try:
        yield
    finally:
        _running.pop()


def exact_quantile(value: float) -> Any:
    return pytest.approx(value, rel=_running[-1].quantile_rel, abs=1e-12)


def run(events: Sequence[Event], now: float, config: EngineConfig = CFG) -> KpiValues:
    return _running[-1].run(events, now, config)


def get(
    values: KpiValues,
    kpi: str,
    window: str = "1h",
    team: str = ALL,
    channel: str = ALL,
    priority: str = ALL,
) -> float | None:
    """A value with the normalization of the differential tests (missing count = 0)."""
    key = KpiKey(kpi, window, team, channel, priority)
    return normalize(values, [key]).get(key)


def live(
    values: KpiValues, kpi: str, team: str = ALL, channel: str = ALL, priority: str = ALL
) -> float | None:
    return get(values, kpi, LIVE_WINDOW, team, channel, priority)


# --- first response ---------------------------------------------------------------------------


def case_first_response_time_of_first_public_agent_reply(b: Builder) -> None:
    events: list[Event] = [
        b.created("t1", 0),
        b.replied("t1", 120),
        b.replied("t1", 500),  # not the first one
    ]
    v = run(events, 600)
    assert get(v, K.FIRST_RESPONSES) == 1
    assert get(v, K.FIRST_RESPONSE_MEAN) == 120.0
    assert get(v, K.FIRST_RESPONSE_P50) == exact_quantile(120.0)
    assert get(v, K.FIRST_RESPONSE_P90) == exact_quantile(120.0)
    assert get(v, K.FIRST_RESPONSE_SLA_ATTAINMENT) == 1.0


def case_bot_system_and_customer_replies_do_not_stop_the_clock(b: Builder) -> None:
    events: list[Event] = [
        b.created("t1", 0),
        b.replied("t1", 10, author="bot"),
        b.replied("t1", 20, author="system"),
        b.replied("t1", 30, author="customer"),
        b.replied("t1", 300, author="agent"),
    ]
    v = run(events, 600)
    assert get(v, K.FIRST_RESPONSES) == 1
    assert get(v, K.FIRST_RESPONSE_MEAN) == 300.0


def case_internal_note_does_not_stop_the_clock(b: Builder) -> None:
    events: list[Event] = [
        b.created("t1", 0),
        b.replied("t1", 60, author="agent", public=False),
        b.replied("t1", 900, author="agent"),
    ]
    v = run(events, 1000)
    assert get(v, K.FIRST_RESPONSE_MEAN) == 900.0


def case_tickets_created_by_agent_or_system_are_excluded_from_frt(b: Builder) -> None:
    events: list[Event] = [
        b.created("t1", 0, created_by="agent"),
        b.created("t2", 0, created_by="system"),
        b.replied("t1", 60),
        b.replied("t2", 60),
    ]
    v = run(events, 120)
    assert get(v, K.TICKETS_CREATED) == 2
    assert get(v, K.FIRST_RESPONSES) == 0
    assert get(v, K.FIRST_RESPONSE_MEAN) is None
    assert get(v, K.FIRST_RESPONSE_SLA_ATTAINMENT) is None


def case_sla_target_depends_on_priority(b: Builder) -> None:
    events: list[Event] = [
        b.created("u", 0, priority="urgent"),  # target 900
        b.replied("u", 1000),  # missed
        b.created("l", 0, priority="low"),  # target 28800
        b.replied("l", 1000),  # met
        b.created("h", 0, priority="high"),  # target 3600
        b.replied("h", 3600),  # exactly on target: met
    ]
    v = run(events, 3600)
    assert get(v, K.FIRST_RESPONSE_SLA_ATTAINMENT) == pytest.approx(2 / 3)
    assert get(v, K.FIRST_RESPONSE_SLA_ATTAINMENT, priority="urgent") == 0.0
    assert get(v, K.FIRST_RESPONSE_SLA_ATTAINMENT, priority="low") == 1.0
    assert get(v, K.FIRST_RESPONSE_SLA_ATTAINMENT, priority="high") == 1.0
    assert get(v, K.FIRST_RESPONSES, priority="urgent") == 1


def case_custom_sla_targets_are_used(b: Builder) -> None:
    config = EngineConfig(
        windows=CFG.windows,
        sla_targets={"urgent": 60.0, "high": 60.0, "normal": 100.0, "low": 60.0},
    )
    events: list[Event] = [b.created("t", 0), b.replied("t", 120)]
    assert get(run(events, 200, config), K.FIRST_RESPONSE_SLA_ATTAINMENT) == 0.0


# --- escalation and team moves -----------------------------------------------------------------


def case_to_team_moves_the_ticket_and_later_events_count_for_the_new_team(b: Builder) -> None:
    events: list[Event] = [
        b.created("t1", 0, team="tier1"),
        b.escalated("t1", 60, to_team="tier2"),
        b.replied("t1", 120),
        b.status("t1", 300, "solved"),
    ]
    v = run(events, 600)
    assert get(v, K.TICKETS_CREATED, team="tier1") == 1
    assert get(v, K.TICKETS_CREATED, team="tier2") == 0
    assert get(v, K.FIRST_RESPONSES, team="tier2") == 1
    assert get(v, K.FIRST_RESPONSES, team="tier1") == 0
    assert get(v, K.TICKETS_SOLVED, team="tier2") == 1
    assert get(v, K.RESOLUTION_MEAN, team="tier2") == 300.0


def case_escalation_itself_counts_for_the_old_team(b: Builder) -> None:
    events: list[Event] = [
        b.created("t1", 0, team="tier1"),
        b.escalated("t1", 60, to_team="tier2"),
        b.escalated("t1", 120, level=2, to_team="tier3"),  # not a first escalation
    ]
    v = run(events, 600)
    assert get(v, K.TICKETS_ESCALATED) == 1
    assert get(v, K.TICKETS_ESCALATED, team="tier1") == 1
    assert get(v, K.TICKETS_ESCALATED, team="tier2") == 0
    assert get(v, K.ESCALATION_RATIO, team="tier1") == 1.0
    # tier2 has an escalation-free, creation-free window: ratio without a denominator.
    assert get(v, K.ESCALATION_RATIO, team="tier2") is None
    assert live(v, K.OPEN_TICKETS, team="tier3") == 1
    assert live(v, K.OPEN_TICKETS, team="tier1") == 0


def case_escalation_without_to_team_keeps_the_team(b: Builder) -> None:
    events: list[Event] = [
        b.created("t1", 0, team="tier1"),
        b.escalated("t1", 60),
        b.replied("t1", 120),
    ]
    v = run(events, 600)
    assert get(v, K.FIRST_RESPONSES, team="tier1") == 1
    assert get(v, K.TICKETS_ESCALATED, team="tier1") == 1


def case_same_instant_order_reply_before_escalation_before_status(b: Builder) -> None:
    # Rank order at one occurred_at: replied < escalated < status-changed < survey.
    events: list[Event] = [
        b.status("t1", 60, "solved"),
        b.survey(60, "csat", 5, ticket="t1"),
        b.escalated("t1", 60, to_team="tier2"),
        b.replied("t1", 60),
        b.created("t1", 0, team="tier1"),
    ]
    v = run(events, 600)
    assert get(v, K.FIRST_RESPONSES, team="tier1") == 1  # before the move
    assert get(v, K.TICKETS_SOLVED, team="tier2") == 1  # after the move
    assert get(v, K.CSAT_RESPONSES, team="tier2") == 1
    # FCR: one public agent reply, but escalated before the resolution.
    assert get(v, K.FIRST_CONTACT_RESOLUTION) == 0.0


# --- surveys -----------------------------------------------------------------------------------


def case_survey_team_given_wins_over_the_ticket_team(b: Builder) -> None:
    events: list[Event] = [
        b.created("t1", 0, team="tier1", channel="chat", priority="high"),
        b.survey(60, "csat", 5, ticket="t1", team="billing"),
    ]
    v = run(events, 600)
    assert get(v, K.CSAT_RESPONSES, team="billing") == 1
    assert get(v, K.CSAT_RESPONSES, team="tier1") == 0
    assert get(v, K.CSAT_RESPONSES, channel="chat") == 1
    assert get(v, K.CSAT_RESPONSES, priority="high") == 1


def case_survey_without_team_takes_the_ticket_team_at_that_point(b: Builder) -> None:
    events: list[Event] = [
        b.created("t1", 0, team="tier1", channel="chat", priority="high"),
        b.survey(30, "nps", 10, ticket="t1"),
        b.escalated("t1", 60, to_team="tier2"),
        b.survey(90, "nps", 0, ticket="t1"),
    ]
    v = run(events, 600)
    assert get(v, K.NPS_SCORE, team="tier1") == 100.0
    assert get(v, K.NPS_SCORE, team="tier2") == -100.0
    assert get(v, K.NPS_RESPONSES, channel="chat") == 2
    assert get(v, K.NPS_SCORE) == 0.0


def case_survey_without_ticket_or_team_is_unknown(b: Builder) -> None:
    events: list[Event] = [b.survey(60, "csat", 2), b.survey(60, "csat", 4, team="billing")]
    v = run(events, 600)
    assert get(v, K.CSAT_RESPONSES) == 2
    assert get(v, K.CSAT_RESPONSES, team=UNKNOWN) == 1
    assert get(v, K.CSAT_RESPONSES, team="billing") == 1
    assert get(v, K.CSAT_RESPONSES, channel=UNKNOWN) == 2
    assert get(v, K.CSAT_RESPONSES, priority=UNKNOWN) == 2
    assert get(v, K.CSAT_SATISFIED, team="billing") == 1.0


def case_csat_and_nps_formulas(b: Builder) -> None:
    events: list[Event] = [b.survey(60, "csat", s) for s in (5, 4, 3, 1)]
    events += [b.survey(60, "nps", s) for s in (10, 9, 8, 7, 6, 0)]
    v = run(events, 600)
    assert get(v, K.CSAT_SATISFIED) == 0.5
    assert get(v, K.CSAT_MEAN) == 3.25
    assert get(v, K.CSAT_RESPONSES) == 4
    assert get(v, K.NPS_SCORE) == pytest.approx((2 - 2) / 6 * 100)
    assert get(v, K.NPS_RESPONSES) == 6


def case_enps_is_reported_overall_and_per_team_only(b: Builder) -> None:
    events: list[Event] = [
        b.created("t1", 0, team="tier1", channel="chat"),
        b.survey(60, "enps", 10, team="tier1"),
        b.survey(60, "enps", 9, team="tier1"),
        b.survey(60, "enps", 7, team="tier2"),
        b.survey(60, "enps", 3, ticket="t1"),  # team from the ticket: tier1
    ]
    v = run(events, 600)
    assert get(v, K.ENPS_SCORE) == 25.0  # (2 - 1) / 4
    assert get(v, K.ENPS_RESPONSES) == 4
    assert get(v, K.ENPS_SCORE, team="tier1") == pytest.approx(100 / 3)
    assert get(v, K.ENPS_SCORE, team="tier2") == 0.0
    assert not [k for k in v if k.kpi in K.TEAM_ONLY_KPIS and (k.channel, k.priority) != (ALL, ALL)]
    assert KpiKey(K.ENPS_SCORE, "1h", ALL, "chat", ALL) not in v
    assert KpiKey(K.NPS_SCORE, "1h", ALL, "chat", ALL) in v  # other KPIs are per channel


# --- resolutions, reopenings, first contact resolution ------------------------------------------


def case_reopen_and_resolution_counting(b: Builder) -> None:
    events: list[Event] = [
        b.created("t1", 0),
        b.status("t1", 100, "open"),
        b.status("t1", 200, "solved"),  # resolution 1 (200 s)
        b.status("t1", 300, "open"),  # reopen 1
        b.status("t1", 400, "solved"),  # resolution 2 (400 s)
        b.status("t1", 500, "closed"),  # closed after solved: nothing
        b.status("t1", 600, "pending"),  # reopen 2
        b.status("t1", 700, "pending"),  # same status: nothing
        b.status("t1", 800, "closed"),  # resolution 3 (800 s)
    ]
    v = run(events, 900)
    assert get(v, K.TICKETS_SOLVED) == 3
    assert get(v, K.TICKETS_REOPENED) == 2
    assert get(v, K.RESOLUTION_MEAN) == pytest.approx((200 + 400 + 800) / 3)
    assert get(v, K.RESOLUTION_P50) == exact_quantile(400.0)
    assert get(v, K.RESOLUTION_P90) == exact_quantile(800.0)
    assert live(v, K.OPEN_TICKETS) == 0


def case_closed_after_solved_is_not_a_second_resolution(b: Builder) -> None:
    events: list[Event] = [
        b.created("t1", 0),
        b.status("t1", 100, "solved"),
        b.status("t1", 200, "closed"),
        b.status("t1", 300, "solved"),
        b.created("t2", 0),
        b.status("t2", 400, "closed"),  # closed straight from new: a resolution
    ]
    v = run(events, 600)
    assert get(v, K.TICKETS_SOLVED) == 2
    assert get(v, K.TICKETS_REOPENED) == 0
    assert get(v, K.RESOLUTION_MEAN) == 250.0


def case_reopen_to_new_and_on_hold_counts(b: Builder) -> None:
    events: list[Event] = [
        b.created("t1", 0),
        b.status("t1", 100, "solved"),
        b.status("t1", 200, "new"),
        b.status("t1", 300, "closed"),
        b.status("t1", 400, "on_hold"),
    ]
    v = run(events, 600)
    assert get(v, K.TICKETS_REOPENED) == 2
    assert get(v, K.TICKETS_SOLVED) == 2
    assert live(v, K.OPEN_TICKETS) == 1


def case_first_contact_resolution_true_and_false_cases(b: Builder) -> None:
    events: list[Event] = [
        # one public agent reply (+ note, bot, customer replies) then solved: FCR
        b.created("yes", 0),
        b.replied("yes", 10, author="customer"),
        b.replied("yes", 20, author="bot"),
        b.replied("yes", 30, author="agent", public=False),
        b.replied("yes", 40),
        b.status("yes", 50, "solved"),
        # two public agent replies: not FCR
        b.created("two", 0),
        b.replied("two", 10),
        b.replied("two", 20),
        b.status("two", 50, "solved"),
        # no reply at all: not FCR
        b.created("none", 0),
        b.status("none", 50, "solved"),
        # escalated without a team move, one reply: not FCR
        b.created("esc", 0),
        b.replied("esc", 10),
        b.escalated("esc", 20),
        b.status("esc", 50, "solved"),
    ]
    v = run(events, 600)
    assert get(v, K.FIRST_CONTACT_RESOLUTION) == 0.25
    assert get(v, K.TICKETS_SOLVED) == 4


def case_first_contact_resolution_is_judged_at_the_first_resolution_only(b: Builder) -> None:
    events: list[Event] = [
        b.created("t1", 0),
        b.replied("t1", 10),
        b.status("t1", 20, "solved"),  # first resolution: FCR true
        b.status("t1", 30, "open"),
        b.replied("t1", 40),
        b.escalated("t1", 45),
        b.status("t1", 50, "solved"),  # second resolution: not judged
    ]
    v = run(events, 600)
    assert get(v, K.FIRST_CONTACT_RESOLUTION) == 1.0
    assert get(v, K.TICKETS_SOLVED) == 2


def case_fcr_uses_event_time_order_not_arrival_order(b: Builder) -> None:
    events: list[Event] = [
        b.status("t1", 50, "solved"),
        b.replied("t1", 40),  # arrives after the resolution, happened before it
        b.created("t1", 0),
    ]
    assert get(run(events, 600), K.FIRST_CONTACT_RESOLUTION) == 1.0


def case_escalated_counts_first_escalations_and_ratio(b: Builder) -> None:
    events: list[Event] = [
        b.created("t1", 0),
        b.created("t2", 0),
        b.created("t3", 0),
        b.created("t4", 0),
        b.escalated("t1", 60),
        b.escalated("t1", 70, level=2),
    ]
    v = run(events, 600)
    assert get(v, K.TICKETS_ESCALATED) == 1
    assert get(v, K.ESCALATION_RATIO) == 0.25


# --- zero denominators, quantiles, windows --------------------------------------------------------


def case_zero_denominators_have_no_value(b: Builder) -> None:
    v = run([b.created("t1", 0, channel="chat"), b.survey(30, "nps", 9, team="billing")], 600)
    assert get(v, K.ESCALATION_RATIO) == 0.0  # 0 escalated / 1 created
    for kpi in (
        K.FIRST_RESPONSE_MEAN,
        K.FIRST_RESPONSE_P50,
        K.FIRST_RESPONSE_P90,
        K.FIRST_RESPONSE_SLA_ATTAINMENT,
        K.RESOLUTION_MEAN,
        K.RESOLUTION_P50,
        K.RESOLUTION_P90,
        K.FIRST_CONTACT_RESOLUTION,
        K.CSAT_SATISFIED,
        K.CSAT_MEAN,
        K.ENPS_SCORE,
    ):
        assert KpiKey(kpi, "1h") in v
        assert v[KpiKey(kpi, "1h")] is None, kpi
    assert v[KpiKey(K.ESCALATION_RATIO, "1h", team="billing")] is None  # nothing created there
    assert v[KpiKey(K.NPS_SCORE, "1h", team="billing")] == 100.0
    assert all(value is None or value == value for value in v.values())  # no NaN anywhere


def case_quantiles_over_unsorted_first_responses(b: Builder) -> None:
    events: list[Event] = []
    for i, frt in enumerate([50, 10, 40, 30, 20]):
        events += [b.created(f"t{i}", 0), b.replied(f"t{i}", frt)]
    v = run(events, 600)
    assert get(v, K.FIRST_RESPONSE_P50) == exact_quantile(30.0)  # v[ceil(2.5) - 1] = v[2]
    assert get(v, K.FIRST_RESPONSE_P90) == exact_quantile(50.0)  # v[ceil(4.5) - 1] = v[4]
    assert get(v, K.FIRST_RESPONSE_MEAN) == 30.0


def case_window_edges_start_inclusive_end_exclusive(b: Builder) -> None:
    events: list[Event] = [
        b.created("before-start", 359.875),
        b.created("at-start", 360),
        b.created("in-last-bucket", 630),
    ]
    v = run(events, 630)  # 5m window: [360, 660)
    assert get(v, K.TICKETS_CREATED, "5m") == 2
    assert get(v, K.TICKETS_CREATED, "1h") == 3
    v = run(events, 660)  # 5m window: [420, 720)
    assert get(v, K.TICKETS_CREATED, "5m") == 1


def case_windows_slide_without_events(b: Builder) -> None:
    events: list[Event] = [b.created("t1", 0), b.replied("t1", 60), b.survey(60, "csat", 5)]
    assert get(run(events, 60), K.TICKETS_CREATED, "5m") == 1
    later = run(events, 60 + 600)
    assert get(later, K.TICKETS_CREATED, "5m") == 0
    assert get(later, K.FIRST_RESPONSE_MEAN, "5m") is None
    assert get(later, K.CSAT_MEAN, "5m") is None
    assert get(later, K.TICKETS_CREATED, "1h") == 1
    much_later = run(events, 2 * 3600)
    assert get(much_later, K.TICKETS_CREATED, "1h") == 0
    # The group stays reported (t1 is open) but no window holds anything.
    assert not [k for k, v in much_later.items() if k.window != LIVE_WINDOW and v]


# --- dedupe, before_created, orphans, late --------------------------------------------------------


def case_duplicate_event_id_is_ignored(b: Builder) -> None:
    reply = b.replied("t1", 60)
    events: list[Event] = [b.created("t1", 0), reply, reply, b.status("t1", 70, "solved")]
    # A different event reusing an id that was already seen is ignored too (first arrival wins).
    events.append(b.replied("t1", 65, event_id=reply.event_id))
    v = run(events, 600)
    assert get(v, K.FIRST_RESPONSES) == 1
    assert get(v, K.FIRST_CONTACT_RESOLUTION) == 1.0
    assert reference_counts(events, CFG).duplicates == 2


def case_event_reusing_the_creation_event_id_is_a_duplicate(b: Builder) -> None:
    events: list[Event] = [b.created("t1", 0, event_id="x1"), b.replied("t1", 60, event_id="x1")]
    v = run(events, 60)
    assert get(v, K.FIRST_RESPONSES) == 0
    assert live(v, K.UNANSWERED_TICKETS) == 1


def case_second_ticket_created_is_ignored_first_arrival_wins(b: Builder) -> None:
    events: list[Event] = [
        b.created("t1", 100, team="tier1", priority="low"),
        b.created("t1", 50, team="tier2", priority="urgent"),  # arrives second: ignored
        b.replied("t1", 160),
    ]
    v = run(events, 600)
    assert get(v, K.TICKETS_CREATED) == 1
    assert get(v, K.TICKETS_CREATED, team="tier1") == 1
    assert get(v, K.TICKETS_CREATED, team="tier2") == 0
    assert get(v, K.FIRST_RESPONSE_MEAN, priority="low") == 60.0
    assert reference_counts(events, CFG).duplicates == 1


def case_event_before_created_is_rejected(b: Builder) -> None:
    events: list[Event] = [
        b.replied("t1", 50),  # before creation: rejected, not the first response
        b.survey(60, "csat", 1, ticket="t1"),  # likewise
        b.created("t1", 100),
        b.status("t1", 99.875, "solved"),  # arrives after creation, still before it
        b.replied("t1", 100),  # same instant as creation: applied
    ]
    v = run(events, 600)
    assert get(v, K.FIRST_RESPONSES) == 1
    assert get(v, K.FIRST_RESPONSE_MEAN) == 0.0
    assert get(v, K.CSAT_RESPONSES) == 0
    assert get(v, K.TICKETS_SOLVED) == 0
    assert live(v, K.OPEN_TICKETS) == 1
    assert reference_counts(events, CFG).before_created == 3


def case_orphan_events_are_never_applied(b: Builder) -> None:
    events: list[Event] = [
        b.replied("ghost", 10),
        b.status("ghost", 20, "solved"),
        b.survey(30, "csat", 5, ticket="ghost", team="billing"),
        b.survey(30, "csat", 1),  # no ticket: applied directly
    ]
    v = run(events, 600)
    assert get(v, K.TICKETS_SOLVED) == 0
    assert get(v, K.FIRST_RESPONSES) == 0
    assert get(v, K.CSAT_RESPONSES) == 1
    assert get(v, K.CSAT_RESPONSES, team="billing") == 0
    assert reference_counts(events, CFG).orphans == 3


def case_events_held_until_their_ticket_is_created_are_applied(b: Builder) -> None:
    events: list[Event] = [
        b.replied("t1", 60),
        b.survey(70, "csat", 5, ticket="t1"),
        b.created("t1", 0, team="tier1"),
    ]
    v = run(events, 600)
    assert get(v, K.FIRST_RESPONSE_MEAN, team="tier1") == 60.0
    assert get(v, K.CSAT_RESPONSES, team="tier1") == 1
    assert reference_counts(events, CFG).orphans == 0


def case_late_events_still_update_ticket_state(b: Builder) -> None:
    events: list[Event] = [
        b.created("old", 0, priority="urgent"),
        b.created("new", 10_000, priority="urgent"),
        b.replied("old", 100),  # late, but the ticket is answered now
    ]
    v = run(events, 10_000)
    assert reference_counts(events, CFG).late == 1
    assert live(v, K.OPEN_TICKETS) == 2
    assert live(v, K.UNANSWERED_TICKETS) == 1
    assert live(v, K.OLDEST_UNANSWERED_AGE) == 0.0  # "new" was created at now
    assert get(v, K.FIRST_RESPONSES) == 0  # out of every window


# --- live backlog ---------------------------------------------------------------------------


def case_live_backlog(b: Builder) -> None:
    events: list[Event] = [
        b.created("a", 0, team="tier1", priority="urgent", channel="chat"),  # unanswered, past SLA
        b.created("b", 100, team="tier1", priority="urgent", channel="email"),
        b.replied("b", 200),  # answered
        b.created("c", 300, team="tier1"),
        b.status("c", 400, "solved"),  # not open
        b.created("d", 500, team="tier2", created_by="agent"),  # open, never "unanswered"
        b.created("e", 600, team="tier2", priority="low"),
        b.replied("e", 700, author="bot"),
        b.replied("e", 710, public=False),  # still unanswered, within SLA
        b.created("f", 800, team="tier1"),
        b.escalated("f", 900, to_team="tier3"),  # current team counts for live
    ]
    v = run(events, 2000)
    assert live(v, K.OPEN_TICKETS) == 5  # a b d e f
    assert live(v, K.UNANSWERED_TICKETS) == 3  # a e f
    assert live(v, K.OLDEST_UNANSWERED_AGE) == 2000.0
    assert live(v, K.UNANSWERED_PAST_SLA) == 1  # a: 2000 > 900
    assert live(v, K.OPEN_TICKETS, team="tier1") == 2  # a b
    assert live(v, K.OPEN_TICKETS, team="tier3") == 1
    assert live(v, K.UNANSWERED_TICKETS, team="tier2") == 1
    assert live(v, K.OLDEST_UNANSWERED_AGE, team="tier2") == 1400.0
    assert live(v, K.OLDEST_UNANSWERED_AGE, channel="email") == 1400.0  # e (f is newer)
    assert live(v, K.OLDEST_UNANSWERED_AGE, channel="chat") == 2000.0  # a
    assert live(v, K.UNANSWERED_PAST_SLA, priority="urgent") == 1
    assert live(v, K.UNANSWERED_PAST_SLA, priority="low") == 0
    # A group with open tickets but none unanswered reports age 0.0.
    only_answered = run([b.created("x", 0, team="solo"), b.replied("x", 10)], 600)
    assert only_answered[KpiKey(K.OLDEST_UNANSWERED_AGE, LIVE_WINDOW, "solo")] == 0.0
    assert only_answered[KpiKey(K.UNANSWERED_TICKETS, LIVE_WINDOW, "solo")] == 0.0


def case_unanswered_past_sla_is_strictly_greater(b: Builder) -> None:
    v = run([b.created("t", 0, priority="urgent")], 900)
    assert live(v, K.UNANSWERED_PAST_SLA) == 0
    v = run([b.created("t", 0, priority="urgent")], 900.125)
    assert live(v, K.UNANSWERED_PAST_SLA) == 1


def case_reopened_ticket_is_open_again(b: Builder) -> None:
    events: list[Event] = [
        b.created("t", 0),
        b.status("t", 10, "solved"),
        b.status("t", 20, "open"),
    ]
    v = run(events, 600)
    assert live(v, K.OPEN_TICKETS) == 1
    assert live(v, K.UNANSWERED_TICKETS) == 1


# --- requester wait, resolution SLA and business hours (issue 12) -----------------------------

# BASE_TIME is Monday 2024-03-11 08:00 UTC = 09:00 in Berlin (CET); New York is on summer time
# (UTC-4) since 2024-03-10.
_BERLIN = Calendar.weekly("Europe/Berlin", {"mon-fri": ["09:00-17:00"]})
_NEW_YORK = Calendar.weekly("America/New_York", {"mon-fri": ["09:00-17:00"]})
OFFICE = replace(
    CFG,
    windows=(("24h", 86400.0),),
    calendars=CalendarSet(_BERLIN, {"ny": _NEW_YORK}),
    resolution_sla_targets={"urgent": 3600.0, "high": 3600.0, "normal": 8 * 3600.0, "low": 60.0},
)


def _every(clock: SlaClock) -> dict[str, SlaClock]:
    return dict.fromkeys(("urgent", "high", "normal", "low"), clock)


def case_requester_wait_pauses_while_pending_and_includes_the_wait_before_a_reopen(
    b: Builder,
) -> None:
    events: list[Event] = [
        b.created("t", 0),
        b.status("t", 100, "pending"),  # waiting on the customer: paused
        b.status("t", 400, "open"),
        b.status("t", 600, "solved"),  # waited 100 + 200
        b.status("t", 1200, "open"),  # reopened
        b.status("t", 1500, "on_hold"),  # on hold still counts
        b.status("t", 1800, "solved"),  # waited 300 + 600
    ]
    v = run(events, 1800)
    assert get(v, K.REQUESTER_WAIT_MEAN) == 600.0
    assert get(v, K.REQUESTER_WAIT_P50) == exact_quantile(300.0)
    assert get(v, K.REQUESTER_WAIT_P90) == exact_quantile(900.0)
    assert get(v, K.RESOLUTION_MEAN) == 1200.0  # 600 and 1800: the clock never pauses
    assert not [key for key in v if key.kpi in K.BUSINESS_KPIS]  # no calendars


def case_business_time_counts_working_hours_and_pending_pauses_it(b: Builder) -> None:
    events: list[Event] = [
        b.created("t", 0, team="berlin"),  # 09:00
        b.replied("t", 1800),  # 09:30
        b.status("t", 3600, "pending"),  # 10:00
        b.status("t", 5 * 3600, "open"),  # 14:00
        b.status("t", 9 * 3600, "solved"),  # 18:00, closed since 17:00
    ]
    v = run(events, 9 * 3600, OFFICE)
    assert get(v, K.FIRST_RESPONSE_MEAN, "24h") == 1800.0
    assert get(v, K.FIRST_RESPONSE_BUSINESS_MEAN, "24h") == 1800.0
    assert get(v, K.RESOLUTION_MEAN, "24h") == 9 * 3600.0
    assert get(v, K.RESOLUTION_BUSINESS_MEAN, "24h") == 8 * 3600.0  # 09:00-17:00
    assert get(v, K.RESOLUTION_BUSINESS_P50, "24h") == exact_quantile(8 * 3600.0)
    assert get(v, K.REQUESTER_WAIT_MEAN, "24h") == 5 * 3600.0  # 1 h + 4 h
    assert get(v, K.REQUESTER_WAIT_BUSINESS_MEAN, "24h") == 4 * 3600.0  # 1 h + 14:00-17:00
    assert get(v, K.RESOLUTION_SLA_ATTAINMENT, "24h") == 1.0  # 5 h <= 8 h


def case_resolution_sla_is_measured_on_its_clock(b: Builder) -> None:
    events: list[Event] = [
        b.created("t", 0, team="berlin"),
        b.status("t", 3600, "pending"),
        b.status("t", 5 * 3600, "open"),
        b.status("t", 9 * 3600, "solved"),  # waited 5 h, 4 business hours
    ]
    targets = dict(OFFICE.resolution_sla_targets, normal=4.5 * 3600)
    calendar = replace(OFFICE, resolution_sla_targets=targets)
    assert get(run(events, 9 * 3600, calendar), K.RESOLUTION_SLA_ATTAINMENT, "24h") == 0.0
    business = replace(calendar, resolution_sla_clocks=_every("business"))
    assert get(run(events, 9 * 3600, business), K.RESOLUTION_SLA_ATTAINMENT, "24h") == 1.0


def case_business_time_follows_the_team_holding_the_ticket(b: Builder) -> None:
    # Created in Berlin 16:00 CET, moved to New York 16:30 CET (11:30 EDT), answered 17:00 CET,
    # solved 17:30 CET: Berlin's 30 minutes, then New York's (Berlin closed at 17:00).
    events: list[Event] = [
        b.created("t", 7 * 3600, team="berlin"),
        b.escalated("t", 7.5 * 3600, to_team="ny"),
        b.replied("t", 8 * 3600),
        b.status("t", 8.5 * 3600, "solved"),
    ]
    v = run(events, 8.5 * 3600, OFFICE)
    assert get(v, K.FIRST_RESPONSE_BUSINESS_MEAN, "24h") == 3600.0
    assert get(v, K.RESOLUTION_BUSINESS_MEAN, "24h") == 1.5 * 3600
    assert get(v, K.RESOLUTION_BUSINESS_MEAN, "24h", team="ny") == 1.5 * 3600
    assert get(v, K.RESOLUTION_MEAN, "24h") == 1.5 * 3600


def case_unanswered_past_sla_follows_the_business_deadline(b: Builder) -> None:
    # Urgent: 15 business minutes. Created Monday 16:50 CET: 10 minutes today, 5 on Tuesday
    # from 09:00, so past the target after Tuesday 09:05 CET.
    config = replace(OFFICE, first_response_sla_clocks=_every("business"))
    events: list[Event] = [b.created("t", 7 * 3600 + 50 * 60, priority="urgent", team="berlin")]
    tuesday_0905 = 24 * 3600 + 5 * 60
    assert live(run(events, 9 * 3600, config), K.UNANSWERED_PAST_SLA) == 0
    assert live(run(events, tuesday_0905, config), K.UNANSWERED_PAST_SLA) == 0
    assert live(run(events, tuesday_0905 + 0.001, config), K.UNANSWERED_PAST_SLA) == 1
    assert live(run(events, 9 * 3600, OFFICE), K.UNANSWERED_PAST_SLA) == 1  # calendar: 70 min


# --- retirement and orphan expiry ---------------------------------------------------------------

SHORT = replace(CFG, orphan_hold_seconds=600.0, retention_seconds=3660.0)  # horizon 3660 s


def case_created_within_the_hold_applies_the_held_events(b: Builder) -> None:
    events: list[Event] = [b.replied("t1", 100), b.created("x", 699), b.created("t1", 50)]
    values = run(events, 699, SHORT)
    assert get(values, K.FIRST_RESPONSES) == 1


# --- attributes outlive state (SPEC §3) ----------------------------------------------------------

# Retired 3660 s after the last event (at the end of its bucket + horizon); attributes kept 1 day.
ATTRS = replace(SHORT, attribute_retention_seconds=86400.0)


def retired_ticket(b: Builder, ticket: str = "t1") -> list[Event]:
    """t1: billing/chat/high, moved to tier2, answered, solved at 30; a creation at 4000 moves
    the clock past its retirement (3720)."""
    return [
        b.created(ticket, 0, team="billing", channel="chat", priority="high"),
        b.escalated(ticket, 10, to_team="tier2"),
        b.replied(ticket, 20),
        b.status(ticket, 30, "solved"),
        b.created("x", 4000),
    ]


def case_late_survey_after_retirement_counts_with_the_tickets_attributes(b: Builder) -> None:
    events = [*retired_ticket(b), b.survey(5000, "csat", 5, ticket="t1")]
    values = run(events, 5000, ATTRS)
    for team, channel, priority in [(ALL, ALL, ALL), ("tier2", ALL, ALL), (ALL, "chat", ALL)]:
        assert get(values, K.CSAT_RESPONSES, "1h", team, channel, priority) == 1
    assert get(values, K.CSAT_RESPONSES, "1h", priority="high") == 1
    assert get(values, K.CSAT_SATISFIED, "1h", priority="high") == 1.0
    assert get(values, K.CSAT_RESPONSES, "1h", team="billing") == 0  # the team at retirement
    assert get(values, K.TICKETS_CREATED, "1h") == 1  # x; t1's creation is long gone


def case_late_reopen_after_retirement_brings_the_ticket_back(b: Builder) -> None:
    events = [*retired_ticket(b), b.status("t1", 5000, "open")]
    reopened = run(events, 5000, ATTRS)
    assert get(reopened, K.TICKETS_REOPENED, "1h") == 1
    assert get(reopened, K.TICKETS_REOPENED, "1h", team="tier2") == 1
    assert live(reopened, K.OPEN_TICKETS) == 2  # x and t1
    assert live(reopened, K.OPEN_TICKETS, team="tier2") == 1
    assert live(reopened, K.UNANSWERED_TICKETS) == 1  # x: t1 had its first response
    # A second escalation is not a first one; solved again: a resolution measured from the
    # original creation, not a first resolution (no first-contact resolution counted again).
    events += [b.escalated("t1", 5050), b.status("t1", 5100, "solved")]
    solved = run(events, 5100, ATTRS)
    assert get(solved, K.TICKETS_ESCALATED, "1h") == 0
    assert get(solved, K.TICKETS_SOLVED, "1h") == 1
    assert get(solved, K.RESOLUTION_MEAN, "1h", team="tier2") == 5100.0
    assert get(solved, K.FIRST_CONTACT_RESOLUTION, "1h") is None
    assert get(solved, K.TICKETS_REOPENED, "1h") == 1
    assert live(solved, K.OPEN_TICKETS) == 1


def case_unanswered_ticket_reopened_after_retirement_is_unanswered_again(b: Builder) -> None:
    events: list[Event] = [
        b.created("t1", 0, priority="urgent"),
        b.status("t1", 30, "solved"),
        b.created("x", 4000, created_by="agent"),
        b.status("t1", 5000, "new"),
        b.escalated("t1", 5010, to_team="tier3"),  # its first escalation: counted
    ]
    values = run(events, 5010, ATTRS)
    assert live(values, K.UNANSWERED_TICKETS) == 1
    assert live(values, K.UNANSWERED_TICKETS, team="tier3") == 1
    assert live(values, K.OLDEST_UNANSWERED_AGE) == 5010.0  # from the original creation
    assert get(values, K.TICKETS_ESCALATED, "1h") == 1


def case_old_events_of_a_retired_ticket_are_duplicates(b: Builder) -> None:
    """Re-deliveries after retirement (its ids are gone): any event at or before the ticket's
    last event, and a second creation, change nothing; so before and after a revival."""
    events = retired_ticket(b)
    resent = [events[0], events[2], events[3], b.status("t1", 25, "open")]
    values = run([*events, *resent], 4000, ATTRS)
    assert values == run(events, 4000, ATTRS)
    assert live(values, K.OPEN_TICKETS) == 1
    revived = [*events, b.survey(5000, "nps", 10, ticket="t1")]
    assert run([*revived, *resent], 5000, ATTRS) == run(revived, 5000, ATTRS)


def case_late_event_after_the_attribute_retention_is_an_orphan(b: Builder) -> None:
    config = replace(ATTRS, attribute_retention_seconds=7200.0)  # t1 forgotten at 7230
    # (z: on t1's partition of three too, so that its clock reaches 7230)
    events = [*retired_ticket(b), b.created("z", 7230), b.status("t1", 7300, "open")]
    values = run(events, 7300, config)
    assert get(values, K.TICKETS_REOPENED, "1h") == 0
    assert live(values, K.OPEN_TICKETS) == 2  # x and z; t1's reopen is held
    assert reference_counts(events, config).orphans == 1


Case = Callable[[Builder], None]
#: Every case of this module, in the order written.
CASES: list[Case] = [fn for name, fn in list(globals().items()) if name.startswith("case_")]


def case_id(case: Case) -> str:
    return case.__name__.removeprefix("case_")
