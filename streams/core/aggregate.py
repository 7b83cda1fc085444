"""Additive, subtractable KPI aggregates and the KPI formulas over them (SPEC §4).

A :class:`WindowAggregate` holds the sufficient statistics of every windowed KPI for one group
(overall or one dimension value) over some time span: one time bucket of one partition, or the
merge of many buckets and partitions for a whole window. Every field is a count or an integer
sum, so merging and retracting are exact and order-independent.

A :class:`LiveAggregate` holds the live backlog of one group.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping

import msgspec

from streams.core import kpis
from streams.core.sketch import Sketch, add_value, merge_into, quantile_us
from streams.core.units import US


class WindowAggregate(msgspec.Struct, kw_only=True, omit_defaults=True):
    created: int = 0
    solved: int = 0
    escalated: int = 0
    reopened: int = 0
    frt_count: int = 0
    frt_sum_us: int = 0
    frt_sla_met: int = 0
    frt_sketch: Sketch = msgspec.field(default_factory=dict)
    resolution_sum_us: int = 0
    resolution_sketch: Sketch = msgspec.field(default_factory=dict)
    first_resolutions: int = 0
    first_contact_resolutions: int = 0
    # Requester wait of every resolution (sample count: solved) and resolution SLA attainment.
    # Sketches below are None while empty: most partials have none of these samples, and an
    # empty dict per partial would cost 64 bytes each.
    wait_sum_us: int = 0
    wait_sketch: Sketch | None = None
    resolution_sla_met: int = 0
    # Business time (only with calendars; the sample counts are frt_count and solved).
    frt_business_sum_us: int = 0
    frt_business_sketch: Sketch | None = None
    resolution_business_sum_us: int = 0
    resolution_business_sketch: Sketch | None = None
    wait_business_sum_us: int = 0
    wait_business_sketch: Sketch | None = None
    csat_count: int = 0
    csat_sum: int = 0
    csat_satisfied: int = 0
    nps_count: int = 0
    nps_promoters: int = 0
    nps_detractors: int = 0
    enps_count: int = 0
    enps_promoters: int = 0
    enps_detractors: int = 0

    def merge(self, other: WindowAggregate, sign: int = 1) -> None:
        """self += sign * other."""
        for name in _SCALAR_FIELDS:
            setattr(self, name, getattr(self, name) + sign * getattr(other, name))
        merge_into(self.frt_sketch, other.frt_sketch, sign)
        merge_into(self.resolution_sketch, other.resolution_sketch, sign)
        for name in _OPTIONAL_SKETCHES:
            theirs = getattr(other, name)
            if theirs:
                mine = getattr(self, name)
                if mine is None:
                    mine = {}
                merge_into(mine, theirs, sign)
                setattr(self, name, mine or None)

    def is_empty(self) -> bool:
        return not any(getattr(self, name) for name in _SCALAR_FIELDS)

    def copy(self) -> WindowAggregate:
        clone = WindowAggregate()
        clone.merge(self)
        return clone

    # -- recording single measurements (sign = +1 add, -1 retract) --------------------------

    def add_first_response(
        self, value_us: int, sla_met: bool, sign: int, business_us: int | None = None
    ) -> None:
        self.frt_count += sign
        self.frt_sum_us += sign * value_us
        self.frt_sla_met += sign * int(sla_met)
        add_value(self.frt_sketch, value_us, sign)
        if business_us is not None:
            self.frt_business_sum_us += sign * business_us
            self.frt_business_sketch = _added(self.frt_business_sketch, business_us, sign)

    def add_resolution(
        self,
        value_us: int,
        first_contact: bool | None,
        sign: int,
        *,
        wait_us: int = 0,
        sla_met: bool = False,
        business_us: int | None = None,
        wait_business_us: int | None = None,
    ) -> None:
        self.solved += sign
        self.resolution_sum_us += sign * value_us
        add_value(self.resolution_sketch, value_us, sign)
        if first_contact is not None:
            self.first_resolutions += sign
            self.first_contact_resolutions += sign * int(first_contact)
        self.wait_sum_us += sign * wait_us
        self.wait_sketch = _added(self.wait_sketch, wait_us, sign)
        self.resolution_sla_met += sign * int(sla_met)
        if business_us is not None:
            self.resolution_business_sum_us += sign * business_us
            self.resolution_business_sketch = _added(
                self.resolution_business_sketch, business_us, sign
            )
        if wait_business_us is not None:
            self.wait_business_sum_us += sign * wait_business_us
            self.wait_business_sketch = _added(self.wait_business_sketch, wait_business_us, sign)

    def add_survey(self, kind: str, score: int, sign: int) -> None:
        if kind == "csat":
            self.csat_count += sign
            self.csat_sum += sign * score
            self.csat_satisfied += sign * int(score >= 4)
        elif kind == "nps":
            self.nps_count += sign
            self.nps_promoters += sign * int(score >= 9)
            self.nps_detractors += sign * int(score <= 6)
        else:
            self.enps_count += sign
            self.enps_promoters += sign * int(score >= 9)
            self.enps_detractors += sign * int(score <= 6)

    # -- KPI formulas ----------------------------------------------------------------------

    def values(self, business: bool = False) -> dict[str, tuple[float | None, int]]:
        """Every windowed KPI as (value, sample size); value None when it has no sample.

        ``business``: calendars are configured, so the business-time KPIs are reported too.
        """
        values = {
            kpis.TICKETS_CREATED: (float(self.created), self.created),
            kpis.TICKETS_SOLVED: (float(self.solved), self.solved),
            kpis.TICKETS_ESCALATED: (float(self.escalated), self.escalated),
            kpis.TICKETS_REOPENED: (float(self.reopened), self.reopened),
            kpis.ESCALATION_RATIO: (_ratio(self.escalated, self.created), self.created),
            kpis.FIRST_RESPONSE_P50: (_seconds(quantile_us(self.frt_sketch, 1, 2)), self.frt_count),
            kpis.FIRST_RESPONSE_P90: (
                _seconds(quantile_us(self.frt_sketch, 9, 10)),
                self.frt_count,
            ),
            kpis.FIRST_RESPONSE_MEAN: (
                _mean_seconds(self.frt_sum_us, self.frt_count),
                self.frt_count,
            ),
            kpis.FIRST_RESPONSES: (float(self.frt_count), self.frt_count),
            kpis.FIRST_RESPONSE_SLA_ATTAINMENT: (
                _ratio(self.frt_sla_met, self.frt_count),
                self.frt_count,
            ),
            kpis.RESOLUTION_P50: (
                _seconds(quantile_us(self.resolution_sketch, 1, 2)),
                self.solved,
            ),
            kpis.RESOLUTION_P90: (
                _seconds(quantile_us(self.resolution_sketch, 9, 10)),
                self.solved,
            ),
            kpis.RESOLUTION_MEAN: (
                _mean_seconds(self.resolution_sum_us, self.solved),
                self.solved,
            ),
            kpis.FIRST_CONTACT_RESOLUTION: (
                _ratio(self.first_contact_resolutions, self.first_resolutions),
                self.first_resolutions,
            ),
            kpis.CSAT_SATISFIED: (_ratio(self.csat_satisfied, self.csat_count), self.csat_count),
            kpis.CSAT_MEAN: (_ratio(self.csat_sum, self.csat_count), self.csat_count),
            kpis.CSAT_RESPONSES: (float(self.csat_count), self.csat_count),
            kpis.NPS_SCORE: (
                _net_score(self.nps_promoters, self.nps_detractors, self.nps_count),
                self.nps_count,
            ),
            kpis.NPS_RESPONSES: (float(self.nps_count), self.nps_count),
            kpis.ENPS_SCORE: (
                _net_score(self.enps_promoters, self.enps_detractors, self.enps_count),
                self.enps_count,
            ),
            kpis.ENPS_RESPONSES: (float(self.enps_count), self.enps_count),
        }
        names = (kpis.REQUESTER_WAIT_P50, kpis.REQUESTER_WAIT_P90, kpis.REQUESTER_WAIT_MEAN)
        values.update(_durations(names, self.wait_sketch, self.wait_sum_us, self.solved))
        values[kpis.RESOLUTION_SLA_ATTAINMENT] = (
            _ratio(self.resolution_sla_met, self.solved),
            self.solved,
        )
        if business:
            for names, sketch, sum_us, count in (
                (_FRT_BUSINESS, self.frt_business_sketch, self.frt_business_sum_us, self.frt_count),
                (
                    _RESOLUTION_BUSINESS,
                    self.resolution_business_sketch,
                    self.resolution_business_sum_us,
                    self.solved,
                ),
                (_WAIT_BUSINESS, self.wait_business_sketch, self.wait_business_sum_us, self.solved),
            ):
                values.update(_durations(names, sketch, sum_us, count))
        return values


_Names = tuple[str, str, str]  # p50, p90, mean
_FRT_BUSINESS: _Names = (
    kpis.FIRST_RESPONSE_BUSINESS_P50,
    kpis.FIRST_RESPONSE_BUSINESS_P90,
    kpis.FIRST_RESPONSE_BUSINESS_MEAN,
)
_RESOLUTION_BUSINESS: _Names = (
    kpis.RESOLUTION_BUSINESS_P50,
    kpis.RESOLUTION_BUSINESS_P90,
    kpis.RESOLUTION_BUSINESS_MEAN,
)
_WAIT_BUSINESS: _Names = (
    kpis.REQUESTER_WAIT_BUSINESS_P50,
    kpis.REQUESTER_WAIT_BUSINESS_P90,
    kpis.REQUESTER_WAIT_BUSINESS_MEAN,
)


def _durations(
    names: _Names, sketch: Sketch | None, sum_us: int, count: int
) -> dict[str, tuple[float | None, int]]:
    """p50, p90 and mean (seconds) of one duration's sketch and sum."""
    p50, p90, mean = names
    sketch = sketch or {}
    return {
        p50: (_seconds(quantile_us(sketch, 1, 2)), count),
        p90: (_seconds(quantile_us(sketch, 9, 10)), count),
        mean: (_mean_seconds(sum_us, count), count),
    }


