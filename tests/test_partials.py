"""The message between the stages (streams/core/partials.py): dimensions, batching, wire format."""

from __future__ import annotations

import msgspec

from streams.core.aggregate import WindowAggregate
from streams.core.kpis import ALL
from streams.core.partials import (
    HEARTBEAT_BUCKET,
    OVERALL,
    PartialBatch,
    PartialUpdate,
    batch_updates,
    dimension_of,
)

TEAM = ("tier1", ALL, ALL)
CHANNEL = (ALL, "chat", ALL)
PRIORITY = (ALL, ALL, "urgent")


def update(group: tuple[str, str, str], bucket: int, *, reset: bool = False) -> PartialUpdate:
    return PartialUpdate(
        group=group,
        source_partition=3,
        bucket=bucket,
        window=None if reset else WindowAggregate(created=bucket),
        stream_time_us=7,
        reset=reset,
    )


def test_dimension_of_names_each_kind_of_group() -> None:
    assert dimension_of(OVERALL) == "overall"
    assert dimension_of(TEAM) == "team"
    assert dimension_of(CHANNEL) == "channel"
    assert dimension_of(PRIORITY) == "priority"


def test_one_batch_per_dimension_with_its_updates() -> None:
    updates = [update(TEAM, 1), update(OVERALL, 1), update(TEAM, 2)]
    batches = batch_updates(3, updates, 9, caught_up=False)
    by_dimension = {b.dimension: b for b in batches}
    assert set(by_dimension) == {"team", "overall"}
    assert [u.bucket for u in by_dimension["team"].updates] == [1, 2]
    assert all(b.source_partition == 3 and b.stream_time_us == 9 for b in batches)
    assert all(not b.caught_up and b.complete and not b.reset for b in batches)


def test_a_reset_marks_only_the_first_chunk_and_the_last_one_completes_the_snapshot() -> None:
    updates = [update(CHANNEL, HEARTBEAT_BUCKET, reset=True)]
    updates += [update(CHANNEL, b) for b in range(5)]
    batches = batch_updates(3, updates, 9, max_updates=2)
    assert [len(b.updates) for b in batches] == [2, 2, 1]
    assert [b.reset for b in batches] == [True, False, False]
    assert [b.complete for b in batches] == [False, False, True]
    assert not any(u.reset for b in batches for u in b.updates), "the reset is the batch's flag"


def test_announce_reaches_every_dimension_even_without_updates() -> None:
    batches = batch_updates(0, [], 5, announce=True)
    assert sorted(b.dimension for b in batches) == ["channel", "overall", "priority", "team"]
    assert all(b.updates == [] for b in batches)
    assert batch_updates(0, [], 5) == []


def test_the_wire_format_is_positional() -> None:
    """Field names are not sent: renaming a field keeps the format, reordering breaks it."""
    batch = PartialBatch(source_partition=2, dimension="team", stream_time_us=5, updates=[])
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(batch)) == [
        2,
        "team",
        5,
        [],
        False,
        True,
        True,
    ]
    one = update(TEAM, 4)
    wire = msgspec.msgpack.decode(msgspec.msgpack.encode(one))
    assert wire[:3] == [list(TEAM), 3, 4]
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(one), type=PartialUpdate) == one
