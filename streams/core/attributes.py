"""Attributes outlive state (SPEC §3): what a retired ticket keeps, and how it comes back.

A finished ticket's full state (every event, every event id) is dropped after
``retention_seconds``. What replaces it, under the same key and in the same table and
changelog, is a :class:`~streams.core.ticket.Retired` record of a few dozen bytes: the team at
retirement, channel, priority, creator, creation time, the time ``L`` of the ticket's last event,
whether it was answered and escalated, how many resolutions it had and its requester wait so
far. The record is kept for ``attribute_retention_seconds`` after ``L``, then forgotten (a
later event is held and becomes an orphan, as for any unknown ticket).

An event for a retired ticket:

* a ``ticket-created`` is a duplicate (a second creation for a known ticket);
* an event at or before ``L`` is a duplicate: the ticket's event ids are gone, so this is how a
  re-delivery of one of its events is recognised. It is exact for re-deliveries; a genuinely
  new event that old (dated before the ticket's own last known activity, and arriving at least
  the retention after it) is ignored too. Its windowed facts could not count anyway: at
  retirement the clock is past ``L`` by more than the horizon;
* any later event *revives* the ticket: :func:`revive` rebuilds a state whose steps (at or
  before ``L``) reproduce exactly what later events depend on (current team, answered,
  escalated, solved, the number of resolutions, the requester wait so far), and the event is
  applied to it as to any ticket. A late survey counts with the ticket's team, channel and
  priority; a reopen is counted and the ticket is back in the live backlog, its next
  resolution measured from the original creation (its requester wait going on from the one
  kept) and not a first resolution (no second first-contact resolution). Business time is not
  kept: with calendars, the business times of a revived ticket's later facts are approximate
  (its time before retirement counts on the calendar of its team at retirement, its requester
  wait as one stretch from the creation).

The facts of the summary steps are at or before ``L``, so out of every window; the engine
leaves them out of its aggregates (:func:`windowed_facts`). A revived ticket keeps its record
(the duplicate rule above still holds) and retires again, with a new record, like any ticket.
"""

from __future__ import annotations

from itertools import count

from streams.core.clocks import WAITING_STATUSES
from streams.core.ticket import (
    RANK_ESCALATION,
    RANK_REPLY,
    RANK_STATUS,
    Creation,
    Fact,
    LiveFact,
    Retired,
    Step,
    TicketState,
)
from streams.events import SOLVED_STATUSES

# Code tables of the persisted record: append only (the index is what the changelog holds).
CHANNEL_CODES: tuple[str, ...] = ("email", "chat", "phone", "web", "social", "api", "other")
PRIORITY_CODES: tuple[str, ...] = ("low", "normal", "high", "urgent")
CREATOR_CODES: tuple[str, ...] = ("customer", "agent", "system")

# Ids of the summary steps: they sort in the order they are made (the status cycles of a
# ticket with several resolutions), and a real event id starting with NUL is not expected.
_SUMMARY_ID = "\x00{:06d}"


def is_record(state: TicketState) -> bool:
    """A retired ticket's attribute record (not a live or revived state)."""
    return state.retired is not None and state.creation is None


def retire(state: TicketState) -> TicketState:
    """The attribute record that replaces a finished ticket's state."""
    creation = state.creation
    assert creation is not None, "only a created ticket retires to attributes"
    team = creation.team
    answered = escalated = False
    resolutions = waited = 0
    status = "new"
    waiting_since: int | None = creation.at_us  # None: the requester is not waiting
    for step in state.steps:
        if step.rank == RANK_REPLY:
            answered = answered or (step.author_type == "agent" and step.public)
        elif step.rank == RANK_ESCALATION:
            escalated = True
            if step.to_team is not None:
                team = step.to_team
        elif step.rank == RANK_STATUS and step.status is not None:
            if step.status in SOLVED_STATUSES and status not in SOLVED_STATUSES:
                resolutions += 1
            status = step.status
            if waiting_since is not None:
                waited += step.at_us - waiting_since
            waiting_since = step.at_us if status in WAITING_STATUSES else None
    record = Retired(
        creation.at_us,
        state.last_event_us(),
        team,
        CHANNEL_CODES.index(creation.channel),
        PRIORITY_CODES.index(creation.priority),
        CREATOR_CODES.index(creation.created_by),
        answered,
        escalated,
        resolutions,
        waited,
    )
    return TicketState(partition=state.partition, retired=record)


def revive(record: TicketState) -> TicketState:
    """A ticket state rebuilt from an attribute record: later events see the same ticket.

    Every step is at the record's ``last_us``: a public agent reply if it was answered, an
    escalation if it was escalated, then its resolutions (reopened in between), so that the
    next reply, escalation, reopen or resolution derives exactly the facts it would have
    derived from the full state. Except one: ``pending`` at creation + the requester wait so
    far, so that the wait of a later resolution goes on from it.
    """
    r = record.retired
    assert r is not None
    creation = Creation(
        "",
        r.created_us,
        r.team,
        CHANNEL_CODES[r.channel],
        PRIORITY_CODES[r.priority],
        CREATOR_CODES[r.created_by],
    )
    at = r.last_us
    ids = (_SUMMARY_ID.format(n) for n in count())
    steps: list[Step] = [Step(r.created_us + r.waited_us, RANK_STATUS, next(ids), status="pending")]
    if r.answered:
        steps.append(Step(at, RANK_REPLY, next(ids), author_type="agent"))
    if r.escalated:
        steps.append(Step(at, RANK_ESCALATION, next(ids)))
    for index in range(r.resolutions):
        if index:
            steps.append(Step(at, RANK_STATUS, next(ids), status="open"))
        steps.append(Step(at, RANK_STATUS, next(ids), status="solved"))
    return TicketState(partition=record.partition, creation=creation, steps=steps, retired=r)


def known_only_as_attributes(state: TicketState, at_us: int) -> bool:
    """Whether an event at ``at_us`` is at or before what the ticket's record summarises."""
    return state.retired is not None and at_us <= state.retired.last_us


def windowed_facts(
    state: TicketState, facts: tuple[list[Fact], LiveFact | None]
) -> tuple[list[Fact], LiveFact | None]:
    """The facts that may count in windows: without the summary steps' (all at or before
    ``last_us``, out of every window since the ticket retired)."""
    if state.retired is None:
        return facts
    last = state.retired.last_us
    return [fact for fact in facts[0] if fact.at_us > last], facts[1]
