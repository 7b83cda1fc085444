"""Stage 2: merge partial aggregates from every source partition into rolling-window KPIs.

:class:`KpiMerge` keeps the latest partial per (group, source partition, bucket) — applying the same
update twice changes nothing — and, per group, the merge over partitions per bucket. Rolling
windows are maintained incrementally: a running total per (group, window) that buckets enter as
the clock reaches them and leave as it passes them, so reading a KPI costs the same whatever
the window size, and values decay when no events arrive.

Window alignment (SPEC §3): at clock ``now``, with bucket size B, a window of size S covers
[end - S, end) where end = (floor(now / B) + 1) * B, i.e. it always includes the current bucket.
The calendar-day window ``today`` covers [local midnight, end) instead (midnight in
``EngineConfig.time_zone``, :func:`streams.core.today.day_start_us`; settings keep it on the
bucket grid): its start stays put all day and jumps to the next midnight, so it resets then.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from streams.core import kpis
from streams.core.aggregate import LiveAggregate, WindowAggregate, live_values
from streams.core.kpis import ALL, OTHER, UNKNOWN, EngineConfig, KpiKey
from streams.core.packed import PackedAggregates
from streams.core.partials import Group, PartialBatch, PartialUpdate, dimension_of
from streams.core.sla import sla_policies
from streams.core.today import day_start_us, is_today, time_zone
from streams.core.units import US


@dataclass(frozen=True)
class KpiReading:
    key: KpiKey
    value: float | None
    sample_size: int
    window_start_us: int | None = None  # None for live KPIs
    window_end_us: int | None = None


class _Window:
    """Running total of one group's buckets in [lo, hi] (inclusive bucket numbers)."""

    __slots__ = ("hi", "lo", "total")

    def __init__(self) -> None:
        self.lo = 0
        self.hi = -1
        self.total = WindowAggregate()


class _GroupState:
    """One group's partials and windows; partials packed (:mod:`streams.core.packed`)."""

    def __init__(self, window_count: int) -> None:
        # part (source partition, bucket: _part) -> partial
        self.parts: PackedAggregates[int, WindowAggregate] = PackedAggregates(WindowAggregate)
        # bucket -> merged over source partitions
        self.buckets: PackedAggregates[int, WindowAggregate] = PackedAggregates(WindowAggregate)
        self.windows = [_Window() for _ in range(window_count)]
        # part (source partition, creation bucket) -> live partial; read without merging
        # (live_values)
        self.live_parts: PackedAggregates[int, LiveAggregate] = PackedAggregates(LiveAggregate)

    def is_empty(self) -> bool:
        return not self.parts and not self.live_parts


