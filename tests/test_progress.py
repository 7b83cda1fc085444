"""Positions and lag (streams/progress.py), against a consumer that knows some highwaters."""

from __future__ import annotations

from faust.types import TP
from helpers.fake_consumer import fake_progress as progress


def test_lag_sums_the_topics_of_a_partition_from_the_committed_offset_then_our_position() -> None:
    p = progress({TP("a", 1): 100, TP("b", 1): 50}, {TP("a", 1): 40})
    assert p.lag(["a", "b"], 1) == 60 + 50
    p.processed("a", 1, 89)
    assert p.lag(["a"], 1) == 10
    p.processed("b", 1, 60)  # ahead of a stale highwater: no negative lag
    assert p.lag(["b"], 1) == 0


def test_lag_is_unknown_until_the_consumer_knows_every_highwater() -> None:
    assert progress({TP("a", 0): None}).lag(["a"], 0) is None
    assert progress({TP("a", 0): 5}).lag(["a", "b"], 0) is None


def test_caught_up_has_hysteresis() -> None:
    p = progress({TP("a", 0): 1000})
    p.processed("a", 0, 1000 - 50 - 1)  # lag 50
    assert not p.caught_up(["a"], 0, was=False), "more than SUPPORT_READY_MAX_LAG to become so"
    assert p.caught_up(["a"], 0, was=True), "at most 10x that + 10 to stay so"
    p.processed("a", 0, 1000 - 10 - 1)  # lag 10
    assert p.caught_up(["a"], 0, was=False)
    p.processed("a", 0, 1000 - 111 - 1)  # lag 111
    assert not p.caught_up(["a"], 0, was=True)
    assert not progress({}).caught_up(["a"], 0, was=True), "unknown lag is never caught up"


def test_watermark_is_the_stream_time_of_the_topics_read_behind() -> None:
    """A topic read hours ahead of another does not move the partition's stream time past
    what was read of the other while it has a backlog (SPEC §3: as in event-time order)."""
    p = progress({TP("created", 0): 100, TP("replied", 0): 100, TP("quiet", 0): 0})
    topics = ["created", "replied", "quiet"]
    p.processed("created", 0, 9)  # backlog 90
    p.processed("replied", 0, 98)  # backlog 1
    seen = {"created": 1_000, "replied": 90_000}
    assert p.watermark(topics, 0, seen, stream_us=90_000) == 1_000
    p.processed("created", 0, 99)  # caught up: it no longer holds the time back
    assert p.watermark(topics, 0, seen, stream_us=90_000) == 90_000
    p.processed("created", 0, 9)
    assert p.watermark(topics, 0, {"replied": 90_000}, stream_us=90_000) == 0, (
        "a topic with a backlog and nothing read yet: no time has passed for it"
    )


def test_watermark_counts_from_the_committed_offset_until_a_record_is_read() -> None:
    p = progress({TP("a", 0): 10, TP("b", 0): 50}, {TP("b", 0): 50})
    p.processed("a", 0, 9)
    assert p.watermark(["a", "b"], 0, {"a": 5_000}, stream_us=5_000) == 5_000, "b: committed"
    p = progress({TP("a", 0): 10, TP("b", 0): 50}, {TP("b", 0): 40})
    assert p.watermark(["a", "b"], 0, {"a": 5_000}, stream_us=5_000) == 0, "b: 10 to read"


def test_watermark_is_held_by_a_topic_whose_highwater_is_not_known_yet() -> None:
    p = progress({TP("a", 0): 10, TP("b", 0): None})
    p.processed("a", 0, 9)
    assert p.watermark(["a", "b"], 0, {"a": 5_000}, stream_us=5_000) == 0
    assert p.watermark(["a", "b"], 0, {"a": 5_000, "b": 4_000}, stream_us=5_000) == 4_000


def test_watermark_uses_the_highwaters_of_the_last_lag_reading() -> None:
    """Asked for every event, it reads the consumer only for a highwater not cached yet."""
    highwaters: dict[TP, int | None] = {TP("a", 0): 10, TP("b", 0): 10}
    p = progress(highwaters)
    p.processed("b", 0, 9)
    seen = {"a": 1_000, "b": 9_000}
    assert p.watermark(["a", "b"], 0, seen, stream_us=9_000) == 1_000
    p.processed("a", 0, 9)
    highwaters[TP("a", 0)] = 20  # more of a arrived: known at the next lag() (every flush)
    assert p.watermark(["a", "b"], 0, seen, stream_us=9_000) == 9_000
    p.lag(["a", "b"], 0)
    assert p.watermark(["a", "b"], 0, seen, stream_us=9_000) == 1_000
