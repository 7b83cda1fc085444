"""Output records: dead letters (``support-events-dlq``) and KPI values (``support-kpis``).

Pure data, no Faust or Kafka imports. The Structs mirror ``schemas/support-events-dlq.schema.json``
and ``schemas/support-kpis.schema.json``; constructing one checks every rule of its schema (a
``ValueError`` names the broken rule), so whatever :func:`encode_record` writes is schema-valid.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Final, Literal

import msgspec

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
from streams.decoding import REJECTION_REASONS, Rejection, RejectionReason
from streams.events import CHANNELS, PRIORITIES

RECORD_SCHEMA_VERSION: Final = 1

#: Every KPI name a KPI record may carry.
KPI_NAMES: Final[tuple[str, ...]] = (
    WINDOWED_KPIS + LIVE_KPIS + CUSTOMER_WINDOWED_KPIS + CUSTOMER_LIVE_KPIS
)
#: Customer KPIs: broken down by ``segment`` only (key ``kpi|window|segment``).
CUSTOMER_KPIS: Final[frozenset[str]] = frozenset(CUSTOMER_WINDOWED_KPIS + CUSTOMER_LIVE_KPIS)
#: KPIs with window ``live`` (no window bounds).
LIVE_KPI_NAMES: Final[frozenset[str]] = frozenset(LIVE_KPIS + CUSTOMER_LIVE_KPIS)
#: Allowed ``dimensions.channel`` / ``dimensions.priority`` values.
CHANNEL_VALUES: Final[tuple[str, ...]] = (*CHANNELS, ALL, UNKNOWN)
PRIORITY_VALUES: Final[tuple[str, ...]] = (*PRIORITIES, ALL, UNKNOWN)
#: KPIs whose value is a share in [0, 1]; NPS-style scores lie in [-100, 100]; all others >= 0.
# escalation_ratio (escalated / created in the window) can exceed 1: tickets created before
# the window may escalate in it.
RATIO_KPIS: Final[frozenset[str]] = frozenset(
    k for k in KPI_NAMES if k.endswith("_ratio") and k != "escalation_ratio"
)
SCORE_KPIS: Final[frozenset[str]] = frozenset({"nps_score", "enps_score"})

#: Window names: "live", "today" (the calendar day) or a positive size with a unit, like "15m",
#: "1h", "24h", "7d".
WINDOW_PATTERN: Final = r"^(?:live|today|[1-9][0-9]{0,5}[smhdw])(?![\s\S])"
#: Kafka topic names.
TOPIC_PATTERN: Final = r"^[A-Za-z0-9._-]{1,249}(?![\s\S])"
_WINDOW = re.compile(WINDOW_PATTERN)
_TOPIC = re.compile(TOPIC_PATTERN)

#: Default cap on the original bytes a dead letter carries (base64 makes it 4/3 larger; Kafka's
#: default message limit is 1 MiB). ``original_size`` always holds the full size.
DEFAULT_MAX_ORIGINAL_BYTES: Final = 262144
MAX_DETAIL_LENGTH: Final = 1000
MAX_FIELD_LENGTH: Final = 256

NonNegative = Annotated[int, msgspec.Meta(ge=0)]


def _aware(name: str, value: datetime | None) -> None:
    if value is None:
        return
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    if not 1970 <= value.year <= 2999:
        raise ValueError(f"{name} must lie in years 1970-2999")


def _non_negative(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0")


class Source(msgspec.Struct, frozen=True, kw_only=True):
    """Where a rejected record came from."""

    topic: str
    partition: NonNegative
    offset: NonNegative

    def __post_init__(self) -> None:
        if _TOPIC.match(self.topic) is None:
            raise ValueError("source.topic must be a Kafka topic name")
        _non_negative("source.partition", self.partition)
        _non_negative("source.offset", self.offset)


class DeadLetterRecord(msgspec.Struct, frozen=True, kw_only=True):
    """Value on ``support-events-dlq``; key :func:`dead_letter_key`.

    ``original_base64`` holds the original bytes (base64 in JSON), possibly cut to a prefix:
    it is complete exactly when its length equals ``original_size``. ``detail`` names fields,
    never their content.
    """

    schema_version: Literal[1] = RECORD_SCHEMA_VERSION
    source: Source
    reason: RejectionReason
    field: str | None
    detail: str
    original_base64: bytes
    original_size: NonNegative
    rejected_at: datetime

    def __post_init__(self) -> None:
        if self.schema_version != RECORD_SCHEMA_VERSION:
            raise ValueError("schema_version must be 1")
        if self.reason not in REJECTION_REASONS:
            raise ValueError("reason must be one of REJECTION_REASONS")
        if self.field is not None and not 1 <= len(self.field) <= MAX_FIELD_LENGTH:
            raise ValueError(f"field must be 1-{MAX_FIELD_LENGTH} characters or None")
        if len(self.detail) > MAX_DETAIL_LENGTH:
            raise ValueError(f"detail must be at most {MAX_DETAIL_LENGTH} characters")
        _non_negative("original_size", self.original_size)
        if len(self.original_base64) > self.original_size:
            raise ValueError("original_base64 cannot be longer than original_size")
        _aware("rejected_at", self.rejected_at)


class Dimensions(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The breakdown of a KPI value; ``all`` where not broken down (at most one is not).

    Ticket KPIs carry ``team``, ``channel`` and ``priority``; customer KPIs ``segment`` only.
    """

    team: str | None = None
    channel: str | None = None
    priority: str | None = None
    segment: str | None = None


