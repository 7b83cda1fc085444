"""Tests of the stage-2 merge (:mod:`streams.core.merge`): latest partial per
(group, partition, bucket), rolling windows that decay without input, live backlog readings and
the team label cap. Expected values are recomputed from scratch from the latest partials."""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence

import msgspec
import pytest
from helpers.strategies import generated
from hypothesis import given
from hypothesis import strategies as st

from streams.core import kpis as K
from streams.core.aggregate import LiveAggregate, WindowAggregate
from streams.core.kpis import ALL, LIVE_WINDOW, OTHER, EngineConfig, KpiKey, KpiValues
from streams.core.merge import KpiMerge, KpiReading
from streams.core.partials import HEARTBEAT_BUCKET, Group, PartialUpdate
from streams.core.units import US

CFG = EngineConfig(
    windows=(("5m", 300.0), ("1h", 3600.0)),
    bucket_seconds=60.0,
    grace_seconds=60.0,
    sla_targets={"urgent": 900.0, "high": 3600.0, "normal": 14400.0, "low": 28800.0},
)
B_US = 60 * US
T0 = 1_710_144_000 * US  # 2024-03-11 08:00 UTC, a whole hour
BUCKET0 = T0 // B_US
OVERALL: Group = (ALL, ALL, ALL)

_WIRE = msgspec.msgpack.Encoder()
_PARTIAL = msgspec.msgpack.Decoder(PartialUpdate)


def agg(
    created: int = 0,
    frt_s: Sequence[float] = (),
    solved_s: Sequence[float] = (),
    csat: Sequence[int] = (),
    nps: Sequence[int] = (),
    enps: Sequence[int] = (),
    escalated: int = 0,
) -> WindowAggregate:
    a = WindowAggregate(created=created, escalated=escalated)
    for seconds in frt_s:
        a.add_first_response(round(seconds * US), seconds <= 900, +1)
    for seconds in solved_s:
        a.add_resolution(round(seconds * US), seconds < 100, +1)
    for score in csat:
        a.add_survey("csat", score, +1)
    for score in nps:
        a.add_survey("nps", score, +1)
    for score in enps:
        a.add_survey("enps", score, +1)
    return a


def window_update(
    group: Group, partition: int, bucket: int, window: WindowAggregate | None
) -> PartialUpdate:
    """An update as stage 2 receives it: decoded from the wire (a snapshot, not shared)."""
    update = PartialUpdate(
        group=group,
        source_partition=partition,
        bucket=BUCKET0 + bucket,
        window=window,
        stream_time_us=T0,
    )
    return _PARTIAL.decode(_WIRE.encode(update))


def live_update(group: Group, partition: int, live: LiveAggregate | None) -> PartialUpdate:
    return _PARTIAL.decode(
        _WIRE.encode(
            PartialUpdate(
                group=group, source_partition=partition, bucket=0, live=live, is_live=True
            )
        )
    )


def windowed(merge: KpiMerge, now_us: int, max_teams: int | None = None) -> KpiValues:
    return {r.key: r.value for r in merge.read(now_us, max_teams) if r.key.window != LIVE_WINDOW}


def live_values(merge: KpiMerge, now_us: int, max_teams: int | None = None) -> KpiValues:
    return {r.key: r.value for r in merge.read(now_us, max_teams) if r.key.window == LIVE_WINDOW}


PartsKey = tuple[Group, int, int]  # (group, partition, bucket)


def from_scratch(
    parts: dict[PartsKey, WindowAggregate], groups: Iterable[Group], now_us: int
) -> KpiValues:
    """The windowed readings at now_us, recomputed by summing the latest partials per window."""
    end = now_us // B_US + 1 - BUCKET0  # relative bucket numbers, as in the keys
    out: KpiValues = {}
    for group in groups:
        for name, size_s in CFG.windows:
            size = round(size_s * US) // B_US
            total = WindowAggregate()
            for (g, _, bucket), partial in parts.items():
                if g == group and end - size <= bucket < end:
                    total.merge(partial)
            for kpi, (value, _) in total.values().items():
                if kpi in K.TEAM_ONLY_KPIS and group[1:] != (ALL, ALL):
                    continue
                out[KpiKey(kpi, name, *group)] = value
    return out


