"""Worker settings from environment variables (prefix ``SUPPORT_``), validated at start.

A bad value stops the worker with one clear line naming the variable, never a traceback:
:func:`load_settings` raises :class:`SettingsError` and :mod:`streams.worker` prints it.
Durations accept ``ms``, ``s``, ``m``, ``h`` and ``d`` suffixes (``90s``, ``15m``, ``1h``).
"""

from __future__ import annotations

import importlib
import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from streams.calendar_file import CalendarFileError, load_calendars
from streams.core.calendar import CalendarSet
from streams.core.customers import CustomerConfig
from streams.core.kpis import (
    DEFAULT_CUSTOMER_WINDOWS,
    DEFAULT_RESOLUTION_SLA_TARGETS,
    DEFAULT_SLA_TARGETS,
    SLA_CLOCKS,
    EngineConfig,
    SlaClock,
    calendar_clocks,
)
from streams.core.today import TODAY, TODAY_MAX_SECONDS, time_zone
from streams.durations import format_duration, parse_duration
from streams.events import PRIORITIES


class SettingsError(ValueError):
    """A setting has a bad value; the message is one line meant for the operator."""


def _duration(value: object) -> object:
    return parse_duration(value) if isinstance(value, str) else value


Duration = Annotated[float, BeforeValidator(_duration), Field(ge=0)]


def _parse_windows(value: object) -> object:
    if not isinstance(value, str):
        return value
    names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        raise ValueError("at least one window is needed, e.g. 15m,1h,24h")
    if len(set(names)) != len(names):
        raise ValueError(f"a window is listed twice in {value.strip()!r}")
    # ``today`` (local calendar day, SUPPORT_TIMEZONE) carries the longest a day can last.
    return tuple(
        (name, TODAY_MAX_SECONDS if name == TODAY else parse_duration(name)) for name in names
    )


def _check_zone(value: object) -> object:
    if isinstance(value, str):
        time_zone(value)  # ValueError with one readable line
        return value.strip()
    return value


def _misaligned_offset(zone_name: str, bucket_seconds: float) -> str | None:
    """A UTC offset of the zone (sampled weekly, 2000-2040) that is not a whole number of
    buckets, if any: local midnight would then fall inside a bucket."""
    zone = time_zone(zone_name)
    for week in range(40 * 53):
        moment = datetime(2000, 1, 1, 12, tzinfo=UTC) + timedelta(weeks=week)
        offset = moment.astimezone(zone).utcoffset()
        if offset is not None and offset.total_seconds() % bucket_seconds:
            sign = "-" if offset.total_seconds() < 0 else "+"
            minutes = abs(int(offset.total_seconds())) // 60
            return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    return None


def _parse_sla(value: object, defaults: dict[str, float] = DEFAULT_SLA_TARGETS) -> object:
    if not isinstance(value, str):
        return value
    targets = dict(defaults)  # name only the priorities you change
    for part in value.split(","):
        if not part.strip():
            continue
        priority, sep, duration = part.partition("=")
        if not sep:
            raise ValueError(f"{part.strip()!r} is not priority=duration (e.g. urgent=15m)")
        targets[priority.strip()] = parse_duration(duration)
    return targets


def _parse_resolution_sla(value: object) -> object:
    return _parse_sla(value, DEFAULT_RESOLUTION_SLA_TARGETS)


def _parse_clocks(value: object) -> object:
    """'business' (every priority) or 'urgent=business,low=calendar' (the rest: calendar)."""
    if not isinstance(value, str):
        return value
    clocks: dict[str, str] = dict(calendar_clocks())
    for part in value.split(","):
        priority, sep, clock = (text.strip() for text in part.partition("="))
        if not priority:
            continue
        if not sep:
            priority, clock = "", priority
        if clock not in SLA_CLOCKS:
            raise ValueError(f"{clock!r} is not a clock (use calendar or business)")
        if priority:
            clocks[priority] = clock
        else:
            clocks = dict.fromkeys(clocks, clock)
    return clocks


_Clocks = Annotated[dict[str, SlaClock], NoDecode, BeforeValidator(_parse_clocks)]


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


_ANY_CASE = BeforeValidator(_lower)

ROCKSDB_MODULES = ("rocksdict", "rocksdb")  # what Faust's rocksdb:// store can use


def rocksdb_available() -> bool:
    for module in ROCKSDB_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        return True
    return False


