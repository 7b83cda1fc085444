"""Dead letters: what the worker sends to ``support-events-dlq`` for a record it rejects.

Every dead letter is built here, as the (key, value) of one message
(:func:`streams.records.dead_letter` is the record's shape): rejections the decoder decides
(malformed, invalid, too large, ...), the two the stage-1 engine decides for held events
(:data:`HELD_REJECTIONS`: an event earlier than its ticket's creation, a ticket never created
within the orphan hold time) and unexpected exceptions (:func:`internal_error`,
:mod:`streams.outputs.guard`).
"""

from __future__ import annotations

from typing import Final, Literal

from streams.core.ticket import Held
from streams.decoding import Rejection
from streams.records import dead_letter, dead_letter_key, encode_record

HeldReason = Literal["before_created", "orphan"]

HELD_REJECTIONS: Final[dict[HeldReason, Rejection]] = {
    "before_created": Rejection(
        "before_created", "occurred_at", "the event is earlier than its ticket's creation"
    ),
    "orphan": Rejection(
        "orphan", "ticket_id", "the ticket was not created within the orphan hold time"
    ),
}


def internal_error(error_type: str, stage: str) -> Rejection:
    """The rejection of a record whose processing raised ``error_type`` (its message is
    never included: it often repeats payload content)."""
    return Rejection(
        "internal_error",
        None,
        f"unexpected {error_type} while processing the record ({stage}); the record was skipped",
    )


def letter(
    rejection: Rejection, *, topic: str, partition: int, offset: int, raw: bytes | None, now: float
) -> tuple[bytes, bytes]:
    """The (key, value) of the dead letter of input record ``topic[partition]@offset``."""
    record = dead_letter(
        rejection,
        topic=topic,
        partition=partition,
        offset=offset,
        original=raw,
        rejected_at=now,
    )
    return dead_letter_key(topic, partition, offset), encode_record(record)


def held_letter(held: Held, reason: HeldReason, now: float) -> tuple[bytes, bytes]:
    """The dead letter of a held event the engine could not apply."""
    return letter(
        HELD_REJECTIONS[reason],
        topic=held.topic,
        partition=held.partition,
        offset=held.offset,
        raw=held.raw,
        now=now,
    )


__all__ = ["HELD_REJECTIONS", "HeldReason", "held_letter", "internal_error", "letter"]
