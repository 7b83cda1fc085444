"""Customer churn and retention (SPEC §4): per-customer state, facts, partials and windows.

Definitions. A customer is *active* at instant t when its latest ``customer-lifecycle`` change at
or before t is ``activated`` (changes at the same instant: the last by ``event_id`` wins). For a
window at clock ``now`` with start t0 (``now - size``, or local midnight for ``today``):
S = customers active at t0, E = customers active at ``now``; churned = |S \\ E|, new = |E \\ S|,
churn ratio = |S \\ E| / |S|, retention ratio = |S ∩ E| / |S| (no value when |S| = 0). A customer
counts in the segment of its latest event (by event time) that names one, ``unknown`` if none.
Live: customers active at ``now``.

Facts. Everything is computed from three kinds of *step-function deltas* per customer (a delta
``d`` at time ``x`` means "from x on, add d"); a prefix sum P(t) = sum of deltas at times <= t:

- ``active``: the changes of a(t) (1 while active). P_active(t) = customers active at t.
- one series per fixed window W: the changes of a(t)·a(t + W). P_W(t0) = |S ∩ E| of the window
  that starts at t0 (active at t0 and at t0 + W).
- ``today``: the changes of a(t) at instants t whose local day started with the customer active.
  For m = local midnight of ``now``: |S ∩ E| = P_active(m) + P_today(now) - P_today(m).

The deltas of a customer are a pure function of its de-duplicated, event-time ordered changes,
so delivery order does not matter; deltas are additive over customers, partitions and time
buckets, so partial sums per (segment, partition, bucket) merge exactly (stage 2, like tickets),
and reading at any clock is exact to the microsecond: the windows slide with the clock.

Memory. Deltas older than the horizon (clock - longest window - grace; ``today`` counts as 26 h)
are folded into one base sum per segment; per customer only its state at the horizon plus its
changes after it are kept, and a customer whose latest change is a churn older than the horizon
is *retired* (forgotten). A lifecycle event for a retired customer starts its history afresh
(its segment is then the one its new events name) — exact unless an event arrives later than its
customer's churn by more than the horizon (beyond the grace period for out-of-order delivery).

The clock must not go backwards (wall clock or stream time); reads before the horizon of a clock
already used are not exact.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import tzinfo
from enum import Enum
from typing import Protocol

import msgspec

from streams.core import kpis
from streams.core.kpis import ALL, OTHER, UNKNOWN, CustomerKpiKey
from streams.core.labels import segment_label
from streams.core.today import TODAY, TODAY_MAX_SECONDS, day_start_us, time_zone
from streams.core.units import US, to_us
from streams.events import CustomerLifecycle

ACTIVE = "active"  # the series of a(t); the other series are named after their window
# Partials of folded (older than the horizon) deltas carry this bucket, their deltas this time.
BASE_BUCKET = -2
FOLDED_US = -(2**62)
# A partial with this bucket carries nothing but the stream time.
HEARTBEAT_BUCKET = -1
_NEVER = 2**63


@dataclass(frozen=True)
class CustomerConfig:
    """What the customer engine and merge need; validated by :mod:`streams.settings`."""

    windows: tuple[tuple[str, float], ...] = kpis.DEFAULT_CUSTOMER_WINDOWS
    time_zone: str = "UTC"
    grace_seconds: float = 300.0
    # Granularity of partials (how much one change re-sends) and of folding; values are exact
    # at any instant whatever its size.
    bucket_seconds: float = 3600.0

    @property
    def horizon_seconds(self) -> float:
        """State and deltas older than clock - horizon can no longer change a reading."""
        spans = [TODAY_MAX_SECONDS if name == TODAY else size for name, size in self.windows]
        return max(spans) + self.grace_seconds

    def zone(self) -> tzinfo:
        return time_zone(self.time_zone)


# -- per-customer state ---------------------------------------------------------------------


class Change(msgspec.Struct, array_like=True, frozen=True, order=True):
    """One applied lifecycle change (no ids beyond the event id for de-duplication)."""

    at_us: int
    event_id: str
    active: bool


class CustomerState(msgspec.Struct, array_like=True, kw_only=True):
    """Everything kept about one customer: changes ordered by (time, event id)."""

    partition: int
    changes: list[Change] = msgspec.field(default_factory=list)
    # The latest (by time, then event id) event that named a segment, as a label.
    segment: str | None = None
    segment_at_us: int = 0
    segment_event_id: str = ""

    def has_event(self, event_id: str) -> bool:
        return any(c.event_id == event_id for c in self.changes)

    def group(self) -> str:
        return self.segment if self.segment is not None else UNKNOWN

    def last_event_us(self) -> int:
        return self.changes[-1].at_us if self.changes else 0


def _transitions(changes: list[Change]) -> list[tuple[int, int]]:
    """(time, value after all changes at that time) where the value changes; starts at 0."""
    result: list[tuple[int, int]] = []
    value = 0
    index = 0
    while index < len(changes):
        at = changes[index].at_us
        while index < len(changes) and changes[index].at_us == at:
            value = int(changes[index].active)
            index += 1
        if value != (result[-1][1] if result else 0):
            result.append((at, value))
    return result


def _value_at(times: list[int], values: list[int], at_us: int) -> int:
    index = bisect_right(times, at_us)
    return values[index - 1] if index else 0


Facts = dict[tuple[str, int], int]  # (series, time µs) -> delta


def customer_facts(
    state: CustomerState, windows: tuple[tuple[str, int], ...], zone: tzinfo
) -> Facts:
    """The customer's deltas per series; ``windows`` are (name, size µs)."""
    transitions = _transitions(state.changes)
    times = [at for at, _ in transitions]
    values = [value for _, value in transitions]
    facts: Facts = {}
    previous = 0
    steps: list[tuple[int, int]] = []
    for at, value in transitions:
        steps.append((at, value - previous))
        facts[(ACTIVE, at)] = value - previous
        previous = value
    for name, size_us in windows:
        if name == TODAY:
            for at, delta in steps:
                if _value_at(times, values, day_start_us(at, zone)):
                    facts[(name, at)] = delta
            continue
        points = sorted({at for at in times} | {at - size_us for at in times})
        level = 0
        for point in points:
            both = _value_at(times, values, point) * _value_at(times, values, point + size_us)
            if both != level:
                facts[(name, point)] = both - level
                level = both
    return facts