# --- latest value per (group, partition, bucket) -------------------------------------------------


def _times(*created_us: int) -> bytes:
    """LiveAggregate.unanswered's packed form: sorted creation times, 8 bytes each."""
    return array("q", sorted(created_us)).tobytes()


def test_applying_the_same_update_twice_is_the_same_as_once() -> None:
    once, twice = KpiMerge(CFG), KpiMerge(CFG)
    updates = [
        window_update(OVERALL, 0, 0, agg(created=2, frt_s=[30, 90])),
        window_update(OVERALL, 1, 0, agg(created=1, csat=[5])),
        window_update(("tier1", ALL, ALL), 0, 1, agg(created=3, enps=[9])),
        live_update(OVERALL, 0, LiveAggregate(open=2, unanswered={"low": _times(T0, T0)})),
    ]
    for update in updates:
        once.apply(update)
        twice.apply(update)
        twice.apply(_PARTIAL.decode(_WIRE.encode(update)))
    now = T0 + 90 * US
    assert list(twice.read(now)) == list(once.read(now))
    assert windowed(once, now)[KpiKey(K.TICKETS_CREATED, "5m")] == 3.0
    assert live_values(twice, now)[KpiKey(K.OPEN_TICKETS, LIVE_WINDOW)] == 2.0


def test_a_newer_value_replaces_the_older_one_for_the_same_partial() -> None:
    merge = KpiMerge(CFG)
    merge.apply(window_update(OVERALL, 0, 0, agg(created=1, frt_s=[600])))
    now = T0 + 30 * US
    merge.read(now)  # the window's running total now includes bucket 0
    merge.apply(window_update(OVERALL, 0, 0, agg(created=5, frt_s=[60])))
    merge.apply(window_update(OVERALL, 1, 0, agg(created=2)))  # another partition adds up
    v = windowed(merge, now)
    assert v[KpiKey(K.TICKETS_CREATED, "5m")] == 7.0
    assert v[KpiKey(K.FIRST_RESPONSES, "5m")] == 1.0
    assert v[KpiKey(K.FIRST_RESPONSE_MEAN, "5m")] == 60.0
    assert v[KpiKey(K.FIRST_RESPONSE_P90, "1h")] == pytest.approx(60.0, rel=0.01)


def test_a_tombstone_removes_the_partial() -> None:
    merge = KpiMerge(CFG)
    merge.apply(window_update(OVERALL, 0, 0, agg(created=1)))
    merge.apply(window_update(OVERALL, 1, 0, agg(created=4)))
    now = T0 + 30 * US
    assert windowed(merge, now)[KpiKey(K.TICKETS_CREATED, "1h")] == 5.0
    merge.apply(window_update(OVERALL, 1, 0, None))
    assert windowed(merge, now)[KpiKey(K.TICKETS_CREATED, "1h")] == 1.0
    merge.apply(window_update(OVERALL, 0, 0, None))
    assert not merge.groups  # the group is gone: no stale series
    assert list(merge.read(now)) == []
    merge.apply(window_update(OVERALL, 0, 0, None))  # a repeated tombstone is harmless
    merge.apply(live_update(OVERALL, 0, None))
    assert not merge.groups


