"""The cumulative series' input: facts counted once, when first derived (SPEC §5).

- Over any delivery order (shuffled across and within tickets, duplicates, late events,
  orphans, events before their ticket's creation, second creations) the engine reports each
  creation, resolution and first response exactly once per priority: the totals equal the
  brute-force reference's measurements over the whole stream.
- In event-time order the SLA verdicts and the creations' teams agree too.
- Events re-delivered after a rebuild from a changelog that had not received their state
  are not counted again in the same process; the memory of counted facts is bounded.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from reference import Total, reference_totals
from strategies import Builder, Scenario, scenarios
from test_differential import decoded

from streams.core.aggregate import US
from streams.core.firsts import FirstDerivations, newly_derived
from streams.core.kpis import EngineConfig
from streams.core.labels import team_label
from streams.core.partition import DictTicketStore, PartitionEngine
from streams.core.replay import partition_for
from streams.core.ticket import Dims, Fact, to_us
from streams.events import Event, routing_key

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SERIES = {"created": "tickets_created", "resolved": "tickets_solved"}


def engine_totals(
    events: Sequence[Event], config: EngineConfig, partitions: int = 1
) -> tuple[Counter[Total], list[Fact]]:
    """What the engines derive for the first time, as the cumulative series count it."""
    store = DictTicketStore()
    firsts = FirstDerivations()
    engines = [PartitionEngine(p, store, config, firsts) for p in range(partitions)]
    totals: Counter[Total] = Counter()
    derived: list[Fact] = []
    for event in events:
        engine = engines[partition_for(routing_key(event), partitions)]
        result = engine.process(event, max(engine.stream_time_us, to_us(event.occurred_at)))
        derived.extend(result.derived)
    for fact in derived:
        series = SERIES.get(fact.kind, "first_responses")
        totals[(series, fact.dims.team, fact.dims.priority)] += 1
        if fact.kind == "first_response" and fact.flag:
            totals[("first_responses_within_sla", fact.dims.team, fact.dims.priority)] += 1
    return totals, derived


def by_priority(totals: Counter[Total], *, verdicts: bool = False) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for (series, _team, priority), n in totals.items():
        if verdicts or series != "first_responses_within_sla":
            out[(series, priority)] += n
    return out


def created_by_team(totals: Counter[Total]) -> Counter[str]:
    out: Counter[str] = Counter()
    for (series, team, _priority), n in totals.items():
        if series == "tickets_created":
            out[team_label(team)] += n
    return out


@SETTINGS
@given(scenarios(delivery="any"))
def test_each_fact_counted_once_in_any_delivery_order(scenario: Scenario) -> None:
    events = decoded(scenario)
    actual, _ = engine_totals(events, scenario.config, partitions=2)
    expected = reference_totals(events, scenario.config)
    assert by_priority(actual) == by_priority(expected)


@SETTINGS
@given(scenarios(delivery="ordered"))
def test_in_order_delivery_counts_sla_verdicts_and_teams_as_the_reference(
    scenario: Scenario,
) -> None:
    """In event-time order a first response is final when derived, so the SLA verdicts
    agree as well; a creation's team never changes. (A later fact's team can: an escalation
    with the same timestamp as a resolution sorts before it, whatever the arrival order.)"""
    events = decoded(scenario)
    actual, _ = engine_totals(events, scenario.config)
    expected = reference_totals(events, scenario.config)
    assert by_priority(actual, verdicts=True) == by_priority(expected, verdicts=True)
    assert created_by_team(actual) == created_by_team(expected)


def test_counting_needs_no_windows_and_reports_the_latest_values() -> None:
    dims = Dims("billing", "email", "high")
    created = Fact("created", 0, dims)
    first = Fact("first_response", 60 * US, dims, 60 * US, True)
    earlier = Fact("first_response", 30 * US, dims, 30 * US, True)
    solved = Fact("resolved", 90 * US, dims, 90 * US, True)
    again = Fact("resolved", 200 * US, dims, 200 * US, None)
    assert newly_derived("t", [], [created]) == [created]
    assert newly_derived("t", [created], [created, first]) == [first]
    # An earlier reply moves the first response: the same fact, not a new one.
    assert newly_derived("t", [created, first], [created, earlier]) == []
    assert newly_derived("t", [created, first], [created, first, solved]) == [solved]
    assert newly_derived("t", [created, solved], [created, solved, again]) == [again]
    # Reopens, escalations and surveys are not counted.
    reopened = Fact("reopened", 100 * US, dims)
    assert newly_derived("t", [created], [created, reopened]) == []


def test_a_memory_counts_each_identity_once_and_forgets_the_oldest() -> None:
    memory = FirstDerivations(capacity=3)
    assert memory.first("a", "created", 0)
    assert not memory.first("a", "created", 0)
    assert memory.first("a", "resolved", 0)
    assert memory.first("a", "resolved", 1)
    assert memory.first("b", "created", 0)  # the 4th: ("a", "created", 0) is forgotten
    assert len(memory) == 3
    assert memory.first("a", "created", 0)
    assert not memory.first("b", "created", 0)
    with pytest.raises(ValueError, match="positive"):
        FirstDerivations(capacity=0)


def test_redelivery_after_a_rebuild_from_a_lagging_changelog_counts_nothing_twice() -> None:
    config = EngineConfig()
    b = Builder()
    events: list[Event] = [
        b.created("T-1", 0, team="billing", priority="urgent"),
        b.replied("T-1", 60),
        b.created("T-2", 10, team="tech", priority="low", channel="chat"),
        b.status("T-1", 120, "solved"),
        b.replied("T-2", 300),
    ]
    store = DictTicketStore()
    memory = FirstDerivations()
    engine = PartitionEngine(0, store, config, memory)
    clock = to_us(events[-1].occurred_at)
    first_half = events[:3]
    counted = [f for e in first_half for f in engine.process(e, clock).derived]
    assert sorted(f.kind for f in counted) == ["created", "created", "first_response"]
    changelog = copy.deepcopy(store.data)  # what the changelog holds: the first half only
    counted += [f for e in events[3:] for f in engine.process(e, clock).derived]
    assert sorted(f.kind for f in counted) == [
        "created",
        "created",
        "first_response",
        "first_response",
        "resolved",
    ]

    # Recovery in the same process: the table comes back from the lagging changelog, the
    # engine is rebuilt, and the consumer re-delivers everything since the last commit.
    recovered = DictTicketStore()
    recovered.data = copy.deepcopy(changelog)
    rebuilt = PartitionEngine(0, recovered, config, memory)
    rebuilt.rebuild(clock)
    again = [f for e in events for f in rebuilt.process(e, clock).derived]
    assert again == []

    # Without the memory (a new process) the same re-delivery counts the second half again:
    # the memory is what prevents the double count.
    fresh = DictTicketStore()
    fresh.data = copy.deepcopy(changelog)
    forgetful = PartitionEngine(0, fresh, config)
    forgetful.rebuild(clock)
    recount = [f for e in events for f in forgetful.process(e, clock).derived]
    assert sorted(f.kind for f in recount) == ["first_response", "resolved"]
