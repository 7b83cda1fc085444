"""Typed input events (SPEC §2). Pure data: no Faust or Kafka imports.

One ``msgspec.Struct`` per input topic. The decoder (:mod:`streams.decoding`) turns bytes into
these; the KPI core (:mod:`streams.core`) consumes them. Field names are the public JSON contract
described by ``schemas/*.schema.json``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

SCHEMA_VERSION = 1

# Bounded, non-empty identifiers and names. Ids never leave the process as labels or values.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
EventTime = Annotated[datetime, msgspec.Meta(tz=True)]

Channel = Literal["email", "chat", "phone", "web", "social", "api", "other"]
Priority = Literal["low", "normal", "high", "urgent"]
CreatedBy = Literal["customer", "agent", "system"]
AuthorType = Literal["agent", "customer", "bot", "system"]
Status = Literal["new", "open", "pending", "on_hold", "solved", "closed"]
SurveyKind = Literal["csat", "nps", "enps"]
LifecycleChange = Literal["activated", "churned"]

CHANNELS: tuple[Channel, ...] = ("email", "chat", "phone", "web", "social", "api", "other")
PRIORITIES: tuple[Priority, ...] = ("low", "normal", "high", "urgent")
SOLVED_STATUSES: frozenset[str] = frozenset({"solved", "closed"})


class _Event(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    event_id: Id
    occurred_at: EventTime
    schema_version: Literal[1]


class TicketCreated(_Event, frozen=True, kw_only=True):
    ticket_id: Id
    customer_id: Id
    team: Name
    channel: Channel
    priority: Priority
    created_by: CreatedBy = "customer"


class TicketReplied(_Event, frozen=True, kw_only=True):
    ticket_id: Id
    author_type: AuthorType
    agent_id: Id | None = None
    public: bool = True


class TicketEscalated(_Event, frozen=True, kw_only=True):
    ticket_id: Id
    level: Annotated[int, msgspec.Meta(ge=1)]
    to_team: Name | None = None
    reason: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


class TicketStatusChanged(_Event, frozen=True, kw_only=True):
    ticket_id: Id
    status: Status


class SurveySubmitted(_Event, frozen=True, kw_only=True):
    survey_id: Id
    kind: SurveyKind
    score: Annotated[int, msgspec.Meta(ge=0, le=10)]
    ticket_id: Id | None = None
    team: Name | None = None


class CustomerLifecycle(_Event, frozen=True, kw_only=True):
    customer_id: Id
    change: LifecycleChange
    segment: Name | None = None


TicketEvent = TicketCreated | TicketReplied | TicketEscalated | TicketStatusChanged
Event = TicketEvent | SurveySubmitted | CustomerLifecycle

# Input topic name (default) -> event type. Topic names are configurable; these are the defaults.
EVENT_TYPES: dict[str, type[Event]] = {
    "ticket-created": TicketCreated,
    "ticket-replied": TicketReplied,
    "ticket-escalated": TicketEscalated,
    "ticket-status-changed": TicketStatusChanged,
    "survey-submitted": SurveySubmitted,
    "customer-lifecycle": CustomerLifecycle,
}


def event_time(event: Event) -> float:
    """Event time as POSIX seconds."""
    return event.occurred_at.timestamp()


def routing_key(event: Event) -> str:
    """The key that decides the partition: the ticket, else the survey or customer."""
    if isinstance(event, SurveySubmitted):
        return event.ticket_id if event.ticket_id is not None else f"survey:{event.survey_id}"
    if isinstance(event, CustomerLifecycle):
        return f"customer:{event.customer_id}"
    return event.ticket_id