def test_an_empty_partial_is_a_tombstone_and_live_tombstones_remove_the_backlog() -> None:
    merge = KpiMerge(CFG)
    merge.apply(window_update(OVERALL, 0, 0, agg(created=1)))
    merge.apply(live_update(OVERALL, 0, LiveAggregate(open=1)))
    merge.apply(live_update(OVERALL, 1, LiveAggregate(open=2)))
    merge.apply(window_update(OVERALL, 0, 0, WindowAggregate()))
    now = T0 + 30 * US
    assert windowed(merge, now)[KpiKey(K.TICKETS_CREATED, "1h")] == 0.0
    assert live_values(merge, now)[KpiKey(K.OPEN_TICKETS, LIVE_WINDOW)] == 3.0
    merge.apply(live_update(OVERALL, 1, None))
    assert live_values(merge, now)[KpiKey(K.OPEN_TICKETS, LIVE_WINDOW)] == 1.0
    merge.apply(live_update(OVERALL, 0, LiveAggregate()))
    assert not merge.groups


def test_stream_time_is_the_latest_seen() -> None:
    merge = KpiMerge(CFG)
    merge.apply(
        PartialUpdate(
            group=OVERALL,
            source_partition=0,
            bucket=BUCKET0,
            window=agg(created=1),
            stream_time_us=T0 + 5,
        )
    )
    merge.apply(
        PartialUpdate(
            group=OVERALL,
            source_partition=1,
            bucket=BUCKET0,
            window=agg(created=1),
            stream_time_us=T0 + 3,
        )
    )
    assert merge.stream_time_us == T0 + 5


# --- rolling windows ---------------------------------------------------------------------------


def test_window_bounds_are_aligned_to_the_bucket_grid() -> None:
    merge = KpiMerge(CFG)
    for now in (T0, T0 + 1, T0 + B_US - 1):
        assert merge.window_bounds(now) == [
            (T0 + B_US - 300 * US, T0 + B_US),
            (T0 + B_US - 3600 * US, T0 + B_US),
        ]
    assert merge.window_bounds(T0 + B_US)[0] == (T0 + 2 * B_US - 300 * US, T0 + 2 * B_US)
    # Readings carry the same bounds.
    merge.apply(window_update(OVERALL, 0, 0, agg(created=1)))
    readings = [r for r in merge.read(T0 + 17 * US) if r.key.kpi == K.TICKETS_CREATED]
    assert {(r.key.window, r.window_start_us, r.window_end_us) for r in readings} == {
        ("5m", T0 + B_US - 300 * US, T0 + B_US),
        ("1h", T0 + B_US - 3600 * US, T0 + B_US),
    }


def test_window_edges_current_bucket_in_future_bucket_out_start_inclusive() -> None:
    merge = KpiMerge(CFG)
    for bucket in (-5, -4, 0, 1):
        merge.apply(window_update(OVERALL, 0, bucket, agg(created=10 ** (bucket + 5))))
    v = windowed(merge, T0 + 59 * US)  # 5m window: buckets [-4, 0]
    assert v[KpiKey(K.TICKETS_CREATED, "5m")] == 10.0 + 1e5
    assert v[KpiKey(K.TICKETS_CREATED, "1h")] == 1.0 + 10.0 + 1e5


def test_values_decay_as_the_clock_moves_without_input() -> None:
    merge = KpiMerge(CFG)
    merge.apply(window_update(OVERALL, 0, 0, agg(created=1, frt_s=[100])))
    merge.apply(window_update(OVERALL, 0, 3, agg(created=2, frt_s=[300])))
    key = KpiKey(K.TICKETS_CREATED, "5m")
    mean = KpiKey(K.FIRST_RESPONSE_MEAN, "5m")
    assert windowed(merge, T0)[key] == 1.0
    assert windowed(merge, T0 + 3 * B_US)[key] == 3.0
    assert windowed(merge, T0 + 3 * B_US)[mean] == 200.0
    assert windowed(merge, T0 + 5 * B_US)[key] == 2.0  # bucket 0 left the 5m window
    assert windowed(merge, T0 + 5 * B_US)[mean] == 300.0
    assert windowed(merge, T0 + 8 * B_US)[key] == 0.0
    assert windowed(merge, T0 + 8 * B_US)[mean] is None
    assert windowed(merge, T0 + 8 * B_US)[KpiKey(K.TICKETS_CREATED, "1h")] == 3.0
    assert windowed(merge, T0 + 63 * B_US)[KpiKey(K.TICKETS_CREATED, "1h")] == 0.0


