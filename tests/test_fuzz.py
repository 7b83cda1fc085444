"""Fuzzing the path a record takes in stage 1 and stage 2: bytes -> decode -> PartitionEngine
(ticket state through msgpack, as in the Faust table) -> partials through msgpack -> KpiStore
-> readings -> KPI records and dead letters.

Inputs: random bytes, byte-level mutations of valid events, valid events with fields replaced
by extreme numbers, Unicode edge cases, huge arrays and deep nesting, and JSON text with
duplicate member names. The property: no exception escapes, every rejection carries a reason
from the closed list and builds a schema-conforming dead letter.

The default run has a small fixed budget (a few seconds). A longer run on demand:
``FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/test_fuzz.py -q`` (examples per test).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core.kpis import EngineConfig
from streams.core.partition import PartialUpdate, PartitionEngine, Source
from streams.core.store import KpiStore
from streams.core.ticket import TicketState
from streams.core.units import to_us
from streams.decoding import MAX_NESTING_DEPTH, REJECTION_REASONS, Rejection, decode
from streams.events import EVENT_TYPES
from streams.outputs.publisher import KpiPublisher
from streams.records import dead_letter, encode_record

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0")) or None
FUZZ = settings(
    max_examples=EXAMPLES or 50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=EXAMPLES is None,  # the default run is the same every time
)
TOPICS = tuple(EVENT_TYPES)
NOW = 1_733_000_000.0  # 2024-11-30T20:53:20Z
CONFIG = EngineConfig()
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "schemas" / "examples"


def _seeds() -> list[tuple[str, dict[str, Any]]]:
    """Valid documents per topic (the schema examples), re-timed near NOW so they count."""
    seeds = []
    for topic in TOPICS:
        for path in sorted((EXAMPLES_DIR / topic / "valid").glob("*.json")):
            document = json.loads(path.read_text())
            document["occurred_at"] = "2024-11-30T20:00:00Z"
            if "ticket_id" in document:
                document["ticket_id"] = "T-1"  # one ticket: the events interact in the engine
            seeds.append((topic, document))
    return seeds


SEEDS = _seeds()


# -- the pipeline under test --------------------------------------------------------------------


class MsgpackTicketStore:
    """The Faust table's contract: ticket states stored as msgpack bytes."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self._decoder = msgspec.msgpack.Decoder(TicketState)

    def get(self, key: str) -> TicketState | None:
        raw = self.data.get(key)
        return None if raw is None else self._decoder.decode(raw)

    def put(self, key: str, state: TicketState) -> None:
        self.data[key] = msgspec.msgpack.encode(state)

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def states(self) -> list[tuple[str, TicketState]]:
        return [(key, self._decoder.decode(raw)) for key, raw in self.data.items()]


_PARTIAL = msgspec.msgpack.Decoder(PartialUpdate)


def run_pipeline(records: Sequence[tuple[str, bytes]], *, stream_clock: bool = True) -> None:
    engine = PartitionEngine(0, MsgpackTicketStore(), CONFIG)
    store = KpiStore(CONFIG)
    publisher = KpiPublisher()
    clock = round(NOW * 1e6)
    for offset, (topic, data) in enumerate(records):
        result = decode(topic, data, now=NOW, future_tolerance_seconds=300, max_bytes=65536)
        if isinstance(result, Rejection):
            check_rejection(result, topic, offset, data)
            continue
        if stream_clock:
            clock = max(engine.stream_time_us, to_us(result.occurred_at))
        outcome = engine.process(result, clock, Source(topic, 0, offset, data))
        for held in [*outcome.rejected, *engine.housekeeping(clock)]:
            check_rejection(Rejection("orphan", None, "held"), held.topic, held.offset, held.raw)
        for update in engine.flush():
            store.apply(_PARTIAL.decode(msgspec.msgpack.encode(update)))
    engine.rebuild(clock)  # the recovery path over the same states
    for update in engine.flush():
        store.apply(_PARTIAL.decode(msgspec.msgpack.encode(update)))
    readings = list(store.read(clock, 100))
    publisher.changes(readings, clock / 1e6)


