"""The JSON Schemas in ``schemas/`` and the decoder describe the same contract.

- every schema is a valid draft 2020-12 schema, and mirrors its msgspec Struct;
- every example has the verdict its directory says, from the schema AND the decoder, and an
  invalid example of an input topic is rejected for the reason its file name starts with;
- documents made by mutating the valid examples get the same verdict from both (Hypothesis);
- records built with ``streams.records`` validate against the output schemas.
"""

from __future__ import annotations

import base64
import calendar
import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from streams.core.kpis import (
    ALL,
    CUSTOMER_LIVE_KPIS,
    CUSTOMER_WINDOWED_KPIS,
    LIVE_KPIS,
    LIVE_WINDOW,
    TEAM_ONLY_KPIS,
    UNKNOWN,
    WINDOWED_KPIS,
    CustomerKpiKey,
    KpiKey,
)
from streams.decoding import REJECTION_REASONS, RFC3339_PATTERN, Rejection, decode
from streams.events import CHANNELS, EVENT_TYPES, PRIORITIES
from streams.records import (
    KPI_NAMES,
    RATIO_KPIS,
    SCORE_KPIS,
    DeadLetterRecord,
    Dimensions,
    KpiRecord,
    dead_letter,
    encode_record,
    kpi_record,
)

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
EXAMPLES = SCHEMAS / "examples"
INPUT_TOPICS = tuple(EVENT_TYPES)
OUTPUT_TOPICS = ("support-events-dlq", "support-kpis")
ALL_TOPICS = INPUT_TOPICS + OUTPUT_TOPICS
RECORD_TYPES: dict[str, type[DeadLetterRecord] | type[KpiRecord]] = {
    "support-events-dlq": DeadLetterRecord,
    "support-kpis": KpiRecord,
}
# Later than any timestamp the schemas allow (year 2999), so future_timestamp never triggers.
FAR_FUTURE = 1e12
TIMESTAMP = re.compile(RFC3339_PATTERN)


def load_schema(topic: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / f"{topic}.schema.json").read_text())
    return schema


VALIDATORS = {topic: Draft202012Validator(load_schema(topic)) for topic in ALL_TOPICS}


def example_files(topic: str, verdict: str) -> list[Path]:
    return sorted((EXAMPLES / topic / verdict).glob("*.json"))


def all_examples() -> Iterator[tuple[str, Path]]:
    for topic in ALL_TOPICS:
        for verdict in ("valid", "invalid"):
            for path in example_files(topic, verdict):
                yield topic, path


