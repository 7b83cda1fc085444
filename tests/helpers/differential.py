"""The pure core driven like the worker drives it, checked against the reference at many
instants: the machinery of the differential tests (``test_differential.py``,
``test_business_hours.py``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import msgspec
from hypothesis import event as note

from helpers.calendar_oracle import Spec
from helpers.reference import (
    US,
    Counts,
    Reference,
    format_differences,
    strict_differences,
)
from helpers.strategies import Scenario, decoded
from streams.core.attributes import is_record
from streams.core.kpis import EngineConfig, KpiValues
from streams.core.merge import KpiMerge
from streams.core.replay import partition_for
from streams.core.ticket_engine import DictTicketStore, Outcome, TicketEngine
from streams.core.units import to_us
from streams.events import Event, routing_key

CalendarSpecs = tuple[Spec, Mapping[str, Spec]]  # default, per team

_WIRE = msgspec.msgpack.Encoder()


class EngineRun:
    """The pure core driven event by event, as the worker drives it on the stream clock:
    ``process`` then ``housekeeping`` then ``flush`` per event, every partial through the wire
    format into one stage-2 KpiMerge. Health outcomes are counted from the engine's results."""

    def __init__(self, config: EngineConfig, partitions: int = 1) -> None:
        self.partitions = partitions
        self.tickets = DictTicketStore()
        self.engines = [TicketEngine(p, self.tickets, config) for p in range(partitions)]
        self.merge = KpiMerge(config)
        self.counts = Counts()
        # What happened to tickets retired to their attributes (generator coverage).
        self.revived = self.duplicates_of_retired = self.forgotten = 0

    def partition_of(self, event: Event) -> int:
        return partition_for(routing_key(event), self.partitions)

    def feed(self, event: Event, *, flush: bool = True) -> None:
        """Process one event; ``flush=False``: the worker dies before sending its partials."""
        engine = self.engines[self.partition_of(event)]
        clock = max(engine.stream_time_us, to_us(event.occurred_at))
        state = self.tickets.data.get(routing_key(event))
        result = engine.process(event, clock)
        if state is not None and is_record(state):
            self.revived += result.outcome is Outcome.APPLIED
            self.duplicates_of_retired += result.outcome is Outcome.DUPLICATE
        counts = self.counts
        if result.outcome is Outcome.DUPLICATE:
            counts = replace(counts, duplicates=counts.duplicates + 1)
        elif result.outcome is not Outcome.IGNORED:
            counts = replace(
                counts,
                late=counts.late + result.late,
                before_created=counts.before_created + len(result.rejected),
            )
        self.counts = counts
        if flush:
            self._tidy(engine, clock)

    def restart(self, partition: int) -> None:
        """A new engine for the partition (after a crash or a rebalance): rebuilt from the
        ticket store on the old clock; its reset and snapshot go to the same stage 2, which
        still holds the old engine's partials."""
        old = self.engines[partition]
        engine = self.engines[partition] = TicketEngine(partition, self.tickets, old.config)
        engine.rebuild(old.stream_time_us)
        engine.stream_time_us = old.stream_time_us  # the committed stream time survives
        self._tidy(engine, old.stream_time_us)

    def housekeeping(self, clock: int) -> None:
        """A timer on a clock beyond the stream (as the wall clock moves on)."""
        for engine in self.engines:
            self._tidy(engine, clock)

    def _tidy(self, engine: TicketEngine, clock: int) -> None:
        records = {key for key, state in self.tickets.data.items() if is_record(state)}
        orphans = engine.housekeeping(clock)
        self.forgotten += len(records - set(self.tickets.data))
        self.counts = replace(self.counts, orphans=self.counts.orphans + len(orphans))
        for update in engine.flush():
            self.merge.apply(msgspec.msgpack.decode(_WIRE.encode(update), type=type(update)))

    def values(self, now: int) -> KpiValues:
        return self.merge.values(now)


