"""Customer churn and retention: the incremental engine and store against a brute-force oracle.

The oracle is :class:`reference.CustomerReference`, written from the definitions (SPEC §4) and
sharing no code with ``streams.core.customers``: it keeps every delivered lifecycle event per
customer and, at a read instant, asks of each customer "is its latest change at or before t an
activation?" for the window start and the clock. The only engine rule it mirrors is the
documented retirement: an event that arrives for a customer whose latest change is a churn
older than the horizon starts that customer's history afresh.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest
from helpers.reference import CustomerReference, customer_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core import kpis
from streams.core.customers import (
    BASE_BUCKET,
    CustomerBatch,
    CustomerConfig,
    CustomerEngine,
    CustomerKpiStore,
    CustomerOutcome,
    CustomerState,
    DictCustomerTable,
    customer_batches,
)
from streams.core.kpis import ALL, OTHER, UNKNOWN, CustomerKpiKey
from streams.events import CustomerLifecycle

US = 1_000_000
MINUTE_US = 60 * US
HOUR_US = 3600 * US
DAY_US = 86400 * US
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Small windows so that generated streams of a few days cross window starts, midnights and
# DST changes, and retire customers; the production default is 7d,30d.
WINDOWS = (("2h", 7200.0), ("1d", 86400.0), ("today", 26 * 3600.0))
GRACE = 600.0
ANCHORS = {
    "UTC": ("2026-01-01T00:00:00+00:00",),
    "Europe/Berlin": ("2026-03-29T01:00:00+00:00", "2026-10-25T01:00:00+00:00"),
    "America/New_York": ("2026-03-08T07:00:00+00:00", "2026-11-01T06:00:00+00:00"),
}
SEGMENTS = (None, "pro", "free", "all", "Enterprise EU")
PARTITIONS = 2


def to_us(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_us(at_us: int) -> datetime:
    return EPOCH + timedelta(microseconds=at_us)


def event(
    event_id: str, customer: str, change: str, at_us: int, segment: str | None = None
) -> CustomerLifecycle:
    return CustomerLifecycle(
        event_id=event_id,
        occurred_at=from_us(at_us),
        schema_version=1,
        customer_id=customer,
        change=change,  # type: ignore[arg-type]
        segment=segment,
    )


# -- the system under test: two partitions, stage 2, restarts -------------------------------


class System:
    def __init__(self, config: CustomerConfig) -> None:
        self.config = config
        self.tables = [DictCustomerTable() for _ in range(PARTITIONS)]
        self.engines = [CustomerEngine(p, self.tables[p], config) for p in range(PARTITIONS)]
        self.store = CustomerKpiStore(config)

    @staticmethod
    def partition_of(customer: str) -> int:
        return sum(customer.encode()) % PARTITIONS

    def process(self, ev: CustomerLifecycle, clock_us: int) -> CustomerOutcome:
        engine = self.engines[self.partition_of(ev.customer_id)]
        return engine.process(ev, clock_us).outcome

    def housekeeping(self, clock_us: int) -> None:
        for engine in self.engines:
            engine.housekeeping(clock_us)

    def flush(self) -> None:
        for engine in self.engines:
            partials = engine.flush()
            # in batches, through the wire format, as the worker sends them
            for batch in customer_batches(
                engine.partition, partials, engine.stream_time_us, max_partials=3
            ):
                wire = msgspec.msgpack.encode(batch)
                self.store.apply_batch(msgspec.msgpack.decode(wire, type=CustomerBatch))

    def restart(self, partition: int, clock_us: int) -> None:
        """kill -9 of one engine: its table survives (changelog), its partials are rebuilt."""
        table = DictCustomerTable()
        for key, state in self.tables[partition].states():
            wire = msgspec.msgpack.encode(state)
            table.put(key, msgspec.msgpack.decode(wire, type=CustomerState))
        self.tables[partition] = table
        engine = CustomerEngine(partition, table, self.config)
        engine.rebuild(clock_us)
        self.engines[partition] = engine

    def values(self, now_us: int, groups: set[str]) -> dict[CustomerKpiKey, float | None]:
        """Every KPI of the given groups read at now_us (absent groups: zero counts)."""
        values: dict[CustomerKpiKey, float | None] = {}
        for group in groups:
            windows, live = self.store.counts(group, now_us)
            for (name, _), counts in zip(WINDOWS, windows, strict=True):
                for kpi, (value, _sample) in counts.values().items():
                    values[CustomerKpiKey(kpi, name, group)] = value
            values[CustomerKpiKey(kpis.CUSTOMERS_ACTIVE, kpis.LIVE_WINDOW, group)] = live
        return values


def oracle_for(config: CustomerConfig) -> CustomerReference:
    return CustomerReference(config.windows, config.time_zone, config.grace_seconds)


def compare(system: System, oracle: CustomerReference, now_us: int, zone: ZoneInfo) -> None:
    expected_counts = oracle.counts(now_us)
    groups = set(expected_counts) | set(system.store.groups) | {ALL}
    for group in groups:
        expected_counts.setdefault(group, ([(0, 0, 0)] * len(WINDOWS), 0))
    expected = customer_values(expected_counts, [name for name, _ in WINDOWS])
    actual = system.values(now_us, groups)
    wrong = {k: (actual.get(k), v) for k, v in expected.items() if actual.get(k) != v}
    assert not wrong, f"at {from_us(now_us).astimezone(zone)}: {sorted(wrong.items())[:6]}"
    # read() yields exactly these values for the groups the store holds
    for reading in system.store.read(now_us):
        assert reading.value == expected[reading.key], reading


# -- generated streams ------------------------------------------------------------------------


@dataclass
class Scenario:
    zone: str
    deliveries: list[tuple[CustomerLifecycle, int]]  # (event, engine clock at arrival)
    actions: list[str]  # after each delivery: "", "read", "housekeep", "restart0", ...
    later_reads: list[int]  # µs after the last clock
    bucket_seconds: float


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    zone = draw(st.sampled_from(sorted(ANCHORS)))
    anchor = to_us(datetime.fromisoformat(draw(st.sampled_from(ANCHORS[zone]))))
    customers = draw(st.integers(1, 5))
    count = draw(st.integers(1, 24))
    span_minutes = draw(st.sampled_from([180, 3 * 1440, 6 * 1440]))
    events: list[CustomerLifecycle] = []
    for index in range(count):
        minute = draw(st.integers(-span_minutes // 2, span_minutes // 2))
        # whole minutes (so that events meet window starts and midnights exactly) or not
        extra = draw(st.sampled_from([0, 0, 1, 59 * US + 999_999]))
        events.append(
            event(
                f"e{index}",
                f"c{draw(st.integers(0, customers - 1))}",
                draw(st.sampled_from(["activated", "activated", "churned"])),
                anchor + minute * MINUTE_US + extra,
                draw(st.sampled_from(SEGMENTS)),
            )
        )
    # at-least-once delivery: re-sends of earlier events
    for _ in range(draw(st.integers(0, 4))):
        events.append(events[draw(st.integers(0, len(events) - 1))])
    # out-of-order delivery: sort by event time plus a jitter of up to `disorder`
    disorder = draw(st.sampled_from([0, 30 * MINUTE_US, DAY_US, 4 * DAY_US]))
    rng = random.Random(draw(st.integers(0, 2**32)))
    keyed = [(to_us(e.occurred_at) + rng.randrange(disorder + 1), i) for i, e in enumerate(events)]
    order = [events[i] for _, i in sorted(keyed)]
    # engine clock: stream time, sometimes a wall clock running ahead of it
    wall_lead = draw(st.sampled_from([0, 0, 5 * MINUTE_US, 12 * HOUR_US, 3 * DAY_US]))
    deliveries = []
    clock = 0
    # a wall clock may also trail the events by up to 5 minutes (the future tolerance)
    trail = draw(st.sampled_from([0, 5 * MINUTE_US]))
    for ev in order:
        clock = max(clock, to_us(ev.occurred_at) + rng.randrange(-trail, wall_lead + 1))
        deliveries.append((ev, clock))
    actions = [
        draw(st.sampled_from(["", "", "read", "housekeep", "flush", "restart0", "restart1"]))
        for _ in deliveries
    ]
    later = draw(
        st.lists(
            st.sampled_from(
                [0, 1, MINUTE_US, 2 * HOUR_US, 11 * HOUR_US, DAY_US, 26 * HOUR_US, 5 * DAY_US]
            ),
            min_size=1,
            max_size=4,
        )
    )
    bucket = draw(st.sampled_from([60.0, 3600.0, 86400.0]))
    return Scenario(zone, deliveries, actions, sorted(later), bucket)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios())
def test_incremental_customers_equal_the_oracle(scenario: Scenario) -> None:
    config = CustomerConfig(
        windows=WINDOWS,
        time_zone=scenario.zone,
        grace_seconds=GRACE,
        bucket_seconds=scenario.bucket_seconds,
    )
    zone = ZoneInfo(scenario.zone)
    system = System(config)
    oracle = oracle_for(config)
    clock = 0
    for (ev, clock), action in zip(scenario.deliveries, scenario.actions, strict=True):
        system.process(ev, clock)
        oracle.feed(ev, clock)
        if action == "housekeep":
            system.housekeeping(clock)
        elif action == "flush":
            system.flush()
        elif action.startswith("restart"):
            system.restart(int(action[-1]), clock)
        elif action == "read":
            system.housekeeping(clock)
            system.flush()
            compare(system, oracle, clock, zone)
    for later in scenario.later_reads:
        if later % 2:
            system.housekeeping(clock + later)
        system.flush()
        compare(system, oracle, clock + later, zone)


# -- memory: per-customer state is bounded ----------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_state_keeps_only_what_the_longest_window_needs(scenario: Scenario) -> None:
    config = CustomerConfig(
        windows=WINDOWS,
        time_zone=scenario.zone,
        grace_seconds=GRACE,
        bucket_seconds=scenario.bucket_seconds,
    )
    horizon_us = round(config.horizon_seconds * US)
    system = System(config)
    clock = 0
    for ev, clock in scenario.deliveries:
        system.process(ev, clock)
    for later in (0, *scenario.later_reads, 40 * DAY_US):
        now = clock + later
        system.housekeeping(now)
        cutoff = now - horizon_us
        for table in system.tables:
            for _, state in table.states():
                changes = state.changes
                # at most one change at or before the horizon (the state there) ...
                assert all(c.at_us > cutoff for c in changes[1:])
                # ... and a customer inactive since before the horizon is gone
                assert changes[-1].active or changes[-1].at_us > cutoff
        for engine in system.engines:
            old = [b for (_, b) in engine.partials if b != BASE_BUCKET]
            assert all((b + 1) * engine.bucket_us > cutoff for b in old)
    # 40 days after the stream: only customers active now remain, one change each
    for table in system.tables:
        for _, state in table.states():
            assert len(state.changes) == 1
            assert state.changes[0].active


# -- explicit cases ---------------------------------------------------------------------------

T0 = to_us(datetime(2026, 6, 1, tzinfo=UTC))
SMALL = CustomerConfig(windows=(("7d", 7 * 86400.0), ("30d", 30 * 86400.0)))


def run(
    events: list[CustomerLifecycle], now_us: int, config: CustomerConfig = SMALL
) -> dict[CustomerKpiKey, float | None]:
    table = DictCustomerTable()
    engine = CustomerEngine(0, table, config)
    store = CustomerKpiStore(config)
    for ev in events:
        engine.process(ev, to_us(ev.occurred_at))
    for partial in engine.flush():
        store.apply(partial)
    return store.values(now_us)


def test_churn_retention_new_and_live() -> None:
    day = DAY_US
    values = run(
        [
            event("1", "a", "activated", T0, "pro"),
            event("2", "b", "activated", T0 + day, "pro"),
            event("3", "c", "activated", T0 + day),
            event("4", "a", "churned", T0 + 9 * day),
            event("5", "d", "activated", T0 + 9 * day, "pro"),
            # churned and back inside the window: in S and in E, so retained
            event("6", "b", "churned", T0 + 8 * day),
            event("7", "b", "activated", T0 + 8 * day + HOUR_US),
        ],
        T0 + 10 * day,
    )
    assert values[CustomerKpiKey(kpis.CUSTOMERS_ACTIVE_AT_START, "7d", ALL)] == 3
    assert values[CustomerKpiKey(kpis.CUSTOMERS_CHURNED, "7d", ALL)] == 1
    assert values[CustomerKpiKey(kpis.CUSTOMERS_NEW, "7d", ALL)] == 1
    assert values[CustomerKpiKey(kpis.CUSTOMER_CHURN_RATIO, "7d", ALL)] == pytest.approx(1 / 3)
    assert values[CustomerKpiKey(kpis.CUSTOMER_RETENTION_RATIO, "7d", ALL)] == pytest.approx(2 / 3)
    assert values[CustomerKpiKey(kpis.CUSTOMER_CHURN_RATIO, "7d", "pro")] == 0.5
    assert values[CustomerKpiKey(kpis.CUSTOMERS_ACTIVE, kpis.LIVE_WINDOW, ALL)] == 3
    assert values[CustomerKpiKey(kpis.CUSTOMERS_ACTIVE, kpis.LIVE_WINDOW, UNKNOWN)] == 1
    # nobody was active 30 days ago: no ratio (never 0 or NaN)
    assert values[CustomerKpiKey(kpis.CUSTOMERS_ACTIVE_AT_START, "30d", ALL)] == 0
    assert values[CustomerKpiKey(kpis.CUSTOMER_CHURN_RATIO, "30d", ALL)] is None
    assert values[CustomerKpiKey(kpis.CUSTOMER_RETENTION_RATIO, "30d", ALL)] is None
    assert values[CustomerKpiKey(kpis.CUSTOMERS_NEW, "30d", ALL)] == 3


def test_the_window_slides_with_the_clock_without_events() -> None:
    config = SMALL
    table = DictCustomerTable()
    engine = CustomerEngine(0, table, config)
    store = CustomerKpiStore(config)
    engine.process(event("1", "a", "activated", T0), T0)
    engine.process(event("2", "a", "churned", T0 + 3 * DAY_US), T0 + 3 * DAY_US)
    for partial in engine.flush():
        store.apply(partial)
    churned = CustomerKpiKey(kpis.CUSTOMERS_CHURNED, "7d", ALL)
    # the 7-day window starts at T0 exactly: a is in S (active at T0), not in E
    assert store.values(T0 + 7 * DAY_US)[churned] == 1
    assert store.values(T0 + 10 * DAY_US - 1)[churned] == 1
    # once the window starts after the churn, a is in neither S nor E
    assert store.values(T0 + 10 * DAY_US)[churned] == 0


def test_segment_is_the_latest_known_and_moves_the_customer() -> None:
    values = run(
        [
            event("1", "a", "activated", T0, "free"),
            event("3", "a", "activated", T0 + 2 * HOUR_US),  # no segment: keeps "pro"
            event("2", "a", "activated", T0 + HOUR_US, "pro"),
        ],
        T0 + DAY_US,
    )
    live = CustomerKpiKey(kpis.CUSTOMERS_ACTIVE, kpis.LIVE_WINDOW, "pro")
    assert values[live] == 1
    assert CustomerKpiKey(kpis.CUSTOMERS_ACTIVE, kpis.LIVE_WINDOW, "free") not in values


def test_duplicates_never_change_a_value() -> None:
    config = SMALL
    engine = CustomerEngine(0, DictCustomerTable(), config)
    first = event("1", "a", "activated", T0, "pro")
    assert engine.process(first, T0).outcome is CustomerOutcome.APPLIED
    assert engine.process(first, T0 + DAY_US).outcome is CustomerOutcome.DUPLICATE
    same_id = event("1", "a", "churned", T0 + HOUR_US)
    assert engine.process(same_id, T0 + DAY_US).outcome is CustomerOutcome.DUPLICATE


def test_segment_label_cap_folds_into_other() -> None:
    events = [
        event(f"{i}", f"c{i}", "activated", T0, segment)
        for i, segment in enumerate(["big", "big", "big", "mid", "mid", "small", None])
    ]
    config = SMALL
    engine = CustomerEngine(0, DictCustomerTable(), config)
    store = CustomerKpiStore(config)
    for ev in events:
        engine.process(ev, T0)
    for partial in engine.flush():
        store.apply(partial)
    live = {
        r.key.segment: r.value
        for r in store.read(T0 + DAY_US, max_segments=1)
        if r.key.kpi == kpis.CUSTOMERS_ACTIVE
    }
    assert live == {ALL: 7, "big": 3, OTHER: 3, UNKNOWN: 1}


def test_topic_keys_and_reserved_segments() -> None:
    values = run([event("1", "a", "activated", T0, "all")], T0 + DAY_US)
    key = CustomerKpiKey(kpis.CUSTOMERS_ACTIVE, kpis.LIVE_WINDOW, "segment-all")
    assert values[key] == 1
    assert key.topic_key() == "customers_active|live|segment-all"


def test_a_customer_churned_long_ago_costs_nothing() -> None:
    config = SMALL
    table = DictCustomerTable()
    engine = CustomerEngine(0, table, config)
    for index in range(100):
        at = T0 + index * MINUTE_US
        engine.process(event(f"a{index}", f"c{index}", "activated", at, "pro"), at)
        engine.process(event(f"b{index}", f"c{index}", "churned", at + HOUR_US), at + HOUR_US)
    engine.process(event("x", "stays", "activated", T0, "pro"), T0)
    engine.housekeeping(T0 + 31 * DAY_US)
    assert [key for key, _ in table.states()] == ["stays"]
    flushed = engine.flush()
    assert {p.bucket for p in flushed if p.series is not None} == {BASE_BUCKET}
    assert len(engine.partials) == 2  # the base of "pro" and of "all": one active customer


def test_a_late_event_before_the_folded_state_changes_nothing() -> None:
    """The state at the horizon is kept even when it is a churn with later changes: an event
    older than it (arriving a day late) must not make the customer active before its return."""
    config = CustomerConfig(windows=WINDOWS, grace_seconds=GRACE)
    horizon = round(config.horizon_seconds * US)
    zone = ZoneInfo("UTC")
    system = System(config)
    oracle = oracle_for(config)
    churn = T0 + HOUR_US
    back = churn + horizon - MINUTE_US  # arrives while the churn is inside the horizon
    later = churn + horizon + MINUTE_US  # the churn is folded, the return is not
    deliveries = [
        (event("1", "a", "activated", T0), T0),
        (event("2", "a", "churned", churn), churn),
        (event("3", "a", "activated", back), back),
        (event("4", "a", "activated", T0 + 30 * MINUTE_US), later),
    ]
    for ev, clock in deliveries:
        system.housekeeping(clock)
        system.process(ev, clock)
        oracle.feed(ev, clock)
    system.flush()
    compare(system, oracle, later, zone)
    assert system.store.counts(ALL, later)[0][0].at_start == 0  # 2h window: not active then


def test_today_resets_at_local_midnight_on_a_23_hour_day() -> None:
    """Europe/Berlin, 2026-03-29 (clocks jump from 02:00 to 03:00): today is 23 hours long."""
    config = CustomerConfig(windows=(("today", 26 * 3600.0),), time_zone="Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")

    def at(text: str) -> int:
        return to_us(datetime.fromisoformat(text))

    midnight = at("2026-03-29T00:00:00+01:00")
    events = [
        event("1", "a", "activated", at("2026-03-28T12:00:00+01:00")),
        event("2", "b", "activated", at("2026-03-28T23:59:59+01:00")),
        event("3", "a", "churned", at("2026-03-29T22:30:00+02:00")),
        event("4", "c", "activated", at("2026-03-29T01:30:00+01:00")),
    ]
    values = run(events, at("2026-03-29T23:59:59+02:00"), config)
    assert values[CustomerKpiKey(kpis.CUSTOMERS_ACTIVE_AT_START, "today", ALL)] == 2
    assert values[CustomerKpiKey(kpis.CUSTOMERS_CHURNED, "today", ALL)] == 1
    assert values[CustomerKpiKey(kpis.CUSTOMERS_NEW, "today", ALL)] == 1
    # the next day starts 23 hours after the last one: yesterday's churn is gone
    store_values = run(events, midnight + 23 * HOUR_US, config)
    assert store_values[CustomerKpiKey(kpis.CUSTOMERS_CHURNED, "today", ALL)] == 0
    assert store_values[CustomerKpiKey(kpis.CUSTOMERS_ACTIVE_AT_START, "today", ALL)] == 2
    assert from_us(midnight + 23 * HOUR_US).astimezone(berlin).hour == 0
    # one microsecond earlier it is still the 29th
    before = run(events, midnight + 23 * HOUR_US - 1, config)
    assert before[CustomerKpiKey(kpis.CUSTOMERS_CHURNED, "today", ALL)] == 1


# -- stage-2 messages: batches, snapshots, completeness ----------------------------------------


def test_batches_carry_a_snapshot_that_completes_with_its_last_chunk() -> None:
    config = CustomerConfig(windows=WINDOWS, grace_seconds=GRACE)
    table = DictCustomerTable()
    engine = CustomerEngine(1, table, config)
    for index in range(30):
        engine.process(event(f"e{index}", f"c{index}", "activated", T0 + index * HOUR_US), T0)
    engine.flush()
    engine.rebuild(T0 + 30 * HOUR_US)  # a recovery: the next flush is a reset and a snapshot
    partials = engine.flush()
    assert any(p.reset for p in partials)
    batches = customer_batches(1, partials, engine.stream_time_us, max_partials=7)
    assert len(batches) > 2
    assert [b.reset for b in batches] == [True] + [False] * (len(batches) - 1)
    assert [b.complete for b in batches] == [False] * (len(batches) - 1) + [True]
    assert not any(p.reset for b in batches for p in b.partials)
    assert sum(len(b.partials) for b in batches) == len(partials) - 1

    store = CustomerKpiStore(config)
    reference = CustomerKpiStore(config)
    for partial in partials:
        reference.apply(partial)
    assert not store.complete(2)
    for batch in batches[:-1]:
        wire = msgspec.msgpack.encode(batch)
        store.apply_batch(msgspec.msgpack.decode(wire, type=CustomerBatch))
        assert store.sources[1] == (False, True)
    store.apply_batch(batches[-1])
    assert store.sources[1] == (True, True)
    assert not store.complete(2), "partition 0 has sent nothing"
    store.apply_batch(CustomerBatch(0, T0, [], reset=True, caught_up=False))
    assert not store.complete(2), "partition 0 is not caught up"
    store.apply_batch(CustomerBatch(0, T0, [], caught_up=True))
    assert store.complete(2)
    now = T0 + 31 * HOUR_US
    assert store.values(now) == reference.values(now)
    assert store.values(now)[CustomerKpiKey(kpis.CUSTOMERS_ACTIVE, kpis.LIVE_WINDOW)] == 30


def test_a_batch_without_a_reset_never_makes_a_source_complete() -> None:
    store = CustomerKpiStore(CustomerConfig(windows=WINDOWS))
    store.apply_batch(CustomerBatch(0, T0, [], complete=True, caught_up=True))
    assert not store.complete(1)
    assert customer_batches(0, [], T0, caught_up=False) == [
        CustomerBatch(0, T0, [], reset=False, complete=True, caught_up=False)
    ]


def test_a_reset_batch_drops_what_stage_2_held_from_that_partition() -> None:
    config = CustomerConfig(windows=WINDOWS, grace_seconds=GRACE)
    engine = CustomerEngine(0, DictCustomerTable(), config)
    engine.process(event("e1", "a", "activated", T0, "pro"), T0)
    store = CustomerKpiStore(config)
    store.apply_batch(customer_batches(0, engine.flush(), T0)[0])
    assert CustomerKpiKey(kpis.CUSTOMERS_ACTIVE, kpis.LIVE_WINDOW, "pro") in store.values(T0)
    # The partition's state was lost (its new owner has no customers): a reset, nothing else.
    empty = CustomerEngine(0, DictCustomerTable(), config)
    empty.rebuild(T0)
    store.apply_batch(customer_batches(0, empty.flush(), T0)[0])
    assert store.values(T0) == {}