_GROUPS: tuple[Group, ...] = (OVERALL, ("tier1", ALL, ALL), (ALL, "chat", ALL))

_partial = st.builds(
    agg,
    created=st.integers(0, 3),
    frt_s=st.lists(st.sampled_from([0.0, 1.0, 59.5, 600.0, 7200.0]), max_size=3),
    solved_s=st.lists(st.sampled_from([10.0, 500.0, 86400.0]), max_size=2),
    csat=st.lists(st.integers(1, 5), max_size=2),
    nps=st.lists(st.integers(0, 10), max_size=2),
    enps=st.lists(st.integers(0, 10), max_size=1),
    escalated=st.integers(0, 2),
)
# (group, partition, bucket relative to BUCKET0, partial or tombstone)
_update = st.tuples(
    st.sampled_from(_GROUPS),
    st.integers(0, 2),
    st.integers(-10, 130),
    st.one_of(st.none(), _partial),
)
# Reading clocks: microseconds after T0, anywhere within ~2.5 hours, bucket edges included.
_clock = st.one_of(
    st.integers(-10, 150).map(lambda n: n * B_US),
    st.integers(-10, 150).map(lambda n: n * B_US - 1),
    st.integers(-600 * US, 150 * B_US),
)
# A step is either an update or a read.
_step = st.one_of(_update.map(lambda u: ("apply", u)), _clock.map(lambda c: ("read", c)))

PROPERTY = generated(150)


def _run_steps(
    steps: Sequence[tuple[str, object]],
) -> None:
    merge = KpiMerge(CFG)
    parts: dict[PartsKey, WindowAggregate] = {}
    for kind, payload in steps:
        if kind == "apply":
            assert isinstance(payload, tuple)
            group, partition, bucket, partial = payload
            merge.apply(window_update(group, partition, bucket, partial))
            if partial is None or partial.is_empty():
                parts.pop((group, partition, bucket), None)
            else:
                parts[(group, partition, bucket)] = partial
        else:
            assert isinstance(payload, int)
            now = T0 + payload
            groups = {g for g, _, _ in parts}
            assert set(merge.groups) == groups
            assert windowed(merge, now) == from_scratch(parts, groups, now)


@PROPERTY
@given(
    st.lists(_update, max_size=25),
    st.lists(st.integers(-600 * US, 150 * B_US), min_size=1, max_size=12).map(sorted),
)
def test_window_sliding_without_input_matches_a_recomputation(
    updates: list[tuple[Group, int, int, WindowAggregate | None]], clocks: list[int]
) -> None:
    """Updates first, then reads at increasing clocks: values decay exactly."""
    _run_steps([("apply", u) for u in updates] + [("read", c) for c in clocks])


@PROPERTY
@given(st.lists(_step, max_size=40))
def test_interleaved_updates_and_reads_with_the_clock_going_back_match_a_recomputation(
    steps: list[tuple[str, object]],
) -> None:
    """Updates inside and outside the current windows between reads; clocks in any order
    (backwards, jumps past whole windows, the same bucket again)."""
    _run_steps(steps)


def test_clock_going_backwards_recomputes_the_window() -> None:
    merge = KpiMerge(CFG)
    merge.apply(window_update(OVERALL, 0, 0, agg(created=1)))
    merge.apply(window_update(OVERALL, 0, 10, agg(created=2)))
    key = KpiKey(K.TICKETS_CREATED, "5m")
    assert windowed(merge, T0 + 10 * B_US)[key] == 2.0
    assert windowed(merge, T0 + 2 * B_US)[key] == 1.0
    merge.apply(window_update(OVERALL, 0, 1, agg(created=4)))  # inside the current window
    assert windowed(merge, T0 + 2 * B_US)[key] == 5.0
    assert windowed(merge, T0 + 11 * B_US)[key] == 2.0
    assert windowed(merge, T0 + 4 * B_US)[key] == 5.0