def assert_same(actual: KpiValues, expected: KpiValues, context: str) -> None:
    diffs = strict_differences(actual, expected)
    if diffs:
        raise AssertionError(f"{format_differences(diffs)}\n{context}")


def describe(events: Sequence[Event], scenario: Scenario, now: int, step: str) -> str:
    return (
        f"{step}: {len(events)} accepted of {len(scenario.arrivals)} arrivals, now={now / US}, "
        f"config={scenario.config}, injected={scenario.notes}"
    )


def _checkpoints(n: int) -> list[int]:
    """Arrival counts after which the KPIs are read: eight points through the stream."""
    return sorted({max(1, round(n * k / 8)) for k in range(1, 9)})


def _sla_edges(reference: Reference, clock: int) -> list[int]:
    """Instants at or after ``clock`` when an open unanswered ticket reaches its SLA target."""
    _, open_tickets = reference.state()
    sla = reference.rules.sla
    edges = sorted(t.created + sla[t.priority] for t in open_tickets if t.unanswered)
    return [edge for edge in edges if edge >= clock][:2]


Coverage = dict[tuple[str, str], bool]  # (window, measurement kind) -> had a sample


def check_stream(
    scenario: Scenario,
    *,
    partitions: int = 1,
    specs: CalendarSpecs | None = None,
    restarts: bool = False,
) -> Coverage:
    """Engine == reference (every series, every value, health counts) at several instants
    inside the stream, just after it, and after the clock has moved on by up to a horizon.
    ``specs``: the calendars as the reference reads them (else from the config).
    ``restarts``: every partition also restarts (rebuilds from the ticket store, as after a
    kill -9) at each of those instants."""
    events = decoded(scenario)
    run = EngineRun(scenario.config, partitions)
    reference = Reference(scenario.config, run.partition_of, specs)
    rules = reference.rules
    coverage: Coverage = {}
    compared = 0

    def compare(now: int, step: str) -> None:
        nonlocal compared
        context = describe(events, scenario, now, step)
        assert_same(run.values(now), reference.kpis(now), context)
        assert run.counts == reference.counts, f"{run.counts} != {reference.counts}\n{context}"
        # Memory tracks open work: the engine keeps exactly the tickets the reference knows.
        assert set(run.tickets.data) == set(reference.entities), context
        for window, members in reference.in_windows(now).items():
            for m in members:
                coverage[(window, m.kind)] = True
            compared += len(members)

    checkpoints = _checkpoints(len(events))
    for index, event in enumerate(events, start=1):
        # The last event is processed but its partials are lost in a crash (restart below).
        run.feed(event, flush=index < len(events))
        reference.feed(event)
        if index == len(events):
            run.restart(run.partition_of(event))
        if index in checkpoints:
            if restarts:
                for partition in range(partitions):
                    run.restart(partition)
            clock = reference.clock
            assert run.merge.stream_time_us == clock
            compare(clock, f"after {index} arrivals")
            compare(clock + rules.bucket // 2 + 125_000, f"after {index} arrivals, later")
            for edge in _sla_edges(reference, clock):
                compare(edge, f"after {index} arrivals, on an SLA target")
    last = reference.clock
    longest = max(size for _, size in rules.windows)
    for later in (rules.bucket, longest // 2, longest - rules.bucket, longest):
        compare(last + later, f"{later / US} s after the stream")
    # The clock moves on without events (wall clock): buckets expire, tickets retire, held
    # events become orphans.
    for later in (longest, rules.horizon + rules.bucket, rules.horizon + rules.hold):
        run.housekeeping(last + later)
        reference.housekeeping(last + later)
        compare(last + later, f"housekeeping {later / US} s after the stream")
    assert compared, "no read had a windowed sample"
    for window, kind in coverage:
        note(f"sampled {kind} in {window}")
    coverage[("retired", "revived")] = run.revived > 0
    coverage[("retired", "duplicate")] = run.duplicates_of_retired > 0
    coverage[("retired", "forgotten")] = run.forgotten > 0
    return coverage
