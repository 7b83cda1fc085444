"""Per-ticket lifecycle state and the KPI facts derived from it (SPEC §3, §4).

A ticket's state is the de-duplicated set of its events, kept in event-time order. Its KPI
*facts* (created, first response, resolutions, ...) are a pure function of that set, so the
result does not depend on the order in which Kafka delivered the events: when an event arrives
the engine recomputes the ticket's facts and applies the difference to the aggregates.

Times are integer microseconds since the epoch, so sums and differences are exact.
"""

from __future__ import annotations

from bisect import insort
from typing import Literal, NamedTuple

import msgspec

from streams.core.calendar import CalendarSet
from streams.core.clocks import WAITING_STATUSES, TicketClock
from streams.core.kpis import UNKNOWN
from streams.core.labels import team_label
from streams.core.sla import SlaPolicies
from streams.core.units import to_us
from streams.events import (
    SOLVED_STATUSES,
    Event,
    SurveySubmitted,
    TicketCreated,
    TicketEscalated,
    TicketReplied,
    TicketStatusChanged,
)

# Order of events of one ticket that share a timestamp: a reply before an escalation before a
# status change before a survey (so a reply and a solve in the same second count as one contact).
RANK_CREATED, RANK_REPLY, RANK_ESCALATION, RANK_STATUS, RANK_SURVEY = range(5)


class Step(msgspec.Struct, array_like=True, frozen=True, order=True):
    """One applied non-creation event, reduced to what KPIs need (no ids or free text)."""

    at_us: int
    rank: int
    event_id: str
    author_type: str | None = None
    public: bool = True
    to_team: str | None = None
    status: str | None = None
    survey_kind: str | None = None
    score: int = 0
    survey_team: str | None = None


class Creation(msgspec.Struct, array_like=True, frozen=True):
    event_id: str
    at_us: int
    team: str
    channel: str
    priority: str
    created_by: str


class Held(msgspec.Struct, array_like=True, frozen=True):
    """An event waiting for its ticket's creation, with what a dead letter would need."""

    step: Step
    held_since_us: int
    topic: str
    partition: int
    offset: int
    raw: bytes


class Retired(msgspec.Struct, array_like=True, frozen=True):
    """What a retired ticket keeps (SPEC §3 "attributes outlive state"): a few dozen bytes.

    ``channel``, ``priority`` and ``created_by`` are indices into the code tables of
    :mod:`streams.core.attributes`; ``last_us`` is the ticket's last event when it retired.
    """

    created_us: int
    last_us: int
    team: str  # the team at retirement (after escalations)
    channel: int
    priority: int
    created_by: int
    answered: bool  # had a public agent reply
    escalated: bool
    resolutions: int  # transitions into solved/closed (identities of the cumulative series)
    # Requester wait so far (µs in new, open or on_hold): a later resolution's wait goes on
    # from it (calendar time; business time is not kept).
    waited_us: int = 0


class TicketState(msgspec.Struct, array_like=True, kw_only=True):
    """Everything the engine keeps about one ticket (or one standalone survey)."""

    partition: int
    creation: Creation | None = None
    steps: list[Step] = msgspec.field(default_factory=list)
    held: list[Held] = msgspec.field(default_factory=list)
    # A survey without a ticket lives in its own entity, keyed "survey:<survey_id>".
    standalone: bool = False
    # Events rejected as earlier than the creation: a re-send of one is a duplicate.
    rejected_ids: list[str] = msgspec.field(default_factory=list)
    # A retired ticket (only ``retired`` set) or one revived from its attributes by a later
    # event (streams.core.attributes): events up to ``retired.last_us`` are known only as this.
    retired: Retired | None = None

    def has_event(self, event_id: str) -> bool:
        if self.creation is not None and self.creation.event_id == event_id:
            return True
        if event_id in self.rejected_ids:
            return True
        return any(s.event_id == event_id for s in self.steps) or any(
            h.step.event_id == event_id for h in self.held
        )

    def add_step(self, step: Step) -> None:
        insort(self.steps, step)

    def last_event_us(self) -> int:
        latest = self.creation.at_us if self.creation is not None else 0
        if self.steps:
            latest = max(latest, self.steps[-1].at_us)
        return latest

    def is_resolved(self) -> bool:
        status = "new"
        for step in self.steps:
            if step.status is not None:
                status = step.status
        return status in SOLVED_STATUSES


def step_of(event: Event) -> Step:
    """The Step for a non-creation ticket event or a survey."""
    at_us = to_us(event.occurred_at)
    if isinstance(event, TicketReplied):
        return Step(
            at_us, RANK_REPLY, event.event_id, author_type=event.author_type, public=event.public
        )
    if isinstance(event, TicketEscalated):
        to_team = None if event.to_team is None else team_label(event.to_team)
        return Step(at_us, RANK_ESCALATION, event.event_id, to_team=to_team)
    if isinstance(event, TicketStatusChanged):
        return Step(at_us, RANK_STATUS, event.event_id, status=event.status)
    if isinstance(event, SurveySubmitted):
        return Step(
            at_us,
            RANK_SURVEY,
            event.event_id,
            survey_kind=event.kind,
            score=event.score,
            survey_team=None if event.team is None else team_label(event.team),
        )
    raise TypeError(f"no step for {type(event).__name__}")


def creation_of(event: TicketCreated) -> Creation:
    return Creation(
        event.event_id,
        to_us(event.occurred_at),
        team_label(event.team),
        event.channel,
        event.priority,
        event.created_by,
    )


# -- facts --------------------------------------------------------------------------------

FactKind = Literal["created", "resolved", "escalated", "reopened", "first_response", "survey"]


class Dims(NamedTuple):
    team: str
    channel: str
    priority: str