def _compact(state: CustomerState, cutoff_us: int) -> bool:
    """Fold the changes at or before ``cutoff_us`` into one; True when nothing is left to keep
    (the customer was inactive at the cutoff and has no later change: retire it)."""
    split = bisect_right([c.at_us for c in state.changes], cutoff_us)
    if split == 0:
        return False
    later = state.changes[split:]
    transitions = _transitions(state.changes[:split])
    active = bool(transitions) and transitions[-1][1] == 1
    if not active and not later:
        return True
    if split > 1:
        last = state.changes[split - 1]
        state.changes = [Change(last.at_us, last.event_id, active), *later]
    return False


def _retire_due(state: CustomerState, horizon_us: int) -> int:
    """When housekeeping should look at the customer again (compact or retire)."""
    changes = state.changes
    if len(changes) >= 2:
        return changes[1].at_us + horizon_us
    if changes and not changes[0].active:
        return changes[0].at_us + horizon_us
    return _NEVER


# -- partial aggregates -----------------------------------------------------------------------


class CustomerSeries(msgspec.Struct, array_like=True):
    """Deltas of one segment in one time bucket: series name -> time µs -> net delta."""

    deltas: dict[str, dict[int, int]] = msgspec.field(default_factory=dict)

    def add(self, series: str, at_us: int, delta: int) -> None:
        by_time = self.deltas.setdefault(series, {})
        total = by_time.get(at_us, 0) + delta
        if total:
            by_time[at_us] = total
        else:
            by_time.pop(at_us, None)
            if not by_time:
                del self.deltas[series]

    def is_empty(self) -> bool:
        return not self.deltas


class CustomerPartial(msgspec.Struct, array_like=True, kw_only=True):
    """The absolute value of one partial (``series`` None: it is empty now).

    ``group`` is a segment label or ``all``. A ``reset`` drops everything stage 2 holds from
    ``source_partition``; the partials that follow it are a complete snapshot.
    """

    group: str
    source_partition: int  # the stage-1 (customer-lifecycle) partition whose customers it sums
    bucket: int
    series: CustomerSeries | None = None
    stream_time_us: int = 0
    reset: bool = False


