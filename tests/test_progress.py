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
