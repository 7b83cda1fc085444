"""Event builders and Hypothesis strategies for realistic support-event streams.

A generated :class:`Scenario` is what the pipeline would see after decoding: typed events in
arrival (delivery) order, plus the engine configuration and the wall clock the decoder used.
Streams contain ticket lifecycles (replies of every author type, internal notes, escalations with
and without a team move, status cycles with reopenings, ticket surveys), stand-alone surveys
(CSAT, NPS, eNPS), customer-lifecycle noise, and the delivery faults the engine must absorb:
cross-topic reordering (bounded or total), exact re-sends, second ``ticket-created`` events,
orphans, events before their ticket's creation, very old (late) and far-future events, and
(``after_retirement``) late surveys, reopens and re-sends of tickets already retired to their
attributes, some after the attribute retention too.

Event times lie on a 125 ms grid: whole milliseconds that are also exact binary fractions, so
durations computed from float seconds, integer milliseconds or integer microseconds agree exactly.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Literal, TypeVar

import msgspec
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from streams.core.kpis import EngineConfig
from streams.core.today import TODAY, TODAY_MAX_SECONDS
from streams.decoding import Rejection, decode
from streams.events import (
    EVENT_TYPES,
    PRIORITIES,
    AuthorType,
    Channel,
    CreatedBy,
    CustomerLifecycle,
    Event,
    Priority,
    Status,
    SurveyKind,
    SurveySubmitted,
    TicketCreated,
    TicketEscalated,
    TicketReplied,
    TicketStatusChanged,
    event_time,
)


def generated(max_examples: int) -> settings:
    """Hypothesis settings of the generated-stream tests: reproducible in CI (derandomized, no
    example database, no deadline). ``TESTS_MAX_EXAMPLES`` caps the examples and
    ``TESTS_NO_SHRINK=1`` reports the first failing example unshrunk (mutation runs)."""
    cap = int(os.environ.get("TESTS_MAX_EXAMPLES", max_examples))
    phases = [Phase.explicit, Phase.generate]
    if not os.environ.get("TESTS_NO_SHRINK"):
        phases.append(Phase.shrink)
    return settings(
        max_examples=min(max_examples, cap),
        deadline=None,
        derandomize=True,
        database=None,
        phases=phases,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# A Monday 08:00 UTC, aligned to the minute (and hour) grid.
BASE_TIME = datetime(2024, 3, 11, 8, 0, tzinfo=UTC)
BASE_TS = BASE_TIME.timestamp()
GRID_MS = 125
# The decoder's SUPPORT_FUTURE_TOLERANCE (the default) in generated scenarios.
FUTURE_TOLERANCE_SECONDS = 300.0

TIMEZONES: tuple[tzinfo, ...] = (
    UTC,
    timezone(timedelta(hours=2)),
    timezone(timedelta(hours=-5, minutes=-30)),
    timezone(timedelta(hours=9)),
)
TEAM_POOL: tuple[str, ...] = ("billing", "tech", "sales", "vip", "l2-support")
CHANNEL_POOL: tuple[Channel, ...] = ("email", "chat", "phone", "web", "social", "api", "other")
STATUSES: tuple[Status, ...] = ("new", "open", "pending", "on_hold", "solved", "closed")
OPEN_STATUSES: tuple[Status, ...] = ("new", "open", "pending", "on_hold")

T = TypeVar("T")

DeliveryMode = Literal["ordered", "bounded", "shuffled", "any"]


def at(seconds: float, tz: tzinfo = UTC) -> datetime:
    """``BASE_TIME + seconds`` (rounded to whole milliseconds) in time zone ``tz``."""
    return (BASE_TIME + timedelta(milliseconds=round(seconds * 1000))).astimezone(tz)


def ts(seconds: float) -> float:
    """POSIX time of ``at(seconds)``."""
    return at(seconds).timestamp()


def topic_of(event: Event) -> str:
    """The default input topic of an event's type."""
    for topic, event_type in EVENT_TYPES.items():
        if type(event) is event_type:
            return topic
    raise TypeError(f"not an event: {event!r}")


def encode(event: Event) -> bytes:
    """The JSON bytes a producer would send for ``event``."""
    return msgspec.json.encode(event)


