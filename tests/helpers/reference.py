"""Brute-force reference of the KPI definitions (SPEC §3, §4), written on its own.

It owns its rules: nothing here calls or reuses logic of ``streams`` (only event types, KPI
names and the :class:`EngineConfig` it reads its parameters from). It keeps every accepted
event, derives each ticket's measurements by walking its sorted history, and computes every
KPI by filtering the full list of measurements per window and per group. No sketches, no
buckets as state, no incremental updates: obviously right over fast.

Rules, from SPEC §3-§4 and the decisions the README records where the SPEC is silent:

* Routing: a ticket's events are keyed by ``ticket_id``; a survey without a ticket by its
  ``survey_id``. Each Kafka partition has its own clock: the latest event time it has seen
  (duplicates included) in stream mode.
* De-duplication, in arrival order, per key: an ``event_id`` already seen for that key is a
  duplicate; so is a second ``ticket-created`` for a ticket that has one (first arrival wins).
  Events rejected as ``before_created`` are remembered too (a re-send is a duplicate).
* An accepted event is *late* when older than its partition's clock minus the horizon
  (longest window + grace). Late events still update ticket state; their measurements are
  outside every window when read at or after that clock.
* Events of a ticket not created yet are held (from the clock at arrival); when the ticket is
  created, held events earlier than the creation are rejected as ``before_created`` and the
  rest applied. Held events whose first one has waited ``orphan_hold`` on the partition's clock
  are dropped as orphans (all of them, with the ticket's memory).
* Retirement: a ticket whose latest status is solved/closed is retired (its seen ids are
  forgotten) once the clock reaches ``max(last + retention, end of last event's bucket +
  horizon)``; a survey without a ticket is forgotten once its bucket has left the horizon.
  A retired ticket is still known (SPEC §3 "attributes outlive state"): a ``ticket-created``
  for it, or any event at or before its last event at retirement, is a duplicate; a later
  event is accepted and appended to its history (a revived ticket retires again like any
  other). It is forgotten entirely once the clock reaches ``max(last + attribute retention,
  end of last event's bucket + horizon)``; a later event of a forgotten ticket is held like
  any unknown ticket's (README "Memory tracks open work").
* A ticket's events are ordered by ``(time, rank, event_id)``, rank created < reply <
  escalation < status < survey.
* Windows at clock ``now`` cover ``[end - size, end)`` with ``end = (floor(now / B) + 1) * B``;
  ``today`` covers ``[m, end)``, m = the first multiple of B at or after local midnight (in
  ``time_zone``) of the day ``now`` is in.
* Series: a group (overall, one team, one channel, one priority) is reported, with every
  windowed KPI of every window, while it has a measurement whose bucket has not left the
  horizon of its partition's clock, or an open ticket; live KPIs while it has an open ticket.

* Requester wait of a resolution: the time from creation to it spent in new/open/on_hold.
  Resolution SLA: that wait within the priority's resolution target; first-response SLA: the
  first-response time within its target; each target on its clock (calendar or business).
* Business time (with calendars): the working time, minute by minute straight off the local
  wall clock (``tests/calendar_oracle.py``), of the calendar of the team owning the ticket at
  each instant (the creating team's until an escalation with ``to_team``; a team without a
  calendar of its own has the default one). Past the first-response SLA: an unanswered
  ticket whose elapsed time on the first-response clock is strictly more than the target.

Times are integer microseconds; values are reported in seconds, as the engine does.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from itertools import pairwise
from zoneinfo import ZoneInfo

from helpers.calendar_oracle import Spec, oracle_working, spec_of
from streams.core import kpis as K
from streams.core.kpis import (
    ALL,
    LIVE_WINDOW,
    UNKNOWN,
    CustomerKpiKey,
    EngineConfig,
    KpiKey,
    KpiValues,
)
from streams.events import (
    CustomerLifecycle,
    Event,
    SurveySubmitted,
    TicketCreated,
    TicketEscalated,
    TicketReplied,
    TicketStatusChanged,
)

US = 1_000_000
SOLVED = frozenset({"solved", "closed"})  # SPEC §4: "into solved or closed"
# SPEC §4: the requester waits in new, open and on_hold; pending (waiting on the customer)
# pauses the clock, solved/closed stop it.
WAITING = frozenset({"new", "open", "on_hold"})
# SPEC §4: eNPS is reported overall and per team only.
TEAM_ONLY = frozenset({K.ENPS_SCORE, K.ENPS_RESPONSES})
_RANK: dict[type, int] = {
    TicketCreated: 0,
    TicketReplied: 1,
    TicketEscalated: 2,
    TicketStatusChanged: 3,
    SurveySubmitted: 4,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NEVER = math.inf

Group = tuple[str, str, str]  # (team, channel, priority)
OVERALL: Group = (ALL, ALL, ALL)


def micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def time_of(event: Event) -> int:
    return micros(event.occurred_at)


class BusinessCalendars:
    """Business time by brute force: every minute's working status read off the local wall
    clock of the owning team's calendar (cached per calendar and minute). The working minutes
    of a calendar are also counted as they are read (running totals from the first minute
    asked about), so a span's whole minutes cost two look-ups instead of a walk over them."""

    def __init__(self, default: Spec, teams: Mapping[str, Spec]) -> None:
        self.default = default
        self.teams = dict(teams)
        self._working: dict[tuple[int, int], bool] = {}
        # id(spec) -> (origin, totals): totals[i] = working minutes in [origin, origin + i)
        self._totals: dict[int, tuple[int, list[int]]] = {}

    def spec(self, team: str) -> Spec:
        return self.teams.get(team, self.default)

    def working(self, spec: Spec, minute_s: int) -> bool:
        key = (id(spec), minute_s)
        known = self._working.get(key)
        if known is None:
            known = self._working[key] = oracle_working(spec, ZoneInfo(spec.zone), minute_s)
        return known

    def _working_minutes(self, spec: Spec, first: int, last: int) -> int:
        """Working minutes of ``spec`` among minute numbers ``[first, last)`` (minutes since the
        epoch), from the running totals (extended to cover both bounds first)."""
        origin, totals = self._totals.setdefault(id(spec), (first, [0]))
        if first < origin:  # count the minutes before the origin, shift the totals on
            earlier = [0]
            for minute in range(first, origin):
                earlier.append(earlier[-1] + self.working(spec, minute * 60))
            totals[:] = earlier[:-1] + [earlier[-1] + t for t in totals]
            origin = first
            self._totals[id(spec)] = (origin, totals)
        while origin + len(totals) - 1 < last:
            minute = origin + len(totals) - 1
            totals.append(totals[-1] + self.working(spec, minute * 60))
        return totals[last - origin] - totals[first - origin]

    def business(self, team: str, start: int, end: int) -> int:
        """Working µs of ``team``'s calendar in ``[start, end)``: the overlap with each working
        minute (the first and last minute may be partly inside)."""
        if end <= start:
            return 0
        spec = self.spec(team)
        minute_us = 60 * US
        first, last = start // minute_us, (end - 1) // minute_us  # minutes holding the bounds
        if first == last:
            return end - start if self.working(spec, first * 60) else 0
        total = 0
        if self.working(spec, first * 60):
            total += (first + 1) * minute_us - start
        if self.working(spec, last * 60):
            total += end - last * minute_us
        return total + self._working_minutes(spec, first + 1, last) * minute_us