class KpiMerge:
    """The merged KPIs of the dimensions one stage-2 partition receives."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.bucket_us = round(config.bucket_seconds * US)
        self.window_buckets = [round(size * US) // self.bucket_us for _, size in config.windows]
        # ``today`` is a calendar day, not a rolling window of its (26 h) size.
        self.calendar_day = [is_today(name) for name, _ in config.windows]
        self.zone = time_zone(config.time_zone)
        self.business = config.calendars is not None
        # First-response targets on the calendar clock: deadline = creation + target (the
        # business-clock ones come with each ticket's deadline, LiveAggregate.deadlines).
        self.sla_us = {
            priority: target.target_us
            for priority, target in sla_policies(config).first_response.targets.items()
            if target.clock == "calendar" or not self.business
        }
        self.groups: dict[Group, _GroupState] = {}
        self.stream_time_us = 0
        # (dimension, source partition) -> (snapshot complete since a reset, source caught up)
        self.sources: dict[tuple[str, int], tuple[bool, bool]] = {}

    def clear(self) -> None:
        self.groups.clear()
        self.stream_time_us = 0
        self.sources.clear()

    def apply_batch(self, batch: PartialBatch) -> None:
        """Apply one stage-1 flush for one dimension (idempotent, like :meth:`apply`)."""
        self.stream_time_us = max(self.stream_time_us, batch.stream_time_us)
        source = (batch.dimension, batch.source_partition)
        if batch.reset:
            self.reset(batch.source_partition, batch.dimension)
        for update in batch.updates:
            self.apply(update)
        known = self.sources.get(source)
        if batch.reset:
            self.sources[source] = (batch.complete, batch.caught_up)
        elif known is not None:  # only a snapshot since a reset makes a source complete
            self.sources[source] = (known[0] or batch.complete, batch.caught_up)

    def complete(self, dimensions: Iterable[str], partitions: int) -> bool:
        """Whether every source partition's snapshot of every dimension has arrived since
        this merge started, and every source said it was caught up at its last flush."""
        return all(
            self.sources.get((dimension, source)) == (True, True)
            for dimension in dimensions
            for source in range(partitions)
        )

    def apply(self, update: PartialUpdate) -> None:
        """Take the latest value of one partial (idempotent)."""
        self.stream_time_us = max(self.stream_time_us, update.stream_time_us)
        if update.reset:
            self.reset(update.source_partition, dimension_of(update.group))
            return
        state = self.groups.get(update.group)
        if state is None:
            if update.window is None and update.live is None:
                return
            state = self.groups[update.group] = _GroupState(len(self.window_buckets))
        if update.is_live:
            state.live_parts.put(_part(update.source_partition, update.bucket), update.live)
        else:
            self._apply_window(state, update.source_partition, update.bucket, update.window)
        if state.is_empty():
            del self.groups[update.group]

    def reset(self, source_partition: int, dimension: str) -> None:
        """Forget every partial of one source partition for the groups of one dimension."""
        for group in [g for g in self.groups if dimension_of(g) == dimension]:
            state = self.groups[group]
            for part in [k for k in state.parts if k & _PARTITION_MASK == source_partition]:
                self._apply_window(state, source_partition, part >> _PARTITION_BITS, None)
            for part in [k for k in state.live_parts if k & _PARTITION_MASK == source_partition]:
                state.live_parts.put(part, None)
            if state.is_empty():
                del self.groups[group]

    def _apply_window(
        self, state: _GroupState, partition: int, bucket: int, partial: WindowAggregate | None
    ) -> None:
        part = _part(partition, bucket)
        old = state.parts.pop(part)
        if partial is not None and partial.is_empty():
            partial = None
        if old is None and partial is None:
            return
        merged = state.buckets.get(bucket)
        if merged is None:
            merged = WindowAggregate()
        for window in state.windows:
            if window.lo <= bucket <= window.hi:
                if old is not None:
                    window.total.merge(old, -1)
                if partial is not None:
                    window.total.merge(partial, +1)
        if old is not None:
            merged.merge(old, -1)
        if partial is not None:
            state.parts.put(part, partial)
            merged.merge(partial, +1)
        state.buckets.put(bucket, merged)  # (removed when empty)

    # -- reading ----------------------------------------------------------------------------

    def window_bounds(self, now_us: int) -> list[tuple[int, int]]:
        """(start µs, end µs) of every configured window at clock now_us."""
        end_bucket = now_us // self.bucket_us + 1
        return [
            (first * self.bucket_us, end_bucket * self.bucket_us)
            for first in self._first_buckets(now_us)
        ]

    def _first_buckets(self, now_us: int) -> list[int]:
        """First bucket of every configured window at clock now_us (the last is the current)."""
        end_bucket = now_us // self.bucket_us + 1
        midnight: int | None = None
        firsts = []
        for size, calendar_day in zip(self.window_buckets, self.calendar_day, strict=True):
            if calendar_day:
                if midnight is None:
                    # First bucket starting at or after local midnight (settings keep midnight
                    # on the grid; were it not, yesterday's part of a bucket must not count).
                    midnight = -(-day_start_us(now_us, self.zone) // self.bucket_us)
                firsts.append(midnight)
            else:
                firsts.append(end_bucket - size)
        return firsts

    def read(self, now_us: int, max_teams: int | None = None) -> Iterator[KpiReading]:
        """Every KPI of every group and window at clock now_us.

        With ``max_teams``, only the busiest teams (most tickets and surveys in the longest
        rolling window, ties by name) keep their own label; the others are merged into ``other``.
        ``today`` is not used for that (unless it is the only window): it restarts at midnight
        and would reshuffle the teams then.
        """
        end_bucket = now_us // self.bucket_us + 1
        firsts = self._first_buckets(now_us)
        for state in self.groups.values():
            for first, window in zip(firsts, state.windows, strict=True):
                self._slide(state, window, first, end_bucket - 1)
        groups = self._capped_groups(max_teams)
        bounds = [(first * self.bucket_us, end_bucket * self.bucket_us) for first in firsts]
        for group, (totals, live) in groups.items():
            yield from self._readings(group, totals, live, bounds, now_us)

    def _capped_groups(
        self, max_teams: int | None
    ) -> dict[Group, tuple[list[WindowAggregate], list[LiveAggregate] | None]]:
        result: dict[Group, tuple[list[WindowAggregate], list[LiveAggregate] | None]] = {}
        # "unknown" (surveys without a team) is a reserved value, not a team: never folded.
        teams = [g for g in self.groups if g[0] not in (ALL, UNKNOWN)]
        folded: set[Group] = set()
        if max_teams is not None and len(teams) > max_teams:
            longest = max(
                range(len(self.window_buckets)),
                key=lambda i: (not self.calendar_day[i], self.window_buckets[i]),
            )

            def volume(group: Group) -> tuple[int, str]:
                total = self.groups[group].windows[longest].total
                busy = total.created + total.csat_count + total.nps_count + total.enps_count
                return (-busy, group[0])

            folded = set(sorted(teams, key=volume)[max_teams:])
        for group, state in self.groups.items():
            if group not in folded:
                live = list(state.live_parts.values()) if state.live_parts else None
                result[group] = ([w.total for w in state.windows], live)
        if folded:
            other_totals = [WindowAggregate() for _ in self.window_buckets]
            other_live: list[LiveAggregate] = []
            for group in folded:
                state = self.groups[group]
                for total, window in zip(other_totals, state.windows, strict=True):
                    total.merge(window.total)
                other_live.extend(state.live_parts.values())
            live_or_none = other_live or None
            result[(OTHER, ALL, ALL)] = (other_totals, live_or_none)
        return result

    def _readings(
        self,
        group: Group,
        totals: list[WindowAggregate],
        live: list[LiveAggregate] | None,
        bounds: list[tuple[int, int]],
        now_us: int,
    ) -> Iterator[KpiReading]:
        team_only_ok = group[1] == ALL and group[2] == ALL
        for (name, _), (start_us, end_us), total in zip(
            self.config.windows, bounds, totals, strict=True
        ):
            for kpi, (value, sample) in total.values(self.business).items():
                if kpi in kpis.TEAM_ONLY_KPIS and not team_only_ok:
                    continue
                yield KpiReading(KpiKey(kpi, name, *group), value, sample, start_us, end_us)
        if live is not None:
            for kpi, (value, sample) in live_values(live, now_us, self.sla_us).items():
                yield KpiReading(KpiKey(kpi, kpis.LIVE_WINDOW, *group), value, sample)

    def values(self, now_us: int) -> kpis.KpiValues:
        return {reading.key: reading.value for reading in self.read(now_us)}

    @staticmethod
    def _slide(state: _GroupState, window: _Window, lo: int, hi: int) -> None:
        """Move the window's running total to cover buckets [lo, hi]."""
        if lo > window.hi:
            # Past the whole window (``today`` at midnight, a long pause): none of it remains.
            window.total = WindowAggregate()
            for bucket in _buckets_between(state, lo, hi):
                window.total.merge(_bucket(state, bucket), +1)
        elif lo < window.lo or hi < window.hi:
            # Clock went backwards: recompute from the buckets.
            window.total = WindowAggregate()
            for bucket, aggregate in state.buckets.items():
                if lo <= bucket <= hi:
                    window.total.merge(aggregate, +1)
        else:
            for bucket in _buckets_between(state, window.lo, lo - 1):
                window.total.merge(_bucket(state, bucket), -1)
            for bucket in _buckets_between(state, window.hi + 1, hi):
                window.total.merge(_bucket(state, bucket), +1)
        window.lo, window.hi = lo, hi


# A part, (source partition, bucket), is one int: bucket << _PARTITION_BITS | partition. An int
# key is 32 bytes; a tuple of two, 96 (its own and the bucket's), and there are about two parts
# per open ticket (streams.core.packed).
_PARTITION_BITS = 16
_PARTITION_MASK = (1 << _PARTITION_BITS) - 1


def _part(partition: int, bucket: int) -> int:
    assert 0 <= partition <= _PARTITION_MASK
    return bucket << _PARTITION_BITS | partition


def _bucket(state: _GroupState, bucket: int) -> WindowAggregate:
    merged = state.buckets.get(bucket)
    assert merged is not None  # (only buckets that have one are asked for)
    return merged


def _buckets_between(state: _GroupState, first: int, last: int) -> list[int]:
    if last < first:
        return []
    if last - first + 1 <= len(state.buckets):
        return [b for b in range(first, last + 1) if b in state.buckets]
    return [b for b in state.buckets if first <= b <= last]