class NotJsonText(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise NotJsonText(f"{name} is not JSON")


def _check_text(value: Any) -> None:
    if isinstance(value, str):
        value.encode("utf-8")  # raises on an unpaired surrogate
    elif isinstance(value, list):
        for item in value:
            _check_text(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_text(item)


def strict_json(data: bytes) -> Any:
    """RFC 8259 JSON text in UTF-8, parsed as JSON Schema validators see it (last member wins).

    Python's ``json`` also takes NaN/Infinity and unpaired surrogate escapes; those are not
    JSON text and raise here.
    """
    document = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    _check_text(document)
    return document


def schema_accepts(topic: str, data: bytes) -> bool:
    try:
        document = strict_json(data)
    except (ValueError, UnicodeError):
        return False
    return bool(VALIDATORS[topic].is_valid(document))


def decoder_accepts(topic: str, data: bytes) -> bool:
    result = decode(topic, data, now=FAR_FUTURE, future_tolerance_seconds=0.0)
    return not isinstance(result, Rejection)


# --- the schemas themselves -------------------------------------------------------------------


@pytest.mark.parametrize("topic", ALL_TOPICS)
def test_schema_is_valid_draft_2020_12(topic: str) -> None:
    schema = load_schema(topic)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is True


def test_schema_directory_holds_exactly_one_schema_per_topic() -> None:
    names = {p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json")}
    assert names == set(ALL_TOPICS)


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


@pytest.mark.parametrize("topic", ALL_TOPICS)
def test_timestamps_use_the_decoders_pattern_and_never_format(topic: str) -> None:
    schema = load_schema(topic)
    assert schema["$defs"]["timestamp"]["pattern"] == RFC3339_PATTERN
    for node in _walk(schema):
        assert "format" not in node
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            # Same meaning in Python re and ECMA-262: no \d (Unicode digits in Python), no $.
            assert "\\d" not in pattern
            assert not pattern.endswith("$")


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Merge a property's local $ref (and a nullable anyOf) into one flat dict."""
    merged = dict(node)
    options = node.get("anyOf", [node])
    merged["nullable"] = any(option.get("type") == "null" for option in options)
    for option in options:
        ref = option.get("$ref")
        if ref is not None:
            merged.update(schema["$defs"][ref.removeprefix("#/$defs/")])
        elif option.get("type") != "null":
            merged.update(option)
    return merged


@pytest.mark.parametrize("topic", INPUT_TOPICS)
def test_input_schema_mirrors_its_struct(topic: str) -> None:
    """Required fields, enums, bounds and defaults are the same in schema and Struct."""
    schema = load_schema(topic)
    info = msgspec.inspect.type_info(EVENT_TYPES[topic])
    assert isinstance(info, msgspec.inspect.StructType)
    assert set(schema["required"]) == {f.encode_name for f in info.fields if f.required}
    assert set(schema["properties"]) == {f.encode_name for f in info.fields}
    for f in info.fields:
        prop = _resolve(schema, schema["properties"][f.encode_name])
        options = f.type.types if isinstance(f.type, msgspec.inspect.UnionType) else (f.type,)
        assert prop["nullable"] == any(isinstance(o, msgspec.inspect.NoneType) for o in options)
        kind = next(o for o in options if not isinstance(o, msgspec.inspect.NoneType))
        if not f.required:
            assert prop.get("default") == (None if f.default is None else f.default)
        if isinstance(kind, msgspec.inspect.StrType):
            assert prop["type"] == "string"
            assert prop.get("minLength") == kind.min_length
            assert prop.get("maxLength") == kind.max_length
        elif isinstance(kind, msgspec.inspect.LiteralType):
            if f.encode_name == "schema_version":
                assert prop["const"] == 1
                assert kind.values == (1,)
            else:
                assert sorted(prop["enum"]) == sorted(map(str, kind.values))
        elif isinstance(kind, msgspec.inspect.IntType):
            assert prop["type"] == "integer"
            assert prop.get("minimum") == kind.ge
            assert prop.get("maximum") == kind.le
        elif isinstance(kind, msgspec.inspect.BoolType):
            assert prop["type"] == "boolean"
        elif isinstance(kind, msgspec.inspect.DateTimeType):
            assert kind.tz is True
            assert prop["pattern"] == RFC3339_PATTERN
        else:  # pragma: no cover - a new field type needs a rule here
            pytest.fail(f"{topic}.{f.encode_name}: no mirror rule for {kind!r}")


def test_kpi_schema_enumerates_every_kpi_and_the_dlq_schema_every_reason() -> None:
    kpis = load_schema("support-kpis")["properties"]["kpi"]["enum"]
    assert kpis == list(KPI_NAMES)
    reasons = load_schema("support-events-dlq")["properties"]["reason"]["enum"]
    assert reasons == list(REJECTION_REASONS)


# --- the RFC 3339 pattern ---------------------------------------------------------------------


def test_timestamp_pattern_accepts_exactly_the_real_dates_1970_to_2999() -> None:
    mismatches = []
    for year in (1969, *range(1970, 3000, 1), 3000):
        for month in range(0, 14):
            for day in range(0, 33):
                text = f"{year:04d}-{month:02d}-{day:02d}T12:00:00Z"
                real = 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]
                expected = real and 1970 <= year <= 2999
                if (TIMESTAMP.match(text) is not None) != expected:
                    mismatches.append(text)
    assert mismatches == []


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T09:14:03Z",
        "2024-05-01T09:14:03.5Z",
        "2024-05-01T09:14:03.123456789+02:00",
        "2024-05-01t09:14:03z",
        "2024-05-01T23:59:59-23:59",
        "2024-05-01T00:00:00+00:00",
        "2024-05-01T00:00:00-00:00",
        "2000-02-29T00:00:00Z",
        "1970-01-01T00:00:00Z",
        "2999-12-31T23:59:59.999999999Z",
    ],
)
def test_timestamp_pattern_accepts(text: str) -> None:
    assert TIMESTAMP.match(text) is not None
    parsed = msgspec.json.decode(json.dumps(text).encode(), type=datetime)
    assert parsed.tzinfo is not None


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T09:14:03",  # no offset
        "2024-05-01 09:14:03Z",  # space separator
        "2024-05-01T09:14:03+0200",  # offset without colon
        "2024-05-01T09:14:03+02",  # offset without minutes
        "2024-05-01T09:14:03+24:00",
        "2024-05-01T09:14:03+01:60",
        "2024-05-01T09:14Z",  # no seconds
        "2024-05-01T24:00:00Z",
        "2016-12-31T23:59:60Z",  # leap second: Python datetimes cannot hold it
        "2024-05-01T09:14:03.Z",
        "2024-05-01T09:14:03.1234567890Z",  # more than 9 fractional digits
        "2024-05-01T09:14:03,5Z",
        "2024-05-01",
        "20240501T091403Z",
        "1900-02-29T00:00:00Z",
        "2100-02-29T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "3000-01-01T00:00:00Z",
        "2024-05-01T09:14:03Z\n",  # `$` would have let this through in Python
        "\n2024-05-01T09:14:03Z",
        "\uff12\uff10\uff12\uff14-05-01T09:14:03Z",  # full-width digits match `\d` in Python
        "",
    ],
)
def test_timestamp_pattern_rejects(text: str) -> None:
    assert TIMESTAMP.match(text) is None