# --- live backlog --------------------------------------------------------------------------------


def test_live_readings_open_unanswered_oldest_age_and_past_sla() -> None:
    merge = KpiMerge(CFG)
    p0 = LiveAggregate()
    p0.add(True, "urgent", T0, +1)  # urgent target 900 s
    p0.add(True, "urgent", T0 + 100 * US, +1)
    p0.add(True, None, T0 - 5000 * US, +1)  # open, answered: not in the unanswered figures
    p1 = LiveAggregate()
    p1.add(True, "low", T0 - 200 * US, +1)  # low target 28800 s
    merge.apply(live_update(OVERALL, 0, p0))
    merge.apply(live_update(OVERALL, 1, p1))

    def at(now: int) -> dict[str, float | None]:
        return {k.kpi: v for k, v in live_values(merge, now).items() if k.team == ALL}

    v = at(T0 + 900 * US)
    assert v[K.OPEN_TICKETS] == 4.0
    assert v[K.UNANSWERED_TICKETS] == 3.0
    assert v[K.OLDEST_UNANSWERED_AGE] == 1100.0
    assert v[K.UNANSWERED_PAST_SLA] == 0.0  # exactly on target is not past it
    assert at(T0 + 900 * US + 1)[K.UNANSWERED_PAST_SLA] == 1.0
    assert at(T0 + 1000 * US + 1)[K.UNANSWERED_PAST_SLA] == 2.0
    assert at(T0 + 28600 * US + 1)[K.UNANSWERED_PAST_SLA] == 3.0
    # Live readings have no window bounds and follow the clock, not the buckets.
    readings = [r for r in merge.read(T0 + 1) if r.key.window == LIVE_WINDOW]
    assert readings
    assert all(r.window_start_us is None and r.window_end_us is None for r in readings)
    # The answered ticket's partition replaces its partial: only p1's ticket remains unanswered.
    p0.add(True, "urgent", T0, -1)
    p0.add(True, "urgent", T0 + 100 * US, -1)
    merge.apply(live_update(OVERALL, 0, p0))
    v = at(T0 + 900 * US)
    assert v[K.OPEN_TICKETS] == 2.0
    assert v[K.UNANSWERED_TICKETS] == 1.0
    assert v[K.OLDEST_UNANSWERED_AGE] == 1100.0
    merge.apply(live_update(OVERALL, 1, None))
    v = at(T0 + 900 * US)
    assert v[K.UNANSWERED_TICKETS] == 0.0
    assert v[K.OLDEST_UNANSWERED_AGE] == 0.0
    assert v[K.OPEN_TICKETS] == 1.0


# --- eNPS and the team label cap ----------------------------------------------------------------


def test_enps_is_read_only_for_overall_and_team_groups() -> None:
    merge = KpiMerge(CFG)
    for group in (OVERALL, ("tier1", ALL, ALL), (ALL, "chat", ALL), (ALL, ALL, "high")):
        merge.apply(window_update(group, 0, 0, agg(created=1, enps=[10], nps=[10])))
    readings = list(merge.read(T0))
    enps = {r.key[2:] for r in readings if r.key.kpi in K.TEAM_ONLY_KPIS}
    nps = {r.key[2:] for r in readings if r.key.kpi == K.NPS_SCORE}
    assert enps == {OVERALL, ("tier1", ALL, ALL)}
    assert nps == {OVERALL, ("tier1", ALL, ALL), (ALL, "chat", ALL), (ALL, ALL, "high")}
    by_key = {r.key: r for r in readings}
    assert by_key[KpiKey(K.ENPS_SCORE, "1h", "tier1")].value == 100.0
    assert by_key[KpiKey(K.ENPS_RESPONSES, "1h", "tier1")].sample_size == 1


def _team(name: str) -> Group:
    return (name, ALL, ALL)


