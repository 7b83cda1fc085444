"""Business hours, requester wait and resolution SLA through the pure core (issue 12).

Differential: generated streams (the ones of ``test_differential.py``) moved next to DST
transitions and holidays of generated calendars, with per-team calendars, pending/on-hold and
reopen cycles and escalations that move tickets between teams with different calendars, each
SLA target on a generated clock. The engine gets the calendars built from their text
(:meth:`Calendar.weekly`), the reference reads the generator's own description of them
(``tests/calendar_oracle.py``, minute by minute off the wall clock). Plus hand-worked examples
whose numbers are written out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import msgspec
from helpers.calendar_oracle import ZONES, Spec, specs, to_calendar
from helpers.differential import EngineRun, assert_same, check_stream
from helpers.pipeline import decoded_events
from helpers.reference import US, Reference, past_first_response_sla
from helpers.strategies import (
    BASE_TIME,
    DeliveryMode,
    Scenario,
    decoded,
    generated,
    scenarios,
)
from hypothesis import given
from hypothesis import strategies as st

from streams.core import kpis as K
from streams.core.aggregate import LiveAggregate
from streams.core.calendar import Calendar, CalendarSet, is_working
from streams.core.kpis import ALL, LIVE_WINDOW, EngineConfig, KpiKey, KpiValues, SlaClock
from streams.core.merge import KpiMerge
from streams.core.partials import OVERALL, PartialUpdate
from streams.core.replay import replay
from streams.core.units import to_us
from streams.events import (
    PRIORITIES,
    Event,
    TicketCreated,
    TicketEscalated,
    TicketReplied,
    TicketStatusChanged,
)
from streams.simulation.model import OFFICE_HOURS
from streams.simulator import generate
from streams_dev.demo import Summary, format_summary
from streams_dev.metrics import series

SETTINGS = generated(40)

# (UTC instant, zone): DST transitions of 2024 near which streams are moved.
_DST = (
    (datetime(2024, 3, 31, 1, 0, tzinfo=UTC), "Europe/Berlin"),  # spring forward 02:00 -> 03:00
    (datetime(2024, 10, 27, 1, 0, tzinfo=UTC), "Europe/Berlin"),  # fall back 03:00 -> 02:00
    (datetime(2024, 11, 3, 6, 0, tzinfo=UTC), "America/New_York"),  # fall back
    (datetime(2024, 10, 5, 15, 30, tzinfo=UTC), "Australia/Lord_Howe"),  # +30 min
)
_HOUR = 3600
_OFFICE = tuple((day, 9 * _HOUR, 17 * _HOUR) for day in range(5))  # mon-fri 09:00-17:00
_NIGHTS = tuple((day, 22 * _HOUR, 6 * _HOUR) for day in range(7))  # every night 22:00-06:00
_SPLIT = tuple(
    (day, start, end)
    for day in range(6)
    for start, end in ((8 * _HOUR, 12 * _HOUR), (13 * _HOUR, 18 * _HOUR))
)


def _shift(event: Event, delta: timedelta) -> Event:
    return msgspec.structs.replace(event, occurred_at=event.occurred_at + delta)


@st.composite
def _spec(draw: st.DrawFn, zone: str | None, around: date) -> Spec:
    """A calendar of a known shape or a generated one, with holidays around ``around``."""
    weekly = draw(
        st.one_of(
            st.sampled_from((_OFFICE, _NIGHTS, _SPLIT)),
            specs().map(lambda spec: spec.weekly),
        )
    )
    holidays: dict[date, tuple[tuple[int, int], ...]] = {}
    for offset in draw(st.lists(st.integers(-2, 2), max_size=2, unique=True)):
        partial = draw(st.sampled_from(((), ((9 * _HOUR, 13 * _HOUR),), ((0, 23 * _HOUR),))))
        holidays[around + timedelta(days=offset)] = partial
    return Spec(zone or draw(st.sampled_from(ZONES)), weekly, holidays)


class Calendared(msgspec.Struct, frozen=True):
    """A generated scenario with calendars: the config carries the engine's calendars,
    ``specs`` the reference's view of the same calendars."""

    scenario: Scenario
    specs: tuple[Spec, Mapping[str, Spec]]


