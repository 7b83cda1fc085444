"""Dead letters (streams/dead_letters.py): key, schema-valid value, the texts of each reason."""

from __future__ import annotations

import base64
import json

from helpers.schemas import validator

from streams.core.ticket import Held, Step
from streams.dead_letters import HELD_REJECTIONS, held_letter, internal_error, letter
from streams.decoding import Rejection
from streams.records import dead_letter_key

SCHEMA = validator("support-events-dlq")
NOW = 1_780_000_000.0


def held(topic: str = "ticket-replied") -> Held:
    step = Step(at_us=1, rank=0, event_id="e1")
    return Held(step, 5, topic, 2, 41, b'{"ticket_id": "T-1"}')


def test_a_held_event_is_dead_lettered_with_its_source_and_bytes() -> None:
    for reason in ("before_created", "orphan"):
        key, value = held_letter(held(), reason, NOW)
        record = json.loads(value)
        SCHEMA.validate(record)
        assert key == dead_letter_key("ticket-replied", 2, 41)
        assert record["source"] == {"topic": "ticket-replied", "partition": 2, "offset": 41}
        assert record["reason"] == reason
        assert record["field"] == HELD_REJECTIONS[reason].field
        assert record["detail"] == HELD_REJECTIONS[reason].detail
        assert base64.b64decode(record["original_base64"]) == b'{"ticket_id": "T-1"}'


def test_each_held_reason_has_its_own_text() -> None:
    assert HELD_REJECTIONS["before_created"].detail != HELD_REJECTIONS["orphan"].detail
    assert all(reason == r.reason for reason, r in HELD_REJECTIONS.items())


def test_an_internal_error_names_the_type_and_stage_only() -> None:
    rejection = internal_error("KeyError", "partials")
    _key, value = letter(rejection, topic="t", partition=0, offset=3, raw=None, now=NOW)
    record = json.loads(value)
    SCHEMA.validate(record)
    assert record["reason"] == "internal_error"
    assert "KeyError" in record["detail"]
    assert "(partials)" in record["detail"]
    assert record["original_size"] == 0


def test_a_decoder_rejection_keeps_its_field_and_detail() -> None:
    rejection = Rejection("wrong_type", "team", "team must be a string")
    _, value = letter(rejection, topic="ticket-created", partition=1, offset=0, raw=b"{}", now=NOW)
    record = json.loads(value)
    SCHEMA.validate(record)
    assert (record["reason"], record["field"], record["detail"]) == (
        "wrong_type",
        "team",
        "team must be a string",
    )