def test_team_cap_keeps_the_busiest_and_merges_the_rest_into_other() -> None:
    merge = KpiMerge(CFG)
    # Volume = created + csat + nps + enps responses in the longest window.
    teams = {
        "alpha": [(0, agg(created=2, frt_s=[10, 20]))],  # 2
        "bravo": [(0, agg(created=1, csat=[5, 4, 3])), (30, agg(created=1))],  # 5
        "charlie": [(0, agg(created=5, frt_s=[3000], solved_s=[10.0]))],  # 5, ties bravo
        "delta": [(0, agg(created=1, frt_s=[50, 70, 90], nps=[10, 0]))],  # 3
        "echo": [(-70, agg(created=50)), (0, agg(created=1, enps=[9]))],  # 2: 50 are too old
    }
    partitions = {"alpha": 0, "bravo": 1, "charlie": 0, "delta": 2, "echo": 1}
    for name, parts in teams.items():
        for bucket, partial in parts:
            merge.apply(window_update(_team(name), partitions[name], bucket, partial))
        live = LiveAggregate()
        live.add(True, "normal", T0 - len(name) * US, +1)
        merge.apply(live_update(_team(name), partitions[name], live))
    merge.apply(window_update(OVERALL, 0, 0, agg(created=10)))
    now = T0 + 30 * B_US

    capped = list(merge.read(now, max_teams=3))
    teams_seen = {r.key.team for r in capped}
    # bravo and charlie tie at 5 (name order), delta 3; alpha and echo are merged.
    assert teams_seen == {ALL, "bravo", "charlie", "delta", OTHER}
    merged = WindowAggregate()
    for name in ("alpha", "echo"):
        for bucket, partial in teams[name]:
            if bucket > -30:  # inside the 1h window
                merged.merge(partial)
    expected = {KpiKey(k, "1h", OTHER): v for k, (v, _) in merged.values().items()}
    got = {r.key: r.value for r in capped if r.key.team == OTHER and r.key.window == "1h"}
    assert got == expected
    assert got[KpiKey(K.TICKETS_CREATED, "1h", OTHER)] == 3.0
    assert got[KpiKey(K.FIRST_RESPONSE_P90, "1h", OTHER)] == pytest.approx(20.0, rel=0.01)
    assert got[KpiKey(K.ENPS_RESPONSES, "1h", OTHER)] == 1.0
    live_other = {
        r.key.kpi: r.value for r in capped if r.key.team == OTHER and r.key.window == LIVE_WINDOW
    }
    assert live_other[K.OPEN_TICKETS] == 2.0
    assert live_other[K.UNANSWERED_TICKETS] == 2.0
    assert live_other[K.OLDEST_UNANSWERED_AGE] == (now - (T0 - 5 * US)) / US  # alpha
    # Kept teams and the overall group are unchanged by the cap.
    uncapped = {r.key: r.value for r in merge.read(now)}
    for reading in capped:
        if reading.key.team != OTHER:
            assert uncapped[reading.key] == reading.value
    assert {k.team for k in uncapped} == {ALL, *teams}
    # At or under the cap nothing is merged.
    assert {r.key.team for r in merge.read(now, max_teams=5)} == {ALL, *teams}


def test_team_cap_counts_only_team_groups() -> None:
    merge = KpiMerge(CFG)
    for channel in ("chat", "email", "phone"):
        merge.apply(window_update((ALL, channel, ALL), 0, 0, agg(created=1)))
    merge.apply(window_update(_team("solo"), 0, 0, agg(created=1)))
    readings: list[KpiReading] = list(merge.read(T0, max_teams=1))
    assert {r.key.team for r in readings} == {ALL, "solo"}
    assert {r.key.channel for r in readings} == {ALL, "chat", "email", "phone"}
    zero = list(merge.read(T0, max_teams=0))
    assert {r.key.team for r in zero} == {ALL, OTHER}