@settings(max_examples=300)
@given(st.from_regex(RFC3339_PATTERN.removesuffix(r"(?![\s\S])"), fullmatch=True))
def test_every_timestamp_the_pattern_accepts_parses_as_an_aware_datetime(text: str) -> None:
    """The decoder's verdict is pattern AND msgspec: the pattern must never be the looser one."""
    parsed = msgspec.json.decode(json.dumps(text).encode(), type=datetime)
    assert parsed.utcoffset() is not None


# --- examples ---------------------------------------------------------------------------------


@pytest.mark.parametrize("topic", ALL_TOPICS)
def test_each_topic_has_several_valid_and_invalid_examples(topic: str) -> None:
    assert len(example_files(topic, "valid")) >= 3
    assert len(example_files(topic, "invalid")) >= 7


def test_invalid_input_examples_cover_every_decoder_schema_reason() -> None:
    reasons = {
        path.name.split(".", 1)[0]
        for topic in INPUT_TOPICS
        for path in example_files(topic, "invalid")
    }
    assert reasons == {
        "missing_field",
        "wrong_type",
        "unknown_enum",
        "out_of_range",
        "invalid_timestamp",
        "unsupported_schema_version",
        "not_an_object",
    }


@pytest.mark.parametrize(
    ("topic", "path"),
    list(all_examples()),
    ids=[f"{topic}/{path.parent.name}/{path.stem}" for topic, path in all_examples()],
)
def test_example_verdict(topic: str, path: Path) -> None:
    data = path.read_bytes()
    valid = path.parent.name == "valid"
    assert schema_accepts(topic, data) is valid, "jsonschema disagrees with the directory"
    if topic in EVENT_TYPES:
        result = decode(topic, data, now=FAR_FUTURE, future_tolerance_seconds=0.0)
        if valid:
            assert isinstance(result, EVENT_TYPES[topic])
        else:
            assert isinstance(result, Rejection)
            assert result.reason == path.name.split(".", 1)[0]
    else:
        record_type = RECORD_TYPES[topic]
        if valid:
            record = msgspec.json.decode(data, type=record_type)
            assert VALIDATORS[topic].is_valid(json.loads(encode_record(record)))
        else:
            with pytest.raises(msgspec.ValidationError):
                msgspec.json.decode(data, type=record_type)


# --- schema and decoder agree on mutated documents --------------------------------------------

ENUM_VALUES = sorted(
    {
        str(value)
        for event_type in EVENT_TYPES.values()
        for f in msgspec.structs.fields(event_type)
        for value in getattr(msgspec.inspect.type_info(f.type), "values", ())
        if isinstance(value, str)
    }
)
KNOWN_FIELDS = sorted(
    {f.encode_name for t in EVENT_TYPES.values() for f in msgspec.structs.fields(t)}
)


def _valid_documents(topic: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in example_files(topic, "valid")]