class KpiRecord(msgspec.Struct, frozen=True, kw_only=True):
    """Value on the compacted ``support-kpis`` topic; key :func:`kpi_record_key`.

    ``value`` is None when a ratio, mean or quantile has no sample. ``window_start`` and
    ``window_end`` are None exactly for live KPIs (``window == "live"``).
    """

    schema_version: Literal[1] = RECORD_SCHEMA_VERSION
    kpi: str
    window: str
    dimensions: Dimensions
    value: float | None
    sample_size: NonNegative
    window_start: datetime | None
    window_end: datetime | None
    computed_at: datetime

    def __post_init__(self) -> None:
        if self.schema_version != RECORD_SCHEMA_VERSION:
            raise ValueError("schema_version must be 1")
        if self.kpi not in KPI_NAMES:
            raise ValueError("kpi must be one of KPI_NAMES")
        if _WINDOW.match(self.window) is None:
            raise ValueError('window must be "live" or a size like "15m"')
        live = self.window == LIVE_WINDOW
        if live != (self.kpi in LIVE_KPI_NAMES):
            raise ValueError('window must be "live" exactly for live KPIs')
        if live != (self.window_start is None) or live != (self.window_end is None):
            raise ValueError("window_start/window_end must be None exactly for live KPIs")
        _aware("window_start", self.window_start)
        _aware("window_end", self.window_end)
        _aware("computed_at", self.computed_at)
        start, end = self.window_start, self.window_end
        if start is not None and end is not None and start > end:
            raise ValueError("window_start must not be after window_end")
        self._check_dimensions()
        self._check_value()
        _non_negative("sample_size", self.sample_size)

    def _check_dimensions(self) -> None:
        dims = self.dimensions
        if self.kpi in CUSTOMER_KPIS:
            if dims.team is not None or dims.channel is not None or dims.priority is not None:
                raise ValueError(f"{self.kpi} is broken down by segment only")
            if dims.segment is None or not 1 <= len(dims.segment) <= 128:
                raise ValueError("dimensions.segment must be 1-128 characters")
            return
        if dims.segment is not None:
            raise ValueError("dimensions.segment is for customer KPIs only")
        if dims.team is None or not 1 <= len(dims.team) <= 128:
            raise ValueError("dimensions.team must be 1-128 characters")
        if dims.channel not in CHANNEL_VALUES:
            raise ValueError("dimensions.channel must be one of CHANNEL_VALUES")
        if dims.priority not in PRIORITY_VALUES:
            raise ValueError("dimensions.priority must be one of PRIORITY_VALUES")
        broken_down = sum(v != ALL for v in (dims.team, dims.channel, dims.priority))
        if broken_down > 1:
            raise ValueError("at most one dimension may differ from 'all'")
        if self.kpi in TEAM_ONLY_KPIS and (dims.channel != ALL or dims.priority != ALL):
            raise ValueError(f"{self.kpi} is broken down by team only")

    def _check_value(self) -> None:
        value = self.value
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("value must be a number or None")
        if not math.isfinite(value):
            raise ValueError("value must be finite (use None for 'no value')")
        if self.kpi in RATIO_KPIS:
            low, high = 0.0, 1.0
        elif self.kpi in SCORE_KPIS:
            low, high = -100.0, 100.0
        else:
            low, high = 0.0, math.inf
        if not low <= value <= high:
            raise ValueError(f"value of {self.kpi} must lie in [{low}, {high}]")