def check_rejection(rejection: Rejection, topic: str, offset: int, data: bytes) -> None:
    assert rejection.reason in REJECTION_REASONS, rejection
    assert 0 < len(rejection.detail) <= 1000
    record = dead_letter(
        rejection, topic=topic, partition=0, offset=offset, original=data, rejected_at=NOW
    )
    encode_record(record)


# -- inputs -------------------------------------------------------------------------------------

_BIG = [10**k for k in (18, 19, 20, 40, 308, 400)]
EXTREME_NUMBERS = st.one_of(
    st.sampled_from([0, -0.0, 1, -1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64]),
    st.sampled_from(_BIG + [-b for b in _BIG]),
    st.sampled_from([1e308, -1e308, 5e-324, 1.7976931348623157e308, 2.0, 1.5, 1e-7]),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
)
UNICODE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            "\x00",
            "\ufeff",
            "\u202e",  # right-to-left override
            "e\u0301" * 50,  # combining marks
            "\U0001f600" * 40,  # astral plane
            "\ud800",  # lone surrogate (not encodable as UTF-8)
            "a" * 128,
            "a" * 129,
            "\u00e9" * 256,
            "\u00e9" * 257,
            "\u2028\u2029",
            "|all|other|",
        ]
    ),
)
LEAVES = st.one_of(st.none(), st.booleans(), EXTREME_NUMBERS, UNICODE_TEXT)
NESTED = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(UNICODE_TEXT, inner, max_size=4)
    ),
    max_leaves=20,
)
HUGE_ARRAYS = st.integers(0, 15_000).map(lambda n: [0] * n)


@dataclass(frozen=True)
class Deep:
    """Nesting ``depth`` levels deep (objects or arrays), written without recursion."""

    depth: int
    objects: bool


DEEP = st.builds(Deep, st.integers(1, 6000), st.booleans())
# Numbers and text first: Hypothesis shrinks towards the first options and draws them often.
VALUES = st.one_of(EXTREME_NUMBERS, UNICODE_TEXT, LEAVES, NESTED, HUGE_ARRAYS, DEEP)


def _dump(value: Any, ensure_ascii: bool) -> bytes:
    if isinstance(value, Deep):
        if value.objects:
            return ('{"a":' * value.depth + "1" + "}" * value.depth).encode()
        return ("[" * value.depth + "1" + "]" * value.depth).encode()
    text = json.dumps(value, ensure_ascii=ensure_ascii)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def field_replaced(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid event with members replaced or added: extreme numbers, Unicode, huge, deep."""
    topic, seed = draw(st.sampled_from(SEEDS))
    document = dict(seed)
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from([*document, "extra"]))
        document[name] = draw(VALUES)
    members = [
        json.dumps(k).encode() + b":" + _dump(v, draw(st.booleans())) for k, v in document.items()
    ]
    return topic, b"{" + b",".join(members) + b"}"


@st.composite
def duplicate_keys(draw: st.DrawFn) -> tuple[str, bytes]:
    """JSON text repeating member names (the last one counts), with conflicting values."""
    topic, seed = draw(st.sampled_from(SEEDS))
    pairs = list(seed.items())
    for _ in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from(list(seed)))
        value = draw(st.one_of(st.just(seed[name]), LEAVES))
        pairs.insert(draw(st.integers(0, len(pairs))), (name, value))
    members = [json.dumps(k).encode() + b":" + _dump(v, True) for k, v in pairs]
    return topic, b"{" + b",".join(members) + b"}"


@st.composite
def byte_mutations(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid event's bytes with flips, insertions, deletions and spliced tokens."""
    topic, seed = draw(st.sampled_from(SEEDS))
    data = bytearray(json.dumps(seed).encode())
    tokens = [b"[", b"{", b"}", b'"', b"\\", b"\\u0000", b"\\ud800", b"1e400", b"-0", b"\xff"]
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "token", "repeat"]))
        if action == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "insert":
            data[at:at] = bytes([draw(st.integers(0, 255))])
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif action == "token":
            data[at:at] = draw(st.sampled_from(tokens)) * draw(st.sampled_from([1, 2, 70, 3000]))
        else:
            data[at:at] = data[at : at + 16] * draw(st.integers(1, 50))
    return topic, bytes(data)