VALID_DOCUMENTS = {topic: _valid_documents(topic) for topic in INPUT_TOPICS}


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """Well-formed, nearly well-formed and badly formed event times."""
    year = draw(st.integers(1960, 3010))
    month = draw(st.integers(0, 13))
    day = draw(st.integers(0, 32))
    hour = draw(st.integers(0, 24))
    minute = draw(st.integers(0, 60))
    second = draw(st.integers(0, 61))
    separator = draw(st.sampled_from(["T", "t", " "]))
    fraction = draw(
        st.sampled_from(["", ".5", ".123", ".123456", ".123456789", ".1234567891", "."])
    )
    offset = draw(
        st.sampled_from(
            [
                "Z",
                "z",
                "",
                "+00:00",
                "-00:00",
                "+05:30",
                "-23:59",
                "+24:00",
                "+0530",
                "+05",
                "+01:60",
            ]
        )
    )
    return (
        f"{year:04d}-{month:02d}-{day:02d}{separator}"
        f"{hour:02d}:{minute:02d}:{second:02d}{fraction}{offset}"
    )


def _aware_times() -> st.SearchStrategy[str]:
    offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timedelta(minutes=m))
    return st.builds(
        lambda moment, offset: moment.replace(tzinfo=timezone(offset)).isoformat(),
        st.datetimes(min_value=datetime(1969, 12, 30), max_value=datetime(3000, 1, 2)),
        offsets,
    )


TEXT_VALUES = st.one_of(
    st.text(max_size=6),
    st.sampled_from(
        [
            *["", " ", "x" * 128, "x" * 129, "x" * 256, "x" * 257, "y" * 2000, "y" * 2001],
            *["\N{GRINNING FACE}" * 128, "\N{GRINNING FACE}" * 129, "é" * 256, "é" * 257],
        ]
    ),
    st.sampled_from(ENUM_VALUES),
    st.sampled_from(ENUM_VALUES).map(str.upper),
)
NUMBERS = st.one_of(
    st.integers(-2, 12),
    st.integers(),
    st.sampled_from([0.0, 1.0, 2.0, 5.0, 10.0, 11.0, -1.0, 1.5, 4.999, 1e300, -0.0]),
    st.floats(allow_nan=False, allow_infinity=False),
)
JSON_LEAVES = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT_VALUES)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELD_VALUES = st.one_of(JSON_LEAVES, timestamps(), _aware_times(), JSON_VALUES)


@st.composite
def mutated_documents(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    topic = draw(st.sampled_from(INPUT_TOPICS))
    document = dict(draw(st.sampled_from(VALID_DOCUMENTS[topic])))
    fields = sorted(f.encode_name for f in msgspec.structs.fields(EVENT_TYPES[topic]))
    for _ in range(draw(st.integers(1, 3))):
        action = draw(
            st.sampled_from(
                ["drop", "set", "enum", "timestamp", "score", "version", "extra", "length"]
            )
        )
        if action == "drop" and document:
            document.pop(draw(st.sampled_from(sorted(document))))
        elif action == "set":
            document[draw(st.sampled_from(fields))] = draw(FIELD_VALUES)
        elif action == "enum":
            document[draw(st.sampled_from(fields))] = draw(st.sampled_from(ENUM_VALUES))
        elif action == "timestamp":
            document["occurred_at"] = draw(st.one_of(timestamps(), _aware_times()))
        elif action == "score":
            document["score"] = draw(NUMBERS)
            document["kind"] = draw(st.sampled_from(["csat", "nps", "enps", "ces"]))
        elif action == "version":
            document["schema_version"] = draw(
                st.sampled_from([0, 1, 2, 1.0, 2.0, 1.5, "1", True, None, -1, 10**20])
            )
        elif action == "extra":
            name = draw(st.text(min_size=1, max_size=12).filter(lambda n: n not in KNOWN_FIELDS))
            document[name] = draw(JSON_VALUES)
        elif action == "length":
            document[draw(st.sampled_from(fields))] = draw(TEXT_VALUES)
    return topic, document


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_documents(), st.booleans())
@example(("survey-submitted", {**VALID_DOCUMENTS["survey-submitted"][0], "score": 0}), True)
@example(("ticket-escalated", {**VALID_DOCUMENTS["ticket-escalated"][0], "level": 3.0}), False)
def test_schema_and_decoder_agree_on_mutated_documents(
    case: tuple[str, dict[str, Any]], ensure_ascii: bool
) -> None:
    topic, document = case
    data = json.dumps(document, ensure_ascii=ensure_ascii).encode()
    expected = schema_accepts(topic, data)
    result = decode(topic, data, now=FAR_FUTURE, future_tolerance_seconds=0.0)
    assert (not isinstance(result, Rejection)) == expected, (result, document)
    if isinstance(result, Rejection):
        assert result.reason in REJECTION_REASONS
        return
    # An accepted document decodes to its own values, defaults where absent.
    for f in msgspec.structs.fields(EVENT_TYPES[topic]):
        value = getattr(result, f.name)
        if f.encode_name == "occurred_at":
            assert abs(value - _parse_time(document["occurred_at"])) <= timedelta(microseconds=1)
        elif f.encode_name in document:
            assert value == document[f.encode_name]
            assert type(value) is not float
        else:
            assert value == f.default