@st.composite
def calendared(
    draw: st.DrawFn,
    delivery: DeliveryMode = "any",
    *,
    reopen_bias: bool = False,
    escalation_bias: bool = False,
    quiet: bool = False,
) -> Calendared:
    """``quiet``: no duplicates, late or future events."""
    faults = {"duplicates": False, "late": False, "future": False} if quiet else {}
    scenario: Scenario = draw(
        scenarios(
            delivery=delivery, reopen_bias=reopen_bias, escalation_bias=escalation_bias, **faults
        )
    )
    anchor, dst_zone = draw(st.sampled_from(((BASE_TIME, None), *_DST)))
    # Start the stream up to 12 h before the anchor (or on the base time's own day).
    delta = anchor - BASE_TIME - timedelta(minutes=draw(st.integers(0, 12 * 60)))
    delta -= timedelta(microseconds=delta // timedelta(microseconds=1) % 60_000_000)  # grid
    around = (BASE_TIME + delta).date()
    teams = sorted(
        {e.team for e in scenario.arrivals if isinstance(e, TicketCreated)}
        | {e.to_team for e in scenario.arrivals if isinstance(e, TicketEscalated) and e.to_team}
    )
    default = draw(_spec(dst_zone, around))
    own = draw(st.lists(st.sampled_from(teams), unique=True, max_size=3)) if teams else []
    team_specs = {
        team: draw(_spec(draw(st.sampled_from((dst_zone, None))), around)) for team in own
    }

    def clocks() -> dict[str, SlaClock]:
        return {p: draw(st.sampled_from(("calendar", "business"))) for p in PRIORITIES}

    targets = st.sampled_from([60.0, 600.0, 1800.0, 3600.0, 4 * 3600.0, 8 * 3600.0])
    config = replace(
        scenario.config,
        calendars=CalendarSet(
            to_calendar(default), {team: to_calendar(spec) for team, spec in team_specs.items()}
        ),
        resolution_sla_targets={p: draw(targets) for p in PRIORITIES},
        first_response_sla_clocks=clocks(),
        resolution_sla_clocks=clocks(),
    )
    moved = Scenario(
        arrivals=[_shift(e, delta) for e in scenario.arrivals],
        config=config,
        wall=scenario.wall + delta.total_seconds(),
        notes={**scenario.notes, f"anchor {anchor.isoformat()}": 1},
    )
    return Calendared(moved, (default, team_specs))


def _check(case: Calendared, partitions: int = 1) -> None:
    check_stream(case.scenario, partitions=partitions, specs=case.specs)


@SETTINGS
@given(calendared("bounded"))
def test_business_time_matches_reference(case: Calendared) -> None:
    _check(case)


@SETTINGS
@given(calendared(reopen_bias=True))
def test_reopen_and_pending_cycles_on_business_clocks_match_reference(case: Calendared) -> None:
    _check(case)


@SETTINGS
@given(calendared(escalation_bias=True))
def test_escalations_to_teams_with_other_calendars_match_reference(case: Calendared) -> None:
    _check(case)


@SETTINGS
@given(calendared())
def test_business_time_on_three_partitions_matches_reference(case: Calendared) -> None:
    _check(case, partitions=3)


@generated(25)
@given(calendared("ordered", quiet=True))
def test_past_sla_flips_exactly_at_the_business_deadline(case: Calendared) -> None:
    """Read the engine exactly at, and 1 µs after, each unanswered ticket's deadline on the
    first-response clock, found by bisection on the reference's own elapsed time."""
    scenario = case.scenario
    events = decoded(scenario)
    run = EngineRun(scenario.config)
    reference = Reference(scenario.config, run.partition_of, case.specs)
    for event in events:
        run.feed(event)
        reference.feed(event)
    clock = reference.clock
    _, open_tickets = reference.state()
    for ticket in [t for t in open_tickets if t.unanswered][:3]:
        lo, hi = clock, clock + 10 * 86400 * US
        if not past_first_response_sla(ticket, hi, reference.rules):
            continue
        if past_first_response_sla(ticket, lo, reference.rules):
            continue
        while hi - lo > 1:  # invariant: not past at lo, past at hi
            mid = (lo + hi) // 2
            if past_first_response_sla(ticket, mid, reference.rules):
                hi = mid
            else:
                lo = mid
        for now in (lo, hi):
            assert_same(run.values(now), reference.kpis(now), f"deadline read at {now}")


# Worked examples (requester wait, business time across teams, business deadlines) are cases
# of helpers/reference_cases.py: they run on the reference and on the engine.


def _overall(values: KpiValues, kpi: str) -> float | None:
    return values.get(KpiKey(kpi, "24h", ALL, ALL, ALL))


# -- the simulator's office-hours profile ------------------------------------------------------


def test_office_hours_profile_agents_act_in_working_hours_and_business_time_shows_it() -> None:
    start = datetime(2026, 3, 6, 12, 0, tzinfo=UTC).timestamp()  # Friday noon to Monday noon
    records = list(
        generate("office-hours", seed=4, start=start, duration_seconds=3 * 86400, rate=40)
    )
    events = decoded_events(records, now=start + 10 * 86400)
    calendar = OFFICE_HOURS.default
    creators = {e.ticket_id: e.created_by for e in events if isinstance(e, TicketCreated)}
    agent_acts = [
        e
        for e in events
        if (isinstance(e, TicketReplied) and e.author_type == "agent" and e.public)
        or (isinstance(e, TicketStatusChanged) and e.status == "solved")
        or isinstance(e, TicketEscalated)
    ]
    customer_tickets = [e for e in agent_acts if creators.get(e.ticket_id) == "customer"]
    assert len(customer_tickets) > 100
    outside = [e for e in customer_tickets if not is_working(calendar, to_us(e.occurred_at))]
    assert not outside, outside[:3]
    # Tickets keep arriving at night and at the weekend.
    created = [e for e in events if isinstance(e, TicketCreated)]
    assert any(not is_working(calendar, to_us(e.occurred_at)) for e in created)

    config = EngineConfig(windows=(("24h", 86400.0),), calendars=OFFICE_HOURS)
    # The last 24 h: Monday morning's replies to tickets of the weekend.
    values = replay(events, config, now=start + 3 * 86400)
    calendar_mean = _overall(values, K.FIRST_RESPONSE_MEAN)
    business_mean = _overall(values, K.FIRST_RESPONSE_BUSINESS_MEAN)
    assert calendar_mean is not None
    assert business_mean is not None
    assert business_mean < calendar_mean / 3  # nights and the weekend do not count


def test_demo_summary_shows_business_time_when_the_worker_has_calendars() -> None:
    overall = 'team="all",channel="all",priority="all"'
    page = "\n".join(
        [
            "# TYPE support_first_response_p50_seconds gauge",
            f'support_first_response_p50_seconds{{window="24h",{overall}}} 7200.0',
            "# TYPE support_first_response_business_p50_seconds gauge",
            f'support_first_response_business_p50_seconds{{window="24h",{overall}}} 600.0',
            "",
        ]
    )
    summary = Summary.from_series(series(page))
    assert "24h 2h00m (24h business 10m00s)" in format_summary(summary, 1.0)[1]
    without = Summary.from_series(series(page.split("# TYPE support_first_response_b")[0]))
    assert "business" not in format_summary(without, 1.0)[1]


def test_merge_counts_business_deadlines_and_calendar_targets_apart() -> None:
    """Stage 2: a business-clock priority is past its target after its tickets' deadlines
    (sent by stage 1), a calendar-clock one after creation + target."""
    clocks: dict[str, SlaClock] = dict.fromkeys(PRIORITIES, "calendar")
    clocks["urgent"] = "business"
    config = EngineConfig(
        calendars=CalendarSet(Calendar.always_open()), first_response_sla_clocks=clocks
    )
    t0 = to_us(BASE_TIME)
    live = LiveAggregate()
    live.add(True, "urgent", t0, +1, t0 + 5000 * US)  # urgent target 15 min, business deadline
    live.add(True, "low", t0, +1)  # low target 8 h on the calendar clock
    merge = KpiMerge(config)
    merge.apply(
        PartialUpdate(
            group=OVERALL,
            source_partition=0,
            bucket=t0 // (60 * US),
            live=live,
            stream_time_us=t0,
            is_live=True,
        )
    )
    key = KpiKey(K.UNANSWERED_PAST_SLA, LIVE_WINDOW, ALL, ALL, ALL)
    for now, past in (
        (t0 + 1000 * US, 0.0),  # 15 calendar minutes are over, but not the business target
        (t0 + 5000 * US, 0.0),
        (t0 + 5000 * US + 1, 1.0),
        (t0 + 8 * 3600 * US, 1.0),
        (t0 + 8 * 3600 * US + 1, 2.0),
    ):
        assert merge.values(now)[key] == past, (now - t0) / US