class Builder:
    """Builds typed events with unique ids; times are seconds after :data:`BASE_TIME`."""

    def __init__(self, prefix: str = "e") -> None:
        self._prefix = prefix
        self._next = 0

    def new_id(self) -> str:
        self._next += 1
        return f"{self._prefix}{self._next}"

    def created(
        self,
        ticket: str,
        seconds: float,
        *,
        team: str = "support",
        channel: Channel = "email",
        priority: Priority = "normal",
        created_by: CreatedBy = "customer",
        event_id: str | None = None,
        tz: tzinfo = UTC,
    ) -> TicketCreated:
        return TicketCreated(
            event_id=event_id or self.new_id(),
            occurred_at=at(seconds, tz),
            schema_version=1,
            ticket_id=ticket,
            customer_id=f"cust-{ticket}",
            team=team,
            channel=channel,
            priority=priority,
            created_by=created_by,
        )

    def replied(
        self,
        ticket: str,
        seconds: float,
        *,
        author: AuthorType = "agent",
        public: bool = True,
        event_id: str | None = None,
        tz: tzinfo = UTC,
    ) -> TicketReplied:
        return TicketReplied(
            event_id=event_id or self.new_id(),
            occurred_at=at(seconds, tz),
            schema_version=1,
            ticket_id=ticket,
            author_type=author,
            agent_id="agent-7" if author == "agent" else None,
            public=public,
        )

    def escalated(
        self,
        ticket: str,
        seconds: float,
        *,
        level: int = 1,
        to_team: str | None = None,
        reason: str | None = None,
        event_id: str | None = None,
        tz: tzinfo = UTC,
    ) -> TicketEscalated:
        return TicketEscalated(
            event_id=event_id or self.new_id(),
            occurred_at=at(seconds, tz),
            schema_version=1,
            ticket_id=ticket,
            level=level,
            to_team=to_team,
            reason=reason,
        )

    def status(
        self,
        ticket: str,
        seconds: float,
        status: Status,
        *,
        event_id: str | None = None,
        tz: tzinfo = UTC,
    ) -> TicketStatusChanged:
        return TicketStatusChanged(
            event_id=event_id or self.new_id(),
            occurred_at=at(seconds, tz),
            schema_version=1,
            ticket_id=ticket,
            status=status,
        )

    def survey(
        self,
        seconds: float,
        kind: SurveyKind,
        score: int,
        *,
        ticket: str | None = None,
        team: str | None = None,
        event_id: str | None = None,
        tz: tzinfo = UTC,
    ) -> SurveySubmitted:
        event_id = event_id or self.new_id()
        return SurveySubmitted(
            event_id=event_id,
            occurred_at=at(seconds, tz),
            schema_version=1,
            survey_id=f"survey-{event_id}",
            kind=kind,
            score=score,
            ticket_id=ticket,
            team=team,
        )

    def lifecycle(
        self, customer: str, seconds: float, *, churned: bool = False, tz: tzinfo = UTC
    ) -> CustomerLifecycle:
        return CustomerLifecycle(
            event_id=self.new_id(),
            occurred_at=at(seconds, tz),
            schema_version=1,
            customer_id=customer,
            change="churned" if churned else "activated",
        )


class _ScrambledIds(Builder):
    """Unique event ids whose lexicographic order differs from creation order (tie-breaks)."""

    def new_id(self) -> str:
        self._next += 1
        return f"{(self._next * 2654435761) % 2**32:08x}-{self._next}"


@dataclass(frozen=True)
class Scenario:
    """A generated stream: decoded events in arrival order, the config, the decoder's wall clock."""

    arrivals: list[Event]
    config: EngineConfig
    wall: float
    notes: dict[str, int] = field(default_factory=dict)  # what was injected, for debugging

    @property
    def last_event_time(self) -> float:
        return max(event_time(e) for e in self.arrivals)