def _parse_time(text: str) -> datetime:
    """Independent RFC 3339 reading (fromisoformat), fraction rounded to microseconds."""
    fraction = re.search(r"\.([0-9]+)", text)
    whole = datetime.fromisoformat(re.sub(r"\.[0-9]+", "", text).upper().replace("Z", "+00:00"))
    micros = round(float("0." + fraction.group(1)) * 1e6) if fraction else 0
    return whole + timedelta(microseconds=micros)


def _byte_edits() -> st.SearchStrategy[tuple[str, bytes]]:
    @st.composite
    def edits(draw: st.DrawFn) -> tuple[str, bytes]:
        topic = draw(st.sampled_from(INPUT_TOPICS))
        data = bytearray(json.dumps(draw(st.sampled_from(VALID_DOCUMENTS[topic]))).encode())
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(data) - 1))
            action = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
            byte = draw(st.sampled_from([*b'{}[]",:\\ 0aZ\x00\x1f\x7f', 0x80, 0xC3, 0xFF]))
            if action == "replace":
                data[at] = byte
            elif action == "insert":
                data.insert(at, byte)
            elif action == "delete":
                del data[at]
            else:
                del data[at:]
            if not data:
                break
        return topic, bytes(data)

    return edits()


@settings(max_examples=800, deadline=None)
@given(_byte_edits())
def test_schema_and_decoder_agree_on_damaged_bytes(case: tuple[str, bytes]) -> None:
    topic, data = case
    assert decoder_accepts(topic, data) == schema_accepts(topic, data), data


@pytest.mark.parametrize(
    ("topic", "data"),
    [
        # Duplicate members: the last one counts, for the schema and the decoder alike.
        (
            "survey-submitted",
            b'{"event_id":"e1","occurred_at":"2024-05-01T10:00:00Z","schema_version":1,'
            b'"survey_id":"s1","kind":"csat","score":9,"score":4}',
        ),
        (
            "survey-submitted",
            b'{"event_id":"e1","occurred_at":"2024-05-01 10:00:00Z","schema_version":1,'
            b'"survey_id":"s1","kind":"csat","score":4,"occurred_at":"2024-05-01T10:00:00Z"}',
        ),
        (
            "ticket-status-changed",
            b'{"event_id":"e1","occurred_at":"2024-05-01T10:00:00Z","schema_version":1,'
            b'"ticket_id":"t1","status":"solved","status":"resolved"}',
        ),
        # Escaped member names are the same names.
        (
            "ticket-status-changed",
            b'{"event_id":"e1","occurred\\u005fat":"2024-05-01T10:00:00Z","schema_version":1,'
            b'"ticket_id":"t1","status":"solved"}',
        ),
        (
            "ticket-status-changed",
            b'{"event_id":"e1","occurred\\u005fat":"2024-05-01 10:00:00Z","schema_version":1,'
            b'"ticket_id":"t1","status":"solved"}',
        ),
        # An unknown member with a huge number, a nested object or non-ASCII text is ignored.
        (
            "ticket-status-changed",
            b'{"event_id":"e1","occurred_at":"2024-05-01T10:00:00Z","schema_version":1.0,'
            b'"ticket_id":"t1","status":"solved","x":1e400,"y":{"occurred_at":"no"}}',
        ),
        (
            "ticket-status-changed",
            '{"event_id":"é1","occurred_at":"2024-05-01T10:00:00Z","schema_version":1,'
            '"ticket_id":"t1","status":"solved","note":"Grüße"}'.encode(),
        ),
        # Not JSON text: invalid UTF-8 in an ignored member, an unpaired surrogate, NaN.
        (
            "ticket-status-changed",
            b'{"event_id":"e1","occurred_at":"2024-05-01T10:00:00Z","schema_version":1,'
            b'"ticket_id":"t1","status":"solved","note":"\xff"}',
        ),
        (
            "ticket-status-changed",
            b'{"event_id":"e1","occurred_at":"2024-05-01T10:00:00Z","schema_version":1,'
            b'"ticket_id":"t1","status":"solved","note":"\\ud800"}',
        ),
        (
            "ticket-status-changed",
            b'{"event_id":"e1","occurred_at":"2024-05-01T10:00:00Z","schema_version":1,'
            b'"ticket_id":"t1","status":"solved","note":NaN}',
        ),
    ],
)
def test_schema_and_decoder_agree_on_edge_cases(topic: str, data: bytes) -> None:
    assert decoder_accepts(topic, data) == schema_accepts(topic, data)


