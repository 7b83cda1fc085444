"""Invalid input records, derived from valid events (SPEC §2: "anything else ... is rejected").

Each kind is something a real producer gets wrong. All but the last two fail to decode into the
topic's event type (or are not UTF-8 / not JSON at all); ``before_created`` and ``future`` are
well-formed events that the processor must reject on time grounds (an event earlier than its
ticket's creation; an event far beyond the future tolerance).
"""

from __future__ import annotations

import random
from typing import Any, Final

import msgspec

from streams.simulation.timefmt import format_naive, format_time

BAD_KINDS: Final[tuple[str, ...]] = (
    "malformed_json",  # truncated, trailing comma, single quotes, empty, plain text
    "invalid_utf8",  # a string value carries bytes that are not UTF-8
    "not_object",  # valid JSON, but an array, a string, a number or null
    "missing_field",  # a required field is absent
    "unknown_enum",  # a value outside its enumeration (or an unsupported schema version)
    "naive_timestamp",  # occurred_at without offset
    "wrong_type",  # a string where a number or bool is expected, and so on
    "out_of_range",  # negative level or score, score above 10, empty or over-long id
    "before_created",  # a ticket update timed before the ticket's creation (ticket updates only)
    "future",  # occurred_at days ahead of the event stream
    "csat_score",  # a CSAT score of 0 or 6-10: fits the type, breaks the 1-5 rule (surveys only)
)
#: Kinds that decode into the event type but break a rule the processor checks.
DECODABLE_BAD_KINDS: Final = frozenset({"before_created", "future", "csat_score"})
_TICKET_UPDATES: Final = frozenset({"ticket-replied", "ticket-escalated", "ticket-status-changed"})
_KINDS_FOR: Final[dict[str, tuple[str, ...]]] = {
    topic: tuple(
        k
        for k in BAD_KINDS
        if (k != "before_created" or topic in _TICKET_UPDATES)
        and (k != "csat_score" or topic == "survey-submitted")
    )
    for topic in ("ticket-created", *_TICKET_UPDATES, "survey-submitted", "customer-lifecycle")
}


def kinds_for(topic: str) -> tuple[str, ...]:
    """The bad-input kinds that can be derived from an event of ``topic``."""
    return _KINDS_FOR[topic]


_REQUIRED: Final[dict[str, tuple[str, ...]]] = {
    "ticket-created": ("ticket_id", "customer_id", "team", "channel", "priority"),
    "ticket-replied": ("ticket_id", "author_type"),
    "ticket-escalated": ("ticket_id", "level"),
    "ticket-status-changed": ("ticket_id", "status"),
    "survey-submitted": ("survey_id", "kind", "score"),
    "customer-lifecycle": ("customer_id", "change"),
}
_COMMON: Final = ("event_id", "occurred_at", "schema_version")

_UNKNOWN_ENUM: Final[dict[str, tuple[tuple[str, Any], ...]]] = {
    "ticket-created": (
        ("channel", "fax"),
        ("channel", "Email"),
        ("priority", "critical"),
        ("created_by", "robot"),
    ),
    "ticket-replied": (("author_type", "admin"), ("author_type", "Agent")),
    "ticket-escalated": (("schema_version", 2),),
    "ticket-status-changed": (("status", "deleted"), ("status", "archived"), ("status", "")),
    "survey-submitted": (("kind", "ces"), ("kind", "CSAT")),
    "customer-lifecycle": (("change", "deleted"), ("change", "Activated")),
}
_WRONG_TYPE: Final[dict[str, tuple[tuple[str, Any], ...]]] = {
    "ticket-created": (("ticket_id", 48213), ("team", ["Billing"]), ("priority", 3)),
    "ticket-replied": (("public", "false"), ("public", 0), ("ticket_id", 1234)),
    "ticket-escalated": (("level", "2"), ("level", 1.5), ("to_team", {"name": "Billing"})),
    "ticket-status-changed": (("status", 4), ("ticket_id", None)),
    "survey-submitted": (("score", "9"), ("score", 4.5), ("kind", None)),
    "customer-lifecycle": (("customer_id", 1234), ("segment", ["pro"]), ("change", True)),
}
_OUT_OF_RANGE: Final[dict[str, tuple[tuple[str, Any], ...]]] = {
    "ticket-created": (("team", ""), ("ticket_id", "x" * 300)),
    "ticket-replied": (("ticket_id", ""), ("agent_id", "")),
    "ticket-escalated": (("level", 0), ("level", -1)),
    "ticket-status-changed": (("ticket_id", ""),),
    "survey-submitted": (("score", -1), ("score", 11), ("score", 42)),
    "customer-lifecycle": (("customer_id", ""), ("segment", ""), ("segment", "s" * 200)),
}


