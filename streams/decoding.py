"""Bytes -> typed event, or a machine-readable rejection (SPEC §2).

:func:`decode` accepts exactly the documents that ``schemas/<topic>.schema.json`` accepts (with
one check the schema cannot express: ``occurred_at`` no further than the tolerance into the
future). It never raises on bad input; it returns a :class:`Rejection` whose ``reason`` is one of
:data:`REJECTION_REASONS` and whose ``detail`` names fields and constraints but never copies a
value out of the payload.

How: the payload is decoded straight into the ``msgspec`` Struct of its topic (fast path). On a
validation error the payload is decoded a second time without a type, normalised the way JSON
Schema sees it (the last of duplicate members wins; ``2.0`` is the integer 2) and converted, so
the verdict and the reported field follow the same rules as the schema. Checks msgspec cannot
express are applied afterwards: the RFC 3339 lexical form of ``occurred_at`` (msgspec also
accepts ``2024-05-01 12:00:00Z`` and ``+0200`` offsets, the schema does not), the CSAT score
range, and the future-time tolerance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import msgspec

from streams.events import EVENT_TYPES, Event, SurveySubmitted

RejectionReason = Literal[
    "oversized",
    "invalid_utf8",
    "malformed_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "unknown_enum",
    "out_of_range",
    "invalid_timestamp",
    "unsupported_schema_version",
    "future_timestamp",
    "unknown_topic",
    # Not produced by the decoder; used by the engine.
    "before_created",
    "orphan",
    # Produced by the decoder: arrays/objects nested deeper than MAX_NESTING_DEPTH.
    "nesting_too_deep",
    # Not produced by the decoder: an unexpected exception while processing the record (a
    # bug), contained by the worker so that one record never stops a partition.
    "internal_error",
]

#: Every reason a record can be rejected for: the closed set of the ``reason`` metric label and
#: of the dead-letter record's ``reason`` field.
REJECTION_REASONS: Final[tuple[RejectionReason, ...]] = get_args(RejectionReason)

DEFAULT_MAX_BYTES: Final = 65536

#: Deepest nesting of arrays and objects accepted (an event is 1 or 2 levels deep). Deeper
#: documents are rejected as ``nesting_too_deep`` before any JSON parser recurses into them
#: (msgspec and Python's ``json`` raise ``RecursionError`` around a thousand levels).
MAX_NESTING_DEPTH: Final = 64

#: RFC 3339 ``date-time`` with a mandatory offset (``Z`` or ``±hh:mm``; ``T``/``Z`` may be lower
#: case as RFC 3339 allows), real calendar dates only (leap years included), years 1970-2999,
#: seconds 00-59, at most 9 fractional digits. Identical to the ``pattern`` in every schema under
#: ``schemas/`` (a test checks it). Written to mean the same in Python ``re`` and ECMA-262:
#: ``[0-9]`` rather than ``\\d`` and ``(?![\\s\\S])`` rather than ``$`` (which also matches before
#: a trailing newline in Python).
RFC3339_PATTERN: Final = (
    r"^(?:(?:19[7-9][0-9]|2[0-9]{3})-"
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
    r"|(?:19(?:7[26]|8[048]|9[26])|2[0-9](?:0[48]|[2468][048]|[13579][26])|2[048]00)-02-29)"
    r"[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])(?![\s\S])"
)
_TIMESTAMP = re.compile(RFC3339_PATTERN)

CSAT_SCORE_RANGE: Final = (1, 5)


class Rejection(msgspec.Struct, frozen=True):
    """Why a payload was not accepted. ``field`` is the offending field's path (or None)."""

    reason: RejectionReason
    field: str | None
    detail: str


class _OccurredAt(msgspec.Struct):
    occurred_at: str


@dataclass(frozen=True)
class _Kind:
    """Per-topic decoding machinery, built once."""

    type: type[Event]
    decoder: msgspec.json.Decoder[Event]
    int_fields: frozenset[str]
    enums: dict[str, tuple[str, ...]]