# --- output records ---------------------------------------------------------------------------

TEAMS = st.sampled_from(["billing", "Tier 2 \N{EN DASH} Hardware", "other", UNKNOWN, "t" * 128])
POSIX = st.floats(min_value=86400.0, max_value=32503680000.0 - 90000.0)  # 1970-01-02 to 2999


@st.composite
def kpi_keys(draw: st.DrawFn) -> KpiKey:
    kpi = draw(st.sampled_from(WINDOWED_KPIS + LIVE_KPIS))
    window = LIVE_WINDOW if kpi in LIVE_KPIS else draw(st.sampled_from(["15m", "1h", "24h", "7d"]))
    dimension = draw(
        st.sampled_from(["team"] if kpi in TEAM_ONLY_KPIS else ["team", "channel", "priority"])
    )
    by = draw(st.booleans())
    return KpiKey(
        kpi,
        window,
        team=draw(TEAMS) if by and dimension == "team" else ALL,
        channel=draw(st.sampled_from((*CHANNELS, UNKNOWN)))
        if by and dimension == "channel"
        else ALL,
        priority=draw(st.sampled_from((*PRIORITIES, UNKNOWN)))
        if by and dimension == "priority"
        else ALL,
    )


@st.composite
def customer_kpi_keys(draw: st.DrawFn) -> CustomerKpiKey:
    kpi = draw(st.sampled_from(CUSTOMER_WINDOWED_KPIS + CUSTOMER_LIVE_KPIS))
    live = kpi in CUSTOMER_LIVE_KPIS
    window = LIVE_WINDOW if live else draw(st.sampled_from(["7d", "30d", "today"]))
    return CustomerKpiKey(kpi, window, draw(st.just(ALL) | TEAMS))


@st.composite
def kpi_records(draw: st.DrawFn) -> KpiRecord:
    key: KpiKey | CustomerKpiKey = draw(kpi_keys() | customer_kpi_keys())
    if key.kpi in RATIO_KPIS:
        values = st.floats(0.0, 1.0)
    elif key.kpi in SCORE_KPIS:
        values = st.floats(-100.0, 100.0)
    else:
        values = st.floats(0.0, 1e9) | st.integers(0, 10**6).map(float)
    end = draw(POSIX)
    live = key.window == LIVE_WINDOW
    return kpi_record(
        key,
        value=draw(st.none() | values),
        sample_size=draw(st.integers(0, 10**9)),
        window_start=None if live else end - draw(st.sampled_from([900.0, 3600.0, 86400.0])),
        window_end=None if live else end,
        computed_at=end + draw(st.floats(0.0, 3600.0)),
    )


@settings(max_examples=400)
@given(kpi_records())
def test_kpi_records_validate_against_their_schema(record: KpiRecord) -> None:
    data = encode_record(record)
    document = json.loads(data)
    errors = [e.message for e in VALIDATORS["support-kpis"].iter_errors(document)]
    assert errors == []
    assert msgspec.json.decode(data, type=KpiRecord) == record


@settings(max_examples=200)
@given(
    reason=st.sampled_from(REJECTION_REASONS),
    field=st.none() | st.sampled_from(["occurred_at", "score", "source.topic"]),
    topic=st.sampled_from(INPUT_TOPICS),
    partition=st.integers(0, 1023),
    offset=st.integers(0, 2**63 - 1),
    original=st.binary(max_size=300),
    at=POSIX,
)
def test_dead_letter_records_validate_against_their_schema(
    reason: Any,
    field: str | None,
    topic: str,
    partition: int,
    offset: int,
    original: bytes,
    at: float,
) -> None:
    rejection = Rejection(reason, field, "field `score` must be between 1 and 5")
    record = dead_letter(
        rejection,
        topic=topic,
        partition=partition,
        offset=offset,
        original=original,
        rejected_at=at,
        max_original_bytes=200,
    )
    document = json.loads(encode_record(record))
    errors = [e.message for e in VALIDATORS["support-events-dlq"].iter_errors(document)]
    assert errors == []
    assert base64.b64decode(document["original_base64"]) == original[:200]
    assert document["original_size"] == len(original)
    assert msgspec.json.decode(encode_record(record), type=DeadLetterRecord) == record


