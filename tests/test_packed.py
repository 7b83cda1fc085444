"""PackedAggregates: partial aggregates kept as msgpack at rest (streams.core.packed)."""

from __future__ import annotations

import sys

import msgspec

from streams.core.aggregate import LiveAggregate, WindowAggregate
from streams.core.packed import PackedAggregates


def test_a_stored_aggregate_is_packed_in_the_wire_encoding_and_read_back_equal() -> None:
    packed: PackedAggregates[int, WindowAggregate] = PackedAggregates(WindowAggregate)
    window = WindowAggregate(created=2)
    window.add_first_response(90_000_000, True, +1)
    packed.put(7, window)
    assert 7 in packed
    assert len(packed) == 1
    assert packed._values[7] == msgspec.msgpack.encode(window)
    copy = packed.get(7)
    assert copy == window
    assert copy is not window
    assert list(packed.items()) == [(7, window)]
    assert list(packed.values()) == [window]


def test_an_opened_aggregate_changes_in_place_until_packed() -> None:
    packed: PackedAggregates[str, LiveAggregate] = PackedAggregates(LiveAggregate)
    live = packed.open("a")  # a new, empty one
    live.add(True, "urgent", 1_000, +1)
    assert packed.get("a") is live  # still decoded: what the next event changes
    assert packed.open("a") is live
    packed.pack()
    assert isinstance(packed._values["a"], bytes)
    again = packed.open("a")
    assert again == live
    assert again is not live
    again.add(True, "urgent", 1_000, -1)  # empty now: pack drops it
    packed.pack()
    assert "a" not in packed
    assert packed.get("a") is None


def test_removing_and_replacing_opened_aggregates() -> None:
    packed: PackedAggregates[int, WindowAggregate] = PackedAggregates(WindowAggregate)
    packed.open(1).created += 1
    packed.open(2).created += 1
    packed.open(3).created += 1
    assert packed.discard(1)
    assert not packed.discard(1)
    assert packed.pop(2) == WindowAggregate(created=1)
    assert packed.pop(2) is None
    packed.put(3, WindowAggregate(created=5))  # re-stored packed while open
    packed.put(4, WindowAggregate())  # empty: not stored
    packed.pack()
    assert dict(packed.items()) == {3: WindowAggregate(created=5)}
    packed.clear()
    assert not packed
    packed.pack()  # nothing left opened
    assert not packed


def test_a_packed_partial_of_one_open_ticket_is_a_fraction_of_the_decoded_one() -> None:
    window = WindowAggregate(created=1)
    live = LiveAggregate()
    live.add(True, "urgent", 1_765_000_000_000_000, +1)
    packed_window = msgspec.msgpack.encode(window)
    packed_live = msgspec.msgpack.encode(live)
    decoded_window = sys.getsizeof(window) + sys.getsizeof(window.frt_sketch) * 2
    decoded_live = sys.getsizeof(live) + sys.getsizeof(live.unanswered) + sys.getsizeof(b"") + 8
    assert sys.getsizeof(packed_window) * 5 < decoded_window
    assert sys.getsizeof(packed_live) * 3 < decoded_live