def make_bad(
    kind: str,
    topic: str,
    fields: dict[str, Any],
    t_ms: int,
    created_ms: int | None,
    rng: random.Random,
) -> tuple[bytes, int]:
    """An invalid value of ``kind`` derived from a valid event's fields (with a fresh event_id).

    Returns the bytes and the event time they claim (POSIX ms; ``t_ms`` when they claim none).
    """
    enc = msgspec.json.encode
    f = dict(fields)
    if kind == "malformed_json":
        good = enc(f)
        variant = rng.randrange(5)
        if variant == 0:
            return good[: rng.randint(1, len(good) - 2)], t_ms  # never the closing brace
        if variant == 1:
            return good[:-1] + b',"extra":1,}', t_ms
        if variant == 2:
            return good.replace(b'"', b"'"), t_ms
        if variant == 3:
            return b"", t_ms
        return b"ticket " + str(f.get("ticket_id", "?")).encode() + b" replied", t_ms
    if kind == "invalid_utf8":
        event_id = str(f["event_id"]).encode()
        broken = (
            event_id[:4] + rng.choice((b"\xc3\x28", b"\xff\xfe", b"\xed\xa0\x80")) + event_id[4:]
        )
        return enc(f).replace(event_id, broken, 1), t_ms
    if kind == "not_object":
        return rng.choice((enc([f]), enc(str(f["event_id"])), b"42", b"null", b"true")), t_ms
    if kind == "missing_field":
        del f[rng.choice(_COMMON + _REQUIRED[topic])]
        return enc(f), t_ms
    if kind in ("unknown_enum", "wrong_type", "out_of_range"):
        table = {"unknown_enum": _UNKNOWN_ENUM, "wrong_type": _WRONG_TYPE}.get(kind, _OUT_OF_RANGE)
        name, value = rng.choice(table[topic] + _common_wrong(kind, t_ms))
        f[name] = value
        return enc(f), t_ms
    if kind == "naive_timestamp":
        f["occurred_at"] = format_naive(t_ms, space=rng.random() < 0.3)
        return enc(f), t_ms
    if kind == "before_created":
        if created_ms is None:
            raise ValueError("before_created needs a ticket event")
        early = created_ms - rng.randint(60_000, 3_600_000)
        f["occurred_at"] = format_time(early)
        return enc(f), early
    if kind == "future":
        late = t_ms + rng.randint(1, 30) * 86_400_000
        f["occurred_at"] = format_time(late)
        return enc(f), late
    if kind == "csat_score":
        f["kind"] = "csat"
        f["score"] = rng.choice((0, 6, 7, 9, 10))
        return enc(f), t_ms
    raise ValueError(f"unknown bad-input kind {kind!r}")


def _common_wrong(kind: str, t_ms: int) -> tuple[tuple[str, Any], ...]:
    if kind == "wrong_type":
        return (("occurred_at", t_ms / 1000), ("schema_version", "1"), ("event_id", 7))
    if kind == "unknown_enum":
        return (("schema_version", 2),)
    return (("event_id", ""),)
