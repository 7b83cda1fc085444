"""Attributes outlive state (SPEC §3, :mod:`streams.core.attributes`): the record a retired
ticket keeps, how the engine revives it, and that it is durable like ticket state.

The KPI semantics (late surveys and reopens counted, duplicates, expiry) are hand-computed in
``test_reference.py`` (run through the engine too) and generated in ``test_differential.py``."""

from __future__ import annotations

from typing import get_args

import msgspec
import pytest
from strategies import Builder
from test_engine import HORIZON, Harness, live, rebuilt_snapshot, snapshot, us

from streams.core import kpis as K
from streams.core.attributes import (
    CHANNEL_CODES,
    CREATOR_CODES,
    PRIORITY_CODES,
    is_record,
    retire,
    revive,
)
from streams.core.kpis import EngineConfig
from streams.core.partition import Outcome, PartitionEngine
from streams.core.ticket import TicketState
from streams.events import CHANNELS, PRIORITIES, CreatedBy, Event

CFG = EngineConfig(
    windows=(("5m", 300.0), ("1h", 3600.0)),
    bucket_seconds=60.0,
    grace_seconds=60.0,
    retention_seconds=7200.0,
    attribute_retention_seconds=30 * 86400.0,
)
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(TicketState)


@pytest.fixture
def b() -> Builder:
    return Builder()


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
    h = Harness(CFG)
    h.feed_all([*_history(b), b.created("x", 900 + 7200)])
    return h


def test_code_tables_cover_every_value_of_the_event_contract() -> None:
    assert set(CHANNEL_CODES) == set(CHANNELS)
    assert set(PRIORITY_CODES) == set(PRIORITIES)
    assert set(CREATOR_CODES) == set(get_args(CreatedBy))


def test_a_retired_ticket_keeps_a_record_of_a_few_dozen_bytes(b: Builder) -> None:
    h = Harness(CFG)
    h.feed_all(_history(b))
    full = h.tickets.data["T-2026-000123"]
    h.feed(b.created("x", 900 + 7200))
    record = h.tickets.data["T-2026-000123"]
    assert is_record(record)
    assert record.retired is not None
    assert (record.retired.team, record.retired.resolutions) == ("tier2-payments", 2)
    assert record.retired.answered
    assert record.retired.escalated
    encoded = _ENCODER.encode(record)
    assert len(encoded) <= 48, len(encoded)  # the changelog record's value
    assert len(encoded) * 4 < len(_ENCODER.encode(full))
    assert _DECODER.decode(encoded) == record


def test_revived_ticket_retires_to_the_same_record(b: Builder) -> None:
    h = _retired(b)
    record = h.tickets.data["T-2026-000123"]
    assert retire(revive(record)) == record


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
    h = Harness(CFG)
    h.feed_all([b.created("t", 0), b.replied("t", 10), b.status("t", 30, "solved")])
    h.tick(7290)  # retired (due at 7230) on a clock (a wall-clock tick) beyond the retention
    assert is_record(h.tickets.data["t"])
    h.feed(b.survey(100, "csat", 5, ticket="t"), clock=7290)  # revives it (late)
    fresh = PartitionEngine(0, h.tickets, CFG)
    fresh.rebuild()
    assert fresh.stream_time_us == us(100)
    summary = {(a.created, a.frt_count, a.solved) for a in fresh.windows.values()}
    assert summary == {(0, 0, 0)}  # only the survey (at 100, in the lagging windows) counts
    assert sum(a.csat_count for a in fresh.windows.values()) == 4  # overall + 3 dimensions