def _store_available(value: str) -> str:
    if value.startswith("rocksdb://") and not rocksdb_available():
        raise ValueError(
            "rocksdb:// needs the rocksdb extra, which is not installed here: "
            "pip install 'support-kpi-streams[rocksdb]' (the image has it), or use memory://"
        )
    return value


class Settings(BaseSettings):
    """Every setting, with a docstring: ``support-kpi-worker --help`` is generated from them."""

    model_config = SettingsConfigDict(
        env_prefix="SUPPORT_",
        extra="ignore",
        frozen=True,
        env_ignore_empty=True,
        use_attribute_docstrings=True,
    )

    # Kafka connection
    kafka_bootstrap: str = "127.0.0.1:9092"
    """Bootstrap servers, comma-separated."""
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """Kafka security protocol."""
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    """SASL mechanism."""
    kafka_sasl_username: str | None = None
    """SASL user name (required with SASL)."""
    kafka_sasl_password: SecretStr | None = None
    """SASL password."""
    kafka_ssl_cafile: Path | None = None
    """CA bundle for TLS (unset: the system CAs)."""
    session_timeout: Duration = 10.0
    """Consumer session timeout (the embedded Tansu broker wants a short one)."""
    create_topics: bool = True
    """Create input and output topics with the configured partitions if missing."""
    replication_factor: int = Field(default=1, ge=1)
    """Replication factor of the topics the worker creates."""

    # Topics
    app_id: str = Field(default="support-kpi", pattern=r"^[A-Za-z0-9._-]+$")
    """Faust app id: the consumer group and the prefix of internal topics."""
    partitions: int = Field(default=8, ge=1, le=1024)
    """Partitions of every input and internal topic (bounds the parallelism)."""
    topic_ticket_created: str = "ticket-created"
    """Input topic of ticket-created events."""
    topic_ticket_replied: str = "ticket-replied"
    """Input topic of ticket-replied events."""
    topic_ticket_escalated: str = "ticket-escalated"
    """Input topic of ticket-escalated events."""
    topic_ticket_status_changed: str = "ticket-status-changed"
    """Input topic of ticket-status-changed events."""
    topic_survey_submitted: str = "survey-submitted"
    """Input topic of survey-submitted events."""
    topic_customer_lifecycle: str = "customer-lifecycle"
    """Input topic of customer-lifecycle events."""
    topic_kpis: str = "support-kpis"
    """KPI output topic (compacted)."""
    topic_dlq: str = "support-events-dlq"
    """Dead-letter topic."""

    # KPI semantics
    windows: Annotated[tuple[tuple[str, float], ...], NoDecode, BeforeValidator(_parse_windows)] = (
        ("15m", 900.0),
        ("1h", 3600.0),
        ("24h", 86400.0),
    )
    """Rolling windows, comma-separated (multiples of the bucket)."""
    customer_windows: Annotated[
        tuple[tuple[str, float], ...], NoDecode, BeforeValidator(_parse_windows)
    ] = DEFAULT_CUSTOMER_WINDOWS
    """Customer churn/retention windows, comma-separated (today allowed)."""
    timezone: Annotated[str, BeforeValidator(_check_zone)] = "UTC"
    """IANA time zone of the calendar-day window today."""
    bucket: Duration = 60.0
    """Time-bucket size: windows are exact to one bucket."""
    grace: Duration = 300.0
    """Events older than the longest window plus this are late."""
    future_tolerance: Duration = 300.0
    """Events further ahead of the wall clock are rejected."""
    sla_targets: Annotated[dict[str, float], NoDecode, BeforeValidator(_parse_sla)] = Field(
        default_factory=lambda: dict(DEFAULT_SLA_TARGETS)
    )
    """First-response targets per priority; name only the ones you change."""
    resolution_sla_targets: Annotated[
        dict[str, float], NoDecode, BeforeValidator(_parse_resolution_sla)
    ] = Field(default_factory=lambda: dict(DEFAULT_RESOLUTION_SLA_TARGETS))
    """Resolution (requester wait) targets per priority; name only the ones you change."""
    first_response_sla_clock: _Clocks = Field(default_factory=calendar_clocks)
    """Clock of the first-response SLA: calendar or business, for all or per priority."""
    resolution_sla_clock: _Clocks = Field(default_factory=calendar_clocks)
    """Clock of the resolution SLA: calendar or business, for all or per priority."""
    calendars_file: Path | None = None
    """Business-hours calendar file (TOML); unset: everything is calendar time."""
    orphan_hold: Duration = 86400.0
    """How long events wait for their ticket-created."""
    retention: Duration = 7 * 86400.0
    """Keep a finished ticket's state this long after its last event."""
    attribute_retention: Duration = 30 * 86400.0
    """Keep a retired ticket's attributes (late surveys, reopens) this long (>= retention)."""
    clock: Literal["wall", "stream"] = "wall"
    """wall (live) or stream (latest event time: backfill and replay)."""
    max_event_bytes: int = Field(default=65536, ge=256)
    """Larger records are rejected (oversized)."""

    # Outputs
    max_teams: int = Field(default=100, ge=1)
    """Distinct team label values; the rest are merged into other."""
    max_segments: int = Field(default=100, ge=1)
    """Distinct customer segment label values; the rest are merged into other."""
    flush_interval: Duration = 0.05
    """How often changed partials go to stage 2 (one message per partition and dimension)."""
    fetch_max_wait: Duration = Field(default=0.1, gt=0, le=30)
    """The consumer's fetch long-poll (Faust hard-codes 1.5 s; this overrides it)."""
    catchup_commit_interval: Duration = Field(default=10.0, gt=0, le=300)
    """Input offsets (and the ticket changelog) are committed at most this often while a
    partition catches up (every 2.8 s otherwise): fewer changelog writes per event."""
    recovery_read_at_start: bool = True
    """Read the whole changelog while the group join is pending (faster restarts); with
    many workers each then holds every partition's state for a moment: set false."""
    ready_max_lag: int = Field(default=200, ge=0)
    """support_pipeline_ready needs each input partition at most this many records behind."""
    checkpoint_records: int = Field(default=20000, ge=1)
    """Re-write the tickets to the changelog after this many writes (bounds recovery)."""
    publish_interval: Duration = 5.0
    """A KPI record is published at most once per key per interval."""
    store: Annotated[str, AfterValidator(_store_available)] = Field(
        default="memory://", pattern=r"^(memory|rocksdb)://"
    )
    """Faust table store: memory:// or rocksdb:// (needs the rocksdb extra)."""
    web_host: str = "0.0.0.0"
    """Address /metrics is served on."""
    web_port: int = Field(default=6066, ge=1, le=65535)
    """Port /metrics is served on."""
    log_level: Annotated[Literal["debug", "info", "warning", "error"], _ANY_CASE] = "info"
    """Log level, in any case."""
    log_format: Annotated[Literal["text", "json"], _ANY_CASE] = "text"
    """text, or json: one JSON object per line, for log shippers."""

    _calendars: CalendarSet | None = PrivateAttr(default=None)

    @field_validator(
        "sla_targets", "resolution_sla_targets", "first_response_sla_clock", "resolution_sla_clock"
    )
    @classmethod
    def _all_priorities(cls, value: dict[str, object]) -> dict[str, object]:
        unknown = set(value) - set(PRIORITIES)
        if unknown:
            raise ValueError(
                f"unknown priority {sorted(unknown)[0]!r} (use {', '.join(PRIORITIES)})"
            )
        missing = [p for p in PRIORITIES if p not in value]
        if missing:
            raise ValueError(f"missing a target for {', '.join(missing)}")
        return value

    @field_validator("calendars_file")
    @classmethod
    def _valid_calendars(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                load_calendars(value)
            except CalendarFileError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.bucket <= 0:
            raise ValueError("SUPPORT_BUCKET must be more than zero")
        for name, size in self.windows:
            if name == TODAY:
                if (86400 / self.bucket) % 1 > 1e-9:
                    raise ValueError(
                        f"window today needs a bucket that divides a day ({self.bucket:g}s)"
                    )
                misaligned = _misaligned_offset(self.timezone, self.bucket)
                if misaligned is not None:
                    raise ValueError(
                        f"window today: SUPPORT_TIMEZONE {self.timezone} has offset {misaligned},"
                        f" not a multiple of the bucket ({self.bucket:g}s), so local midnight"
                        " would split a bucket"
                    )
                continue
            if size <= 0 or abs(size / self.bucket - round(size / self.bucket)) > 1e-9:
                raise ValueError(
                    f"window {name} is not a positive multiple of the bucket ({self.bucket:g}s)"
                )
        horizon = max(size for _, size in self.windows) + self.grace
        if self.retention < horizon:
            raise ValueError(
                f"SUPPORT_RETENTION ({self.retention:g}s) must be at least the longest window "
                f"plus grace ({horizon:g}s)"
            )
        explicit = "attribute_retention" in self.model_fields_set
        if explicit and self.attribute_retention < self.retention:
            raise ValueError(
                f"SUPPORT_ATTRIBUTE_RETENTION ({self.attribute_retention:g}s) must be at least "
                f"SUPPORT_RETENTION ({self.retention:g}s)"
            )
        for name, size in self.customer_windows:
            if size <= 0:
                raise ValueError(f"customer window {name} must be longer than zero")
        if self.kafka_security_protocol.startswith("SASL") and not self.kafka_sasl_username:
            raise ValueError("SASL needs SUPPORT_KAFKA_SASL_USERNAME and _PASSWORD")
        if self.calendars_file is not None:
            self._calendars = load_calendars(self.calendars_file)
        for name in ("first_response_sla_clock", "resolution_sla_clock"):
            if self._calendars is None and "business" in getattr(self, name).values():
                raise ValueError(
                    f"SUPPORT_{name.upper()} uses business time, which needs "
                    "SUPPORT_CALENDARS_FILE (business calendars)"
                )
        return self

    @property
    def calendars(self) -> CalendarSet | None:
        """The validated business calendars (None without SUPPORT_CALENDARS_FILE)."""
        return self._calendars

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            windows=self.windows,
            bucket_seconds=self.bucket,
            grace_seconds=self.grace,
            sla_targets=dict(self.sla_targets),
            orphan_hold_seconds=self.orphan_hold,
            retention_seconds=self.retention,
            # The default (30 d) gives way to a longer SUPPORT_RETENTION.
            attribute_retention_seconds=max(self.attribute_retention, self.retention),
            resolution_sla_targets=dict(self.resolution_sla_targets),
            first_response_sla_clocks=dict(self.first_response_sla_clock),
            resolution_sla_clocks=dict(self.resolution_sla_clock),
            calendars=self._calendars,
            time_zone=self.timezone,
        )

    def customer_config(self) -> CustomerConfig:
        return CustomerConfig(
            windows=self.customer_windows, time_zone=self.timezone, grace_seconds=self.grace
        )

    def input_topics(self) -> dict[str, str]:
        """Configured topic name -> logical kind (the default topic name)."""
        return {
            self.topic_ticket_created: "ticket-created",
            self.topic_ticket_replied: "ticket-replied",
            self.topic_ticket_escalated: "ticket-escalated",
            self.topic_ticket_status_changed: "ticket-status-changed",
            self.topic_survey_submitted: "survey-submitted",
            self.topic_customer_lifecycle: "customer-lifecycle",
        }