def _describe(event_type: type[Event]) -> _Kind:
    info = msgspec.inspect.type_info(event_type)
    assert isinstance(info, msgspec.inspect.StructType)
    int_fields: set[str] = set()
    enums: dict[str, tuple[str, ...]] = {}
    for f in info.fields:
        options = f.type.types if isinstance(f.type, msgspec.inspect.UnionType) else (f.type,)
        for option in options:
            if isinstance(option, msgspec.inspect.IntType):
                int_fields.add(f.encode_name)
            elif isinstance(option, msgspec.inspect.LiteralType):
                if all(isinstance(v, int) for v in option.values):
                    int_fields.add(f.encode_name)
                else:
                    enums[f.encode_name] = tuple(str(v) for v in option.values)
    return _Kind(
        type=event_type,
        decoder=msgspec.json.Decoder(event_type),
        int_fields=frozenset(int_fields),
        enums=enums,
    )


_KINDS: Final[dict[str, _Kind]] = {name: _describe(t) for name, t in EVENT_TYPES.items()}
_OCCURRED_AT: Final = msgspec.json.Decoder(_OccurredAt)
# Untyped decoding for the slow path; float_hook=float turns 1e400 into inf as json.loads does
# (instead of failing), so a huge number in an ignored field does not change the verdict.
_UNTYPED: Final = msgspec.json.Decoder(float_hook=float)

