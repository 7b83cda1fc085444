"""The containment guard (streams/outputs/guard.py): one record's unexpected exception becomes
a schema-valid dead letter, a count and a rate-limited log line without the message."""

from __future__ import annotations

import base64
import json
import logging

import pytest
from helpers.schemas import validator
from prometheus_client import CollectorRegistry

from streams.outputs.guard import RecordGuard, error_type
from streams.outputs.health import PipelineHealth

SCHEMA = validator("support-events-dlq")
SECRET = "T-secret-4711"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_guard(clock: FakeClock | None = None) -> tuple[RecordGuard, CollectorRegistry]:
    registry = CollectorRegistry()
    health = PipelineHealth(registry, ["ticket-created"])
    guard = RecordGuard(registry, health.rejected, log_interval=60.0, clock=clock or FakeClock())
    return guard, registry


def raised(error: Exception) -> Exception:
    try:
        raise error
    except Exception as caught:
        return caught


def test_dead_letter_is_schema_valid_with_source_original_and_type_only() -> None:
    guard, registry = make_guard()
    raw = b'{"ticket_id": "' + SECRET.encode() + b'"}'
    key, value = guard.dead_letter(
        raised(KeyError(SECRET)),
        stage="events",
        topic="ticket-created",
        partition=3,
        offset=17,
        raw=raw,
        now=1_700_000_000.0,
    )
    assert key == b"ticket-created|3|17"
    document = json.loads(value)
    assert not list(SCHEMA.iter_errors(document))
    assert document["reason"] == "internal_error"
    assert document["source"] == {"topic": "ticket-created", "partition": 3, "offset": 17}
    assert base64.b64decode(document["original_base64"]) == raw
    assert document["original_size"] == len(raw)
    assert "KeyError" in document["detail"]
    assert SECRET not in document["detail"]
    assert "Traceback" not in document["detail"]
    assert document["field"] is None
    rejected = registry.get_sample_value(
        "support_events_rejected_total", {"topic": "ticket-created", "reason": "internal_error"}
    )
    assert rejected == 1.0
    assert registry.get_sample_value("support_internal_errors_total", {"stage": "events"}) == 1.0
    assert registry.get_sample_value("support_internal_errors_total", {"stage": "publish"}) == 0.0


def test_a_tombstone_dead_letters_with_empty_original() -> None:
    guard, _ = make_guard()
    _, value = guard.dead_letter(
        raised(ValueError()),
        stage="partials",
        topic="app-kpi-partials",
        partition=0,
        offset=0,
        raw=None,
    )
    document = json.loads(value)
    assert document["original_size"] == 0
    assert not list(SCHEMA.iter_errors(document))


def test_log_once_per_type_per_interval_without_the_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    guard, registry = make_guard(clock)
    caplog.set_level(logging.ERROR, logger="streams.outputs.guard")
    for offset in range(5):
        guard.dead_letter(
            raised(KeyError(SECRET)),
            stage="events",
            topic="ticket-created",
            partition=0,
            offset=offset,
            raw=b"{}",
        )
    guard.report(raised(ZeroDivisionError(SECRET)), "publish", "tick")
    assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.ERROR]
    first, other = (r.getMessage() for r in caplog.records)
    assert "KeyError" in first
    assert "ticket-created[0]@0" in first
    assert "test_guard.py" in first
    assert "in raised" in first
    assert "ZeroDivisionError" in other
    assert all(SECRET not in r.getMessage() for r in caplog.records)

    clock.now += 59.0
    guard.report(raised(KeyError(SECRET)), "events", "x")
    assert len(caplog.records) == 2
    clock.now += 2.0
    guard.report(raised(KeyError(SECRET)), "events", "y")
    assert len(caplog.records) == 3
    assert "(5 more since the last report)" in caplog.records[-1].getMessage()
    # Every error is counted, logged or not.
    assert registry.get_sample_value("support_internal_errors_total", {"stage": "events"}) == 7.0
    assert (
        registry.get_sample_value(
            "support_events_rejected_total", {"topic": "ticket-created", "reason": "internal_error"}
        )
        == 5.0
    )


def test_error_type_is_a_safe_name() -> None:
    assert error_type(KeyError()) == "KeyError"
    weird = type("Bad\nName <x>", (Exception,), {})
    assert error_type(weird()) == "Bad?Name??x?"
