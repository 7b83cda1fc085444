"""Ticket clocks: requester wait (pending pauses), team moves across calendars, SLA policies and
deadlines; a Hypothesis differential test against a minute-by-minute oracle."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from helpers.calendar_oracle import Spec, oracle_working, specs, to_calendar
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core.calendar import Calendar, CalendarSet
from streams.core.clocks import Elapsed, TicketClock, elapsed_between, requester_wait
from streams.core.kpis import EngineConfig, SlaClock
from streams.core.sla import SlaTarget, sla_policies

US = 1_000_000
MINUTE = 60 * US
HOUR = 3600 * US
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")

CALENDARS = CalendarSet(
    default=Calendar.weekly("Europe/Berlin", {"mon-fri": ["09:00-18:00"]}),
    teams={"NY": Calendar.weekly("America/New_York", {"mon-fri": ["09:00-17:00"]})},
)


def at(zone: ZoneInfo, y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> int:
    moment = datetime(y, m, d, hh, mm, tzinfo=zone)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


T0 = at(ZoneInfo("UTC"), 2026, 12, 1, 8)  # a Tuesday


def test_pending_pauses_the_requester_wait() -> None:
    statuses = [
        ("open", T0 + 10 * MINUTE),
        ("pending", T0 + 40 * MINUTE),  # 40 min waited
        ("open", T0 + 100 * MINUTE),  # customer answered after 60 min: not counted
        ("on_hold", T0 + 110 * MINUTE),  # on hold still counts
        ("solved", T0 + 130 * MINUTE),
    ]
    wait = requester_wait(T0, T0 + 130 * MINUTE, statuses, team="Support")
    assert wait == Elapsed(70 * MINUTE, None)
    assert elapsed_between(T0, T0 + 130 * MINUTE, team="Support").calendar_us == 130 * MINUTE


def test_a_reopened_ticket_accumulates_its_wait() -> None:
    statuses = [
        ("solved", T0 + 30 * MINUTE),
        ("open", T0 + 90 * MINUTE),  # reopened: the solved hour does not count
        ("solved", T0 + 100 * MINUTE),
        ("closed", T0 + 200 * MINUTE),
        ("open", T0 + 300 * MINUTE),  # after the measured resolution: ignored
    ]
    first = requester_wait(T0, T0 + 30 * MINUTE, statuses, team="Support")
    second = requester_wait(T0, T0 + 100 * MINUTE, statuses, team="Support")
    assert first.calendar_us == 30 * MINUTE
    assert second.calendar_us == 40 * MINUTE


def test_changes_before_the_creation_are_refused() -> None:
    with pytest.raises(ValueError, match="before the creation"):
        requester_wait(T0, T0 + HOUR, [("open", T0 - 1)], team="Support")
    clock = TicketClock(None, T0, "Support")
    clock.move(T0 + 5, "Billing")
    with pytest.raises(ValueError, match="before"):
        clock.run(T0 + 4, False)
    with pytest.raises(ValueError, match="before"):
        clock.elapsed(T0 + 4)


def test_each_stretch_counts_on_the_owning_teams_calendar() -> None:
    # Created Friday 17:00 in Berlin (default calendar 09-18), moved at 17:30 to New York
    # (09-17 local), solved Monday 10:00 New York time.
    created = at(BERLIN, 2026, 12, 4, 17)
    moved = at(BERLIN, 2026, 12, 4, 17, 30)  # 11:30 in New York
    solved = at(NEW_YORK, 2026, 12, 7, 10)
    wait = requester_wait(
        created,
        solved,
        [("open", created), ("solved", solved)],
        team="Support",
        team_changes=[("NY", moved)],
        calendars=CALENDARS,
    )
    # Berlin 17:00-17:30, New York Friday 11:30-17:00, Monday 09:00-10:00.
    assert wait.business_us == 30 * MINUTE + 330 * MINUTE + HOUR
    assert wait.calendar_us == solved - created
    # Kept in Berlin the whole time it would have been 1 h Friday + 9 h Monday up to 16:00.
    kept = elapsed_between(created, solved, team="Support", calendars=CALENDARS)
    assert kept.business_us == HOUR + 7 * HOUR


def test_a_team_without_a_calendar_uses_the_default() -> None:
    start = at(BERLIN, 2026, 12, 7, 8)
    end = at(BERLIN, 2026, 12, 7, 20)
    assert elapsed_between(start, end, team="Tier 2", calendars=CALENDARS).business_us == 9 * HOUR


def test_without_calendars_business_time_is_calendar_time() -> None:
    elapsed = elapsed_between(T0, T0 + HOUR, team="Support")
    assert elapsed == Elapsed(HOUR, None)
    assert elapsed.on("business") == elapsed.on("calendar") == HOUR
    clock = TicketClock(None, T0, "Support")
    assert clock.deadline_us(15 * MINUTE, "business") == T0 + 15 * MINUTE


def test_sla_policies_default_to_the_spec_on_the_calendar_clock() -> None:
    policies = sla_policies(EngineConfig())
    assert policies.first_response.targets == {
        "urgent": SlaTarget(15 * MINUTE, "calendar"),
        "high": SlaTarget(HOUR, "calendar"),
        "normal": SlaTarget(4 * HOUR, "calendar"),
        "low": SlaTarget(8 * HOUR, "calendar"),
    }
    assert policies.resolution.targets == {
        "urgent": SlaTarget(4 * HOUR, "calendar"),
        "high": SlaTarget(8 * HOUR, "calendar"),
        "normal": SlaTarget(24 * HOUR, "calendar"),
        "low": SlaTarget(72 * HOUR, "calendar"),
    }
    assert not policies.first_response.uses_business_time
    assert policies.first_response.met("urgent", Elapsed(15 * MINUTE, 0))
    assert not policies.first_response.met("urgent", Elapsed(15 * MINUTE + 1, 0))


def test_a_business_clock_target() -> None:
    config = EngineConfig(
        first_response_sla_clocks={"urgent": "calendar", "high": "business"},
        calendars=CALENDARS,
    )
    policy = sla_policies(config).first_response
    assert policy.uses_business_time
    # Created Friday 17:30 Berlin, answered Monday 09:20: 2 days of calendar time, 50 min of
    # business time (17:30-18:00, 09:00-09:20).
    created = at(BERLIN, 2026, 12, 4, 17, 30)
    replied = at(BERLIN, 2026, 12, 7, 9, 20)
    elapsed = elapsed_between(created, replied, team="Support", calendars=CALENDARS)
    assert elapsed.business_us == 50 * MINUTE
    assert policy.met("high", elapsed)
    assert not policy.met("urgent", elapsed)
    assert policy.value_us("high", elapsed) == 50 * MINUTE
    clock = TicketClock(CALENDARS, created, "Support")
    assert policy.deadline_us("high", clock) == at(BERLIN, 2026, 12, 7, 9, 30)
    assert policy.deadline_us("urgent", clock) == created + 15 * MINUTE


def test_deadlines_of_paused_and_already_late_clocks() -> None:
    clock = TicketClock(CALENDARS, T0, "Support")  # 09:00 Berlin, Tuesday
    clock.status(T0 + HOUR, "pending")
    assert clock.deadline_us(2 * HOUR, "calendar") is None  # stopped: cannot run out
    assert clock.deadline_us(30 * MINUTE, "calendar") == T0 + 30 * MINUTE  # already late
    assert clock.deadline_us(HOUR, "calendar") is None  # exactly at the target, stopped
    clock.status(T0 + 3 * HOUR, "open")
    assert clock.deadline_us(HOUR, "calendar") == T0 + 3 * HOUR  # late as soon as it runs
    assert clock.deadline_us(90 * MINUTE, "business") == T0 + 3 * HOUR + 30 * MINUTE


# -- differential test ------------------------------------------------------------------------

RUNNING = {"new", "open", "on_hold"}
STATUSES = ("new", "open", "pending", "on_hold", "solved", "closed")


def oracle_wait(
    specs_by_team: dict[str, Spec],
    created_s: int,
    until_s: int,
    changes: Sequence[tuple[int, str, str]],
    *,
    pausing: bool,
) -> tuple[int, int]:
    """(calendar, business) seconds, minute by minute: the status and team in force during
    each minute, and whether that team's calendar works then."""
    zones = {team: ZoneInfo(spec.zone) for team, spec in specs_by_team.items()}
    calendar = business = 0
    for minute in range(created_s, until_s, 60):
        status, team = "new", "A"
        for when, kind, value in changes:
            if when <= minute:
                if kind == "status":
                    status = value
                else:
                    team = value
        if pausing and status not in RUNNING:
            continue
        calendar += 60
        spec = specs_by_team.get(team, specs_by_team["A"])
        if oracle_working(spec, zones.get(team, zones["A"]), minute):
            business += 60
    return calendar, business


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec_a=specs(),
    spec_b=specs(),
    created_minute=st.integers(27_000_000, 29_000_000),  # 2021-2025
    steps=st.lists(
        st.tuples(
            st.integers(0, 36 * 60),  # minutes after the previous change
            st.one_of(
                st.tuples(st.just("status"), st.sampled_from(STATUSES)),
                st.tuples(st.just("team"), st.sampled_from(["A", "B", "C"])),
            ),
        ),
        max_size=8,
    ),
    tail=st.integers(0, 36 * 60),
    target_minutes=st.integers(0, 48 * 60),
)
def test_ticket_clocks_equal_the_brute_force_oracle(
    spec_a: Spec,
    spec_b: Spec,
    created_minute: int,
    steps: list[tuple[int, tuple[str, str]]],
    tail: int,
    target_minutes: int,
) -> None:
    calendars = CalendarSet(to_calendar(spec_a), {"B": to_calendar(spec_b)})  # C: default
    created_s = created_minute * 60
    changes: list[tuple[int, str, str]] = []
    when = created_s
    for gap, (kind, value) in steps:
        when += gap * 60
        changes.append((when, kind, value))
    until_s = when + tail * 60
    statuses = [(value, w * US) for w, kind, value in changes if kind == "status"]
    moves = [(value, w * US) for w, kind, value in changes if kind == "team"]

    wait = requester_wait(
        created_s * US,
        until_s * US,
        statuses,
        team="A",
        team_changes=moves,
        calendars=calendars,
    )
    total = elapsed_between(
        created_s * US, until_s * US, team="A", team_changes=moves, calendars=calendars
    )
    by_team = {"A": spec_a, "B": spec_b}
    expected_wait = oracle_wait(by_team, created_s, until_s, changes, pausing=True)
    expected_total = oracle_wait(by_team, created_s, until_s, changes, pausing=False)
    assert (wait.calendar_us, wait.business_us) == (expected_wait[0] * US, expected_wait[1] * US)
    assert (total.calendar_us, total.business_us) == (
        expected_total[0] * US,
        expected_total[1] * US,
    )

    # The deadline: within the target up to it, past it just after (fed the same changes).
    def clock_at(instant_us: int) -> TicketClock:
        clock = TicketClock(calendars, created_s * US, "A")
        for w, kind, value in changes:
            if w * US <= instant_us:
                if kind == "status":
                    clock.status(w * US, value)
                else:
                    clock.move(w * US, value)
        return clock

    target = target_minutes * MINUTE
    clocks: tuple[SlaClock, ...] = ("calendar", "business")
    for kind in clocks:
        deadline = clock_at(until_s * US).deadline_us(target, kind)
        if deadline is None:
            assert not clock_at(until_s * US).running
            assert wait.on(kind) <= target
            continue
        assert clock_at(deadline).elapsed(deadline).on(kind) == target
        after = clock_at(deadline + 1).elapsed(deadline + 1).on(kind)
        assert after == target + 1