_AT_PATH = re.compile(r"^(?P<text>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING_FIELD = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
_BOUND = re.compile(r"^Expected `(?P<type>[^`]+)`(?P<rule> (?:of length )?[<>]=? -?[0-9.e+]+)$")
_TYPE = re.compile(r"^Expected `(?P<expected>[^`]+)`, got `(?P<got>[^`]+)`$")
_BYTE_POSITION = re.compile(r"\(byte [0-9]+\)")
_ABSENT: Final = object()


def decode(
    kind: str,
    data: bytes,
    *,
    now: float,
    future_tolerance_seconds: float,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Event | Rejection:
    """Decode one record value of input topic ``kind`` (a key of ``EVENT_TYPES``).

    ``now`` is POSIX seconds; an event with ``occurred_at`` later than
    ``now + future_tolerance_seconds`` is rejected as ``future_timestamp``.
    """
    spec = _KINDS.get(kind)
    if spec is None:
        return Rejection("unknown_topic", None, f"no event type for topic {_quote(kind)}")
    if type(data) is not bytes:  # defensive: a tombstone (None) or a buffer from a client
        if data is None:
            return Rejection("malformed_json", None, "record has no value (tombstone)")
        data = bytes(data)
    size = len(data)
    if size > max_bytes:
        return Rejection("oversized", None, f"payload is {size} bytes, the limit is {max_bytes}")
    if not data.isascii():
        # msgspec does not check UTF-8 inside members it skips; JSON text must be UTF-8 throughout.
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejection("invalid_utf8", None, f"payload is not valid UTF-8 (byte {exc.start})")
    if data.count(b"{") + data.count(b"[") > MAX_NESTING_DEPTH:
        depth = nesting_depth(data)
        if depth > MAX_NESTING_DEPTH:
            return _too_deep()
    try:
        event = spec.decoder.decode(data)
        stamp = _OCCURRED_AT.decode(data).occurred_at
    except msgspec.ValidationError:
        return _decode_slowly(spec, data, now, future_tolerance_seconds)
    except msgspec.DecodeError as exc:
        return _malformed(exc)
    except RecursionError:  # cannot happen below MAX_NESTING_DEPTH; never let it escape
        return _too_deep()
    return _check(event, stamp, now, future_tolerance_seconds)


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_depth(data: bytes) -> int:
    """How deep arrays and objects nest in JSON text (brackets inside strings do not count).

    Linear and without recursion; for text that is not JSON the result is an estimate (an
    unterminated string's brackets count), which only decides between two rejections.
    """
    depth = deepest = 0
    for byte in _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS):
        if byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _too_deep() -> Rejection:
    return Rejection(
        "nesting_too_deep",
        None,
        f"arrays/objects nest deeper than {MAX_NESTING_DEPTH} levels",
    )


def _check(event: Event, stamp: str, now: float, tolerance: float) -> Event | Rejection:
    """The rules msgspec's types cannot express."""
    if _TIMESTAMP.match(stamp) is None:
        return Rejection("invalid_timestamp", "occurred_at", _timestamp_detail("occurred_at"))
    if isinstance(event, SurveySubmitted) and event.kind == "csat":
        low, high = CSAT_SCORE_RANGE
        if not low <= event.score <= high:
            return Rejection(
                "out_of_range",
                "score",
                f"field `score` must be between {low} and {high} when `kind` is csat",
            )
    ahead = event.occurred_at.timestamp() - now
    if ahead > tolerance:
        return Rejection(
            "future_timestamp",
            "occurred_at",
            f"field `occurred_at` is {ahead:.0f} s ahead of the clock, "
            f"the tolerance is {tolerance:.0f} s",
        )
    return event


def _decode_slowly(spec: _Kind, data: bytes, now: float, tolerance: float) -> Event | Rejection:
    """Re-decode a payload the fast path refused, with JSON Schema's view of the document."""
    try:
        document = _UNTYPED.decode(data)
    except msgspec.DecodeError as exc:
        return _malformed(exc)
    if not isinstance(document, dict):
        return Rejection(
            "not_an_object", None, f"payload is a JSON {_json_type(document)}, not an object"
        )
    version = document.get("schema_version", _ABSENT)
    if type(version) in (int, float) and version != 1 and _is_integer(version):
        return Rejection(
            "unsupported_schema_version",
            "schema_version",
            "field `schema_version` must be 1, the only version this decoder reads",
        )
    for name in spec.int_fields:
        value = document.get(name)
        if type(value) is float and value.is_integer():
            # JSON Schema: an integer is any number with a zero fractional part.
            document[name] = int(value)
    try:
        event = msgspec.convert(document, spec.type)
    except msgspec.ValidationError as exc:
        return _explain(spec, str(exc))
    stamp = document["occurred_at"]
    assert isinstance(stamp, str)
    return _check(event, stamp, now, tolerance)


def _explain(spec: _Kind, message: str) -> Rejection:
    """Map msgspec's validation message to a reason and field, without echoing any value."""
    match = _AT_PATH.match(message)
    assert match is not None  # the pattern matches every string
    text = match["text"]
    path = match["path"] or ""
    field = path.removeprefix(".") or None

    if missing := _MISSING_FIELD.match(text):
        name = f"{field}.{missing['name']}" if field else missing["name"]
        return Rejection("missing_field", name, f"required field `{name}` is missing")
    if field == "schema_version" and text.startswith("Invalid enum value"):
        return Rejection(
            "unsupported_schema_version",
            field,
            "field `schema_version` must be 1, the only version this decoder reads",
        )
    if text.startswith("Invalid enum value"):
        allowed = spec.enums.get(field or "")
        suffix = f": {', '.join(allowed)}" if allowed else ""
        return Rejection("unknown_enum", field, f"field `{field}` must be one of{suffix}")
    if text.startswith("Invalid RFC3339") or "with a timezone component" in text:
        return Rejection("invalid_timestamp", field, _timestamp_detail(field))
    if bound := _BOUND.match(text):
        return Rejection(
            "out_of_range", field, f"field `{field}` must be `{bound['type']}`{bound['rule']}"
        )
    if typed := _TYPE.match(text):
        if field is None and typed["expected"] == "object":
            return Rejection("not_an_object", None, f"payload is a JSON {typed['got']}")
        return Rejection(
            "wrong_type",
            field,
            f"field `{field}` must be `{typed['expected']}`, got `{typed['got']}`",
        )
    return Rejection("wrong_type", field, f"field `{field}` does not match its schema")


def _is_integer(number: int | float) -> bool:
    """JSON Schema's integer: any number with a zero fractional part (also beyond a float)."""
    return type(number) is int or float(number).is_integer()


def _timestamp_detail(field: str | None) -> str:
    return (
        f"field `{field}` must be an RFC 3339 timestamp with a UTC offset "
        "(`Z` or `±hh:mm`), a real date in years 1970-2999"
    )


def _malformed(exc: msgspec.DecodeError) -> Rejection:
    where = _BYTE_POSITION.search(str(exc))
    suffix = f" {where.group(0)}" if where else ""
    if "truncated" in str(exc):
        suffix = " (unexpected end of input or invalid string escape)"
    return Rejection("malformed_json", None, f"payload is not valid JSON{suffix}")


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _quote(name: str) -> str:
    printable = "".join(c if c.isprintable() else "?" for c in name[:100])
    return f"`{printable}`"
