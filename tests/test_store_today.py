"""The calendar-day window ``today`` in the stage-2 store (SPEC §3): at clock ``now`` it covers
the buckets from local midnight to the window end, resets at midnight, and is exact on 23- and
25-hour days. Expected values are brute force: the latest partials whose bucket lies in
[midnight, now], with midnight found independently from :mod:`streams.core.today` (local date of
``now`` at 00:00 read through zoneinfo)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core import kpis as K
from streams.core.aggregate import WindowAggregate
from streams.core.kpis import ALL, LIVE_WINDOW, OTHER, EngineConfig, KpiKey, KpiValues
from streams.core.partition import Group, PartialUpdate
from streams.core.replay import replay
from streams.core.store import KpiStore
from streams.core.units import US
from streams.events import TicketCreated
from streams.outputs.publisher import to_record

B_US = 60 * US
HOUR_US = 3600 * US
WINDOWS = (("15m", 900.0), ("today", 26 * 3600.0), ("24h", 86400.0))
OVERALL: Group = (ALL, ALL, ALL)
TEAMS: tuple[Group, ...] = (OVERALL, ("tier1", ALL, ALL), (ALL, "chat", ALL))

_WIRE = msgspec.msgpack.Encoder()
_PARTIAL = msgspec.msgpack.Decoder(PartialUpdate)


def config(zone: str) -> EngineConfig:
    return EngineConfig(windows=WINDOWS, bucket_seconds=60.0, time_zone=zone)


def us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def local_midnight_us(now_us: int, zone: ZoneInfo) -> int:
    """Independent of streams.core.today: 00:00 of now's local date (exists in these zones)."""
    local = datetime.fromtimestamp(now_us // US, zone)
    return us(datetime.combine(local.date(), time(0), tzinfo=zone))


def update(
    group: Group, partition: int, bucket: int, window: WindowAggregate | None
) -> PartialUpdate:
    """An update as stage 2 receives it: decoded from the wire (a snapshot, not shared)."""
    return _PARTIAL.decode(_WIRE.encode(PartialUpdate(group, partition, bucket, window, None)))


def agg(
    created: int = 0, csat: tuple[int, ...] = (), frt_s: tuple[int, ...] = ()
) -> WindowAggregate:
    a = WindowAggregate(created=created)
    for score in csat:
        a.add_survey("csat", score, +1)
    for seconds in frt_s:
        a.add_first_response(seconds * US, seconds <= 900, +1)
    return a


Parts = dict[tuple[Group, int, int], WindowAggregate]  # (group, partition, bucket) -> latest


def brute_force_today(parts: Parts, now_us: int, zone: ZoneInfo) -> tuple[KpiValues, int]:
    """Every ``today`` reading at now_us from the latest partials, and the created count."""
    midnight = local_midnight_us(now_us, zone)
    out: KpiValues = {}
    created = 0
    for group in {g for (g, _, _) in parts}:
        total = WindowAggregate()
        for (g, _, bucket), partial in parts.items():
            if g == group and midnight <= bucket * B_US <= now_us:
                total.merge(partial)
                if group == OVERALL:
                    created += partial.created
        for kpi, (value, _) in total.values().items():
            if kpi in K.TEAM_ONLY_KPIS and group[1:] != (ALL, ALL):
                continue
            out[KpiKey(kpi, "today", *group)] = value
    return out, created


def today_readings(store: KpiStore, now_us: int) -> KpiValues:
    return {r.key: r.value for r in store.read(now_us) if r.key.window == "today"}


# Days with a daylight-saving change (and an ordinary one): (zone, local date).
DAYS = [
    ("Europe/Berlin", "2024-03-31"),  # 23 h
    ("Europe/Berlin", "2024-10-27"),  # 25 h
    ("Europe/Berlin", "2024-06-12"),  # 24 h
    ("America/New_York", "2024-03-10"),  # 23 h
    ("America/New_York", "2024-11-03"),  # 25 h
]


Write = tuple[Group, int, int, WindowAggregate | None]  # (group, partition, bucket, partial)
Operation = Write | int  # an int: read at that clock


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[str, list[Operation]]:
    """A zone and a run of operations around one DST day: partial updates (bucket within
    ±30 h of its midnights) and reads (clustered at the midnights; in half of the runs in
    clock order, the incremental path, in the other half shuffled)."""
    zone_name, day = draw(st.sampled_from(DAYS))
    zone = ZoneInfo(zone_name)
    start = us(datetime.fromisoformat(day).replace(tzinfo=zone))
    end = us((datetime.fromisoformat(day) + timedelta(days=1)).replace(tzinfo=zone))
    midnights = [start, end]
    near_midnight = st.builds(
        lambda m, d: m + d,
        st.sampled_from(midnights),
        st.sampled_from([-1, 0, 1]) | st.integers(-3 * B_US, 3 * B_US),
    )
    bucket = st.sampled_from([m // B_US + d for m in midnights for d in (-2, -1, 0, 1)]) | (
        st.integers((start - 30 * HOUR_US) // B_US, (end + 30 * HOUR_US) // B_US)
    )
    partial = st.none() | st.builds(
        agg, st.integers(0, 5), st.lists(st.integers(1, 5), max_size=2).map(tuple)
    )
    write = st.tuples(st.sampled_from(TEAMS), st.integers(0, 2), bucket, partial)
    read = near_midnight | st.integers(start - 4 * HOUR_US, end + 28 * HOUR_US)
    operations: list[Operation] = draw(st.lists(write | read, min_size=5, max_size=60))
    if draw(st.booleans()):
        reads = iter(sorted(op for op in operations if isinstance(op, int)))
        operations = [next(reads) if isinstance(op, int) else op for op in operations]
    return zone_name, operations


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_today_matches_brute_force_around_midnight_and_dst(
    scenario: tuple[str, list[Operation]],
) -> None:
    zone_name, operations = scenario
    zone = ZoneInfo(zone_name)
    store = KpiStore(config(zone_name))
    parts: Parts = {}
    for op in operations:
        if not isinstance(op, int):
            group, partition, bucket, window = op
            store.apply(update(group, partition, bucket, window))
            if window is None or window.is_empty():
                parts.pop((group, partition, bucket), None)
            else:
                parts[(group, partition, bucket)] = window
            continue
        now = op
        expected, created = brute_force_today(parts, now, zone)
        assert today_readings(store, now) == expected
        midnight = local_midnight_us(now, zone)
        end = (now // B_US + 1) * B_US
        bounds = {
            (r.window_start_us, r.window_end_us) for r in store.read(now) if r.key.window == "today"
        }
        assert bounds <= {(midnight, end)}
        if parts and any(g == OVERALL for g, _, _ in parts):
            assert expected[KpiKey(K.TICKETS_CREATED, "today")] == float(created)
        assert store.window_bounds(now)[1] == (midnight, end)


def test_today_resets_at_local_midnight_while_24h_keeps_yesterday() -> None:
    zone = ZoneInfo("Europe/Berlin")
    store = KpiStore(config("Europe/Berlin"))
    midnight = us(datetime(2024, 6, 13, tzinfo=zone))  # 2024-06-12T22:00Z
    store.apply(update(OVERALL, 0, midnight // B_US - 1, agg(created=4)))  # 23:59 local
    store.apply(update(OVERALL, 1, midnight // B_US, agg(created=1)))  # 00:00 local
    created = KpiKey(K.TICKETS_CREATED, "today")
    day = KpiKey(K.TICKETS_CREATED, "24h")

    before = {r.key: r for r in store.read(midnight - 1)}
    assert before[created].value == 4.0  # 00:00 bucket is not reached yet
    assert before[created].window_start_us == midnight - 24 * HOUR_US
    after = {r.key: r for r in store.read(midnight)}
    assert after[created].value == 1.0  # yesterday's 4 are gone at 00:00 sharp
    assert after[created].window_start_us == midnight
    assert after[created].window_end_us == midnight + B_US
    assert after[day].value == 5.0  # the rolling window still has them
    late = {r.key: r.value for r in store.read(midnight + 23 * HOUR_US + 59 * B_US)}
    assert late[created] == 1.0
    assert late[day] == 1.0
    # A late partial for yesterday changes yesterday's numbers, never today's.
    store.apply(update(OVERALL, 2, midnight // B_US - 30, agg(created=7)))
    assert today_readings(store, midnight + 2 * HOUR_US)[created] == 1.0


def test_today_on_the_23_and_25_hour_days_of_berlin() -> None:
    store = KpiStore(config("Europe/Berlin"))
    short_start = us(datetime(2024, 3, 30, 23, tzinfo=UTC))  # 2024-03-31 00:00 CET
    long_start = us(datetime(2024, 10, 26, 22, tzinfo=UTC))  # 2024-10-27 00:00 CEST
    for start, hours in ((short_start, 23), (long_start, 25)):
        store.apply(update(OVERALL, 0, start // B_US, agg(created=1)))  # first minute
        store.apply(update(OVERALL, 0, start // B_US + hours * 60 - 1, agg(created=10)))  # last
        last_instant = start + hours * HOUR_US - 1
        readings = {r.key: r for r in store.read(last_instant)}
        reading = readings[KpiKey(K.TICKETS_CREATED, "today")]
        assert (reading.value, reading.window_start_us) == (11.0, start)
        assert reading.window_end_us == start + hours * HOUR_US
        # One microsecond later the next day has begun, with nothing in it yet.
        nxt = {r.key: r for r in store.read(last_instant + 1)}[KpiKey(K.TICKETS_CREATED, "today")]
        assert (nxt.value, nxt.window_start_us) == (0.0, start + hours * HOUR_US)


def test_today_reading_becomes_a_record_with_the_midnight_start() -> None:
    store = KpiStore(config("America/New_York"))
    now = us(datetime(2024, 11, 3, 20, 30, tzinfo=UTC))  # 15:30 EST, on a 25-hour day
    store.apply(update(OVERALL, 0, now // B_US, agg(created=2)))
    reading = next(r for r in store.read(now) if r.key == KpiKey(K.TICKETS_CREATED, "today"))
    record = to_record(reading, datetime(2024, 11, 3, 20, 30, 5, tzinfo=UTC).timestamp())
    assert record.window_start == datetime(2024, 11, 3, 4, tzinfo=UTC)  # 00:00 EDT
    assert record.window_end == datetime(2024, 11, 3, 20, 31, tzinfo=UTC)
    assert record.value == 2.0


def _team(name: str) -> Group:
    return (name, ALL, ALL)


def test_team_cap_ranks_by_the_longest_rolling_window_not_today() -> None:
    """At 00:30 the busiest team of the last 24 h keeps its label even though another team
    has more tickets since midnight: the cap does not reshuffle at midnight."""
    store = KpiStore(config("Europe/Berlin"))
    midnight = us(datetime(2024, 6, 13, tzinfo=ZoneInfo("Europe/Berlin")))
    store.apply(update(_team("evening"), 0, midnight // B_US - 120, agg(created=10)))  # 22:00
    store.apply(update(_team("morning"), 0, midnight // B_US + 10, agg(created=3)))  # 00:10
    now = midnight + 30 * B_US
    readings = list(store.read(now, max_teams=1))
    assert {r.key.team for r in readings} == {"evening", OTHER}
    values = {r.key: r.value for r in readings}
    assert values[KpiKey(K.TICKETS_CREATED, "today", OTHER)] == 3.0
    assert values[KpiKey(K.TICKETS_CREATED, "today", "evening")] == 0.0
    assert values[KpiKey(K.TICKETS_CREATED, "24h", "evening")] == 10.0
    # The cap is the same before and after midnight.
    assert {r.key.team for r in store.read(midnight - 1, max_teams=1)} == {"evening", OTHER}


def test_team_cap_ranks_by_today_when_it_is_the_only_window() -> None:
    cfg = replace(config("Europe/Berlin"), windows=(("today", 26 * 3600.0),))
    store = KpiStore(cfg)
    midnight = us(datetime(2024, 6, 13, tzinfo=ZoneInfo("Europe/Berlin")))
    store.apply(update(_team("evening"), 0, midnight // B_US - 120, agg(created=10)))
    store.apply(update(_team("morning"), 0, midnight // B_US + 10, agg(created=3)))
    readings = list(store.read(midnight + 30 * B_US, max_teams=1))
    assert {r.key.team for r in readings} == {"morning", OTHER}
    assert all(r.key.window in ("today", LIVE_WINDOW) for r in readings)


# --- end to end through the pure pipeline (stage 1 partitions, wire format, stage 2) ----------

BERLIN = ZoneInfo("Europe/Berlin")
LONG_DAY = us(datetime(2024, 10, 27, tzinfo=BERLIN))  # 25 hours long
CREATED = [
    TicketCreated(
        event_id=f"e{i}",
        ticket_id=f"t{i}",
        customer_id="c",
        team=("tier1", "tier2")[i % 2],
        channel="chat",
        priority="normal",
        occurred_at=datetime.fromtimestamp((LONG_DAY - 30 * HOUR_US + i * 1_777 * US) / US, UTC),
        schema_version=1,
    )
    for i in range(200)  # every 29.6 min from 30 h before the day to its end and beyond
]


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from([LONG_DAY, LONG_DAY + 25 * HOUR_US]).flatmap(
        lambda m: st.integers(m - 2 * HOUR_US, m + 2 * HOUR_US)
    )
    | st.integers(LONG_DAY - 2 * HOUR_US, LONG_DAY + 27 * HOUR_US)
)
def test_replay_counts_today_from_local_midnight_on_the_25_hour_day(now: int) -> None:
    """Events up to the clock through two stage-1 partitions: today's volume per team is the
    number of tickets created since local midnight, counted here with zoneinfo."""
    arrived = [e for e in CREATED if us(e.occurred_at) <= now]
    values = replay(arrived, config("Europe/Berlin"), now=now / US, partitions=2)
    midnight = local_midnight_us(now, BERLIN)
    for team in ("tier1", "tier2"):
        expected = sum(
            1 for e in arrived if e.team == team and midnight <= us(e.occurred_at) <= now
        )
        got = values.get(KpiKey(K.TICKETS_CREATED, "today", team))
        assert got == (float(expected) if got is not None else None)
        if got is None:  # the team has no partial left at all
            assert expected == 0
    total = sum(1 for e in arrived if midnight <= us(e.occurred_at) <= now)
    assert values.get(KpiKey(K.TICKETS_CREATED, "today"), 0.0) == float(total)