def load_settings(**overrides: object) -> Settings:
    """Read and validate settings; raise SettingsError with one readable line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"] if not isinstance(part, int))
        message = str(error["msg"]).removeprefix("Value error, ")
        if where:
            message = f"invalid setting SUPPORT_{where.upper()}: {message}"
        else:
            message = f"invalid settings: {message}"
        raise SettingsError(message) from None


def _is_duration(field: FieldInfo) -> bool:
    return any(isinstance(m, BeforeValidator) and m.func is _duration for m in field.metadata)


def default_text(name: str) -> str:
    """A setting's default as it would be written in its environment variable."""
    field = Settings.model_fields[name]
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_duration(field):
        return format_duration(value)
    if isinstance(value, tuple) and all(isinstance(item, tuple) for item in value):
        return ",".join(str(item[0]) for item in value)  # windows: (name, seconds) pairs
    if isinstance(value, dict):  # per priority: durations or words
        return ",".join(
            f"{key}={format_duration(v) if isinstance(v, float) else v}" for key, v in value.items()
        )
    return str(value)


def settings_help() -> str:
    """Every ``SUPPORT_*`` variable with its default, choices and description (``--help``)."""
    lines = []
    for name, field in Settings.model_fields.items():
        line = f"  SUPPORT_{name.upper()}={default_text(name)}"
        if typing.get_origin(field.annotation) is Literal:
            line += f"  (one of: {', '.join(map(str, typing.get_args(field.annotation)))})"
        lines.append(line)
        if field.description:
            lines.append(f"      {field.description}")
    return "\n".join(lines)