class Fact(NamedTuple):
    """One windowed measurement of a ticket: what, when, for which dimensions, how much.

    Durations are µs. ``business`` is ``value`` in business time (first response, resolution;
    None without calendars); a resolution also carries its requester wait (``wait``, and
    ``wait_business`` with calendars) and whether it met the resolution SLA (``met``).
    """

    kind: FactKind
    at_us: int
    dims: Dims
    value: int = 0  # duration in µs, or a survey score
    flag: bool | None = None  # first-response SLA met / first-contact resolution (first only)
    detail: str = ""  # survey kind
    business: int | None = None
    wait: int = 0
    wait_business: int | None = None
    met: bool | None = None  # resolution SLA met


class LiveFact(NamedTuple):
    """The ticket's contribution to the live backlog (only while it is open).

    ``deadline_us``: for an unanswered ticket whose first-response target is on the business
    clock, the instant after which it is past the target (None otherwise: creation + target)."""

    dims: Dims
    unanswered: bool
    created_us: int
    deadline_us: int | None = None


def ticket_facts(
    state: TicketState, policies: SlaPolicies, calendars: CalendarSet | None = None
) -> tuple[list[Fact], LiveFact | None]:
    """All KPI facts of a ticket, recomputed from its ordered events.

    Calendar time is counted inline (a first response or resolution: its time - creation;
    requester wait: the stretches in new/open/on_hold). With calendars, two
    :class:`~streams.core.clocks.TicketClock` add business time: ``total`` never pauses (first
    response, resolution), ``wait`` runs while the requester waits; both count each stretch on
    the calendar of the team owning the ticket then.
    """
    creation = state.creation
    if creation is None:
        if state.standalone:
            return [_standalone_survey_fact(step) for step in state.steps], None
        return [], None

    team = creation.team
    priority = creation.priority
    created_us = creation.at_us
    dims = Dims(team, creation.channel, priority)
    facts = [Fact("created", created_us, dims)]
    fr_target, fr_clock = policies.first_response.targets[priority]
    resolution_target, resolution_clock = policies.resolution.targets[priority]
    total = wait = None
    if calendars is not None:
        total = TicketClock(calendars, created_us, team)
        wait = TicketClock(calendars, created_us, team)
    waited_us = 0  # requester wait before waiting_since
    waiting_since: int | None = created_us  # None: the requester is not waiting (pending, ...)
    status = "new"
    public_agent_replies = 0
    escalated = False
    resolved_before = False
    first_response_seen = False
    for step in state.steps:
        at_us = step.at_us
        dims = Dims(team, creation.channel, priority)
        if step.rank == RANK_REPLY:
            if step.author_type == "agent" and step.public:
                public_agent_replies += 1
                if not first_response_seen:
                    first_response_seen = True
                    if creation.created_by == "customer":
                        took = at_us - created_us
                        took_b = None if total is None else total.elapsed(at_us).business_us
                        met = _on(fr_clock, took, took_b) <= fr_target
                        facts.append(
                            Fact("first_response", at_us, dims, took, met, business=took_b)
                        )
        elif step.rank == RANK_ESCALATION:
            if not escalated:
                escalated = True
                facts.append(Fact("escalated", at_us, dims))
            if step.to_team is not None:
                team = step.to_team
                if total is not None and wait is not None:
                    total.move(at_us, team)
                    wait.move(at_us, team)
        elif step.rank == RANK_STATUS:
            assert step.status is not None
            was_solved = status in SOLVED_STATUSES
            now_solved = step.status in SOLVED_STATUSES
            if now_solved and not was_solved:
                first_contact = None
                if not resolved_before:
                    first_contact = public_agent_replies == 1 and not escalated
                    resolved_before = True
                waited = waited_us if waiting_since is None else waited_us + at_us - waiting_since
                took_b = waited_b = None
                if total is not None and wait is not None:
                    took_b = total.elapsed(at_us).business_us
                    waited_b = wait.elapsed(at_us).business_us
                facts.append(
                    Fact(
                        "resolved",
                        at_us,
                        dims,
                        at_us - created_us,
                        first_contact,
                        business=took_b,
                        wait=waited,
                        wait_business=waited_b,
                        met=_on(resolution_clock, waited, waited_b) <= resolution_target,
                    )
                )
            elif was_solved and not now_solved:
                facts.append(Fact("reopened", at_us, dims))
            status = step.status
            if waiting_since is not None:
                waited_us += at_us - waiting_since
            waiting_since = at_us if status in WAITING_STATUSES else None
            if wait is not None:
                wait.status(at_us, status)
        else:
            assert step.survey_kind is not None
            survey_dims = Dims(step.survey_team or team, creation.channel, priority)
            facts.append(Fact("survey", at_us, survey_dims, step.score, None, step.survey_kind))

    live = None
    if status not in SOLVED_STATUSES:
        dims = Dims(team, creation.channel, priority)
        if not first_response_seen and creation.created_by == "customer":
            deadline = None
            if fr_clock == "business" and total is not None:
                deadline = total.deadline_us(fr_target, "business")
                assert deadline is not None  # the total clock never stops
            live = LiveFact(dims, True, created_us, deadline)
        else:
            live = LiveFact(dims, False, created_us)
    return facts, live


def _on(clock: str, calendar_us: int, business_us: int | None) -> int:
    """A duration on an SLA clock (business time falls back to calendar without calendars)."""
    return business_us if clock == "business" and business_us is not None else calendar_us


def _standalone_survey_fact(step: Step) -> Fact:
    assert step.survey_kind is not None
    dims = Dims(step.survey_team or UNKNOWN, UNKNOWN, UNKNOWN)
    return Fact("survey", step.at_us, dims, step.score, None, step.survey_kind)