class CustomerBatch(msgspec.Struct, array_like=True, kw_only=True):
    """One stage-2 message: every changed partial of one source partition (all segments go
    to one stage-2 partition, so one worker sees every segment and can cap the label).

    ``reset``: stage 2 first drops everything it holds from this source; the batches that
    follow, up to the one marked ``complete``, are a full snapshot. ``caught_up``: the source
    partition had (almost) no input lag when it was sent.
    """

    source_partition: int  # the stage-1 partition that sent it
    stream_time_us: int
    partials: list[CustomerPartial]
    reset: bool = False
    complete: bool = True
    caught_up: bool = True


def customer_batches(
    source_partition: int,
    partials: list[CustomerPartial],
    stream_time_us: int,
    *,
    caught_up: bool = True,
    max_partials: int = 1000,
) -> list[CustomerBatch]:
    """Chunk one flush (:meth:`CustomerEngine.flush`) into batches of at most
    ``max_partials``; a reset partial marks the first batch, and the snapshot it starts is
    ``complete`` only with the last chunk. Always at least one batch (it carries the stream
    time and ``caught_up``)."""
    reset = any(p.reset for p in partials)
    mine = [p for p in partials if not p.reset]
    chunks = [mine[i : i + max_partials] for i in range(0, len(mine), max_partials)] or [[]]
    return [
        CustomerBatch(
            source_partition=source_partition,
            stream_time_us=stream_time_us,
            partials=chunk,
            reset=reset and index == 0,
            complete=index == len(chunks) - 1,
            caught_up=caught_up,
        )
        for index, chunk in enumerate(chunks)
    ]


class CustomerTable(Protocol):
    """Where customer states live: a Faust table in the worker, a dict in tests."""

    def get(self, key: str) -> CustomerState | None: ...

    def put(self, key: str, state: CustomerState) -> None: ...

    def delete(self, key: str) -> None: ...

    def states(self) -> Iterable[tuple[str, CustomerState]]: ...


class DictCustomerTable:
    def __init__(self) -> None:
        self.data: dict[str, CustomerState] = {}

    def get(self, key: str) -> CustomerState | None:
        return self.data.get(key)

    def put(self, key: str, state: CustomerState) -> None:
        self.data[key] = state

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def states(self) -> Iterable[tuple[str, CustomerState]]:
        return list(self.data.items())


