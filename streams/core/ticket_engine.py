"""Stage 1: the KPI engine of the tickets of one input partition.

It owns the tickets routed to its partition. For every event it updates the ticket's state
(de-duplicated, held until the ticket exists, ordered by event time), recomputes the ticket's
facts and applies the difference to *partial aggregates* per (group, time bucket) and per group
for the live backlog. Partial aggregates are derived state: :meth:`TicketEngine.rebuild`
recomputes them from the ticket states, so only the tickets need to be durable.

:meth:`TicketEngine.flush` hands out the absolute value of every partial that changed since
the last flush (``None`` when it became empty), as the message between the stages
(:mod:`streams.core.partials`). Stage 2 (:mod:`streams.core.merge`) keeps the latest value per
(group, source partition, bucket): re-sending is harmless, and re-sending everything after a
restart or rebalance makes losing a send impossible.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from streams.core.aggregate import LiveAggregate, WindowAggregate
from streams.core.attributes import (
    is_record,
    known_only_as_attributes,
    retire,
    revive,
    windowed_facts,
)
from streams.core.firsts import FirstDerivations, newly_derived
from streams.core.kpis import ALL, EngineConfig
from streams.core.packed import PackedAggregates
from streams.core.partials import HEARTBEAT_BUCKET, OVERALL, Group, PartialUpdate
from streams.core.sla import sla_policies
from streams.core.ticket import (
    Dims,
    Fact,
    Held,
    LiveFact,
    Step,
    TicketState,
    creation_of,
    step_of,
    ticket_facts,
)
from streams.core.units import US, to_us
from streams.events import CustomerLifecycle, Event, SurveySubmitted, TicketCreated, routing_key


class TicketStore(Protocol):
    """Where ticket states live: a Faust table in the worker, a dict in tests."""

    def get(self, key: str) -> TicketState | None: ...

    def put(self, key: str, state: TicketState) -> None: ...

    def delete(self, key: str) -> None: ...

    def states(self) -> Iterable[tuple[str, TicketState]]: ...


class DictTicketStore:
    """An in-memory TicketStore (tests, replay, benchmarks)."""

    def __init__(self) -> None:
        self.data: dict[str, TicketState] = {}

    def get(self, key: str) -> TicketState | None:
        return self.data.get(key)

    def put(self, key: str, state: TicketState) -> None:
        self.data[key] = state

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def states(self) -> Iterable[tuple[str, TicketState]]:
        return list(self.data.items())


class Outcome(Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    HELD = "held"
    BEFORE_CREATED = "before_created"
    IGNORED = "ignored"  # a topic with no KPI yet (customer-lifecycle)


@dataclass
class InputRecord:
    """The input record an event was decoded from, kept with a held event for its dead letter."""

    topic: str = ""
    partition: int = 0
    offset: int = -1
    raw: bytes = b""


@dataclass
class ProcessResult:
    outcome: Outcome
    late: bool = False
    # Events not applied because they are earlier than their ticket's creation: this event, or
    # events that were held until the creation arrived.
    rejected: list[Held] = field(default_factory=list)
    # Facts of a counted kind (created, first response, resolution) this event derived for
    # the first time: the increments of the cumulative series (streams.core.firsts).
    derived: list[Fact] = field(default_factory=list)


def groups_of(dims: Dims, team_only: bool = False) -> tuple[Group, ...]:
    """The groups one measurement counts in: overall and each single dimension."""
    overall = (ALL, ALL, ALL)
    by_team = (dims.team, ALL, ALL)
    if team_only:
        return (overall, by_team)
    return (overall, by_team, (ALL, dims.channel, ALL), (ALL, ALL, dims.priority))


# A partial's key, (group, bucket), is one int: bucket << _GROUP_BITS | the group's id in this
# process. An int key is 32 bytes; a tuple of two, 96 (its own and the bucket's), and the
# engine keeps one to two windowed and live partials per open ticket.
_GROUP_BITS = 24
_GROUP_IDS: dict[Group, int] = {}
_GROUPS_BY_ID: list[Group] = []


def _group_id(group: Group) -> int:
    group_id = _GROUP_IDS.get(group)
    if group_id is None:
        group_id = len(_GROUPS_BY_ID)
        if group_id >> _GROUP_BITS:
            raise OverflowError(f"more than {1 << _GROUP_BITS} groups")
        _GROUP_IDS[group] = group_id
        _GROUPS_BY_ID.append(group)
    return group_id


def partial_key(group: Group, bucket: int) -> int:
    """The key of the partial of ``group`` in ``bucket`` in :attr:`TicketEngine.windows` and
    :attr:`TicketEngine.live`."""
    return bucket << _GROUP_BITS | _group_id(group)


def partial_of(key: int) -> tuple[Group, int]:
    """(group, bucket) of a partial's key."""
    return _GROUPS_BY_ID[key & ((1 << _GROUP_BITS) - 1)], key >> _GROUP_BITS