_WINDOW_SETS: tuple[tuple[tuple[str, float], ...], ...] = (
    (("5m", 300.0), ("1h", 3600.0)),
    (("5m", 300.0), ("15m", 900.0), ("1h", 3600.0)),
    (("1m", 60.0), ("30m", 1800.0)),
    (("15m", 900.0), ("1h", 3600.0), ("24h", 86400.0)),  # the production default
    (("10m", 600.0), ("24h", 86400.0)),
    (("15m", 900.0), ("1h", 3600.0), (TODAY, TODAY_MAX_SECONDS)),
    (("5m", 300.0), (TODAY, TODAY_MAX_SECONDS)),
)
# Zones of the calendar-day window: local midnight falls inside the generated streams (they
# start at BASE_TIME, 08:00 UTC) in Adak (09:00 UTC) and Honolulu (10:00 UTC), not in the others.
_DAY_ZONES = ("UTC", "America/Adak", "Pacific/Honolulu", "Asia/Kolkata", "Europe/Berlin")


@st.composite
def configs(draw: st.DrawFn) -> EngineConfig:
    """Engine configurations across bucket, windows, grace, orphan hold, retention, attribute
    retention and SLA targets, within what the settings accept (windows are multiples of the
    bucket, retention at least the horizon, attribute retention at least the retention)."""
    bucket = draw(st.sampled_from([15.0, 30.0, 60.0, 60.0, 300.0]))
    windows = draw(
        st.sampled_from(_WINDOW_SETS).filter(lambda ws: all(s % bucket == 0 for _, s in ws))
    )
    grace = draw(st.sampled_from([0.0, 30.0, 60.0, 300.0, 900.0]))
    horizon = max(size for _, size in windows) + grace
    # SLA targets within the longest window, so first responses on the target are in it.
    longest = max(size for _, size in windows)
    targets = [t for t in (60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0) if t <= longest]
    target = st.sampled_from(targets)
    slas = draw(st.tuples(*[target for _ in PRIORITIES]))
    calendar_day = any(name == TODAY for name, _ in windows)
    retention = horizon + draw(st.sampled_from([0.0, bucket, 600.0, 7 * 86400.0]))
    return EngineConfig(
        windows=windows,
        bucket_seconds=bucket,
        grace_seconds=grace,
        sla_targets=dict(zip(PRIORITIES, slas, strict=True)),
        orphan_hold_seconds=draw(st.sampled_from([60.0, 600.0, 3600.0, 86400.0, 30 * 86400.0])),
        retention_seconds=retention,
        attribute_retention_seconds=retention + draw(st.sampled_from(_EXTRA_ATTRIBUTES)),
        time_zone=draw(st.sampled_from(_DAY_ZONES)) if calendar_day else "UTC",
    )


# Attribute retention beyond the retention (the simplest draw first: the default). 30 d: the
# default; 1 h: less than a stream (attributes expire during the after-retirement events);
# 0: nothing is kept beyond the state.
_EXTRA_ATTRIBUTES = (30 * 86400.0, 3 * 86400.0, 3600.0, 0.0)


def longest_window(config: EngineConfig) -> float:
    """The longest rolling window (``today`` does not set the streams' time scale)."""
    return max(size for name, size in config.windows if name != TODAY)


