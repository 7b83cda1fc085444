"""Worker settings from environment variables (prefix ``SUPPORT_``), validated at start.

A bad value stops the worker with one clear line naming the variable, never a traceback:
:func:`load_settings` raises :class:`SettingsError` and :mod:`streams.worker` prints it.
Durations accept ``ms``, ``s``, ``m``, ``h`` and ``d`` suffixes (``90s``, ``15m``, ``1h``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from streams.core.kpis import DEFAULT_SLA_TARGETS, EngineConfig
from streams.events import PRIORITIES

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class SettingsError(ValueError):
    """A setting has a bad value; the message is one line meant for the operator."""


def parse_duration(text: str) -> float:
    """'15m' -> 900.0 seconds; a bare number is seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 1h or 7d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _duration(value: object) -> object:
    return parse_duration(value) if isinstance(value, str) else value


Duration = Annotated[float, BeforeValidator(_duration), Field(ge=0)]


def _parse_windows(value: object) -> object:
    if not isinstance(value, str):
        return value
    names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        raise ValueError("at least one window is needed, e.g. 15m,1h,24h")
    return tuple((name, parse_duration(name)) for name in names)


def _parse_sla(value: object) -> object:
    if not isinstance(value, str):
        return value
    targets = dict(DEFAULT_SLA_TARGETS)  # name only the priorities you change
    for part in value.split(","):
        if not part.strip():
            continue
        priority, sep, duration = part.partition("=")
        if not sep:
            raise ValueError(f"{part.strip()!r} is not priority=duration (e.g. urgent=15m)")
        targets[priority.strip()] = parse_duration(duration)
    return targets


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SUPPORT_", extra="ignore", frozen=True, env_ignore_empty=True
    )

    # Kafka connection
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    session_timeout: Duration = 10.0
    create_topics: bool = True
    replication_factor: int = Field(default=1, ge=1)

    # Topics
    app_id: str = Field(default="support-kpi", pattern=r"^[A-Za-z0-9._-]+$")
    partitions: int = Field(default=8, ge=1, le=1024)
    topic_ticket_created: str = "ticket-created"
    topic_ticket_replied: str = "ticket-replied"
    topic_ticket_escalated: str = "ticket-escalated"
    topic_ticket_status_changed: str = "ticket-status-changed"
    topic_survey_submitted: str = "survey-submitted"
    topic_customer_lifecycle: str = "customer-lifecycle"
    topic_kpis: str = "support-kpis"
    topic_dlq: str = "support-events-dlq"

    # KPI semantics
    windows: Annotated[tuple[tuple[str, float], ...], NoDecode, BeforeValidator(_parse_windows)] = (
        ("15m", 900.0),
        ("1h", 3600.0),
        ("24h", 86400.0),
    )
    bucket: Duration = 60.0
    grace: Duration = 300.0
    future_tolerance: Duration = 300.0
    sla_targets: Annotated[dict[str, float], NoDecode, BeforeValidator(_parse_sla)] = Field(
        default_factory=lambda: dict(DEFAULT_SLA_TARGETS)
    )
    orphan_hold: Duration = 86400.0
    retention: Duration = 7 * 86400.0
    clock: Literal["wall", "stream"] = "wall"
    max_event_bytes: int = Field(default=65536, ge=256)

    # Outputs
    max_teams: int = Field(default=100, ge=1)
    flush_interval: Duration = 0.05
    fetch_max_wait: Duration = Field(default=0.1, gt=0, le=30)
    ready_max_lag: int = Field(default=200, ge=0)
    checkpoint_records: int = Field(default=20000, ge=1)
    publish_interval: Duration = 5.0
    store: str = Field(default="memory://", pattern=r"^(memory|rocksdb)://")
    web_host: str = "0.0.0.0"
    web_port: int = Field(default=6066, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("sla_targets")
    @classmethod
    def _all_priorities(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = set(value) - set(PRIORITIES)
        if unknown:
            raise ValueError(
                f"unknown priority {sorted(unknown)[0]!r} (use {', '.join(PRIORITIES)})"
            )
        missing = [p for p in PRIORITIES if p not in value]
        if missing:
            raise ValueError(f"missing a target for {', '.join(missing)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.bucket <= 0:
            raise ValueError("SUPPORT_BUCKET must be more than zero")
        for name, size in self.windows:
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
        if self.kafka_security_protocol.startswith("SASL") and not self.kafka_sasl_username:
            raise ValueError("SASL needs SUPPORT_KAFKA_SASL_USERNAME and _PASSWORD")
        return self

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            windows=self.windows,
            bucket_seconds=self.bucket,
            grace_seconds=self.grace,
            future_tolerance_seconds=self.future_tolerance,
            sla_targets=dict(self.sla_targets),
            orphan_hold_seconds=self.orphan_hold,
            retention_seconds=self.retention,
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