class TicketEngine:
    """Stage 1 of the tickets of one input partition: ticket states in, partials out."""

    def __init__(
        self,
        partition: int,
        store: TicketStore,
        config: EngineConfig,
        firsts: FirstDerivations | None = None,
    ) -> None:
        self.partition = partition
        # Shared by the engines of one process and kept across rebuilds: a fact counted
        # before a recovery is not counted again when its event is re-delivered.
        self.firsts = firsts
        self.store = store
        self.config = config
        self.bucket_us = round(config.bucket_seconds * US)
        self.horizon_us = round(config.horizon_seconds * US)
        self.policies = sla_policies(config)
        self.calendars = config.calendars
        self.hold_us = round(config.orphan_hold_seconds * US)
        self.retention_us = round(config.retention_seconds * US)
        self.attribute_retention_us = round(config.attribute_retention_seconds * US)
        self.stream_time_us = 0
        self._flushed_stream_time_us = 0
        # Partials by key (group, bucket: partial_key), packed between flushes
        # (streams.core.packed): there are one to two of each per open ticket.
        self.windows: PackedAggregates[int, WindowAggregate] = PackedAggregates(WindowAggregate)
        # (group, creation bucket)
        self.live: PackedAggregates[int, LiveAggregate] = PackedAggregates(LiveAggregate)
        self._dirty: set[int] = set()  # keys
        self._dirty_live: set[int] = set()
        self._reset_pending = False
        # Buckets that have (or had) windowed partials: a heap, and the same as a set. At
        # expiry every group is looked up in the bucket (a set of the groups per bucket cost
        # ~75 bytes per open ticket in the memory benchmark).
        self._buckets: list[int] = []
        self._bucket_set: set[int] = set()
        self._orphan_due: list[tuple[int, str]] = []  # heap (due µs, key)
        self._retire_due: list[tuple[int, str]] = []  # heap (due µs, key)
        self.clock_us = 0  # the latest engine clock used (_advance_clock)

    # -- event processing -----------------------------------------------------------------

    def process(
        self, event: Event, clock_us: int, record: InputRecord | None = None
    ) -> ProcessResult:
        """Apply one decoded event. ``clock_us`` is the engine clock: wall time, or a stream
        time that may lag the event (the worker holds it back to the input topic read
        furthest behind); an earlier one than before counts as the one before."""
        at_us = to_us(event.occurred_at)
        self.stream_time_us = max(self.stream_time_us, at_us)
        clock_us = self._advance_clock(clock_us)
        late = at_us < clock_us - self.horizon_us
        if isinstance(event, CustomerLifecycle):
            return ProcessResult(Outcome.IGNORED, late)

        key = routing_key(event)
        state = self.store.get(key)
        if state is not None and state.retired is not None:
            # A retired ticket, known by its attributes (streams.core.attributes).
            if isinstance(event, TicketCreated) or known_only_as_attributes(state, at_us):
                return ProcessResult(Outcome.DUPLICATE, late)
            if is_record(state):
                state = revive(state)
        if state is not None and state.has_event(event.event_id):
            return ProcessResult(Outcome.DUPLICATE, late)

        before = (
            ticket_facts(state, self.policies, self.calendars) if state is not None else ([], None)
        )
        result = ProcessResult(Outcome.APPLIED, late)
        if isinstance(event, TicketCreated):
            if state is not None and state.creation is not None:
                return ProcessResult(Outcome.DUPLICATE, late)
            if state is None:
                state = TicketState(partition=self.partition)
            state.creation = creation_of(event)
            for held in state.held:
                if held.step.at_us < state.creation.at_us:
                    result.rejected.append(held)
                    state.rejected_ids.append(held.step.event_id)
                else:
                    state.add_step(held.step)
            state.held = []
        elif isinstance(event, SurveySubmitted) and event.ticket_id is None:
            if state is None:
                state = TicketState(partition=self.partition, standalone=True)
            state.add_step(step_of(event))
        else:
            step = step_of(event)
            if state is None or state.creation is None:
                if state is None:
                    state = TicketState(partition=self.partition)
                src = record or InputRecord()
                held_since = max(clock_us, at_us)  # never before the event itself
                if not state.held:
                    heapq.heappush(self._orphan_due, (held_since + self.hold_us, key))
                state.held.append(
                    Held(step, held_since, src.topic, src.partition, src.offset, src.raw)
                )
                self.store.put(key, state)
                return ProcessResult(Outcome.HELD, late)
            if step.at_us < state.creation.at_us:
                src = record or InputRecord()
                held = Held(step, clock_us, src.topic, src.partition, src.offset, src.raw)
                state.rejected_ids.append(step.event_id)  # a re-send is a duplicate
                self.store.put(key, state)
                return ProcessResult(Outcome.BEFORE_CREATED, late, [held])
            state.add_step(step)

        after = ticket_facts(state, self.policies, self.calendars)
        self._apply_difference(
            windowed_facts(state, before), windowed_facts(state, after), clock_us
        )
        result.derived = newly_derived(key, before[0], after[0], self.firsts)
        self.store.put(key, state)
        self._schedule_retirement(key, state)
        return result

    def housekeeping(self, clock_us: int) -> list[Held]:
        """Expire old buckets, retire finished tickets (to their attributes), forget
        attributes, drop orphans; returns dropped orphans.

        Runs inside stream iteration in the worker (table deletes need it), so it is cheap
        when there is nothing to do.
        """
        clock_us = self._advance_clock(clock_us)
        self._expire_buckets(clock_us)
        while self._retire_due and self._retire_due[0][0] <= clock_us:
            _, key = heapq.heappop(self._retire_due)
            state = self.store.get(key)
            if state is None or self._retirement_due(state) > clock_us:
                continue
            if state.standalone or is_record(state):
                self.store.delete(key)
                continue
            record = retire(state)
            if self._retirement_due(record) <= clock_us:
                self.store.delete(key)  # attributes kept no longer than the state
            else:
                self.store.put(key, record)
                self._schedule_retirement(key, record)
        orphans: list[Held] = []
        while self._orphan_due and self._orphan_due[0][0] <= clock_us:
            _, key = heapq.heappop(self._orphan_due)
            state = self.store.get(key)
            if state is None or state.creation is not None or not state.held:
                continue
            due = state.held[0].held_since_us + self.hold_us
            if due > clock_us:
                heapq.heappush(self._orphan_due, (due, key))
                continue
            orphans.extend(state.held)
            self.store.delete(key)
        return orphans

    def _advance_clock(self, clock_us: int) -> int:
        """The engine clock at ``clock_us``: never earlier than one used before (a bucket
        found expired stays expired, so a retraction never meets a bucket its addition
        skipped)."""
        self.clock_us = max(self.clock_us, clock_us)
        return self.clock_us

    # -- partial aggregates ---------------------------------------------------------------

    def flush(self) -> list[PartialUpdate]:
        """Absolute values of every partial that changed since the last flush.

        The aggregates handed out are decoded objects the engine no longer holds (it keeps
        them packed from here on, :mod:`streams.core.packed`).
        """
        now = self.stream_time_us
        resets = [
            PartialUpdate(
                group=group,
                source_partition=self.partition,
                bucket=HEARTBEAT_BUCKET,
                stream_time_us=now,
                reset=True,
            )
            for group in _DIMENSION_GROUPS
        ]
        updates = resets if self._reset_pending else []
        self._reset_pending = False
        updates += [self._update(key, now, is_live=False) for key in self._dirty]
        updates += [self._update(key, now, is_live=True) for key in self._dirty_live]
        if not updates and now > self._flushed_stream_time_us:
            # Carry the advancing stream time to stage 2 even when no partial changed: to
            # every dimension, since each may be merged by a different worker.
            updates.extend(
                PartialUpdate(
                    group=group,
                    source_partition=self.partition,
                    bucket=HEARTBEAT_BUCKET,
                    stream_time_us=now,
                    is_live=True,
                )
                for group in _DIMENSION_GROUPS
            )
        self._flushed_stream_time_us = now
        self._dirty.clear()
        self._dirty_live.clear()
        self.windows.pack()
        self.live.pack()
        return updates

    def _update(self, key: int, now_us: int, *, is_live: bool) -> PartialUpdate:
        """The absolute value of the partial of ``key`` (None when it is empty now)."""
        group, bucket = partial_of(key)
        return PartialUpdate(
            group=group,
            source_partition=self.partition,
            bucket=bucket,
            window=None if is_live else self.windows.get(key),
            live=self.live.get(key) if is_live else None,
            stream_time_us=now_us,
            is_live=is_live,
        )

    def rebuild(
        self,
        clock_us: int | None = None,
        states: Iterable[tuple[str, TicketState]] | None = None,
    ) -> None:
        """Recompute every partial from the ticket states of this partition; mark all dirty.

        ``clock_us`` None means stream time: the latest event time among the tickets (and
        retired tickets' attribute records).
        ``states``: this partition's tickets when the caller has them already (else the store's).
        """
        source = self.store.states() if states is None else states
        mine = [(key, state) for key, state in source if state.partition == self.partition]
        for _, state in mine:
            # (a retired ticket's last event counts too: the stream had reached it)
            retired = 0 if state.retired is None else state.retired.last_us
            self.stream_time_us = max(self.stream_time_us, state.last_event_us(), retired)
        if clock_us is None:
            clock_us = self.stream_time_us
        clock_us = self._advance_clock(clock_us)
        self.windows.clear()
        self.live.clear()
        self._buckets.clear()
        self._bucket_set.clear()
        self._orphan_due.clear()
        self._retire_due.clear()
        live: dict[int, list[LiveFact]] = {}  # partial key -> the open tickets in it
        for key, state in mine:
            if state.held:
                heapq.heappush(self._orphan_due, (state.held[0].held_since_us + self.hold_us, key))
            facts, live_fact = windowed_facts(
                state, ticket_facts(state, self.policies, self.calendars)
            )
            for fact in facts:  # (from nothing: every fact counts once more)
                self._apply_fact(fact, +1, clock_us)
            if live_fact is not None:
                bucket = live_fact.created_us // self.bucket_us
                for group in groups_of(live_fact.dims):
                    live.setdefault(partial_key(group, bucket), []).append(live_fact)
            self._schedule_retirement(key, state)
        for live_key, backlog in live.items():
            # One sorted pack per group and bucket instead of an insert per ticket.
            aggregate = LiveAggregate.of(
                (item.dims.priority if item.unanswered else None, item.created_us, item.deadline_us)
                for item in backlog
            )
            self.live.put_open(live_key, aggregate)
        self._dirty = set(self.windows)
        self._dirty_live = set(self.live)
        # (every partial stays decoded until the flush that sends them all packs them)
        self._reset_pending = True

    def _apply_difference(
        self,
        before: tuple[list[Fact], LiveFact | None],
        after: tuple[list[Fact], LiveFact | None],
        clock_us: int,
    ) -> None:
        old, new = Counter(before[0]), Counter(after[0])
        for fact, n in (old - new).items():
            for _ in range(n):
                self._apply_fact(fact, -1, clock_us)
        for fact, n in (new - old).items():
            for _ in range(n):
                self._apply_fact(fact, +1, clock_us)
        if before[1] != after[1]:
            if before[1] is not None:
                self._apply_live(before[1], -1)
            if after[1] is not None:
                self._apply_live(after[1], +1)

    def _apply_fact(self, fact: Fact, sign: int, clock_us: int) -> None:
        bucket = fact.at_us // self.bucket_us
        if self._bucket_expired(bucket, clock_us):
            return  # too old for any window: it no longer counts (and its bucket is gone)
        if bucket not in self._bucket_set:
            self._bucket_set.add(bucket)
            heapq.heappush(self._buckets, bucket)
        for group in groups_of(fact.dims, team_only=fact.detail == "enps"):
            key = partial_key(group, bucket)
            aggregate = self.windows.open(key)
            _record(aggregate, fact, sign)
            if aggregate.is_empty():
                self.windows.discard(key)
            self._dirty.add(key)

    def _apply_live(self, fact: LiveFact, sign: int) -> None:
        priority = fact.dims.priority if fact.unanswered else None
        bucket = fact.created_us // self.bucket_us
        for group in groups_of(fact.dims):
            key = partial_key(group, bucket)
            aggregate = self.live.open(key)
            aggregate.add(True, priority, fact.created_us, sign, fact.deadline_us)
            if aggregate.is_empty():
                self.live.discard(key)
            self._dirty_live.add(key)

    def window_partials(self) -> dict[tuple[Group, int], WindowAggregate]:
        """Every windowed partial by (group, bucket), decoded (tests, diagnostics)."""
        return {partial_of(key): aggregate for key, aggregate in self.windows.items()}

    def live_partials(self) -> dict[tuple[Group, int], LiveAggregate]:
        """Every live partial by (group, creation bucket), decoded (tests, diagnostics)."""
        return {partial_of(key): aggregate for key, aggregate in self.live.items()}

    def _bucket_expired(self, bucket: int, clock_us: int) -> bool:
        return (bucket + 1) * self.bucket_us <= clock_us - self.horizon_us

    def _expire_buckets(self, clock_us: int) -> None:
        while self._buckets and self._bucket_expired(self._buckets[0], clock_us):
            bucket = heapq.heappop(self._buckets)
            self._bucket_set.discard(bucket)
            for group_id in range(len(_GROUPS_BY_ID)):
                key = bucket << _GROUP_BITS | group_id
                if self.windows.discard(key):
                    self._dirty.add(key)

    # -- ticket retirement ------------------------------------------------------------------

    def _retirement_due(self, state: TicketState) -> int:
        """When a finished ticket's state can go (no KPI can need it any more), or when a
        retired ticket's attributes are forgotten.

        Not before the bucket of its last event has expired, so that a rebuild from the
        remaining tickets yields exactly the partials incremental processing still has.
        """
        record = state.retired if state.creation is None else None
        last = state.last_event_us() if record is None else record.last_us
        expired = (last // self.bucket_us + 1) * self.bucket_us + self.horizon_us
        if record is not None:
            return max(last + self.attribute_retention_us, expired)
        if state.standalone:
            return expired
        if state.creation is None or not state.is_resolved():
            return _NEVER
        return max(last + self.retention_us, expired)

    def _schedule_retirement(self, key: str, state: TicketState) -> None:
        due = self._retirement_due(state)
        if due != _NEVER:
            heapq.heappush(self._retire_due, (due, key))


_NEVER = 2**63
# One representative group per dimension, to address a reset to each.
_DIMENSION_GROUPS: tuple[Group, ...] = (
    OVERALL,
    ("*", ALL, ALL),
    (ALL, "*", ALL),
    (ALL, ALL, "*"),
)


def _record(aggregate: WindowAggregate, fact: Fact, sign: int) -> None:
    kind = fact.kind
    if kind == "created":
        aggregate.created += sign
    elif kind == "first_response":
        aggregate.add_first_response(fact.value, bool(fact.flag), sign, fact.business)
    elif kind == "resolved":
        aggregate.add_resolution(
            fact.value,
            fact.flag,
            sign,
            wait_us=fact.wait,
            sla_met=bool(fact.met),
            business_us=fact.business,
            wait_business_us=fact.wait_business,
        )
    elif kind == "escalated":
        aggregate.escalated += sign
    elif kind == "reopened":
        aggregate.reopened += sign
    else:
        aggregate.add_survey(fact.detail, fact.value, sign)


__all__ = [
    "DictTicketStore",
    "InputRecord",
    "Outcome",
    "ProcessResult",
    "Step",
    "TicketEngine",
    "TicketStore",
    "groups_of",
    "partial_key",
    "partial_of",
]