@pytest.mark.parametrize("topic", INPUT_TOPICS)
def test_dead_letters_of_every_invalid_example_validate(topic: str) -> None:
    for number, path in enumerate(example_files(topic, "invalid")):
        data = path.read_bytes()
        rejection = decode(topic, data, now=FAR_FUTURE, future_tolerance_seconds=0.0)
        assert isinstance(rejection, Rejection)
        record = dead_letter(
            rejection,
            topic=topic,
            partition=2,
            offset=number,
            original=data,
            rejected_at=1714554843.5,
        )
        document = json.loads(encode_record(record))
        assert VALIDATORS["support-events-dlq"].is_valid(document), path.name
        assert base64.b64decode(document["original_base64"]) == data


def test_output_schemas_reject_what_the_record_types_refuse_to_build() -> None:
    """Each rule __post_init__ enforces is one the schema enforces too."""
    good = kpi_record(
        KpiKey("csat_satisfied_ratio", "1h", team="billing"),
        value=0.5,
        sample_size=2,
        window_start=1714554000.0,
        window_end=1714557600.0,
        computed_at=1714557600.5,
    )
    document = json.loads(encode_record(good))
    assert VALIDATORS["support-kpis"].is_valid(document)
    broken: list[dict[str, Any]] = [
        {**document, "kpi": "csat_ratio"},
        {**document, "window": "live"},
        {**document, "window_start": None},
        {**document, "value": 1.5},
        {**document, "dimensions": {"team": "billing", "channel": "chat", "priority": "all"}},
        {**document, "dimensions": {"team": "", "channel": "all", "priority": "all"}},
        {**document, "sample_size": -1},
        {**document, "computed_at": "2024-05-01T10:00:00"},
    ]
    for item in broken:
        assert not VALIDATORS["support-kpis"].is_valid(item), item
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(json.dumps(item), type=KpiRecord)


@pytest.mark.parametrize(
    "change",
    [
        {"value": math.nan},
        {"value": math.inf},
        {"window_start": datetime(2024, 5, 1, 9, 0)},  # naive
        {"computed_at": datetime(1969, 12, 31, tzinfo=UTC)},
        {"kpi": "open_tickets"},  # live KPI with a sized window
        {"kpi": "enps_score", "dimensions": Dimensions(team=ALL, channel="chat", priority=ALL)},
        {"window": "1 hour"},
        {"window_end": None},
        {"sample_size": -1},
        {"value": -0.5},
    ],
)
def test_kpi_record_refuses_to_build_a_schema_invalid_record(change: dict[str, Any]) -> None:
    fields: dict[str, Any] = {
        "kpi": "first_response_mean_seconds",
        "window": "1h",
        "dimensions": Dimensions(team=ALL, channel=ALL, priority=ALL),
        "value": 12.0,
        "sample_size": 3,
        "window_start": datetime(2024, 5, 1, 9, tzinfo=UTC),
        "window_end": datetime(2024, 5, 1, 10, tzinfo=UTC),
        "computed_at": datetime(2024, 5, 1, 10, tzinfo=UTC),
    }
    assert VALIDATORS["support-kpis"].is_valid(json.loads(encode_record(KpiRecord(**fields))))
    fields.update(change)
    value = fields["value"]
    if math.isfinite(value):  # JSON has no NaN or infinity: nothing to show the schema
        document = json.loads(msgspec.json.encode({"schema_version": 1, **fields}))
        assert not VALIDATORS["support-kpis"].is_valid(document)
    with pytest.raises(ValueError, match=r"\w"):
        KpiRecord(**fields)


def test_date_used_in_examples_is_not_in_the_future() -> None:
    """Valid examples stay valid for the decoder at today's clock, not only at FAR_FUTURE."""
    now = datetime.now(UTC).timestamp()
    for topic in INPUT_TOPICS:
        for path in example_files(topic, "valid"):
            result = decode(topic, path.read_bytes(), now=now, future_tolerance_seconds=300.0)
            assert not isinstance(result, Rejection), (path.name, result)
    assert date.today().year < 2999