def _gaps_ms(longest: float) -> st.SearchStrategy[int]:
    """Gaps between a ticket's consecutive events, in milliseconds on the grid: ties (same
    instant), sub-second, seconds, minutes; a ticket's life stays within the longest window."""
    quarter = max(1, int(longest / 4))
    return st.one_of(
        st.just(0),
        st.integers(1, 480).map(lambda n: n * GRID_MS),
        st.integers(1, min(1800, quarter)).map(lambda n: n * 1000),
        st.integers(1, max(1, min(150, quarter // 60))).map(lambda n: n * 60_000),
    )


_AUTHORS: tuple[tuple[AuthorType, bool], ...] = (
    ("agent", True),
    ("agent", True),
    ("agent", True),
    ("agent", False),  # internal note
    ("customer", True),
    ("bot", True),
    ("system", True),
    ("bot", False),
)


@dataclass
class _Gen:
    """Mutable generation state shared by the helpers of :func:`scenarios`."""

    draw: st.DrawFn
    build: Builder
    teams: list[str]
    config: EngineConfig
    events: list[Event] = field(default_factory=list)
    late_delivery: set[int] = field(default_factory=set)  # ids of events delivered very late
    arrive_at: dict[int, float] = field(default_factory=dict)  # id -> arrival (POSIX seconds)
    notes: dict[str, int] = field(default_factory=dict)
    next_ticket: int = 0

    def note(self, what: str, n: int = 1) -> None:
        self.notes[what] = self.notes.get(what, 0) + n

    def ticket_id(self) -> str:
        self.next_ticket += 1
        return f"T{self.next_ticket:03d}"


def _d(g: _Gen, strategy: st.SearchStrategy[T]) -> T:
    return g.draw(strategy)


def _score(g: _Gen, kind: SurveyKind) -> int:
    return _d(g, st.integers(1, 5) if kind == "csat" else st.integers(0, 10))


def _ticket(
    g: _Gen,
    start_ms: int,
    *,
    emit_created: bool,
    max_steps: int,
    reopen_bias: bool,
    escalation_bias: bool,
) -> tuple[str, int, list[Event]]:
    """One ticket's lifecycle starting at ``start_ms``; returns (ticket id, created ms, events)."""
    b = g.build
    tid = g.ticket_id()
    tz = _d(g, st.sampled_from(TIMEZONES))
    created_by: CreatedBy = _d(g, st.sampled_from(("customer",) * 4 + ("agent", "system")))
    created = b.created(
        tid,
        start_ms / 1000,
        team=_d(g, st.sampled_from(g.teams)),
        channel=_d(g, st.sampled_from(CHANNEL_POOL)),
        priority=_d(g, st.sampled_from(PRIORITIES)),
        created_by=created_by,
        tz=tz,
    )
    events: list[Event] = [created] if emit_created else []
    t = start_ms
    status: Status = "new"
    level = 0
    step_kinds = ["reply", "reply", "reply", "status", "status", "escalate", "survey"]
    if reopen_bias:
        step_kinds += ["status"] * 4
    if escalation_bias:
        step_kinds += ["escalate"] * 4
    gaps = _gaps_ms(longest_window(g.config))
    answered = False
    for _ in range(_d(g, st.integers(min(1, max_steps), max_steps))):
        t += _d(g, gaps)
        kind = _d(g, st.sampled_from(step_kinds))
        if kind == "reply":
            author, public = _d(g, st.sampled_from(_AUTHORS))
            if author == "agent" and public and not answered:
                answered = True
                if _d(g, st.integers(0, 3)) == 0:
                    # The first response on (or one grid step around) the SLA target.
                    target_ms = round(g.config.sla_targets[created.priority] * 1000)
                    t = start_ms + target_ms + _d(g, st.sampled_from((0, 0, -GRID_MS, GRID_MS)))
                    g.note("first_response_on_sla_target")
        secs = t / 1000
        if kind == "reply":
            events.append(b.replied(tid, secs, author=author, public=public, tz=tz))
        elif kind == "escalate":
            level += 1
            moves = st.one_of(st.none(), st.sampled_from(g.teams))
            to_team = _d(g, moves if escalation_bias else st.one_of(st.none(), moves))
            reason = _d(g, st.sampled_from([None, "needs specialist", "VIP customer"]))
            events.append(
                b.escalated(tid, secs, level=level, to_team=to_team, reason=reason, tz=tz)
            )
        elif kind == "status":
            if reopen_bias:
                # Cycle: solve, maybe close, reopen, ...
                options: Sequence[Status] = (
                    ("open", "pending") if status in ("solved", "closed") else ("solved", "closed")
                )
                if status == "solved":
                    options = ("closed", "open", "new", "on_hold")
                status = _d(g, st.sampled_from(options))
            else:
                status = _d(g, st.sampled_from((*STATUSES, "solved", "solved")))
            events.append(b.status(tid, secs, status, tz=tz))
        else:
            survey_kind: SurveyKind = _d(g, st.sampled_from(("csat", "csat", "nps", "enps")))
            team = _d(g, st.one_of(st.none(), st.sampled_from(g.teams)))
            events.append(
                b.survey(secs, survey_kind, _score(g, survey_kind), ticket=tid, team=team, tz=tz)
            )
    return tid, start_ms, events


def _after_retirement(g: _Gen, tickets: list[tuple[str, int, list[Event]]]) -> None:
    """Events of a few tickets long after the stream (SPEC §3 "attributes outlive state"):
    late surveys, reopens (some answered, escalated and solved again), re-sends of their old
    events and creation, soon after the tickets' retirement (a week after the solve with a
    7-day retention) or after their attribute retention (forgotten: orphans).

    Ticket creations ("clock pushers", three keys so that every partition of up to three is
    likely to get one) first move the stream clocks past every retirement, and past the
    attribute retention before events that come later than it, so that those events find a
    retired (or forgotten) ticket rather than retiring it themselves."""
    b, config = g.build, g.config
    picked = _d(
        g, st.lists(st.sampled_from(tickets), min_size=1, max_size=4, unique_by=lambda t: t[0])
    )
    history: dict[str, list[Event]] = {}
    for tid, _, events in picked:
        history[tid] = list(events)
        if events:  # solved (again) after its last event, so that it retires
            solved = max(event_time(e) for e in events) - BASE_TS + _d(g, st.integers(1, 600))
            history[tid].append(b.status(tid, solved, "solved"))
            g.events.append(history[tid][-1])
    end = max(event_time(e) for e in g.events) - BASE_TS
    margin = config.horizon_seconds + 2 * config.bucket_seconds
    retired_at = _ms(end + config.retention_seconds + margin) / 1000
    forgotten_at = _ms(end + config.attribute_retention_seconds + margin) / 1000
    later: list[Event] = []
    resent: list[Event] = []
    for tid, _, _ in picked:
        # Soon after the retirement (a late survey, a reopen after a week), or after the
        # attribute retention (the ticket is forgotten: an orphan).
        if _d(g, st.integers(0, 3)) < 3:
            t = retired_at + 600 + _d(g, st.sampled_from((0.0, 60.0, 3600.0)))
        else:
            t = max(retired_at, forgotten_at) + 600
        t += _d(g, st.integers(0, 3600 * 1000 // GRID_MS)) * GRID_MS / 1000
        kind = _d(g, st.sampled_from(("survey", "survey", "reopen", "reopen", "escalate")))
        g.note(f"after_retirement_{kind}")
        if kind == "survey":
            survey_kind: SurveyKind = _d(g, st.sampled_from(("csat", "nps")))
            team = _d(g, st.one_of(st.none(), st.sampled_from(g.teams)))
            later.append(b.survey(t, survey_kind, _score(g, survey_kind), ticket=tid, team=team))
        elif kind == "escalate":
            later.append(b.escalated(tid, t, to_team=_d(g, st.sampled_from(g.teams))))
        else:
            later.append(b.status(tid, t, _d(g, st.sampled_from(("open", "new", "pending")))))
            gaps = _d(g, st.lists(st.integers(0, 7200), max_size=3))
            for step, gap in zip(("reply", "escalate", "solve"), gaps, strict=False):
                t += gap
                if step == "reply":
                    later.append(b.replied(tid, t))
                elif step == "escalate":
                    later.append(b.escalated(tid, t, to_team=_d(g, st.sampled_from(g.teams))))
                else:
                    later.append(b.status(tid, t, "solved"))
        resend: bool = _d(g, st.booleans())
        old = history[tid]
        if old and resend:
            # Re-deliveries of its old events (the creation and the last one included) after
            # its retirement.
            for event in _d(g, st.lists(st.sampled_from(old), min_size=1, max_size=3)):
                resent.append(msgspec.structs.replace(event))
            g.note("after_retirement_resends")
    pushes = [retired_at]
    if any(event_time(e) - BASE_TS > forgotten_at + 400 for e in later):
        pushes.append(max(forgotten_at, retired_at))
    for n, when in enumerate(pushes):
        for suffix in "abc":
            g.events.append(b.created(f"T-clock-{n}{suffix}", when))
    g.events += later + resent
    for event in resent:
        g.arrive_at[id(event)] = BASE_TS + retired_at + 400  # after the pushers


def _ms(seconds: float) -> int:
    return round(seconds * 1000 / GRID_MS) * GRID_MS


@st.composite
def scenarios(
    draw: st.DrawFn,
    *,
    max_tickets: int = 20,
    max_steps: int = 8,
    delivery: DeliveryMode = "any",
    duplicates: bool = True,
    late: bool = True,
    future: bool = True,
    orphans: bool = True,
    before_created: bool = True,
    second_creates: bool = True,
    reopen_bias: bool = False,
    escalation_bias: bool = False,
    after_retirement: bool = False,
) -> Scenario:
    """A realistic stream of a few hours, delivered out of order with the enabled faults."""
    config = draw(configs())
    build = _ScrambledIds()
    teams = list(draw(st.lists(st.sampled_from(TEAM_POOL), min_size=1, max_size=4, unique=True)))
    g = _Gen(draw=draw, build=build, teams=teams, config=config)
    # Creations span no more than the longest window, so that reads during and just after
    # the stream find every kind of measurement in every window.
    longest = longest_window(config)
    horizon = longest + config.grace_seconds
    span_minutes = draw(st.one_of(st.integers(1, 60), st.integers(1, int(longest // 60))))
    span_ms = (
        min(span_minutes * 60_000, int(longest * 1000))
        - draw(st.integers(0, 59_999 // GRID_MS)) * GRID_MS
    )
    offset_ms = draw(st.integers(0, 3600 * 1000 // GRID_MS)) * GRID_MS  # bucket phase
    start = offset_ms

    def when() -> int:
        return start + _d(g, st.integers(0, span_ms // GRID_MS)) * GRID_MS

    tickets: list[tuple[str, int, list[Event]]] = []
    for _ in range(draw(st.integers(1, max_tickets))):
        tickets.append(
            _ticket(
                g,
                when(),
                emit_created=True,
                max_steps=max_steps,
                reopen_bias=reopen_bias,
                escalation_bias=escalation_bias,
            )
        )
    for _, _, events in tickets:
        g.events.extend(events)

    # Stand-alone surveys: no ticket, with or without a team.
    for _ in range(draw(st.integers(0, 8))):
        kind: SurveyKind = draw(st.sampled_from(("csat", "nps", "enps", "enps")))
        team = draw(st.one_of(st.none(), st.sampled_from(teams)))
        tz = draw(st.sampled_from(TIMEZONES))
        g.events.append(build.survey(when() / 1000, kind, _score(g, kind), team=team, tz=tz))
        g.note("standalone_surveys")

    # Customer-lifecycle noise (a later-phase topic: it only moves the stream clock).
    if draw(st.booleans()):
        g.events.append(build.lifecycle("cust-x", when() / 1000, churned=draw(st.booleans())))

    if orphans:
        for _ in range(draw(st.integers(0, 2))):
            _, _, events = _ticket(
                g,
                when(),
                emit_created=False,
                max_steps=4,
                reopen_bias=False,
                escalation_bias=False,
            )
            g.events.extend(events)
            g.note("orphan_events", len(events))
        if draw(st.booleans()):
            kind = draw(st.sampled_from(("csat", "nps")))
            g.events.append(
                build.survey(when() / 1000, kind, _score(g, kind), ticket="T-never-created")
            )
            g.note("orphan_events")

    if before_created and tickets:
        for _ in range(draw(st.integers(0, 3))):
            tid, created_ms, _ = draw(st.sampled_from(tickets))
            t = created_ms - draw(st.integers(1, 7200 * 1000 // GRID_MS)) * GRID_MS
            maker = draw(st.sampled_from(("reply", "status", "escalate", "survey")))
            if maker == "reply":
                g.events.append(build.replied(tid, t / 1000))
            elif maker == "status":
                g.events.append(build.status(tid, t / 1000, "solved"))
            elif maker == "escalate":
                g.events.append(build.escalated(tid, t / 1000, to_team=teams[0]))
            else:
                g.events.append(build.survey(t / 1000, "csat", 5, ticket=tid))
            g.note("before_created")

    if second_creates and tickets:
        for _ in range(draw(st.integers(0, 2))):
            tid, created_ms, _ = draw(st.sampled_from(tickets))
            t = created_ms + draw(st.integers(-600, 600)) * 1000
            g.events.append(
                build.created(
                    tid,
                    t / 1000,
                    team=draw(st.sampled_from(teams)),
                    priority=draw(st.sampled_from(PRIORITIES)),
                    created_by=draw(st.sampled_from(("customer", "agent"))),
                )
            )
            g.note("second_creates")

    if late:
        # Old tickets (hours before the stream), delivered at random points of the stream.
        for _ in range(draw(st.integers(0, 2))):
            # Around the horizon: still in the longest window, in the grace, or beyond it.
            old_start = start - draw(st.integers(int(longest * 0.9), int(horizon) + 7200)) * 1000
            _, _, events = _ticket(
                g,
                old_start,
                emit_created=True,
                max_steps=5,
                reopen_bias=reopen_bias,
                escalation_bias=escalation_bias,
            )
            g.events.extend(events)
            g.late_delivery.update(id(e) for e in events)
            g.note("old_ticket_events", len(events))

    if after_retirement and tickets:
        _after_retirement(g, tickets)

    if not g.events:
        return Scenario(arrivals=[], config=config, wall=BASE_TS + start / 1000, notes=g.notes)

    latest = max(event_time(e) for e in g.events)
    tolerance = FUTURE_TOLERANCE_SECONDS
    # The decoder's wall clock: at most one tolerance behind the newest regular event, so every
    # regular event is accepted (some of them slightly in the future).
    wall = latest - draw(st.integers(0, int(tolerance) - 1))

    if future:
        for _ in range(draw(st.integers(0, 3))):
            ahead = draw(st.integers(int(tolerance) + 1, 2 * 86400))
            future_s = wall - BASE_TS + ahead
            maker = draw(st.sampled_from(("created", "reply", "survey")))
            if maker == "created":
                g.events.append(build.created("T-future", future_s))
            elif maker == "reply" and tickets:
                g.events.append(build.replied(draw(st.sampled_from(tickets))[0], future_s))
            else:
                g.events.append(build.survey(future_s, "nps", 10))
            g.note("future")

    rnd: random.Random = draw(st.randoms(use_true_random=False))
    mode = (
        delivery if delivery != "any" else draw(st.sampled_from(("ordered", "bounded", "shuffled")))
    )

    if duplicates and g.events:
        for _ in range(draw(st.integers(0, 6))):
            g.events.append(rnd.choice(g.events))  # exact re-send, placed by delivery below
            g.note("resends")

    last = max(event_time(e) for e in g.events)
    keyed: list[tuple[float, int, Event]] = []
    # Each topic has its own consumer lag bound: bounded cross-topic displacement.
    lags = {topic: rnd.choice((0.0, 1.0, 30.0, 300.0)) for topic in EVENT_TYPES}
    for index, event in enumerate(g.events):
        occurred = event_time(event)
        if id(event) in g.arrive_at:
            arrival = g.arrive_at[id(event)]
        elif id(event) in g.late_delivery:
            stream_start = BASE_TS + start / 1000
            arrival = rnd.uniform(stream_start, max(last, stream_start))
        elif mode == "ordered":
            arrival = occurred
        else:
            arrival = occurred + lags[topic_of(event)] * rnd.random() + rnd.uniform(0, 5)
        keyed.append((arrival, index, event))
    keyed.sort(key=lambda k: (k[0], k[1]))
    arrivals = [event for _, _, event in keyed]
    if mode == "shuffled":
        rnd.shuffle(arrivals)
    g.note(f"delivery_{mode}")
    return Scenario(arrivals=arrivals, config=config, wall=wall, notes=g.notes)


def decoded(scenario: Scenario) -> list[Event]:
    """The scenario's arrivals as the decoder accepts them (far-future events dropped)."""
    accepted: list[Event] = []
    for event in scenario.arrivals:
        result = decode(
            topic_of(event),
            encode(event),
            now=scenario.wall,
            future_tolerance_seconds=FUTURE_TOLERANCE_SECONDS,
        )
        if isinstance(result, Rejection):
            # The generator only produces valid events; the only expected rejection is the future.
            assert result.reason == "future_timestamp", (result, event)
            continue
        accepted.append(result)
    return accepted