@dataclass(frozen=True)
class Rules:
    """The configuration in the reference's own terms (µs)."""

    windows: tuple[tuple[str, int], ...]
    bucket: int
    horizon: int
    sla: Mapping[str, int]
    hold: int
    retention: int
    attribute_retention: int
    zone: ZoneInfo  # of the calendar-day window ``today``
    resolution_sla: Mapping[str, int] = field(default_factory=dict)
    sla_clock: Mapping[str, str] = field(default_factory=dict)  # priority -> calendar|business
    resolution_sla_clock: Mapping[str, str] = field(default_factory=dict)
    calendars: BusinessCalendars | None = None

    @staticmethod
    def of(config: EngineConfig, specs: tuple[Spec, Mapping[str, Spec]] | None = None) -> Rules:
        """``specs``: the calendars as the reference reads them (default, per team); else
        read off ``config.calendars``' data."""
        windows = tuple((name, round(size * US)) for name, size in config.windows)
        if specs is None and config.calendars is not None:
            cals = config.calendars
            specs = (spec_of(cals.default), {t: spec_of(c) for t, c in cals.teams.items()})
        return Rules(
            windows=windows,
            bucket=round(config.bucket_seconds * US),
            horizon=max(size for _, size in windows) + round(config.grace_seconds * US),
            sla={p: round(s * US) for p, s in config.sla_targets.items()},
            hold=round(config.orphan_hold_seconds * US),
            retention=round(config.retention_seconds * US),
            attribute_retention=round(config.attribute_retention_seconds * US),
            zone=ZoneInfo(config.time_zone),
            resolution_sla={p: round(s * US) for p, s in config.resolution_sla_targets.items()},
            sla_clock=dict(config.first_response_sla_clocks),
            resolution_sla_clock=dict(config.resolution_sla_clocks),
            calendars=None if specs is None else BusinessCalendars(*specs),
        )

    def bounds(self, now: int) -> list[tuple[str, int, int]]:
        end = (now // self.bucket + 1) * self.bucket
        bounds = []
        for name, size in self.windows:
            if name == "today":
                # From the first bucket edge at or after local midnight of the day ``now`` is in.
                start = -(-local_midnight(now, self.zone) // self.bucket) * self.bucket
            else:
                start = end - size
            bounds.append((name, start, end))
        return bounds

    def on_clock(self, clock: str, calendar: int, business: int | None) -> int:
        """A duration on an SLA clock (business falls back to calendar without calendars)."""
        return business if clock == "business" and business is not None else calendar


def local_midnight(now: int, zone: ZoneInfo) -> int:
    """Start (µs) of the local calendar day in ``zone`` that contains the instant ``now``."""
    day = (_EPOCH + timedelta(microseconds=now)).astimezone(zone).date()
    return micros(datetime.combine(day, dt_time(0), tzinfo=zone))


# -- what one ticket measures -------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One measured fact: when, for which dimensions, how much."""

    kind: str  # created | resolution | first_resolution | reopen | escalated | first_response
    #            | csat | nps | enps
    time: int
    team: str
    channel: str
    priority: str
    value: int = 0  # µs for durations, the score for surveys
    flag: bool = False  # first_response: SLA met; first_resolution: first-contact resolution
    business: int | None = None  # first_response / resolution: value in business µs
    wait: int = 0  # resolution: requester wait µs
    wait_business: int | None = None  # resolution: requester wait in business µs
    met: bool = False  # resolution: resolution SLA met

    def groups(self) -> list[Group]:
        groups: list[Group] = [OVERALL, (self.team, ALL, ALL)]
        if self.kind != "enps":
            groups += [(ALL, self.channel, ALL), (ALL, ALL, self.priority)]
        return groups


@dataclass(frozen=True)
class OpenTicket:
    team: str
    channel: str
    priority: str
    created: int
    unanswered: bool
    # The owning team's changes (time, team), creation first: the first-response clock.
    owners: tuple[tuple[int, str], ...] = ()

    def groups(self) -> list[Group]:
        return [OVERALL, (self.team, ALL, ALL), (ALL, self.channel, ALL), (ALL, ALL, self.priority)]


def _survey(event: SurveySubmitted, team: str, channel: str, priority: str) -> Measurement:
    # SPEC §4: the survey's team if given, else the ticket's team (at that point), else unknown.
    return Measurement(
        event.kind,
        time_of(event),
        event.team if event.team is not None else team,
        channel,
        priority,
        event.score,
    )


class _Timeline:
    """A ticket's owners and statuses over time, to measure its clocks by brute force."""

    def __init__(self, start: int, team: str) -> None:
        self.owners: list[tuple[int, str]] = [(start, team)]
        self.statuses: list[tuple[int, str]] = [(start, "new")]

    def _pieces(self, until: int) -> list[tuple[int, int, str, str]]:
        """``[a, b)`` pieces up to ``until`` with the team and status of each."""
        cuts = sorted({t for t, _ in self.owners} | {t for t, _ in self.statuses} | {until})
        pieces = []
        for a, b in pairwise(cuts):
            if b > until:
                break
            team = [v for t, v in self.owners if t <= a][-1]
            status = [v for t, v in self.statuses if t <= a][-1]
            pieces.append((a, b, team, status))
        return pieces

    def elapsed(
        self, until: int, calendars: BusinessCalendars | None, *, waiting_only: bool
    ) -> tuple[int, int | None]:
        """(calendar µs, business µs or None) from creation to ``until``; ``waiting_only``:
        only while the requester waits."""
        calendar = 0
        business = None if calendars is None else 0
        for a, b, team, status in self._pieces(until):
            if waiting_only and status not in WAITING:
                continue
            calendar += b - a
            if calendars is not None and business is not None:
                business += calendars.business(team, a, b)
        return calendar, business


def ticket_measurements(
    created: TicketCreated, events: Iterable[Event], rules: Rules
) -> tuple[list[Measurement], OpenTicket | None]:
    """Walk one ticket's history in order; its measurements and, if open, its live state."""
    history = sorted(events, key=lambda e: (time_of(e), _RANK[type(e)], e.event_id))
    start = time_of(created)
    team, channel, priority = created.team, created.channel, created.priority
    out = [Measurement("created", start, team, channel, priority)]
    timeline = _Timeline(start, team)
    cals = rules.calendars
    status = "new"
    agent_replies = 0
    escalated = False
    resolved_once = False
    for event in history:
        t = time_of(event)
        if isinstance(event, TicketReplied):
            if event.author_type == "agent" and event.public:
                agent_replies += 1
                if agent_replies == 1 and created.created_by == "customer":
                    took, took_b = timeline.elapsed(t, cals, waiting_only=False)
                    on_clock = rules.on_clock(
                        rules.sla_clock.get(priority, "calendar"), took, took_b
                    )
                    met = on_clock <= rules.sla[priority]
                    out.append(
                        Measurement("first_response", t, team, channel, priority, took, met, took_b)
                    )
        elif isinstance(event, TicketEscalated):
            if not escalated:  # counts for the team that escalated
                escalated = True
                out.append(Measurement("escalated", t, team, channel, priority))
            if event.to_team is not None:
                team = event.to_team
                timeline.owners.append((t, team))
        elif isinstance(event, TicketStatusChanged):
            if status not in SOLVED and event.status in SOLVED:
                took, took_b = timeline.elapsed(t, cals, waiting_only=False)
                wait, wait_b = timeline.elapsed(t, cals, waiting_only=True)
                clock = rules.resolution_sla_clock.get(priority, "calendar")
                met = rules.on_clock(clock, wait, wait_b) <= rules.resolution_sla[priority]
                out.append(
                    Measurement(
                        "resolution",
                        t,
                        team,
                        channel,
                        priority,
                        took,
                        False,
                        took_b,
                        wait,
                        wait_b,
                        met,
                    )
                )
                if not resolved_once:
                    resolved_once = True
                    fcr = agent_replies == 1 and not escalated
                    out.append(
                        Measurement("first_resolution", t, team, channel, priority, t - start, fcr)
                    )
            elif status in SOLVED and event.status not in SOLVED:
                out.append(Measurement("reopen", t, team, channel, priority))
            status = event.status
            timeline.statuses.append((t, status))
        elif isinstance(event, SurveySubmitted):
            out.append(_survey(event, team, channel, priority))
    if status in SOLVED:
        return out, None
    unanswered = agent_replies == 0 and created.created_by == "customer"
    owners = tuple(timeline.owners)
    return out, OpenTicket(team, channel, priority, start, unanswered, owners)


def past_first_response_sla(ticket: OpenTicket, now: int, rules: Rules) -> bool:
    """Strictly more than the first-response target has elapsed on its clock at ``now``."""
    timeline = _Timeline(ticket.created, ticket.owners[0][1])
    timeline.owners = list(ticket.owners)
    took, took_b = timeline.elapsed(now, rules.calendars, waiting_only=False)
    on_clock = rules.on_clock(rules.sla_clock.get(ticket.priority, "calendar"), took, took_b)
    return on_clock > rules.sla[ticket.priority]


# -- KPI formulas ---------------------------------------------------------------------------


def nearest_rank(sorted_values: Sequence[float], numerator: int, denominator: int) -> float:
    """The ``numerator/denominator`` quantile by nearest rank: ``v[ceil(q * n) - 1]``."""
    n = len(sorted_values)
    rank = -(-n * numerator // denominator)  # exact integer ceil(q * n)
    return sorted_values[max(rank, 1) - 1]


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _mean_seconds(values: Sequence[int]) -> float | None:
    return sum(values) / len(values) / US if values else None


def _quantile_seconds(values: Sequence[int], numerator: int, denominator: int) -> float | None:
    return nearest_rank(sorted(values), numerator, denominator) / US if values else None


def _net_score(scores: Sequence[int]) -> float | None:
    if not scores:
        return None
    promoters = sum(1 for s in scores if s >= 9)
    detractors = sum(1 for s in scores if s <= 6)
    return (promoters - detractors) / len(scores) * 100.0


class Sample:
    """The measurements of one group in one window, by kind."""

    def __init__(self, measurements: Iterable[Measurement]) -> None:
        self.by_kind: dict[str, list[Measurement]] = defaultdict(list)
        for m in measurements:
            self.by_kind[m.kind].append(m)

    def count(self, kind: str) -> float:
        return float(len(self.by_kind[kind]))

    def values(self, kind: str) -> list[int]:
        return [m.value for m in self.by_kind[kind]]

    def flagged(self, kind: str) -> int:
        return sum(1 for m in self.by_kind[kind] if m.flag)

    def waits(self) -> list[int]:
        return [m.wait for m in self.by_kind["resolution"]]

    def business(self, kind: str) -> list[int]:
        return [m.business for m in self.by_kind[kind] if m.business is not None]

    def waits_business(self) -> list[int]:
        return [m.wait_business for m in self.by_kind["resolution"] if m.wait_business is not None]


# One formula per windowed KPI (SPEC §4); a new KPI is one more line (and its measurements).
WINDOWED: dict[str, Callable[[Sample], float | None]] = {
    K.TICKETS_CREATED: lambda s: s.count("created"),
    K.TICKETS_SOLVED: lambda s: s.count("resolution"),
    K.TICKETS_ESCALATED: lambda s: s.count("escalated"),
    K.TICKETS_REOPENED: lambda s: s.count("reopen"),
    K.ESCALATION_RATIO: lambda s: _ratio(s.count("escalated"), s.count("created")),
    K.FIRST_RESPONSE_P50: lambda s: _quantile_seconds(s.values("first_response"), 1, 2),
    K.FIRST_RESPONSE_P90: lambda s: _quantile_seconds(s.values("first_response"), 9, 10),
    K.FIRST_RESPONSE_MEAN: lambda s: _mean_seconds(s.values("first_response")),
    K.FIRST_RESPONSES: lambda s: s.count("first_response"),
    K.FIRST_RESPONSE_SLA_ATTAINMENT: lambda s: _ratio(
        s.flagged("first_response"), s.count("first_response")
    ),
    K.RESOLUTION_P50: lambda s: _quantile_seconds(s.values("resolution"), 1, 2),
    K.RESOLUTION_P90: lambda s: _quantile_seconds(s.values("resolution"), 9, 10),
    K.RESOLUTION_MEAN: lambda s: _mean_seconds(s.values("resolution")),
    K.FIRST_CONTACT_RESOLUTION: lambda s: _ratio(
        s.flagged("first_resolution"), s.count("first_resolution")
    ),
    K.REQUESTER_WAIT_P50: lambda s: _quantile_seconds(s.waits(), 1, 2),
    K.REQUESTER_WAIT_P90: lambda s: _quantile_seconds(s.waits(), 9, 10),
    K.REQUESTER_WAIT_MEAN: lambda s: _mean_seconds(s.waits()),
    K.RESOLUTION_SLA_ATTAINMENT: lambda s: _ratio(
        sum(1 for m in s.by_kind["resolution"] if m.met), s.count("resolution")
    ),
    K.CSAT_SATISFIED: lambda s: _ratio(sum(1 for v in s.values("csat") if v >= 4), s.count("csat")),
    K.CSAT_MEAN: lambda s: _ratio(sum(s.values("csat")), s.count("csat")),
    K.CSAT_RESPONSES: lambda s: s.count("csat"),
    K.NPS_SCORE: lambda s: _net_score(s.values("nps")),
    K.NPS_RESPONSES: lambda s: s.count("nps"),
    K.ENPS_SCORE: lambda s: _net_score(s.values("enps")),
    K.ENPS_RESPONSES: lambda s: s.count("enps"),
}

# Business-time KPIs: reported only with calendars (SPEC §4-§5).
BUSINESS: dict[str, Callable[[Sample], float | None]] = {
    K.FIRST_RESPONSE_BUSINESS_P50: lambda s: _quantile_seconds(s.business("first_response"), 1, 2),
    K.FIRST_RESPONSE_BUSINESS_P90: lambda s: _quantile_seconds(s.business("first_response"), 9, 10),
    K.FIRST_RESPONSE_BUSINESS_MEAN: lambda s: _mean_seconds(s.business("first_response")),
    K.RESOLUTION_BUSINESS_P50: lambda s: _quantile_seconds(s.business("resolution"), 1, 2),
    K.RESOLUTION_BUSINESS_P90: lambda s: _quantile_seconds(s.business("resolution"), 9, 10),
    K.RESOLUTION_BUSINESS_MEAN: lambda s: _mean_seconds(s.business("resolution")),
    K.REQUESTER_WAIT_BUSINESS_P50: lambda s: _quantile_seconds(s.waits_business(), 1, 2),
    K.REQUESTER_WAIT_BUSINESS_P90: lambda s: _quantile_seconds(s.waits_business(), 9, 10),
    K.REQUESTER_WAIT_BUSINESS_MEAN: lambda s: _mean_seconds(s.waits_business()),
}

# Which measurement kind gives each windowed KPI its samples (coverage reports).
SAMPLE_KIND: dict[str, str] = {
    K.TICKETS_CREATED: "created",
    K.TICKETS_SOLVED: "resolution",
    K.TICKETS_ESCALATED: "escalated",
    K.TICKETS_REOPENED: "reopen",
    K.ESCALATION_RATIO: "created",
    K.FIRST_RESPONSE_P50: "first_response",
    K.FIRST_RESPONSE_P90: "first_response",
    K.FIRST_RESPONSE_MEAN: "first_response",
    K.FIRST_RESPONSES: "first_response",
    K.FIRST_RESPONSE_SLA_ATTAINMENT: "first_response",
    K.RESOLUTION_P50: "resolution",
    K.RESOLUTION_P90: "resolution",
    K.RESOLUTION_MEAN: "resolution",
    K.FIRST_CONTACT_RESOLUTION: "first_resolution",
    K.REQUESTER_WAIT_P50: "resolution",
    K.REQUESTER_WAIT_P90: "resolution",
    K.REQUESTER_WAIT_MEAN: "resolution",
    K.RESOLUTION_SLA_ATTAINMENT: "resolution",
    K.CSAT_SATISFIED: "csat",
    K.CSAT_MEAN: "csat",
    K.CSAT_RESPONSES: "csat",
    K.NPS_SCORE: "nps",
    K.NPS_RESPONSES: "nps",
    K.ENPS_SCORE: "enps",
    K.ENPS_RESPONSES: "enps",
}


def _live_values(now: int, tickets: Sequence[OpenTicket], rules: Rules) -> dict[str, float]:
    unanswered = [t for t in tickets if t.unanswered]
    # SPEC §4: past the target means strictly more than the target has elapsed.
    past_sla = [t for t in unanswered if past_first_response_sla(t, now, rules)]
    oldest = max(0, now - min(t.created for t in unanswered)) / US if unanswered else 0.0
    return {
        K.OPEN_TICKETS: float(len(tickets)),
        K.UNANSWERED_TICKETS: float(len(unanswered)),
        K.OLDEST_UNANSWERED_AGE: oldest,
        K.UNANSWERED_PAST_SLA: float(len(past_sla)),
    }


# -- the stream ------------------------------------------------------------------------------


@dataclass
class _Entity:
    """What is known about one key: a ticket (created or not yet) or a standalone survey."""

    partition: int
    created: TicketCreated | None = None
    applied: list[Event] = field(default_factory=list)
    held: list[tuple[Event, int]] = field(default_factory=list)  # (event, clock when held)
    seen: set[str] = field(default_factory=set)
    standalone: bool = False
    due: float | None = None  # when housekeeping drops it (cached; None: to be computed)
    retired: bool = False  # known by its attributes only, until an event revives it
    # Set at retirement: the last event time then; events at or before it are duplicates.
    summary: int | None = None

    def last_time(self) -> int:
        times = [time_of(e) for e in self.applied]
        if self.created is not None:
            times.append(time_of(self.created))
        return max(times, default=0)

    def solved(self) -> bool:
        statuses = sorted(
            (time_of(e), _RANK[type(e)], e.event_id, e.status)
            for e in self.applied
            if isinstance(e, TicketStatusChanged)
        )
        return bool(statuses) and statuses[-1][3] in SOLVED


@dataclass(frozen=True)
class Counts:
    """Pipeline-health counts: events that were duplicates, late, orphans, before creation."""

    duplicates: int = 0
    late: int = 0
    orphans: int = 0
    before_created: int = 0


def key_of(event: Event) -> str | None:
    if isinstance(event, CustomerLifecycle):
        return None
    if isinstance(event, SurveySubmitted) and event.ticket_id is None:
        return f"survey:{event.survey_id}"
    return event.ticket_id


class Reference:
    """Feed decoded events in arrival order; read KPIs and health counts at any instant."""

    def __init__(
        self,
        config: EngineConfig,
        partition_of: Callable[[Event], int] | None = None,
        specs: tuple[Spec, Mapping[str, Spec]] | None = None,
    ) -> None:
        self.rules = Rules.of(config, specs)
        self.partition_of = partition_of or (lambda _event: 0)
        self.clocks: dict[int, int] = {}
        self.entities: dict[str, _Entity] = {}
        # partition -> no entity of it is due before this (a scan of all its entities can
        # only drop something once its clock reaches it); keeps the reference linear.
        self._next_due: dict[int, float] = {}
        self.duplicates = self.late = self.orphans = self.before_created = 0

    @property
    def counts(self) -> Counts:
        return Counts(self.duplicates, self.late, self.orphans, self.before_created)

    @property
    def clock(self) -> int:
        """The latest clock of any partition (what stage 2 reads at in stream mode)."""
        return max(self.clocks.values(), default=0)

    def feed(self, event: Event) -> None:
        partition = self.partition_of(event)
        t = time_of(event)
        clock = self.clocks[partition] = max(self.clocks.get(partition, 0), t)
        key = key_of(event)
        if key is not None:
            self._accept(key, event, partition, t, clock)
        self._housekeeping(partition, clock)

    def _accept(self, key: str, event: Event, partition: int, t: int, clock: int) -> None:
        entity = self.entities.get(key)
        if entity is not None and (
            event.event_id in entity.seen
            or (isinstance(event, TicketCreated) and entity.created is not None)
            or (entity.summary is not None and t <= entity.summary)
        ):
            self.duplicates += 1
            return
        if t < clock - self.rules.horizon:
            self.late += 1
        if entity is None:
            entity = self.entities[key] = _Entity(partition)
        entity.retired = False
        entity.seen.add(event.event_id)
        if isinstance(event, TicketCreated):
            entity.created = event
            for held, _ in entity.held:
                if time_of(held) < t:
                    self.before_created += 1
                else:
                    entity.applied.append(held)
            entity.held = []
        elif isinstance(event, SurveySubmitted) and event.ticket_id is None:
            entity.standalone = True
            entity.applied.append(event)
        elif entity.created is None:
            entity.held.append((event, clock))
        elif t < time_of(entity.created):
            self.before_created += 1
        else:
            entity.applied.append(event)
        entity.due = None
        self._next_due[partition] = min(self._next_due.get(partition, _NEVER), self._due(entity))

    def housekeeping(self, clock: int) -> None:
        """Advance every partition's clock to ``clock`` (a wall-clock timer) and tidy up."""
        for partition in {*self.clocks, *(e.partition for e in self.entities.values())}:
            self.clocks[partition] = max(self.clocks.get(partition, 0), clock)
            self._housekeeping(partition, self.clocks[partition])

    def _retirement(self, entity: _Entity) -> float:
        last = entity.last_time()
        expired = (last // self.rules.bucket + 1) * self.rules.bucket + self.rules.horizon
        if entity.retired:
            return max(last + self.rules.attribute_retention, expired)
        if entity.standalone:
            return expired
        if entity.created is None or not entity.solved():
            return _NEVER
        return max(last + self.rules.retention, expired)

    def _due(self, entity: _Entity) -> float:
        """When housekeeping drops the entity: an orphan's hold ends, or it retires."""
        if entity.due is None:
            if entity.created is None and entity.held:
                entity.due = entity.held[0][1] + self.rules.hold
            else:
                entity.due = self._retirement(entity)
        return entity.due

    def _housekeeping(self, partition: int, clock: int) -> None:
        if clock < self._next_due.get(partition, _NEVER):
            return
        next_due = _NEVER
        for key, entity in list(self.entities.items()):
            if entity.partition != partition:
                continue
            due = self._due(entity)
            if due > clock:
                next_due = min(next_due, due)
                continue
            if entity.created is None and entity.held:
                self.orphans += len(entity.held)
            if entity.created is not None and not entity.retired:
                # Retire: the ids go, the attributes (here: the whole history) stay.
                entity.retired = True
                entity.seen = set()
                entity.summary = entity.last_time()
                entity.due = None
                due = self._due(entity)
                if due > clock:
                    next_due = min(next_due, due)
                    continue
            del self.entities[key]
        self._next_due[partition] = next_due

    # -- reading ------------------------------------------------------------------------------

    def state(self) -> tuple[list[tuple[int, Measurement]], list[OpenTicket]]:
        """Every current measurement (with its partition) and every open ticket."""
        measurements: list[tuple[int, Measurement]] = []
        open_tickets: list[OpenTicket] = []
        for entity in self.entities.values():
            if entity.created is not None:
                facts, live = ticket_measurements(entity.created, entity.applied, self.rules)
                measurements += [(entity.partition, m) for m in facts]
                if live is not None:
                    open_tickets.append(live)
            elif entity.standalone:
                measurements += [
                    (entity.partition, _survey(e, UNKNOWN, UNKNOWN, UNKNOWN))
                    for e in entity.applied
                    if isinstance(e, SurveySubmitted)
                ]
        return measurements, open_tickets

    def in_windows(self, now: int) -> dict[str, list[Measurement]]:
        """The measurements in each window at ``now`` (overall)."""
        measurements, _ = self.state()
        return {
            name: [m for _, m in measurements if start <= m.time < end]
            for name, start, end in self.rules.bounds(now)
        }

    def kpis(self, now: int) -> KpiValues:
        """Every KPI series at clock ``now`` (µs), ``now`` at or after every partition clock."""
        rules = self.rules
        measurements, open_tickets = self.state()
        groups: set[Group] = set()
        for partition, m in measurements:
            bucket_end = (m.time // rules.bucket + 1) * rules.bucket
            if bucket_end > self.clocks[partition] - rules.horizon:
                groups.update(m.groups())
        live: dict[Group, list[OpenTicket]] = defaultdict(list)
        for ticket in open_tickets:
            for group in ticket.groups():
                live[group].append(ticket)
        groups.update(live)

        formulas = dict(WINDOWED)
        if rules.calendars is not None:
            formulas.update(BUSINESS)
        result: KpiValues = {}
        for name, start, end in rules.bounds(now):
            in_window = [m for _, m in measurements if start <= m.time < end]
            for group in groups:
                sample = Sample(m for m in in_window if group in m.groups())
                team_level = group[1] == ALL and group[2] == ALL
                for kpi, formula in formulas.items():
                    if team_level or kpi not in TEAM_ONLY:
                        result[KpiKey(kpi, name, *group)] = formula(sample)
        for group, tickets in live.items():
            for kpi, value in _live_values(now, tickets, rules).items():
                result[KpiKey(kpi, LIVE_WINDOW, *group)] = value
        return result


def reference_kpis(
    arrivals: Iterable[Event],
    config: EngineConfig,
    *,
    now: float,
    partition_of: Callable[[Event], int] | None = None,
) -> KpiValues:
    """Every KPI series at ``now`` (POSIX seconds) for decoded ``arrivals`` (arrival order)."""
    reference = Reference(config, partition_of)
    for event in arrivals:
        reference.feed(event)
    return reference.kpis(round(now * US))


def reference_counts(arrivals: Iterable[Event], config: EngineConfig) -> Counts:
    """Health counts of a stream; at the end the clock moves on by the orphan hold, so every
    event still held is an orphan."""
    reference = Reference(config)
    for event in arrivals:
        reference.feed(event)
    reference.housekeeping(reference.clock + reference.rules.hold)
    return reference.counts


def window_bounds(now: float, size: float, bucket: float) -> tuple[float, float]:
    """``[start, end)`` of a window read at ``now`` (seconds), aligned to the bucket grid."""
    end = (math.floor(now / bucket) + 1) * bucket
    return end - size, end


# --- comparison helpers ---------------------------------------------------------------------

KNOWN_KPIS: frozenset[str] = frozenset(WINDOWED) | frozenset(BUSINESS) | frozenset(K.LIVE_KPIS)
# A missing count means 0, any other missing value "no value" (SPEC §4: absent series).
COUNT_KPIS: frozenset[str] = frozenset(
    {
        K.TICKETS_CREATED,
        K.TICKETS_SOLVED,
        K.TICKETS_ESCALATED,
        K.TICKETS_REOPENED,
        K.FIRST_RESPONSES,
        K.CSAT_RESPONSES,
        K.NPS_RESPONSES,
        K.ENPS_RESPONSES,
        K.OPEN_TICKETS,
        K.UNANSWERED_TICKETS,
        K.UNANSWERED_PAST_SLA,
    }
)
QUANTILE_KPIS: frozenset[str] = frozenset(
    {K.FIRST_RESPONSE_P50, K.FIRST_RESPONSE_P90, K.RESOLUTION_P50, K.RESOLUTION_P90}
    | {K.REQUESTER_WAIT_P50, K.REQUESTER_WAIT_P90}
    | {kpi for kpi in BUSINESS if "_p50_" in kpi or "_p90_" in kpi}
)


def normalize(values: Mapping[KpiKey, float | None], keys: Iterable[KpiKey]) -> KpiValues:
    """Fill ``keys`` so that a missing count is 0 and any other missing value is None.

    Unknown KPI names are kept (and so compared): an unexpected series is a difference. The
    oldest-unanswered age of a live group without open tickets is None (0.0 or absent are both
    accepted for an empty group).
    """
    out: KpiValues = {}
    for key in keys:
        value = values.get(key)
        if value is None and key.kpi in COUNT_KPIS:
            value = 0.0
        out[key] = value
    for key, value in out.items():
        empty_group = not values.get(key._replace(kpi=K.OPEN_TICKETS))
        if key.kpi == K.OLDEST_UNANSWERED_AGE and value == 0.0 and empty_group:
            out[key] = None
    return out


def _agree(kpi: str, actual: float | None, expected: float | None) -> bool:
    if actual is None or expected is None:
        return actual is None and expected is None
    if kpi in QUANTILE_KPIS:
        if expected == 0:
            return abs(actual) <= 1e-9
        return abs(actual - expected) <= 0.01 * abs(expected)
    return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-6)


def differences(
    actual: Mapping[KpiKey, float | None], expected: Mapping[KpiKey, float | None]
) -> list[tuple[KpiKey, float | None, float | None]]:
    """Keys whose normalized values disagree: ``(key, actual, expected)``, sorted by key.

    Lenient on which series exist (a missing count is 0, another missing value None): for
    outputs whose series come and go with timers (/metrics, the KPI topic).
    """
    keys = set(actual) | set(expected)
    a = normalize(actual, keys)
    e = normalize(expected, keys)
    return [(key, a[key], e[key]) for key in sorted(a) if not _agree(key.kpi, a[key], e[key])]


_MISSING = "<missing>"


def strict_differences(
    actual: Mapping[KpiKey, float | None], expected: Mapping[KpiKey, float | None]
) -> list[tuple[KpiKey, float | str | None, float | str | None]]:
    """Every key present on one side only, and every value that disagrees: for the pure core,
    whose series are exactly the reference's."""
    diffs: list[tuple[KpiKey, float | str | None, float | str | None]] = []
    for key in sorted(set(actual) | set(expected)):
        if key not in actual or key not in expected:
            diffs.append((key, actual.get(key, _MISSING), expected.get(key, _MISSING)))
        elif not _agree(key.kpi, actual[key], expected[key]):
            diffs.append((key, actual[key], expected[key]))
    return diffs


def format_differences(
    diffs: Sequence[tuple[KpiKey, float | str | None, float | str | None]],
    *,
    actual_name: str = "engine",
    expected_name: str = "reference",
    limit: int = 40,
) -> str:
    lines = [f"{len(diffs)} KPI value(s) differ ({actual_name} vs {expected_name}):"]
    for key, a, e in diffs[:limit]:
        lines.append(f"  {key.topic_key()}: {actual_name}={a!r} {expected_name}={e!r}")
    if len(diffs) > limit:
        lines.append(f"  ... and {len(diffs) - limit} more")
    return "\n".join(lines)


# -- the cumulative series (SPEC §5) ----------------------------------------------------------

Total = tuple[str, str, str]  # (cumulative series without support_/_total, team, priority)
_CUMULATIVE = {
    "created": "tickets_created",
    "resolution": "tickets_solved",
    "first_response": "first_responses",
}


def reference_totals(arrivals: Iterable[Event], config: EngineConfig) -> Counter[Total]:
    """What the cumulative series must count over the whole stream, by (series, team,
    priority): every creation, resolution and first response (and those within the SLA) of
    every created ticket, once, whatever the windows and retention, with the team the
    measurement has. Duplicates (same event_id, a second creation) and events earlier than
    their ticket's creation count nothing."""
    seen: set[str] = set()
    creates: dict[str, TicketCreated] = {}
    history: dict[str, list[Event]] = defaultdict(list)
    for event in arrivals:
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        if isinstance(event, TicketCreated):
            creates.setdefault(event.ticket_id, event)
            continue
        ticket = getattr(event, "ticket_id", None)
        if isinstance(ticket, str) and not isinstance(event, CustomerLifecycle):
            history[ticket].append(event)
    rules = Rules.of(config)
    totals: Counter[Total] = Counter()
    for ticket, created in creates.items():
        start = time_of(created)
        events = [e for e in history.get(ticket, []) if time_of(e) >= start]
        measurements, _ = ticket_measurements(created, events, rules)
        for m in measurements:
            series = _CUMULATIVE.get(m.kind)
            if series is None:
                continue
            totals[(series, m.team, m.priority)] += 1
            if m.kind == "first_response" and m.flag:
                totals[("first_responses_within_sla", m.team, m.priority)] += 1
    return totals


# -- customers: churn and retention (SPEC §4) ---------------------------------------------------
#
# Rules, from SPEC §4 and the README where the SPEC is silent:
#
# * A customer is active at instant t when its latest change at or before t is ``activated``
#   (changes at the same instant: the one with the greatest event id wins).
# * Window at clock ``now``: S = active at the start (``now - size``; ``today``: local midnight
#   of ``now`` in the configured zone), E = active at ``now``. churned = |S \ E|,
#   new = |E \ S|, churn ratio = |S \ E| / |S|, retention = |S ∩ E| / |S|, no ratio when
#   |S| = 0. Live: |E|. Exact to the microsecond: windows are not aligned to buckets.
# * De-duplication per customer by ``event_id`` (arrival order: the first wins).
# * A customer counts in the segment of its latest event (by time, then event id) naming one,
#   ``unknown`` if none; overall is ``all``. A segment whose name is a reserved label value
#   (all, other, unknown in any case but ``unknown`` itself) is reported as ``segment-<name>``.
# * Retirement: when an event arrives for a customer whose latest change is a churn older than
#   its partition's clock minus the horizon (longest customer window + grace; ``today`` counts
#   as 26 h), the customer's history starts afresh.
# * Series: every group (``all`` and each segment) that holds a customer with a history is
#   reported; a count that is 0 is reported as 0.

Record = tuple[int, str, bool, str | None]  # (time µs, event id, activated?, segment)
_RESERVED = frozenset({ALL, K.OTHER, UNKNOWN})
TODAY_SPAN_US = 26 * 3600 * US


def reference_segment(segment: str | None) -> str:
    if segment is None:
        return UNKNOWN
    if segment.lower() in _RESERVED and segment != UNKNOWN:
        return f"segment-{segment}"
    return segment


class CustomerReference:
    """Feed ``customer-lifecycle`` events in arrival order; read customer KPIs at any clock.

    ``windows``: (name, seconds) pairs, ``today`` allowed; ``clock_of``: the engine clock of
    an arrival (default: its partition's stream time, the latest event time seen there).
    """

    def __init__(
        self,
        windows: Sequence[tuple[str, float]],
        zone: str,
        grace_seconds: float,
        partition_of: Callable[[CustomerLifecycle], int] | None = None,
    ) -> None:
        self.windows = [(name, round(size * US)) for name, size in windows]
        self.zone = ZoneInfo(zone)
        spans = [TODAY_SPAN_US if name == "today" else size for name, size in self.windows]
        self.horizon_us = max(spans) + round(grace_seconds * US)
        self.partition_of = partition_of or (lambda _event: 0)
        self.clocks: dict[int, int] = {}
        self.customers: dict[str, dict[str, Record]] = {}

    def feed(self, event: CustomerLifecycle, clock_us: int | None = None) -> None:
        partition = self.partition_of(event)
        at = time_of(event)
        if clock_us is None:
            clock_us = max(self.clocks.get(partition, 0), at)
        self.clocks[partition] = max(self.clocks.get(partition, 0), clock_us)
        history = self.customers.setdefault(event.customer_id, {})
        if history:
            latest = max(history.values())
            if not latest[2] and latest[0] <= clock_us - self.horizon_us:
                history.clear()  # retired: the customer starts afresh
        if event.event_id not in history:
            activated = event.change == "activated"
            history[event.event_id] = (at, event.event_id, activated, event.segment)

    @staticmethod
    def active(history: Mapping[str, Record], at_us: int) -> bool:
        before = [record for record in history.values() if record[0] <= at_us]
        return bool(before) and max(before)[2]

    @staticmethod
    def segment(history: Mapping[str, Record]) -> str:
        named = [record for record in history.values() if record[3] is not None]
        return reference_segment(max(named)[3]) if named else UNKNOWN

    def window_starts(self, now_us: int) -> list[int]:
        starts = []
        for name, size in self.windows:
            if name == "today":
                starts.append(local_midnight(now_us, self.zone))
            else:
                starts.append(now_us - size)
        return starts

    def counts(self, now_us: int) -> dict[str, tuple[list[tuple[int, int, int]], int]]:
        """group -> ([(|S|, |E|, |S ∩ E|) per window], live active)."""
        starts = self.window_starts(now_us)
        result: dict[str, tuple[list[tuple[int, int, int]], int]] = {}
        for history in self.customers.values():
            if not history:
                continue
            end = self.active(history, now_us)
            for group in (ALL, self.segment(history)):
                windows, live = result.get(group, ([(0, 0, 0)] * len(starts), 0))
                updated = []
                for (s, e, r), start in zip(windows, starts, strict=True):
                    begin = self.active(history, start)
                    updated.append((s + begin, e + end, r + (begin and end)))
                result[group] = (updated, live + end)
        return result

    def kpis(self, now_us: int) -> dict[CustomerKpiKey, float | None]:
        return customer_values(self.counts(now_us), [name for name, _ in self.windows])


def customer_values(
    counts: Mapping[str, tuple[Sequence[tuple[int, int, int]], int]], windows: Sequence[str]
) -> dict[CustomerKpiKey, float | None]:
    """Every customer KPI of the given counts (:meth:`CustomerReference.counts`)."""
    values: dict[CustomerKpiKey, float | None] = {}
    for group, (per_window, live) in counts.items():
        for name, (s, e, r) in zip(windows, per_window, strict=True):
            values[CustomerKpiKey(K.CUSTOMERS_ACTIVE_AT_START, name, group)] = s
            values[CustomerKpiKey(K.CUSTOMERS_CHURNED, name, group)] = s - r
            values[CustomerKpiKey(K.CUSTOMERS_NEW, name, group)] = e - r
            values[CustomerKpiKey(K.CUSTOMER_CHURN_RATIO, name, group)] = (s - r) / s if s else None
            values[CustomerKpiKey(K.CUSTOMER_RETENTION_RATIO, name, group)] = r / s if s else None
        values[CustomerKpiKey(K.CUSTOMERS_ACTIVE, LIVE_WINDOW, group)] = live
    return values


def reference_customer_kpis(
    arrivals: Iterable[Event],
    windows: Sequence[tuple[str, float]],
    zone: str,
    grace_seconds: float,
    *,
    now: float,
    partition_of: Callable[[CustomerLifecycle], int] | None = None,
) -> dict[CustomerKpiKey, float | None]:
    """Every customer KPI at ``now`` (POSIX seconds) for decoded ``arrivals`` (arrival order;
    events of other topics are skipped)."""
    reference = CustomerReference(windows, zone, grace_seconds, partition_of)
    for event in arrivals:
        if isinstance(event, CustomerLifecycle):
            reference.feed(event)
    return reference.kpis(round(now * US))