def test_team_cap_never_folds_the_unknown_team() -> None:
    """Surveys without a team count under team "unknown": a reserved value, not a team."""
    merge = KpiMerge(CFG)
    merge.apply(window_update(_team("unknown"), 0, 0, agg(created=1)))
    for name, created in (("big", 9), ("small", 2)):
        merge.apply(window_update(_team(name), 0, 0, agg(created=created)))
    teams = {r.key.team for r in merge.read(T0, max_teams=1)}
    assert teams == {"unknown", "big", OTHER}


def test_reset_forgets_one_partition_of_one_dimension_only() -> None:
    merge = KpiMerge(CFG)
    groups: list[Group] = [OVERALL, ("tier1", ALL, ALL), (ALL, "chat", ALL), (ALL, ALL, "low")]
    for group in groups:
        for partition in (0, 1):
            merge.apply(window_update(group, partition, 0, agg(created=1 + partition)))
            merge.apply(window_update(group, partition, 1, agg(created=10)))
        merge.apply(live_update(group, 0, LiveAggregate(open=3)))
    reset = PartialUpdate(
        group=("*", ALL, ALL),
        source_partition=0,
        bucket=HEARTBEAT_BUCKET,
        stream_time_us=T0,
        reset=True,
    )
    merge.apply(_PARTIAL.decode(_WIRE.encode(reset)))
    values = merge.values(T0 + B_US)
    created = {g: values[KpiKey(K.TICKETS_CREATED, "5m", *g)] for g in groups}
    # Partition 0's team partials (both buckets, and its live part) are gone; the rest stays.
    assert created == {
        OVERALL: 23.0,
        ("tier1", ALL, ALL): 12.0,
        (ALL, "chat", ALL): 23.0,
        (ALL, ALL, "low"): 23.0,
    }
    assert KpiKey(K.OPEN_TICKETS, LIVE_WINDOW, "tier1") not in values
    assert values[KpiKey(K.OPEN_TICKETS, LIVE_WINDOW)] == 3


def test_aggregate_copy_is_equal_and_independent() -> None:
    original = agg(created=2, frt_s=[30.0, 90.0], csat=[5])
    clone = original.copy()
    assert clone == original
    clone.merge(agg(created=1, frt_s=[10.0]))
    assert original == agg(created=2, frt_s=[30.0, 90.0], csat=[5])


def test_clear_forgets_every_group_and_the_stream_time() -> None:
    merge = KpiMerge(CFG)
    merge.apply(window_update(OVERALL, 0, 0, agg(created=1)))
    merge.clear()
    assert merge.stream_time_us == 0
    assert merge.values(T0) == {}


def test_folded_teams_without_a_backlog_give_no_live_other_series() -> None:
    merge = KpiMerge(CFG)
    for index, team in enumerate(("a", "b", "c")):
        merge.apply(window_update((team, ALL, ALL), 0, 0, agg(created=3 - index)))
    merge.apply(live_update(("a", ALL, ALL), 0, LiveAggregate(open=1)))
    live = live_values(merge, T0, max_teams=1)
    assert KpiKey(K.OPEN_TICKETS, LIVE_WINDOW, "a") in live
    assert not [key for key in live if key.team == OTHER]
    assert windowed(merge, T0, max_teams=1)[KpiKey(K.TICKETS_CREATED, "5m", OTHER)] == 3


_BACKLOG = st.lists(
    st.tuples(
        st.sampled_from([None, "low", "urgent"]),
        st.integers(0, 10**12),
        st.one_of(st.none(), st.integers(0, 10**12)),
    ),
    max_size=30,
)


@given(_BACKLOG)
def test_live_aggregate_built_at_once_equals_one_ticket_at_a_time(
    tickets: list[tuple[str | None, int, int | None]],
) -> None:
    """The engine's rebuild packs each group's backlog once (LiveAggregate.of); it must be
    the aggregate that adding the tickets one by one gives."""
    one_by_one = LiveAggregate()
    for priority, created_us, deadline_us in tickets:
        one_by_one.add(True, priority, created_us, +1, deadline_us)
    assert LiveAggregate.of(tickets) == one_by_one