class CustomerOutcome(Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class CustomerResult:
    outcome: CustomerOutcome
    late: bool = False


def customer_key(event: CustomerLifecycle) -> str:
    """Table key of a customer (the Kafka key of ``customer-lifecycle`` is the customer id)."""
    return event.customer_id


class CustomerEngine:
    """Stage 1 for one ``customer-lifecycle`` partition: state, facts, partials."""

    def __init__(self, partition: int, table: CustomerTable, config: CustomerConfig) -> None:
        self.partition = partition
        self.table = table
        self.config = config
        self.zone = config.zone()
        self.bucket_us = round(config.bucket_seconds * US)
        self.horizon_us = round(config.horizon_seconds * US)
        self.windows = tuple((name, round(size * US)) for name, size in config.windows)
        self.stream_time_us = 0
        self._flushed_stream_time_us = 0
        self.partials: dict[tuple[str, int], CustomerSeries] = {}
        self._dirty: set[tuple[str, int]] = set()
        self._reset_pending = False
        self._buckets: list[int] = []  # heap of buckets with partials
        self._bucket_groups: dict[int, set[str]] = {}
        self._due: list[tuple[int, str]] = []  # heap (due µs, key): compact or retire

    # -- events ---------------------------------------------------------------------------

    def process(self, event: CustomerLifecycle, clock_us: int) -> CustomerResult:
        """Apply one lifecycle event; ``clock_us`` is the engine clock (wall or stream time)."""
        at_us = to_us(event.occurred_at)
        self.stream_time_us = max(self.stream_time_us, at_us)
        late = at_us < clock_us - self.horizon_us
        key = customer_key(event)
        state = self.table.get(key)
        if state is not None:
            state = self._housekeep_state(key, state, clock_us)
        if state is not None and state.has_event(event.event_id):
            return CustomerResult(CustomerOutcome.DUPLICATE, late)
        if state is None:
            state = CustomerState(partition=self.partition)
            before: tuple[str, Facts] = (UNKNOWN, {})
        else:
            before = (state.group(), self._facts(state))
        state.changes.append(Change(at_us, event.event_id, event.change == "activated"))
        state.changes.sort()
        if event.segment is not None and (
            state.segment is None
            or (at_us, event.event_id) > (state.segment_at_us, state.segment_event_id)
        ):
            state.segment = segment_label(event.segment)
            state.segment_at_us, state.segment_event_id = at_us, event.event_id
        self._apply_difference(before, (state.group(), self._facts(state)), clock_us)
        self.table.put(key, state)
        self._schedule(key, state)
        return CustomerResult(CustomerOutcome.APPLIED, late)

    def housekeeping(self, clock_us: int) -> None:
        """Fold expired buckets into the base and compact or retire customers that are due."""
        limit = clock_us - self.horizon_us
        while self._buckets and (self._buckets[0] + 1) * self.bucket_us <= limit:
            bucket = heapq.heappop(self._buckets)
            for group in self._bucket_groups.pop(bucket, set()):
                series = self.partials.pop((group, bucket), None)
                self._dirty.add((group, bucket))
                if series is not None:
                    for name, by_time in series.deltas.items():
                        self._add(group, name, FOLDED_US, sum(by_time.values()), BASE_BUCKET)
        while self._due and self._due[0][0] <= clock_us:
            _, key = heapq.heappop(self._due)
            state = self.table.get(key)
            if state is not None and _retire_due(state, self.horizon_us) <= clock_us:
                self._housekeep_state(key, state, clock_us)

    def _housekeep_state(
        self, key: str, state: CustomerState, clock_us: int
    ) -> CustomerState | None:
        """Compact the customer's changes before the horizon; retire it if nothing is left."""
        if _retire_due(state, self.horizon_us) > clock_us:
            return state  # nothing before the horizon to fold
        cutoff = clock_us - self.horizon_us
        before = (state.group(), self._facts(state))
        kept = len(state.changes)
        if _compact(state, cutoff):
            self._apply_difference(before, (state.group(), {}), clock_us)
            self.table.delete(key)
            return None
        if len(state.changes) != kept:
            self._apply_difference(before, (state.group(), self._facts(state)), clock_us)
            self.table.put(key, state)
        self._schedule(key, state)
        return state

    # -- partials -------------------------------------------------------------------------

    def flush(self) -> list[CustomerPartial]:
        """Absolute values of every partial that changed since the last flush (encode them
        before the engine processes the next event: they are the engine's own objects)."""
        now = self.stream_time_us
        updates: list[CustomerPartial] = []
        if self._reset_pending:
            updates.append(self._heartbeat(now, reset=True))
            self._reset_pending = False
        updates.extend(
            CustomerPartial(
                group=group,
                source_partition=self.partition,
                bucket=bucket,
                series=self.partials.get((group, bucket)),
                stream_time_us=now,
            )
            for group, bucket in sorted(self._dirty)
        )
        if not updates and now > self._flushed_stream_time_us:
            updates.append(self._heartbeat(now))
        self._flushed_stream_time_us = now
        self._dirty.clear()
        return updates

    def _heartbeat(self, now_us: int, *, reset: bool = False) -> CustomerPartial:
        """A partial that carries the stream time (and a reset) but no series."""
        return CustomerPartial(
            group=ALL,
            source_partition=self.partition,
            bucket=HEARTBEAT_BUCKET,
            stream_time_us=now_us,
            reset=reset,
        )

    def rebuild(
        self,
        clock_us: int | None = None,
        states: Iterable[tuple[str, CustomerState]] | None = None,
    ) -> None:
        """Recompute every partial from this partition's customers (after recovery or a
        rebalance); the next flush starts with a reset and carries a complete snapshot."""
        source = self.table.states() if states is None else states
        mine = [(key, state) for key, state in source if state.partition == self.partition]
        for _, state in mine:
            self.stream_time_us = max(self.stream_time_us, state.last_event_us())
        clock = self.stream_time_us if clock_us is None else clock_us
        self.partials.clear()
        self._buckets.clear()
        self._bucket_groups.clear()
        self._due.clear()
        for key, state in mine:
            self._apply_difference((UNKNOWN, {}), (state.group(), self._facts(state)), clock)
            self._schedule(key, state)
        self._dirty = set(self.partials)
        self._reset_pending = True

    def _facts(self, state: CustomerState) -> Facts:
        return customer_facts(state, self.windows, self.zone)

    def _schedule(self, key: str, state: CustomerState) -> None:
        due = _retire_due(state, self.horizon_us)
        if due != _NEVER:
            heapq.heappush(self._due, (due, key))

    def _apply_difference(
        self, before: tuple[str, Facts], after: tuple[str, Facts], clock_us: int
    ) -> None:
        (old_group, old), (new_group, new) = before, after
        expired_before = clock_us - self.horizon_us
        for group, facts, sign in ((old_group, old, -1), (new_group, new, +1)):
            for (series, at_us), delta in facts.items():
                if old_group == new_group and old.get((series, at_us)) == new.get((series, at_us)):
                    continue  # unchanged fact
                bucket = at_us // self.bucket_us
                if (bucket + 1) * self.bucket_us <= expired_before:
                    self._add(group, series, FOLDED_US, sign * delta, BASE_BUCKET)
                    self._add(ALL, series, FOLDED_US, sign * delta, BASE_BUCKET)
                else:
                    self._add(group, series, at_us, sign * delta, bucket)
                    self._add(ALL, series, at_us, sign * delta, bucket)

    def _add(self, group: str, series: str, at_us: int, delta: int, bucket: int) -> None:
        key = (group, bucket)
        partial = self.partials.get(key)
        if partial is None:
            partial = self.partials[key] = CustomerSeries()
            if bucket != BASE_BUCKET:
                groups = self._bucket_groups.get(bucket)
                if groups is None:
                    groups = self._bucket_groups[bucket] = set()
                    heapq.heappush(self._buckets, bucket)
                groups.add(group)
        partial.add(series, at_us, delta)
        if partial.is_empty():
            del self.partials[key]
        self._dirty.add(key)


# -- stage 2: merge partials, read windows at any clock ----------------------------------------


class _Deltas:
    """One merged series of one group: deltas by bucket, with prefix-sum cursors."""

    __slots__ = ("bucket_us", "buckets", "cursors", "totals")

    def __init__(self, bucket_us: int) -> None:
        self.bucket_us = bucket_us
        self.buckets: dict[int, dict[int, int]] = {}
        self.totals: dict[int, int] = {}
        self.cursors: dict[str, list[int]] = {}  # name -> [time µs, sum of deltas <= time]

    def add(self, at_us: int, delta: int) -> None:
        bucket = at_us // self.bucket_us
        by_time = self.buckets.setdefault(bucket, {})
        value = by_time.get(at_us, 0) + delta
        if value:
            by_time[at_us] = value
        else:
            by_time.pop(at_us, None)
        total = self.totals.get(bucket, 0) + delta
        if by_time:
            self.totals[bucket] = total
        else:
            del self.buckets[bucket]
            self.totals.pop(bucket, None)
        for cursor in self.cursors.values():
            if at_us <= cursor[0]:
                cursor[1] += delta

    def prefix(self, name: str, at_us: int) -> int:
        """Sum of deltas at times <= at_us (incremental while the cursor moves forward)."""
        cursor = self.cursors.get(name)
        if cursor is None or at_us < cursor[0]:
            bucket = at_us // self.bucket_us
            total = sum(t for b, t in self.totals.items() if b < bucket)
            total += sum(d for x, d in self.buckets.get(bucket, {}).items() if x <= at_us)
            self.cursors[name] = [at_us, total]
            return total
        start, total = cursor
        first, last = start // self.bucket_us, at_us // self.bucket_us
        if first == last:
            total += sum(d for x, d in self.buckets.get(first, {}).items() if start < x <= at_us)
        else:
            total += sum(d for x, d in self.buckets.get(first, {}).items() if x > start)
            if last - first - 1 <= len(self.totals):
                total += sum(self.totals.get(b, 0) for b in range(first + 1, last))
            else:
                total += sum(t for b, t in self.totals.items() if first < b < last)
            total += sum(d for x, d in self.buckets.get(last, {}).items() if x <= at_us)
        cursor[0], cursor[1] = at_us, total
        return total


class _Group:
    def __init__(self) -> None:
        self.parts: dict[tuple[int, int], CustomerSeries] = {}  # (partition, bucket)
        self.series: dict[str, _Deltas] = {}


@dataclass(frozen=True)
class CustomerCounts:
    """|S|, |E| and |S ∩ E| of one window (or, for live, E only)."""

    at_start: int
    at_end: int
    retained: int

    def __add__(self, other: CustomerCounts) -> CustomerCounts:
        return CustomerCounts(
            self.at_start + other.at_start,
            self.at_end + other.at_end,
            self.retained + other.retained,
        )

    def values(self) -> dict[str, tuple[float | None, int]]:
        """Every windowed customer KPI as (value, sample size = |S| or |E|)."""
        churned = self.at_start - self.retained
        new = self.at_end - self.retained
        s = self.at_start
        return {
            kpis.CUSTOMERS_ACTIVE_AT_START: (float(s), s),
            kpis.CUSTOMERS_CHURNED: (float(churned), s),
            kpis.CUSTOMERS_NEW: (float(new), self.at_end),
            kpis.CUSTOMER_CHURN_RATIO: (churned / s if s else None, s),
            kpis.CUSTOMER_RETENTION_RATIO: (self.retained / s if s else None, s),
        }


@dataclass(frozen=True)
class CustomerReading:
    key: CustomerKpiKey
    value: float | None
    sample_size: int
    window_start_us: int | None = None  # None for live
    window_end_us: int | None = None


@dataclass
class CustomerKpiMerge:
    """Stage 2: the latest partial per (group, partition, bucket), read at any clock."""

    config: CustomerConfig
    groups: dict[str, _Group] = field(default_factory=dict)
    stream_time_us: int = 0
    # source partition -> (snapshot complete since a reset, source caught up)
    sources: dict[int, tuple[bool, bool]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.zone = self.config.zone()
        self.bucket_us = round(self.config.bucket_seconds * US)
        self.windows = tuple((name, round(size * US)) for name, size in self.config.windows)

    def clear(self) -> None:
        self.groups.clear()
        self.stream_time_us = 0
        self.sources.clear()

    def apply_batch(self, batch: CustomerBatch) -> None:
        """Apply one stage-1 flush (idempotent, like :meth:`apply`)."""
        self.stream_time_us = max(self.stream_time_us, batch.stream_time_us)
        if batch.reset:
            self.reset(batch.source_partition)
        for partial in batch.partials:
            self.apply(partial)
        known = self.sources.get(batch.source_partition)
        if batch.reset:
            self.sources[batch.source_partition] = (batch.complete, batch.caught_up)
        elif known is not None:  # only a snapshot since a reset makes a source complete
            self.sources[batch.source_partition] = (known[0] or batch.complete, batch.caught_up)

    def complete(self, partitions: int) -> bool:
        """Whether every source partition's snapshot has arrived since this merge started,
        and every source said it was caught up at its last flush."""
        return all(self.sources.get(p) == (True, True) for p in range(partitions))

    def apply(self, partial: CustomerPartial) -> None:
        """Take the latest value of one partial (idempotent)."""
        self.stream_time_us = max(self.stream_time_us, partial.stream_time_us)
        if partial.reset:
            self.reset(partial.source_partition)
            return
        if partial.bucket == HEARTBEAT_BUCKET:
            return
        group = self.groups.get(partial.group)
        if group is None:
            if partial.series is None:
                return
            group = self.groups[partial.group] = _Group()
        self._replace(group, (partial.source_partition, partial.bucket), partial.series)
        if not group.parts:
            del self.groups[partial.group]

    def reset(self, source_partition: int) -> None:
        """Forget every partial of one source partition."""
        for name in list(self.groups):
            group = self.groups[name]
            for part in [p for p in group.parts if p[0] == source_partition]:
                self._replace(group, part, None)
            if not group.parts:
                del self.groups[name]

    def _replace(self, group: _Group, part: tuple[int, int], new: CustomerSeries | None) -> None:
        old = group.parts.pop(part, None)
        if new is not None and not new.is_empty():
            group.parts[part] = new
        old_deltas = {} if old is None else old.deltas
        new_deltas = {} if new is None else new.deltas
        for name in old_deltas.keys() | new_deltas.keys():
            before, after = old_deltas.get(name, {}), new_deltas.get(name, {})
            deltas = group.series.get(name)
            if deltas is None:
                deltas = group.series[name] = _Deltas(self.bucket_us)
            for at_us in before.keys() | after.keys():  # only what changed
                change = after.get(at_us, 0) - before.get(at_us, 0)
                if change:
                    deltas.add(at_us, change)

    # -- reading ----------------------------------------------------------------------------

    def window_starts(self, now_us: int) -> list[int]:
        return [
            day_start_us(now_us, self.zone) if name == TODAY else now_us - size
            for name, size in self.windows
        ]

    def counts(self, group_name: str, now_us: int) -> tuple[list[CustomerCounts], int]:
        """Per configured window the counts at clock now_us, and live active customers."""
        group = self.groups.get(group_name)
        if group is None:
            return [CustomerCounts(0, 0, 0) for _ in self.windows], 0

        def prefix(series: str, cursor: str, at_us: int) -> int:
            deltas = group.series.get(series)
            return 0 if deltas is None else deltas.prefix(cursor, at_us)

        active_now = prefix(ACTIVE, "now", now_us)
        result = []
        for (name, _), start in zip(self.windows, self.window_starts(now_us), strict=True):
            at_start = prefix(ACTIVE, name, start)
            if name == TODAY:
                retained = at_start + prefix(name, "now", now_us) - prefix(name, "start", start)
            else:
                retained = prefix(name, "start", start)
            result.append(CustomerCounts(at_start, active_now, retained))
        return result, active_now

    def read(self, now_us: int, max_segments: int | None = None) -> Iterator[CustomerReading]:
        """Every customer KPI of every segment (and ``all``) and window at clock now_us.

        With ``max_segments``, only the largest segments (most customers at the start of the
        longest window plus now) keep their label; the others are summed into ``other``.
        ``unknown`` is reserved and never folded.
        """
        counted = {name: self.counts(name, now_us) for name in self.groups}
        segments = [name for name in counted if name not in (ALL, UNKNOWN)]
        if max_segments is not None and len(segments) > max_segments:
            spans = [TODAY_MAX_SECONDS if n == TODAY else s for n, s in self.config.windows]
            longest = max(range(len(spans)), key=spans.__getitem__)

            def size(name: str) -> tuple[int, str]:
                windows, live = counted[name]
                return (-(windows[longest].at_start + live), name)

            folded = sorted(segments, key=size)[max_segments:]
            other_windows = [CustomerCounts(0, 0, 0) for _ in self.windows]
            other_live = 0
            for name in folded:
                windows, live = counted.pop(name)
                other_windows = [a + b for a, b in zip(other_windows, windows, strict=True)]
                other_live += live
            counted[OTHER] = (other_windows, other_live)
        starts = self.window_starts(now_us)
        for segment, (windows, live) in counted.items():
            for (name, _), start, counts in zip(self.windows, starts, windows, strict=True):
                for kpi, (value, sample) in counts.values().items():
                    key = CustomerKpiKey(kpi, name, segment)
                    yield CustomerReading(key, value, sample, start, now_us)
            key = CustomerKpiKey(kpis.CUSTOMERS_ACTIVE, kpis.LIVE_WINDOW, segment)
            yield CustomerReading(key, float(live), live)

    def values(self, now_us: int) -> dict[CustomerKpiKey, float | None]:
        return {reading.key: reading.value for reading in self.read(now_us)}


__all__ = [
    "BASE_BUCKET",
    "HEARTBEAT_BUCKET",
    "Change",
    "CustomerBatch",
    "CustomerConfig",
    "CustomerCounts",
    "CustomerEngine",
    "CustomerKpiMerge",
    "CustomerOutcome",
    "CustomerPartial",
    "CustomerReading",
    "CustomerResult",
    "CustomerSeries",
    "CustomerState",
    "CustomerTable",
    "DictCustomerTable",
    "customer_batches",
    "customer_facts",
    "customer_key",
]