def encode_record(record: DeadLetterRecord | KpiRecord) -> bytes:
    """The record's JSON value (UTF-8), as its schema describes it."""
    return _ENCODER.encode(record)


def dead_letter_key(topic: str, partition: int, offset: int) -> bytes:
    """``topic|partition|offset``: identical for every replay of the same input record."""
    return f"{topic}|{partition}|{offset}".encode()


def kpi_record_key(record: KpiRecord) -> bytes:
    """``kpi|window|team|channel|priority`` (customer KPIs: ``kpi|window|segment``), the
    compaction key on ``support-kpis``."""
    dims = record.dimensions
    key: KpiKey | CustomerKpiKey
    if record.kpi in CUSTOMER_KPIS:
        key = CustomerKpiKey(record.kpi, record.window, dims.segment or ALL)
    else:
        key = KpiKey(
            record.kpi, record.window, dims.team or ALL, dims.channel or ALL, dims.priority or ALL
        )
    return key.topic_key().encode()


def dimensions_of(key: KpiKey | CustomerKpiKey) -> Dimensions:
    """The ``dimensions`` of a KPI record with this key."""
    if isinstance(key, CustomerKpiKey):
        return Dimensions(segment=key.segment)
    return Dimensions(team=key.team, channel=key.channel, priority=key.priority)


def kpi_record(
    key: KpiKey | CustomerKpiKey,
    *,
    value: float | None,
    sample_size: int,
    window_start: float | None,
    window_end: float | None,
    computed_at: float,
) -> KpiRecord:
    """Build the KPI record of one key; times are POSIX seconds (None bounds for live KPIs)."""
    return KpiRecord(
        kpi=key.kpi,
        window=key.window,
        dimensions=dimensions_of(key),
        value=value,
        sample_size=sample_size,
        window_start=None if window_start is None else utc_datetime(window_start),
        window_end=None if window_end is None else utc_datetime(window_end),
        computed_at=utc_datetime(computed_at),
    )


def utc_datetime(seconds: float) -> datetime:
    """POSIX seconds as an aware UTC datetime (the form the record time fields take)."""
    return datetime.fromtimestamp(seconds, tz=UTC)


def dead_letter(
    rejection: Rejection,
    *,
    topic: str,
    partition: int,
    offset: int,
    original: bytes | None,
    rejected_at: float,
    max_original_bytes: int = DEFAULT_MAX_ORIGINAL_BYTES,
) -> DeadLetterRecord:
    """Build the dead-letter record of one rejected input record (``None``: a tombstone)."""
    original = b"" if original is None else bytes(original)
    detail = rejection.detail[:MAX_DETAIL_LENGTH]
    field = rejection.field[:MAX_FIELD_LENGTH] if rejection.field else None
    return DeadLetterRecord(
        source=Source(topic=topic, partition=partition, offset=offset),
        reason=rejection.reason,
        field=field,
        detail=detail,
        original_base64=bytes(original[: max(max_original_bytes, 0)]),
        original_size=len(original),
        rejected_at=utc_datetime(rejected_at),
    )


_ENCODER: Final = msgspec.json.Encoder()