_SCALAR_FIELDS: tuple[str, ...] = tuple(
    name for name in WindowAggregate.__struct_fields__ if not name.endswith("_sketch")
)
_OPTIONAL_SKETCHES: tuple[str, ...] = (
    "wait_sketch",
    "frt_business_sketch",
    "resolution_business_sketch",
    "wait_business_sketch",
)


def _added(sketch: Sketch | None, value_us: int, sign: int) -> Sketch | None:
    """``sketch`` with one value added or removed; None when it is empty."""
    if sketch is None:
        sketch = {}
    add_value(sketch, value_us, sign)
    return sketch or None


class LiveAggregate(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Live backlog of one group: open and unanswered tickets.

    ``unanswered`` maps priority -> the creation times (µs) of the unanswered tickets, sorted,
    packed as 8-byte integers (``array('q')`` bytes): what the oldest age and the past-SLA count
    need at any later clock, at 8 bytes per ticket instead of a Python dict entry. A priority
    whose first-response target is on the business clock has no fixed offset from creation to
    deadline (it depends on the calendars of the teams holding the ticket), so ``deadlines``
    holds, packed and sorted the same way, the instant after which each of those tickets is
    past its target (stage 1 finds it, :meth:`streams.core.clocks.TicketClock.deadline_us`).
    Without business clocks ``deadlines`` stays empty: no cost.
    """

    open: int = 0
    unanswered: dict[str, bytes] = msgspec.field(default_factory=dict)
    deadlines: bytes = b""

    def add(
        self,
        is_open: bool,
        unanswered_priority: str | None,
        created_us: int,
        sign: int,
        deadline_us: int | None = None,
    ) -> None:
        """One ticket in (sign +1) or out (-1); an unanswered one on a business-clock
        first-response target with its deadline."""
        self.open += sign * int(is_open)
        if unanswered_priority is not None:
            times = self.times(unanswered_priority)
            _change(times, created_us, sign)
            self._store(unanswered_priority, times)
            if deadline_us is not None:
                deadlines = _unpack(self.deadlines)
                _change(deadlines, deadline_us, sign)
                self.deadlines = deadlines.tobytes()

    @classmethod
    def of(cls, tickets: Iterable[tuple[str | None, int, int | None]]) -> LiveAggregate:
        """The backlog of open ``tickets``, each (unanswered priority or None, creation µs,
        business deadline µs or None): the same as :meth:`add` of each, packed once."""
        aggregate = cls()
        times: dict[str, list[int]] = {}
        deadlines: list[int] = []
        for priority, created_us, deadline_us in tickets:
            aggregate.open += 1
            if priority is not None:
                times.setdefault(priority, []).append(created_us)
                if deadline_us is not None:
                    deadlines.append(deadline_us)
        for priority, created in times.items():
            aggregate.unanswered[priority] = array("q", sorted(created)).tobytes()
        if deadlines:
            aggregate.deadlines = array("q", sorted(deadlines)).tobytes()
        return aggregate

    def times(self, priority: str) -> array[int]:
        """The sorted creation times of one priority's unanswered tickets (a copy)."""
        return _unpack(self.unanswered.get(priority, b""))

    def _store(self, priority: str, times: array[int]) -> None:
        if times:
            self.unanswered[priority] = times.tobytes()
        else:
            self.unanswered.pop(priority, None)

    def merge(self, other: LiveAggregate, sign: int = 1) -> None:
        self.open += sign * other.open
        for priority in other.unanswered:
            times = self.times(priority)
            for created_us in other.times(priority):
                _change(times, created_us, sign)
            self._store(priority, times)
        if other.deadlines:
            deadlines = _unpack(self.deadlines)
            for deadline_us in _unpack(other.deadlines):
                _change(deadlines, deadline_us, sign)
            self.deadlines = deadlines.tobytes()

    def is_empty(self) -> bool:
        return self.open == 0 and not self.unanswered

    def values(
        self, now_us: int, sla_targets_us: Mapping[str, int]
    ) -> dict[str, tuple[float | None, int]]:
        return live_values([self], now_us, sla_targets_us)


def _unpack(packed: bytes) -> array[int]:
    values = array("q")
    values.frombytes(packed)
    return values


def _change(values: array[int], value: int, sign: int) -> None:
    """Insert (sign > 0) or remove one occurrence of ``value`` in a sorted array."""
    if sign > 0:
        insort(values, value)
    else:
        index = bisect_left(values, value)
        if index < len(values) and values[index] == value:
            del values[index]


def live_values(
    parts: Iterable[LiveAggregate], now_us: int, sla_targets_us: Mapping[str, int]
) -> dict[str, tuple[float | None, int]]:
    """The live KPIs of the sum of ``parts`` (without merging them: O(log n) per part).

    ``sla_targets_us``: the first-response targets on the calendar clock (past the target:
    created before ``now - target``); the other priorities' tickets are past the target after
    their ``deadlines``.
    """
    open_count = 0
    unanswered = 0
    past_sla = 0
    oldest_us: int | None = None
    for part in parts:
        open_count += part.open
        for priority in part.unanswered:
            times = part.times(priority)
            unanswered += len(times)
            target = sla_targets_us.get(priority)
            if target is not None:
                past_sla += bisect_left(times, now_us - target)
            if oldest_us is None or times[0] < oldest_us:
                oldest_us = times[0]
        if part.deadlines:
            # Past the target: strictly after the deadline.
            past_sla += bisect_left(_unpack(part.deadlines), now_us)
    oldest_age = 0.0 if oldest_us is None else max(0, now_us - oldest_us) / US
    return {
        kpis.OPEN_TICKETS: (float(open_count), open_count),
        kpis.UNANSWERED_TICKETS: (float(unanswered), unanswered),
        kpis.OLDEST_UNANSWERED_AGE: (oldest_age, unanswered),
        kpis.UNANSWERED_PAST_SLA: (float(past_sla), unanswered),
    }


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _mean_seconds(sum_us: int, count: int) -> float | None:
    return sum_us / count / US if count else None


def _seconds(value_us: float | None) -> float | None:
    return None if value_us is None else value_us / US


def _net_score(promoters: int, detractors: int, count: int) -> float | None:
    return (promoters - detractors) / count * 100.0 if count else None
