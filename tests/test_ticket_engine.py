"""Unit tests of the stage-1 KPI engine (:mod:`streams.core.ticket_engine`), one rule at a time.

Each rule is checked through :func:`streams.core.replay.replay` (the whole core, read as KPI
values) and/or directly on a :class:`TicketEngine` with a :class:`DictTicketStore` and a
:class:`KpiMerge`, where outcomes, held/rejected events, housekeeping, tombstones and the partial
aggregates themselves are visible. Times are seconds after ``strategies.BASE_TIME`` (a whole
minute). The hand-computed cases of ``helpers/reference_cases.py`` are also run through the
engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, get_args

import msgspec
import pytest
from helpers.reference import (
    format_differences,
    reference_counts,
    reference_kpis,
    strict_differences,
)
from helpers.reference_cases import CASES, Case, Implementation, case_id, running_on
from helpers.strategies import Builder, Scenario, at, decoded, generated, scenarios, ts
from hypothesis import given

from streams.core import kpis as K
from streams.core.attributes import (
    CHANNEL_CODES,
    CREATOR_CODES,
    PRIORITY_CODES,
    is_record,
    retire,
    revive,
)
from streams.core.clocks import requester_wait
from streams.core.kpis import ALL, LIVE_WINDOW, UNKNOWN, EngineConfig, KpiKey, KpiValues
from streams.core.merge import KpiMerge
from streams.core.partials import HEARTBEAT_BUCKET, PartialUpdate, dimension_of
from streams.core.replay import partition_for, replay
from streams.core.ticket import Held, TicketState
from streams.core.ticket_engine import (
    DictTicketStore,
    InputRecord,
    Outcome,
    ProcessResult,
    TicketEngine,
)
from streams.core.units import US, to_us
from streams.events import (
    CHANNELS,
    PRIORITIES,
    CreatedBy,
    CustomerLifecycle,
    Event,
    event_time,
    routing_key,
)

B = 60.0  # bucket seconds
CFG = EngineConfig(
    windows=(("5m", 300.0), ("1h", 3600.0)),
    bucket_seconds=B,
    grace_seconds=60.0,
    sla_targets={"urgent": 900.0, "high": 3600.0, "normal": 14400.0, "low": 28800.0},
    orphan_hold_seconds=3600.0,
    retention_seconds=7200.0,
)
HORIZON = CFG.horizon_seconds  # 3660 s

_WIRE = msgspec.msgpack.Encoder()
_PARTIAL = msgspec.msgpack.Decoder(PartialUpdate)


def us(seconds: float) -> int:
    """Engine time (µs since the epoch) of ``seconds`` after BASE_TIME."""
    return to_us(at(seconds))


def _canonical(value: Any) -> Any:
    """Builtins with every dict rebuilt in key order (sketches have int keys)."""
    if isinstance(value, dict):
        return {k: _canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    return value


def snapshot(engine: TicketEngine) -> bytes:
    """Every partial aggregate of the engine, msgpack-encoded deterministically."""
    partials = (sorted(engine.window_partials().items()), sorted(engine.live_partials().items()))
    return msgspec.msgpack.encode(_canonical(msgspec.to_builtins(partials)))


class Harness:
    """One engine, its ticket store and a stage-2 merge fed through the wire format."""

    def __init__(self, config: EngineConfig = CFG, partition: int = 0) -> None:
        self.config = config
        self.tickets = DictTicketStore()
        self.engine = TicketEngine(partition, self.tickets, config)
        self.kpis = KpiMerge(config)
        self.flushed: list[PartialUpdate] = []
        self.orphans: list[Held] = []

    def clock_for(self, event: Event) -> int:
        """Stream-time clock, as in replay: the latest event time seen, this event included."""
        return max(self.engine.stream_time_us, to_us(event.occurred_at))

    def feed(
        self, event: Event, *, clock: float | None = None, source: InputRecord | None = None
    ) -> ProcessResult:
        clock_us = self.clock_for(event) if clock is None else us(clock)
        result = self.engine.process(event, clock_us, source)
        self.tick_us(clock_us)
        return result

    def feed_all(self, events: Sequence[Event]) -> list[ProcessResult]:
        return [self.feed(event) for event in events]

    def tick(self, clock: float) -> None:
        self.tick_us(us(clock))

    def tick_us(self, clock_us: int) -> None:
        self.orphans += self.engine.housekeeping(clock_us)
        self.flush()

    def flush(self) -> list[PartialUpdate]:
        updates = self.engine.flush()
        for update in updates:
            wire = _PARTIAL.decode(_WIRE.encode(update))
            self.flushed.append(wire)
            self.kpis.apply(wire)
        return updates

    def values(self, now: float) -> KpiValues:
        return self.kpis.values(us(now))


def get(
    values: KpiValues,
    kpi: str,
    window: str = "1h",
    team: str = ALL,
    channel: str = ALL,
    priority: str = ALL,
) -> float | None:
    """A value; a missing count is 0 (the group has no partial), anything else missing is None."""
    key = KpiKey(kpi, window, team, channel, priority)
    if key not in values and kpi in K.COUNT_KPIS:
        return 0.0
    return values.get(key)


def live(values: KpiValues, kpi: str, team: str = ALL) -> float | None:
    return get(values, kpi, LIVE_WINDOW, team)


def engine_kpis(
    events: Sequence[Event], now: float, config: EngineConfig = CFG, partitions: int = 1
) -> KpiValues:
    """KPIs of the engine (replay) at ``now``, checked against the reference on the way: the
    same series, the same values (quantiles within 1%)."""
    actual = replay(events, config, now=ts(now), partitions=partitions)
    partition_of = None if partitions == 1 else _router(partitions)
    expected = reference_kpis(events, config, now=ts(now), partition_of=partition_of)
    diffs = strict_differences(actual, expected)
    assert not diffs, format_differences(diffs)
    return actual


def _router(partitions: int) -> Callable[[Event], int]:
    return lambda event: partition_for(routing_key(event), partitions)


@pytest.fixture
def b() -> Builder:
    return Builder()


# --- first response -------------------------------------------------------------------------


def test_bot_system_replies_and_internal_notes_never_stop_the_first_response_clock(
    b: Builder,
) -> None:
    events: list[Event] = [
        b.created("t1", 0),
        b.replied("t1", 5, author="bot"),
        b.replied("t1", 10, author="system"),
        b.replied("t1", 15, author="customer"),
        b.replied("t1", 20, author="agent", public=False),
        b.replied("t1", 25, author="bot", public=False),
    ]
    h = Harness()
    h.feed_all(events)
    v = h.values(30)
    assert get(v, K.FIRST_RESPONSES) == 0
    assert get(v, K.FIRST_RESPONSE_MEAN) is None
    assert live(v, K.UNANSWERED_TICKETS) == 1  # still waiting for an agent
    h.feed(b.replied("t1", 420))
    v = h.values(430)
    assert get(v, K.FIRST_RESPONSES) == 1
    assert get(v, K.FIRST_RESPONSE_MEAN) == 420.0
    assert get(v, K.FIRST_RESPONSE_P50) == pytest.approx(420.0, rel=0.01)
    assert live(v, K.UNANSWERED_TICKETS) == 0
    assert engine_kpis([*events, b.replied("t1", 420)], 430)[
        KpiKey(K.FIRST_RESPONSE_MEAN, "1h")
    ] == (420.0)


def test_agent_and_system_created_tickets_count_in_volume_not_in_first_response(
    b: Builder,
) -> None:
    events: list[Event] = [
        b.created("agent", 0, created_by="agent"),
        b.created("system", 0, created_by="system"),
        b.created("customer", 0),
        b.replied("agent", 60),
        b.replied("system", 60),
        b.replied("customer", 120),
    ]
    v = engine_kpis(events, 200)
    assert get(v, K.TICKETS_CREATED) == 3
    assert get(v, K.FIRST_RESPONSES) == 1
    assert get(v, K.FIRST_RESPONSE_MEAN) == 120.0
    # Never "unanswered" either, even without a reply.
    v = engine_kpis([b.created("x", 0, created_by="system")], 200)
    assert live(v, K.OPEN_TICKETS) == 1
    assert live(v, K.UNANSWERED_TICKETS) == 0


def test_reply_at_the_same_instant_as_creation_counts_with_value_zero(b: Builder) -> None:
    h = Harness()
    h.feed(b.replied("t1", 100))  # same instant, arrives first: held, then applied
    h.feed(b.created("t1", 100, priority="urgent"))
    h.feed(b.created("t2", 100))
    h.feed(b.replied("t2", 100))
    v = h.values(120)
    assert get(v, K.FIRST_RESPONSES) == 2
    assert get(v, K.FIRST_RESPONSE_MEAN) == 0.0
    assert get(v, K.FIRST_RESPONSE_P50) == 0.0
    assert get(v, K.FIRST_RESPONSE_P90) == 0.0
    assert get(v, K.FIRST_RESPONSE_SLA_ATTAINMENT) == 1.0


def test_sla_attainment_per_priority_with_the_exact_boundary_met(b: Builder) -> None:
    targets = CFG.sla_targets
    events: list[Event] = []
    for priority, target in targets.items():
        on = f"{priority}-on-target"
        over = f"{priority}-over"
        events += [
            b.created(on, 0, priority=priority),  # type: ignore[arg-type]
            b.replied(on, target),  # exactly the target: met
            b.created(over, 0, priority=priority),  # type: ignore[arg-type]
            b.replied(over, target + 0.125),  # just over: missed
        ]
    now = max(targets.values()) + 1
    config = EngineConfig(
        windows=(("5m", 300.0), ("12h", 43200.0)),
        grace_seconds=60.0,
        sla_targets=dict(targets),
    )
    v = engine_kpis(events, now, config)
    assert get(v, K.FIRST_RESPONSES, "12h") == 8
    assert get(v, K.FIRST_RESPONSE_SLA_ATTAINMENT, "12h") == 0.5
    for priority in targets:
        assert get(v, K.FIRST_RESPONSE_SLA_ATTAINMENT, "12h", priority=priority) == 0.5
    # The same replies judged against a looser urgent target: both urgent tickets meet it.
    loose = EngineConfig(
        windows=config.windows, grace_seconds=60.0, sla_targets={**targets, "urgent": 901.0}
    )
    v = engine_kpis(events, now, loose)
    assert get(v, K.FIRST_RESPONSE_SLA_ATTAINMENT, "12h", priority="urgent") == 1.0


# --- escalations and team moves ----------------------------------------------------------------


def test_to_team_moves_the_ticket_escalation_counts_for_the_old_team(b: Builder) -> None:
    events: list[Event] = [
        b.created("t1", 0, team="tier1"),
        b.escalated("t1", 60, to_team="tier2"),
        b.replied("t1", 120),
        b.escalated("t1", 180, level=2),  # no move, not a first escalation
        b.status("t1", 300, "solved"),
        b.created("t2", 0, team="tier1"),  # stays in tier1, open
    ]
    v = engine_kpis(events, 600)
    assert get(v, K.TICKETS_CREATED, team="tier1") == 2
    assert get(v, K.TICKETS_CREATED, team="tier2") == 0
    assert get(v, K.TICKETS_ESCALATED, team="tier1") == 1
    assert get(v, K.TICKETS_ESCALATED, team="tier2") == 0
    assert get(v, K.ESCALATION_RATIO, team="tier1") == 0.5
    assert get(v, K.ESCALATION_RATIO, team="tier2") is None  # nothing created there
    assert get(v, K.FIRST_RESPONSES, team="tier2") == 1
    assert get(v, K.FIRST_RESPONSES, team="tier1") == 0
    assert get(v, K.TICKETS_SOLVED, team="tier2") == 1
    assert get(v, K.RESOLUTION_MEAN, team="tier2") == 300.0
    # Live: t1 is solved, t2 is open in tier1.
    assert live(v, K.OPEN_TICKETS, team="tier1") == 1
    assert live(v, K.OPEN_TICKETS, team="tier2") == 0


def test_open_ticket_moved_by_to_team_moves_its_live_backlog(b: Builder) -> None:
    h = Harness()
    h.feed(b.created("t1", 0, team="tier1"))
    assert live(h.values(10), K.UNANSWERED_TICKETS, team="tier1") == 1
    h.feed(b.escalated("t1", 60, to_team="tier2"))
    v = h.values(70)
    assert live(v, K.UNANSWERED_TICKETS, team="tier1") == 0
    assert live(v, K.UNANSWERED_TICKETS, team="tier2") == 1
    assert live(v, K.OLDEST_UNANSWERED_AGE, team="tier2") == 70.0
    # the old team's live partial is gone
    assert all(group != ("tier1", ALL, ALL) for group, _ in h.engine.live_partials())


# --- surveys ---------------------------------------------------------------------------------


def test_survey_team_is_the_survey_team_else_the_ticket_team_else_unknown(b: Builder) -> None:
    events: list[Event] = [
        b.created("t1", 0, team="tier1", channel="chat", priority="high"),
        b.survey(30, "csat", 5, ticket="t1", team="billing"),  # survey team wins
        b.survey(40, "csat", 4, ticket="t1"),  # ticket team
        b.escalated("t1", 50, to_team="tier2"),
        b.survey(60, "csat", 3, ticket="t1"),  # the ticket's team at that point
        b.survey(70, "csat", 1),  # no ticket, no team
        b.survey(80, "nps", 10, team="billing"),  # no ticket, a team
    ]
    v = engine_kpis(events, 600)
    assert get(v, K.CSAT_RESPONSES) == 4
    assert get(v, K.CSAT_RESPONSES, team="billing") == 1
    assert get(v, K.CSAT_RESPONSES, team="tier1") == 1
    assert get(v, K.CSAT_RESPONSES, team="tier2") == 1
    assert get(v, K.CSAT_RESPONSES, team=UNKNOWN) == 1
    assert get(v, K.CSAT_MEAN, team=UNKNOWN) == 1.0
    # A ticket survey has the ticket's channel and priority; one without a ticket "unknown".
    assert get(v, K.CSAT_RESPONSES, channel="chat") == 3
    assert get(v, K.CSAT_RESPONSES, priority="high") == 3
    assert get(v, K.CSAT_RESPONSES, channel=UNKNOWN) == 1
    assert get(v, K.CSAT_RESPONSES, priority=UNKNOWN) == 1
    assert get(v, K.NPS_RESPONSES, team="billing") == 1
    assert get(v, K.NPS_RESPONSES, channel=UNKNOWN) == 1
    assert get(v, K.NPS_RESPONSES, priority=UNKNOWN) == 1
    assert get(v, K.NPS_SCORE, team="billing") == 100.0


def test_enps_partials_exist_only_for_overall_and_team_groups(b: Builder) -> None:
    h = Harness()
    h.feed(b.created("t1", 0, team="tier1", channel="chat"))
    h.feed(b.survey(10, "enps", 10, ticket="t1"))
    h.feed(b.survey(20, "enps", 0, team="ops"))
    enps_groups = {g for (g, _), agg in h.engine.window_partials().items() if agg.enps_count}
    assert enps_groups == {(ALL, ALL, ALL), ("tier1", ALL, ALL), ("ops", ALL, ALL)}
    v = h.values(30)
    assert get(v, K.ENPS_SCORE) == 0.0
    assert get(v, K.ENPS_SCORE, team="tier1") == 100.0
    assert KpiKey(K.ENPS_SCORE, "1h", ALL, "chat", ALL) not in v


# --- resolutions -----------------------------------------------------------------------------


def test_first_contact_resolution_true_and_false(b: Builder) -> None:
    events: list[Event] = [
        b.created("one-reply", 0),  # FCR: one public agent reply, not escalated
        b.replied("one-reply", 10, author="bot"),
        b.replied("one-reply", 20, public=False),
        b.replied("one-reply", 30),
        b.status("one-reply", 40, "solved"),
        b.created("two-replies", 0),
        b.replied("two-replies", 10),
        b.replied("two-replies", 20),
        b.status("two-replies", 40, "solved"),
        b.created("no-reply", 0),
        b.status("no-reply", 40, "closed"),
        b.created("escalated", 0),
        b.replied("escalated", 10),
        b.escalated("escalated", 20),
        b.status("escalated", 40, "solved"),
    ]
    v = engine_kpis(events, 600)
    assert get(v, K.TICKETS_SOLVED) == 4
    assert get(v, K.FIRST_CONTACT_RESOLUTION) == 0.25
    solo = engine_kpis(events[:5], 600)
    assert get(solo, K.FIRST_CONTACT_RESOLUTION) == 1.0
    none = engine_kpis(events[9:11], 600)
    assert get(none, K.FIRST_CONTACT_RESOLUTION) == 0.0


def test_reopen_then_solve_again_counts_two_resolutions_fcr_only_on_the_first(
    b: Builder,
) -> None:
    events: list[Event] = [
        b.created("t1", 0),
        b.replied("t1", 10),
        b.status("t1", 100, "solved"),  # resolution 1, FCR true
        b.status("t1", 200, "open"),  # reopened
        b.replied("t1", 210),
        b.status("t1", 400, "solved"),  # resolution 2: not judged for FCR
    ]
    h = Harness()
    h.feed_all(events)
    v = h.values(500)
    assert get(v, K.TICKETS_SOLVED) == 2
    assert get(v, K.TICKETS_REOPENED) == 1
    assert get(v, K.RESOLUTION_MEAN) == 250.0
    assert get(v, K.FIRST_CONTACT_RESOLUTION) == 1.0
    overall = [agg for (g, _), agg in h.engine.window_partials().items() if g == (ALL, ALL, ALL)]
    assert sum(agg.first_resolutions for agg in overall) == 1
    assert sum(agg.solved for agg in overall) == 2
    assert live(v, K.OPEN_TICKETS) == 0
    assert engine_kpis(events, 500)[KpiKey(K.TICKETS_SOLVED, "1h")] == 2.0


def test_closed_after_solved_is_not_a_second_resolution(b: Builder) -> None:
    events: list[Event] = [
        b.created("t1", 0),
        b.status("t1", 100, "solved"),
        b.status("t1", 200, "closed"),
    ]
    h = Harness()
    h.feed_all(events[:2])
    before = snapshot(h.engine)
    h.feed(events[2])
    assert snapshot(h.engine) == before  # closing a solved ticket changes no aggregate
    v = h.values(300)
    assert get(v, K.TICKETS_SOLVED) == 1
    assert get(v, K.TICKETS_REOPENED) == 0
    assert get(v, K.RESOLUTION_MEAN) == 100.0
    assert get(engine_kpis(events, 300), K.TICKETS_SOLVED) == 1


def test_zero_denominators_give_none(b: Builder) -> None:
    h = Harness()
    h.feed(b.survey(10, "nps", 9, team="billing"))
    v = h.values(60)
    overall = {k.kpi: val for k, val in v.items() if k.window == "1h" and k[2:] == (ALL,) * 3}
    assert overall[K.NPS_SCORE] == 100.0
    assert overall[K.TICKETS_CREATED] == 0.0
    for kpi in (
        K.ESCALATION_RATIO,  # 0 created
        K.FIRST_RESPONSE_P50,
        K.FIRST_RESPONSE_P90,
        K.FIRST_RESPONSE_MEAN,
        K.FIRST_RESPONSE_SLA_ATTAINMENT,
        K.RESOLUTION_P50,
        K.RESOLUTION_P90,
        K.RESOLUTION_MEAN,
        K.FIRST_CONTACT_RESOLUTION,
        K.CSAT_SATISFIED,
        K.CSAT_MEAN,
        K.ENPS_SCORE,
    ):
        assert kpi in overall
        assert overall[kpi] is None, kpi
    assert all(val is None or val == val for val in v.values())  # no NaN


# --- out of order, before creation, orphans ----------------------------------------------------


def test_event_before_created_is_not_applied_and_comes_back_as_rejected(b: Builder) -> None:
    h = Harness()
    assert h.feed(b.created("t1", 100)).outcome is Outcome.APPLIED
    before = snapshot(h.engine)
    early = b.status("t1", 99.875, "solved")
    source = InputRecord("ticket-status-changed", 2, 41, b"raw-bytes")
    result = h.feed(early, source=source)
    assert result.outcome is Outcome.BEFORE_CREATED
    [held] = result.rejected
    assert held.step.event_id == early.event_id
    assert (held.topic, held.partition, held.offset, held.raw) == source_fields(source)
    assert snapshot(h.engine) == before
    assert not h.tickets.data["t1"].steps
    v = h.values(200)
    assert get(v, K.TICKETS_SOLVED) == 0
    assert live(v, K.OPEN_TICKETS) == 1


def source_fields(source: InputRecord) -> tuple[str, int, int, bytes]:
    return (source.topic, source.partition, source.offset, source.raw)


def test_held_event_earlier_than_the_creation_lands_in_rejected(b: Builder) -> None:
    h = Harness()
    early = b.replied("t1", 50)
    on_time = b.replied("t1", 160)
    source = InputRecord("ticket-replied", 1, 7, b"{}")
    assert h.feed(early, source=source).outcome is Outcome.HELD
    assert h.feed(on_time).outcome is Outcome.HELD
    result = h.feed(b.created("t1", 100))
    assert result.outcome is Outcome.APPLIED
    assert [held.step.event_id for held in result.rejected] == [early.event_id]
    assert source_fields(source) == (
        result.rejected[0].topic,
        result.rejected[0].partition,
        result.rejected[0].offset,
        result.rejected[0].raw,
    )
    state = h.tickets.data["t1"]
    assert not state.held
    assert [step.event_id for step in state.steps] == [on_time.event_id]
    v = h.values(200)
    assert get(v, K.FIRST_RESPONSE_MEAN) == 60.0  # the early reply is not the first response


def test_held_events_are_applied_when_ticket_created_arrives_later(b: Builder) -> None:
    events: list[Event] = [
        b.status("t1", 300, "solved"),
        b.survey(320, "csat", 5, ticket="t1"),
        b.replied("t1", 60),
        b.created("t1", 0, team="tier1", channel="chat"),
    ]
    h = Harness()
    outcomes = [r.outcome for r in h.feed_all(events)]
    assert outcomes == [Outcome.HELD] * 3 + [Outcome.APPLIED]
    v = h.values(400)
    assert get(v, K.FIRST_RESPONSE_MEAN, team="tier1") == 60.0
    assert get(v, K.TICKETS_SOLVED, channel="chat") == 1
    assert get(v, K.FIRST_CONTACT_RESOLUTION) == 1.0
    assert get(v, K.CSAT_RESPONSES, team="tier1") == 1
    assert live(v, K.OPEN_TICKETS) == 0
    # Before the creation arrived, nothing was counted.
    h2 = Harness()
    h2.feed_all(events[:3])
    assert not h2.engine.windows
    assert not h2.engine.live
    assert not h2.kpis.values(us(400))
    assert get(engine_kpis(events, 400), K.CSAT_RESPONSES, team="tier1") == 1


def test_a_clock_behind_the_event_holds_it_from_the_event_time_and_never_goes_back(
    b: Builder,
) -> None:
    """Stage 1 gives the engine a stream clock that may lag the event (another input topic
    is read behind, streams.progress.Progress.watermark): the hold still runs from the event's
    own time, and an earlier clock than one used before counts as that one."""
    h = Harness()
    hold = CFG.orphan_hold_seconds
    reply = b.replied("later", 100)
    assert h.feed(reply, clock=0).outcome is Outcome.HELD  # nothing read yet elsewhere
    h.tick_us(us(100 + hold) - 1)
    assert not h.orphans
    h.tick(100 + hold)
    [orphan] = h.orphans
    assert orphan.held_since_us == us(100)
    h.tick(50)  # behind the clock already used: nothing expires twice, nothing comes back
    assert h.engine.clock_us == us(100 + hold)
    assert h.feed(b.replied("ghost", 10), clock=20).late is (100 + hold - CFG.horizon_seconds > 10)


def test_orphans_are_dropped_by_housekeeping_after_the_hold(b: Builder) -> None:
    h = Harness()
    reply = b.replied("ghost", 10)
    source = InputRecord("ticket-replied", 0, 99, b"payload")
    assert h.feed(reply, source=source).outcome is Outcome.HELD
    survey = b.survey(20, "csat", 5, ticket="ghost2")
    assert h.feed(survey, clock=20).outcome is Outcome.HELD
    hold = CFG.orphan_hold_seconds
    h.tick_us(us(10 + hold) - 1)
    assert not h.orphans
    assert "ghost" in h.tickets.data
    h.tick(10 + hold)
    [orphan] = h.orphans
    assert orphan.step.event_id == reply.event_id
    assert source_fields(source) == (orphan.topic, orphan.partition, orphan.offset, orphan.raw)
    assert orphan.held_since_us == us(10)
    assert "ghost" not in h.tickets.data  # state deleted
    assert "ghost2" in h.tickets.data  # held 10 s less: not yet
    h.tick(20 + hold)
    assert [o.step.event_id for o in h.orphans] == [reply.event_id, survey.event_id]
    assert not h.tickets.data
    assert not h.engine.windows
    assert not h.kpis.groups  # an orphan never counted anywhere


def test_hold_time_counts_from_arrival_on_the_engine_clock(b: Builder) -> None:
    h = Harness()
    # An event long before the clock (a late orphan) is held for the full hold from arrival.
    h.feed(b.created("other", 5000))
    h.feed(b.replied("ghost", 10))
    h.tick(5000 + CFG.orphan_hold_seconds - 1)
    assert not h.orphans
    h.tick(5000 + CFG.orphan_hold_seconds)
    assert len(h.orphans) == 1


# --- duplicates ------------------------------------------------------------------------------


def test_duplicate_event_id_gives_duplicate_and_changes_nothing(b: Builder) -> None:
    h = Harness()
    created = b.created("t1", 0)
    reply = b.replied("t1", 60)
    survey = b.survey(70, "csat", 5)  # stand-alone
    held = b.replied("t2", 5)  # held: t2 is not created yet
    for event in (created, reply, survey, held):
        h.feed(event)
    tickets = msgspec.msgpack.encode(sorted(h.tickets.data.items()))
    partials = snapshot(h.engine)
    values = h.values(100)
    for event in (created, reply, survey, held):
        assert h.feed(event).outcome is Outcome.DUPLICATE
        assert h.engine.flush() == []  # nothing became dirty
    # The same event_id reused by a different event of the ticket is a duplicate too.
    impostor = b.status("t1", 80, "solved", event_id=reply.event_id)
    assert h.feed(impostor).outcome is Outcome.DUPLICATE
    assert msgspec.msgpack.encode(sorted(h.tickets.data.items())) == tickets
    assert snapshot(h.engine) == partials
    assert h.values(100) == values


def test_second_ticket_created_is_a_duplicate_first_arrival_wins(b: Builder) -> None:
    h = Harness()
    h.feed(b.created("t1", 100, team="tier1", priority="low"))
    partials = snapshot(h.engine)
    second = b.created("t1", 50, team="tier2", priority="urgent", created_by="agent")
    assert h.feed(second).outcome is Outcome.DUPLICATE
    assert snapshot(h.engine) == partials
    creation = h.tickets.data["t1"].creation
    assert creation is not None
    assert (creation.team, creation.priority, creation.at_us) == ("tier1", "low", us(100))
    v = h.values(200)
    assert get(v, K.TICKETS_CREATED) == 1
    assert get(v, K.TICKETS_CREATED, team="tier2") == 0


# --- late events, bucket expiry, tombstones ----------------------------------------------------


def test_late_flag_uses_clock_minus_horizon_strictly(b: Builder) -> None:
    h = Harness()
    h.feed(b.created("t1", 0))
    h.feed(b.created("t2", 10_000))
    on_edge = h.feed(b.replied("t1", 10_000 - HORIZON))
    assert on_edge.outcome is Outcome.APPLIED
    assert not on_edge.late
    past_edge = h.feed(b.replied("t1", 10_000 - HORIZON - 0.125))
    assert past_edge.outcome is Outcome.APPLIED
    assert past_edge.late
    assert h.feed(b.survey(100, "csat", 5)).late  # a late stand-alone survey
    assert h.feed(b.lifecycle("c1", 100)).late  # late, even though it is ignored
    assert h.feed(b.lifecycle("c1", 100)).outcome is Outcome.IGNORED


def test_late_events_update_live_state_but_do_not_resurrect_expired_buckets(b: Builder) -> None:
    h = Harness()
    h.feed(b.created("old", 0, priority="urgent"))
    h.feed(b.created("new", 10_000, priority="urgent"))
    old_bucket = us(0) // round(B * US)
    assert all(bucket != old_bucket for _, bucket in h.engine.window_partials())  # expired by now
    partials = h.engine.window_partials()
    h.flush()
    h.flushed.clear()

    late_reply = h.feed(b.replied("old", 100))
    assert late_reply.late
    assert late_reply.outcome is Outcome.APPLIED
    # Ticket state is updated ...
    assert [s.at_us for s in h.tickets.data["old"].steps] == [us(100)]
    assert live(h.values(10_000), K.UNANSWERED_TICKETS) == 1  # only "new" waits now
    late_solve = h.feed(b.status("old", 200, "solved"))
    assert late_solve.late
    assert late_solve.outcome is Outcome.APPLIED
    # (solved, and its last event is older than clock - retention: retired at once, only its
    # attributes remain)
    assert is_record(h.tickets.data["old"])
    # ... and so is the live backlog, but no windowed partial came back.
    assert h.engine.window_partials() == partials
    assert all(u.is_live for u in h.flushed)  # only live-backlog partials were re-sent
    v = h.values(10_000)
    assert live(v, K.OPEN_TICKETS) == 1
    assert live(v, K.UNANSWERED_TICKETS) == 1
    assert live(v, K.OLDEST_UNANSWERED_AGE) == 0.0
    assert get(v, K.TICKETS_SOLVED) == 0
    assert get(v, K.FIRST_RESPONSES) == 0


def test_bucket_expiry_in_housekeeping_emits_tombstones(b: Builder) -> None:
    h = Harness()
    h.feed(b.created("t1", 30, team="tier1", channel="chat", priority="high"))
    bucket = us(30) // round(B * US)
    groups = {(ALL, ALL, ALL), ("tier1", ALL, ALL), (ALL, "chat", ALL), (ALL, ALL, "high")}
    assert {g for g, _ in h.engine.window_partials()} == groups
    h.flushed.clear()
    # The bucket [0, 60) expires once clock - horizon reaches its end (60 s).
    h.tick_us(us(60 + HORIZON) - 1)
    assert h.engine.windows
    assert not h.flushed
    h.tick(60 + HORIZON)
    assert not h.engine.windows
    tombstones = [u for u in h.flushed if u.bucket != HEARTBEAT_BUCKET]
    assert {(u.group, u.bucket) for u in tombstones} == {(g, bucket) for g in groups}
    assert all(u.window is None and u.live is None for u in tombstones)
    assert all(u.source_partition == 0 for u in tombstones)
    # Stage 2 forgot the windowed partials; the live backlog is still there.
    assert all(not state.parts for state in h.kpis.groups.values())
    assert live(h.values(60 + HORIZON), K.OPEN_TICKETS, team="tier1") == 1
    h.flushed.clear()
    h.tick(60 + HORIZON + 600)
    assert not h.flushed  # nothing new to tell


def test_retraction_to_empty_emits_a_tombstone(b: Builder) -> None:
    h = Harness()
    h.feed(b.created("t1", 0))
    h.feed(b.replied("t1", 600))  # first response in bucket 10
    frt_bucket = us(600) // round(B * US)
    assert ((ALL, ALL, ALL), frt_bucket) in h.engine.window_partials()
    h.flushed.clear()
    h.feed(b.replied("t1", 300))  # an earlier first response: bucket 10 empties
    assert ((ALL, ALL, ALL), frt_bucket) not in h.engine.window_partials()
    emptied = [u for u in h.flushed if u.bucket == frt_bucket]
    assert len(emptied) == 4
    assert all(u.window is None for u in emptied)
    assert get(h.values(700), K.FIRST_RESPONSE_MEAN) == 300.0


# --- retirement ------------------------------------------------------------------------------


def test_solved_ticket_is_retired_after_retention_an_open_one_never(b: Builder) -> None:
    assert CFG.retention_seconds > HORIZON
    h = Harness()
    h.feed_all(
        [
            b.created("solved", 0),
            b.status("solved", 600, "solved"),
            b.created("open", 0),
            b.created("reopened", 0),
            b.status("reopened", 100, "solved"),
            b.status("reopened", 200, "open"),
            b.created("solved-late-survey", 0),
            b.status("solved-late-survey", 100, "closed"),
            b.survey(900, "csat", 4, ticket="solved-late-survey"),
        ]
    )
    due = 600 + CFG.retention_seconds
    h.tick_us(us(due) - 1)
    assert "solved" in h.tickets.data
    h.tick(due)
    assert is_record(h.tickets.data["solved"])  # its attributes remain
    assert not is_record(h.tickets.data["solved-late-survey"])  # its last event is later
    h.tick(900 + CFG.retention_seconds)
    assert is_record(h.tickets.data["solved-late-survey"])
    h.tick(100 * 86400)  # attributes are kept 30 days
    assert set(h.tickets.data) == {"open", "reopened"}
    assert live(h.values(100 * 86400), K.OPEN_TICKETS) == 2


def test_retirement_waits_for_the_horizon_when_retention_is_shorter(b: Builder) -> None:
    config = EngineConfig(
        windows=CFG.windows, grace_seconds=60.0, retention_seconds=60.0, orphan_hold_seconds=60.0
    )
    h = Harness(config)
    h.feed_all([b.created("t", 0), b.status("t", 30, "solved")])
    h.tick_us(us(30 + config.horizon_seconds) - 1)
    assert "t" in h.tickets.data
    h.tick(30 + config.horizon_seconds + B)
    assert is_record(h.tickets.data["t"])


# --- rebuild ---------------------------------------------------------------------------------


def rebuilt_snapshot(h: Harness, clock_us: int | None) -> bytes:
    fresh = TicketEngine(h.engine.partition, h.tickets, h.config)
    fresh.rebuild(clock_us)
    updates = fresh.flush()
    # Everything is re-sent after a rebuild; besides, at most a heartbeat carrying the
    # stream time to stage 2.
    resets = [u for u in updates if u.reset]
    assert len(resets) == 4, "a rebuild first resets every dimension of the partition"
    assert updates[:4] == resets, "the resets precede the snapshot"
    sent = {(u.group, u.bucket, u.is_live) for u in updates if not u.reset}
    partials = {(g, b, False) for g, b in fresh.window_partials()} | {
        (g, b, True) for g, b in fresh.live_partials()
    }
    assert partials <= sent
    assert sent - partials <= {((ALL, ALL, ALL), HEARTBEAT_BUCKET, True)}
    return snapshot(fresh)


def test_rebuild_reproduces_the_incremental_partials(b: Builder) -> None:
    h = Harness()
    h.feed_all(
        [
            b.replied("t1", 90),  # held, then applied
            b.created("t1", 0, team="tier1", channel="chat", priority="urgent"),
            b.escalated("t1", 120, to_team="tier2"),
            b.status("t1", 300, "solved"),
            b.status("t1", 400, "open"),
            b.status("t1", 500, "closed"),
            b.survey(600, "csat", 4, ticket="t1"),
            b.created("t2", 200, team="tier2", created_by="agent"),
            b.replied("t2", 250, author="bot"),
            b.survey(650, "enps", 9, team="tier1"),
            b.survey(660, "nps", 2),
            b.replied("ghost", 700),  # an orphan, still held
            b.created("t3", 5000, priority="low"),
            b.replied("t1", 100),  # late: the first response moves into an expired bucket
        ]
    )
    clock = h.engine.stream_time_us
    assert rebuilt_snapshot(h, clock) == snapshot(h.engine)
    assert rebuilt_snapshot(h, None) == snapshot(h.engine)  # stream time is the same clock
    # The rebuilt engine's flush, applied to an empty stage 2, gives the same KPIs.
    fresh = TicketEngine(0, h.tickets, CFG)
    fresh.rebuild(clock)
    merge = KpiMerge(CFG)
    for update in fresh.flush():
        merge.apply(_PARTIAL.decode(_WIRE.encode(update)))
    assert merge.values(clock) == h.kpis.values(clock)


HYPOTHESIS = generated(60)


@HYPOTHESIS
@given(scenarios())
def test_rebuild_equals_incremental_processing_on_generated_streams(scenario: Scenario) -> None:
    events = decoded(scenario)
    h = Harness(scenario.config)
    h.feed_all(events)
    clock = h.engine.stream_time_us
    assert rebuilt_snapshot(h, clock) == snapshot(h.engine)


def test_rebuild_after_a_standalone_survey_is_retired_matches(b: Builder) -> None:
    h = Harness()
    h.feed(b.survey(30, "csat", 5))  # bucket [0, 60) expires at 60 + horizon
    h.feed(b.created("t", 30 + HORIZON))  # clock = survey + horizon: the survey is retired
    assert snapshot(TicketEngine(0, DictTicketStore(), CFG)) != snapshot(h.engine)
    assert rebuilt_snapshot(h, h.engine.stream_time_us) == snapshot(h.engine)


# --- health outcomes vs the reference ----------------------------------------------------------


def engine_counts(events: Sequence[Event], config: EngineConfig) -> dict[str, int]:
    """Health counts from the engine's ProcessResults (one partition, stream-time clock,
    housekeeping after every event; at the end the clock moves on by the orphan hold, so
    everything still held is dropped as an orphan)."""
    tickets = DictTicketStore()
    engine = TicketEngine(0, tickets, config)
    counts = {"duplicates": 0, "late": 0, "before_created": 0, "orphans": 0}
    for event in events:
        clock_us = max(engine.stream_time_us, to_us(event.occurred_at))
        result = engine.process(event, clock_us)
        if result.outcome is Outcome.DUPLICATE:
            counts["duplicates"] += 1
        else:
            counts["late"] += result.late
            counts["before_created"] += len(result.rejected)
        if result.outcome is Outcome.BEFORE_CREATED:
            assert len(result.rejected) == 1
        counts["orphans"] += len(engine.housekeeping(clock_us))
    end = engine.stream_time_us + round(config.orphan_hold_seconds * US)
    counts["orphans"] += len(engine.housekeeping(end))
    return counts


def _compare_health(scenario: Scenario) -> None:
    # Customer-lifecycle events have no KPI yet: the engine ignores (and does not de-duplicate)
    # them, so they are left out of both sides.
    events = [e for e in decoded(scenario) if not isinstance(e, CustomerLifecycle)]
    expected = reference_counts(events, scenario.config)
    assert engine_counts(events, scenario.config) == {
        "duplicates": expected.duplicates,
        "late": expected.late,
        "before_created": expected.before_created,
        "orphans": expected.orphans,
    }


@HYPOTHESIS
@given(scenarios(duplicates=False))
def test_health_outcomes_agree_with_reference_counts(scenario: Scenario) -> None:
    """Second creates, late, before-created and orphan events; no re-sends (see below)."""
    _compare_health(scenario)


@HYPOTHESIS
@given(scenarios(duplicates=True, before_created=False, second_creates=False))
def test_health_outcomes_with_resends_agree_with_reference_counts(scenario: Scenario) -> None:
    """Exact re-sends of every kind of event, late events and orphans."""
    _compare_health(scenario)


def test_resent_before_created_event_is_a_duplicate(b: Builder) -> None:
    early = b.replied("t1", 50)
    events: list[Event] = [b.created("t1", 100), early, early]
    expected = reference_counts(events, CFG)
    assert (expected.before_created, expected.duplicates) == (1, 1)
    h = Harness()
    outcomes = [r.outcome for r in h.feed_all(events)]
    assert outcomes == [Outcome.APPLIED, Outcome.BEFORE_CREATED, Outcome.DUPLICATE]


# --- cost of a flush ---------------------------------------------------------------------------


def _bytes_flushed_by_one_reply(backlog: int) -> int:
    """Encoded size of the partials one reply flushes, with ``backlog`` unanswered tickets."""
    build = Builder()
    h = Harness()
    for i in range(backlog):
        h.engine.process(build.created(f"t{i}", i * 7.5), us(i * 7.5))
    h.engine.process(build.created("x", backlog * 7.5), us(backlog * 7.5))
    h.engine.housekeeping(us(backlog * 7.5))
    h.engine.flush()
    h.engine.process(build.replied("x", backlog * 7.5 + 1), us(backlog * 7.5 + 1))
    return sum(len(_WIRE.encode(u)) for u in h.engine.flush())


def test_one_event_flushes_a_bounded_amount_whatever_the_backlog() -> None:
    small = _bytes_flushed_by_one_reply(200)
    large = _bytes_flushed_by_one_reply(2000)
    assert large < 2 * small, (small, large)


# --- the hand-computed reference cases, through the engine ---------------------------------------


def test_reference_cases_were_found() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize("partitions", [1, 3])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_hand_computed_reference_case_through_the_engine(case: Case, partitions: int) -> None:
    """Each case's own assertions run on the engine's own values (which must also be the
    reference's series and values); the case's quantile assertions allow the engine's 1%."""
    calls = []

    def run_engine(events: Sequence[Event], now: float, config: EngineConfig) -> KpiValues:
        calls.append(now)
        return engine_kpis(events, now, config, partitions)

    with running_on(Implementation(run_engine, quantile_rel=0.01)):
        case(Builder())
    assert calls, "the case never ran the engine"


def test_event_time_helpers_agree() -> None:
    # Guards the harness: us() and the Builder's timestamps are the same instant.
    assert us(90.5) == to_us(Builder().replied("x", 90.5).occurred_at)
    assert event_time(Builder().created("x", 60)) == ts(60)


def test_crash_before_a_flush_then_rebuild_leaves_no_stale_partial(b: Builder) -> None:
    """kill -9 after a ticket was solved (state written, offsets committed) but before the
    flush that would have emptied its live partial: the new owner's rebuild resets the
    partition in stage 2, so the ticket does not stay open there."""
    h = Harness()
    h.feed(b.created("t1", 0))
    h.feed(b.created("t2", 90))  # another creation bucket than t1's
    assert live(h.values(90), K.OPEN_TICKETS) == 2
    # Processed and persisted, never flushed: the crash.
    h.engine.process(b.status("t1", 100, "solved"), us(100))
    restarted = TicketEngine(0, h.tickets, CFG)
    restarted.rebuild(None)
    for update in restarted.flush():
        h.kpis.apply(_PARTIAL.decode(_WIRE.encode(update)))
    values = h.values(100)
    assert live(values, K.OPEN_TICKETS) == 1
    assert get(values, K.TICKETS_SOLVED) == 1


def test_stream_time_reaches_every_dimension_when_no_partial_changed(b: Builder) -> None:
    """A flush with nothing changed but a later stream time (a duplicate, a held or ignored
    event) carries the time to each dimension: stage 2 of another dimension may run on
    another worker, whose stream clock (live ages) would lag otherwise."""
    h = Harness()
    created = b.created("t1", 30, team="tier1")
    h.feed(created)
    h.flushed.clear()
    h.feed(b.replied("t-unknown", 90))  # held: its ticket does not exist yet
    beats = [u for u in h.flushed if u.bucket == HEARTBEAT_BUCKET]
    assert beats == h.flushed
    assert {dimension_of(u.group) for u in beats} == {"overall", "team", "channel", "priority"}
    assert all(u.stream_time_us == us(90) for u in beats)
    assert h.kpis.stream_time_us == us(90)


def test_resent_creation_after_retirement_changes_no_kpi(b: Builder) -> None:
    """SPEC §3: the retired ticket's attributes are kept, so a re-sent ticket-created is a
    duplicate of a known ticket, not a new open ticket."""
    created = b.created("t1", 0)
    config = EngineConfig(windows=CFG.windows, grace_seconds=60.0, retention_seconds=3660.0)
    events: list[Event] = [created, b.status("t1", 30, "solved"), b.created("x", 4000)]
    before = replay(events, config)
    after = replay([*events, created], config)
    assert before[KpiKey(K.OPEN_TICKETS, LIVE_WINDOW)] == 1  # x only: t1 retired at 3720
    assert after == before
    h = Harness(config)
    h.feed_all(events)
    assert is_record(h.tickets.data["t1"])
    assert h.feed(created).outcome is Outcome.DUPLICATE


def test_orphan_hold_restarts_when_a_retired_ticket_gets_held_events_again(b: Builder) -> None:
    """A ticket held, created, solved and retired, then held again: the first hold's timer
    fires before the second hold is due; the events are dropped at the second due time."""
    config = EngineConfig(
        windows=CFG.windows,
        grace_seconds=60.0,
        retention_seconds=3660.0,
        attribute_retention_seconds=3660.0,  # no attributes kept: retired means forgotten
        orphan_hold_seconds=2e4,
    )
    h = Harness(config)
    h.feed(b.replied("t1", 0))  # held at clock 0: due at 20000
    h.feed(b.created("t1", 0))
    h.feed(b.status("t1", 10, "solved"))  # retired at max(10, 60) + 3660
    h.feed(b.created("x", 3730))
    assert h.tickets.get("t1") is None
    late = b.replied("t1", 3800)
    assert h.feed(late).outcome is Outcome.HELD  # held at clock 3800: due at 23800
    h.tick(20000)
    assert h.orphans == []
    h.tick(23800)
    assert [held.step.event_id for held in h.orphans] == [late.event_id]


# --- attributes outlive state (SPEC §3, streams.core.attributes) ---------------------------------
# The KPI semantics (late surveys and reopens counted, duplicates, expiry) are hand-computed in
# helpers/reference_cases.py (run through the engine above) and generated in
# test_differential.py; here:
# the record itself, revival and re-retirement, duplicates, rebuilds and expiry on the engine.

_STATE_ENCODER = msgspec.msgpack.Encoder()
_STATE_DECODER = msgspec.msgpack.Decoder(TicketState)


def _history(b: Builder, ticket: str = "T-2026-000123") -> list[Event]:
    return [
        b.created(ticket, 0, team="billing-emea", channel="chat", priority="high"),
        b.replied(ticket, 60, author="bot"),
        b.replied(ticket, 120),
        b.escalated(ticket, 180, to_team="tier2-payments", reason="needs specialist"),
        b.replied(ticket, 240, public=False),
        b.status(ticket, 300, "solved"),
        b.status(ticket, 400, "open"),
        b.replied(ticket, 500),
        b.status(ticket, 600, "closed"),
        b.survey(900, "csat", 4, ticket=ticket),
    ]


def _retired(b: Builder) -> Harness:
    """The history above, then a creation that moves the clock past its retirement."""
    h = Harness()
    h.feed_all([*_history(b), b.created("x", 900 + 7200)])
    return h


def test_code_tables_cover_every_value_of_the_event_contract() -> None:
    assert set(CHANNEL_CODES) == set(CHANNELS)
    assert set(PRIORITY_CODES) == set(PRIORITIES)
    assert set(CREATOR_CODES) == set(get_args(CreatedBy))


def test_a_retired_ticket_keeps_a_record_of_a_few_dozen_bytes(b: Builder) -> None:
    h = Harness()
    h.feed_all(_history(b))
    full = h.tickets.data["T-2026-000123"]
    h.feed(b.created("x", 900 + 7200))
    record = h.tickets.data["T-2026-000123"]
    assert is_record(record)
    assert record.retired is not None
    assert (record.retired.team, record.retired.resolutions) == ("tier2-payments", 2)
    assert record.retired.answered
    assert record.retired.escalated
    encoded = _STATE_ENCODER.encode(record)
    assert len(encoded) <= 56, len(encoded)  # the changelog record's value
    assert len(encoded) * 4 < len(_STATE_ENCODER.encode(full))
    assert _STATE_DECODER.decode(encoded) == record


def test_revived_ticket_retires_to_the_same_record(b: Builder) -> None:
    h = _retired(b)
    record = h.tickets.data["T-2026-000123"]
    assert retire(revive(record)) == record


def test_requester_wait_of_a_resolution_after_revival_goes_on_from_the_retired_one(
    b: Builder,
) -> None:
    """The history's requester wait (in new/open/on_hold, not pending or solved: 120 s before
    a pending, 100 s after it, 0 while solved) is kept; a reopen and a solve after the revival
    add their own stretch, as on the full state (streams.core.clocks.requester_wait)."""
    h = Harness()
    history = _history(b)
    h.feed_all([*history[:5], b.status("T-2026-000123", 200, "pending")])
    h.feed_all(history[5:])
    full = h.tickets.data["T-2026-000123"]
    h.feed(b.created("x", 900 + 7200))
    record = h.tickets.data["T-2026-000123"]
    assert record.retired is not None
    assert record.retired.waited_us == us(200) - us(0) + us(600) - us(400)
    later = [("open", us(20_000)), ("solved", us(20_500))]

    def statuses(state: TicketState) -> list[tuple[str, int]]:
        return [(s.status, s.at_us) for s in state.steps if s.status is not None] + later

    def wait(state: TicketState) -> int:
        elapsed = requester_wait(us(0), us(20_500), statuses(state), team="billing-emea")
        return elapsed.calendar_us

    assert wait(revive(record)) == wait(full) == record.retired.waited_us + us(500) - us(0)


def test_survey_of_a_retired_ticket_revives_it_and_it_retires_again(b: Builder) -> None:
    h = _retired(b)
    late = b.survey(20_000, "nps", 9, ticket="T-2026-000123")
    assert h.feed(late).outcome is Outcome.APPLIED
    state = h.tickets.data["T-2026-000123"]
    assert not is_record(state)
    assert state.retired is not None
    assert h.feed(late).outcome is Outcome.DUPLICATE  # its id is known again
    h.tick(20_000 + 7200 + 60)
    again = h.tickets.data["T-2026-000123"]
    assert is_record(again)
    assert again.retired is not None
    assert again.retired.last_us == us(20_000)


@pytest.mark.parametrize("index", range(len(_history(Builder()))))
def test_every_old_event_re_sent_after_retirement_is_a_duplicate(b: Builder, index: int) -> None:
    h = _retired(b)
    before = snapshot(h.engine)
    assert h.feed(_history(b)[index]).outcome is Outcome.DUPLICATE
    assert snapshot(h.engine) == before
    assert is_record(h.tickets.data["T-2026-000123"])


def test_rebuild_after_a_revival_reproduces_the_incremental_partials(b: Builder) -> None:
    h = _retired(b)
    h.feed(b.status("T-2026-000123", 20_000, "open"))
    h.feed(b.replied("T-2026-000123", 20_100))
    assert live(h.values(20_100), K.OPEN_TICKETS) == 2
    assert rebuilt_snapshot(h, us(20_100)) == snapshot(h.engine)
    assert rebuilt_snapshot(h, None) == snapshot(h.engine)  # stream clock
    h.feed(b.status("T-2026-000123", 20_200, "solved"))
    assert rebuilt_snapshot(h, us(20_200)) == snapshot(h.engine)


def test_records_are_forgotten_after_the_attribute_retention(b: Builder) -> None:
    h = _retired(b)
    forget = 900 + CFG.attribute_retention_seconds
    assert forget > 900 + HORIZON
    h.tick_us(us(forget) - 1)
    assert is_record(h.tickets.data["T-2026-000123"])
    h.tick(forget)
    assert "T-2026-000123" not in h.tickets.data
    assert h.feed(b.status("T-2026-000123", forget + 10, "open")).outcome is Outcome.HELD


def test_equal_retentions_keep_no_attributes(b: Builder) -> None:
    config = EngineConfig(
        windows=CFG.windows,
        grace_seconds=60.0,
        retention_seconds=7200.0,
        attribute_retention_seconds=7200.0,
    )
    h = Harness(config)
    h.feed_all([*_history(b), b.created("x", 900 + 7200)])
    assert "T-2026-000123" not in h.tickets.data


def test_rebuild_on_a_lagging_stream_clock_leaves_the_summary_out_of_the_windows(
    b: Builder,
) -> None:
    """After a restart in stream-clock mode the rebuild's clock is the latest event time the
    partition's tickets and records hold, which may lag the clock at which a ticket retired
    (here: a late survey revived it). The summary steps' facts (its creation, first response,
    resolution) must not come back into the windows then."""
    h = Harness()
    h.feed_all([b.created("t", 0), b.replied("t", 10), b.status("t", 30, "solved")])
    h.tick(7290)  # retired (due at 7230) on a clock (a wall-clock tick) beyond the retention
    assert is_record(h.tickets.data["t"])
    h.feed(b.survey(100, "csat", 5, ticket="t"), clock=7290)  # revives it (late)
    fresh = TicketEngine(0, h.tickets, CFG)
    fresh.rebuild()
    assert fresh.stream_time_us == us(100)
    summary = {(a.created, a.frt_count, a.solved) for a in fresh.windows.values()}
    assert summary == {(0, 0, 0)}  # only the survey (at 100, in the lagging windows) counts
    assert sum(a.csat_count for a in fresh.windows.values()) == 4  # overall + 3 dimensions