RANDOM_BYTES = st.tuples(st.sampled_from(TOPICS), st.binary(max_size=512))
VALID = st.sampled_from(SEEDS).map(lambda s: (s[0], json.dumps(s[1]).encode()))
RECORDS = st.lists(
    st.one_of(RANDOM_BYTES, byte_mutations(), field_replaced(), duplicate_keys(), VALID),
    min_size=1,
    max_size=12,
)


# -- properties ---------------------------------------------------------------------------------


@FUZZ
@given(records=st.lists(RANDOM_BYTES, min_size=1, max_size=8))
def test_random_bytes(records: list[tuple[str, bytes]]) -> None:
    run_pipeline(records)


@FUZZ
@given(records=st.lists(st.one_of(byte_mutations(), VALID), min_size=1, max_size=10))
def test_mutated_valid_events(records: list[tuple[str, bytes]]) -> None:
    run_pipeline(records)


@FUZZ
@given(records=st.lists(st.one_of(field_replaced(), VALID), min_size=1, max_size=10))
def test_extreme_values_unicode_huge_and_deep(records: list[tuple[str, bytes]]) -> None:
    run_pipeline(records)


@FUZZ
@given(records=st.lists(st.one_of(duplicate_keys(), VALID), min_size=1, max_size=10))
def test_duplicate_member_names(records: list[tuple[str, bytes]]) -> None:
    run_pipeline(records)


@FUZZ
@given(records=RECORDS, stream_clock=st.booleans())
def test_everything_mixed(records: list[tuple[str, bytes]], stream_clock: bool) -> None:
    run_pipeline(records, stream_clock=stream_clock)


_NUMBER_SWEEP = [
    0, -0.0, 1, -1, 2.0, 1.5, 1e-7, 5e-324, 1e308, -1e308, 2**63 - 1, 2**63, 2**64,
    -(2**63) - 1, *_BIG, *[-b for b in _BIG],
]  # fmt: skip
_TEXT_SWEEP = ["", "\x00", "\ufeff", "\u202e", "\U0001f600" * 40, "\ud800", "a" * 257, "|"]


def test_every_field_of_every_seed_with_extreme_numbers_and_text() -> None:
    """A deterministic sweep: each edge value in each member of each valid example."""
    for topic, seed in SEEDS:
        records = []
        for name in [*seed, "extra"]:
            for value in [*_NUMBER_SWEEP, *_TEXT_SWEEP, [0] * 20_000, Deep(65, objects=True)]:
                members = [
                    json.dumps(k).encode() + b":" + _dump(v, ensure_ascii=False)
                    for k, v in {**seed, name: value}.items()
                ]
                records.append((topic, b"{" + b",".join(members) + b"}"))
        run_pipeline(records)


def test_the_inputs_reach_deep_nesting_and_the_engine() -> None:
    """The fuzz is not vacuous: its seeds decode to events, and its deep inputs are deep."""
    for topic, seed in SEEDS:
        assert not isinstance(
            decode(topic, json.dumps(seed).encode(), now=NOW, future_tolerance_seconds=300),
            Rejection,
        ), (topic, seed)
    deep = _dump(Deep(MAX_NESTING_DEPTH + 1, objects=False), True)
    rejection = decode("ticket-created", deep, now=NOW, future_tolerance_seconds=300)
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "nesting_too_deep"
