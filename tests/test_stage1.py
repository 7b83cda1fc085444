"""Stage 1 inside the worker, without a broker: the engine clock under the stream clock.

Cross-topic order is not guaranteed (SPEC §3), and in a replay Faust can read one input topic
hours of event time ahead of another. A reply read long before its ``ticket-created`` (which
is already in the broker, in the topic read behind) must wait for it, not become an orphan
because the replies alone moved the stream time past the hold.
"""

from __future__ import annotations

import json

from faust.types import TP
from helpers.fake_consumer import fake_progress
from helpers.strategies import Builder, encode

from streams.app import KpiWorker
from streams.core.ticket_engine import DictTicketStore, TicketEngine
from streams.settings import load_settings

HOLD_HOURS = 1.0
BACKLOG = 10  # records of ticket-created not read yet (its end offset)


def worker(clock: str) -> tuple[KpiWorker, DictTicketStore]:
    w = KpiWorker(
        load_settings(
            kafka_bootstrap="127.0.0.1:1",
            partitions=1,
            clock=clock,
            orphan_hold=HOLD_HOURS * 3600,
        )
    )
    tickets = DictTicketStore()
    w.stage1.engines[0] = TicketEngine(0, tickets, w.config)
    # ticket-created: BACKLOG records not read yet; ticket-replied: more to come; the other
    # topics: empty.
    ends = {"ticket-created": BACKLOG, "ticket-replied": 1000}
    w.progress = fake_progress({TP(topic, 0): ends.get(topic, 0) for topic in w.stage1.topics})
    return w, tickets


def replies_far_ahead(w: KpiWorker, b: Builder) -> list[tuple[bytes, bytes]]:
    """A reply of T at minute 1, then replies of other tickets over 5 hours (5x the hold)
    from ticket-replied, while ticket-created (with T's creation) is read behind."""
    letters = w.stage1.handle_input("ticket-replied", 0, 0, encode(b.replied("T", 60)))
    for offset, minute in enumerate(range(10, 300, 10), start=1):
        reply = encode(b.replied(f"U{minute}", minute * 60))
        letters += w.stage1.handle_input("ticket-replied", 0, offset, reply)
    return letters


def test_a_reply_read_hours_ahead_of_its_creation_waits_for_the_topic_read_behind() -> None:
    w, tickets = worker("stream")
    b = Builder()
    assert replies_far_ahead(w, b) == []
    assert "T" in tickets.data
    assert tickets.data["T"].held, "held, not dropped"
    assert w.stage1.handle_input("ticket-created", 0, 0, encode(b.created("T", 0))) == []
    state = tickets.data["T"]
    assert state.creation is not None
    assert not state.held, "the reply is applied"


def test_once_the_topic_read_behind_has_caught_up_the_hold_runs_on_the_stream_time() -> None:
    w, tickets = worker("stream")
    w.progress.processed("ticket-created", 0, BACKLOG - 1)  # nothing left to read there
    letters = [json.loads(value) for _, value in replies_far_ahead(w, Builder())]
    assert {letter["reason"] for letter in letters} == {"orphan"}
    # T's reply (offset 0) and those of the other never-created tickets older than the hold
    assert [letter["source"]["offset"] for letter in letters] == list(range(24))
    assert "T" not in tickets.data
