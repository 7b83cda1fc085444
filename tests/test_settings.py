"""Settings: parsed from SUPPORT_* variables, a bad value is one clear line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from streams.settings import SettingsError, load_settings


def test_defaults_match_the_spec() -> None:
    settings = load_settings()
    assert settings.windows == (("15m", 900.0), ("1h", 3600.0), ("24h", 86400.0))
    assert settings.sla_targets == {
        "urgent": 900.0,
        "high": 3600.0,
        "normal": 14400.0,
        "low": 28800.0,
    }
    assert settings.max_teams == 100
    assert settings.store == "memory://"
    assert settings.engine_config().horizon_seconds == 86400 + 300
    assert settings.engine_config().attribute_retention_seconds == 30 * 86400  # SPEC §3


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPPORT_WINDOWS", "5m,2h")
    monkeypatch.setenv("SUPPORT_SLA_TARGETS", "urgent=5m")
    monkeypatch.setenv("SUPPORT_CLOCK", "stream")
    monkeypatch.setenv("SUPPORT_KAFKA_SSL_CAFILE", "")  # empty means unset
    settings = load_settings()
    assert settings.windows == (("5m", 300.0), ("2h", 7200.0))
    assert settings.sla_targets["urgent"] == 300.0
    assert settings.sla_targets["low"] == 28800.0  # unnamed priorities keep their default
    assert settings.clock == "stream"
    assert settings.kafka_ssl_cafile is None


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SUPPORT_WINDOWS", "15m,90s", "window 90s is not a positive multiple of the bucket"),
        ("SUPPORT_BUCKET", "7q", "SUPPORT_BUCKET: '7q' is not a duration"),
        ("SUPPORT_SLA_TARGETS", "vip=1m", "unknown priority 'vip'"),
        ("SUPPORT_WEB_PORT", "abc", "SUPPORT_WEB_PORT"),
        ("SUPPORT_CLOCK", "sun", "SUPPORT_CLOCK"),
        ("SUPPORT_RETENTION", "1h", "must be at least the longest window plus grace"),
        ("SUPPORT_ATTRIBUTE_RETENTION", "6d", "must be at least SUPPORT_RETENTION (604800s)"),
        ("SUPPORT_ATTRIBUTE_RETENTION", "-1d", "SUPPORT_ATTRIBUTE_RETENTION"),
        ("SUPPORT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL", "SASL needs SUPPORT_KAFKA_SASL_USERNAME"),
        ("SUPPORT_STORE", "redis://", "SUPPORT_STORE"),
    ],
)
def test_bad_values_give_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_attribute_retention_defaults_to_30_days_or_a_longer_retention(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SUPPORT_RETENTION", "60d")
    assert load_settings().engine_config().attribute_retention_seconds == 60 * 86400
    monkeypatch.setenv("SUPPORT_ATTRIBUTE_RETENTION", "90d")
    assert load_settings().engine_config().attribute_retention_seconds == 90 * 86400


def test_worker_stops_with_one_line_and_exit_2_on_a_bad_setting() -> None:
    env = {**os.environ, "SUPPORT_WINDOWS": "15m,90s"}
    done = subprocess.run(
        [sys.executable, "-m", "streams.worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.startswith("support-kpi-worker: invalid settings: window 90s")
    assert "Traceback" not in done.stderr


def test_today_customer_windows_and_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().customer_windows == (("7d", 604800.0), ("30d", 2592000.0))
    assert load_settings().timezone == "UTC"
    assert load_settings().max_segments == 100
    monkeypatch.setenv("SUPPORT_WINDOWS", "15m,today")
    monkeypatch.setenv("SUPPORT_CUSTOMER_WINDOWS", "today,7d")
    monkeypatch.setenv("SUPPORT_TIMEZONE", "Europe/Berlin")
    settings = load_settings()
    assert settings.windows == (("15m", 900.0), ("today", 26 * 3600.0))
    assert settings.customer_windows == (("today", 26 * 3600.0), ("7d", 604800.0))
    config = settings.customer_config()
    assert config.time_zone == "Europe/Berlin"
    assert config.horizon_seconds == 604800 + 300
    # today reaches back at most 26 h: the ticket horizon covers a 25-hour day
    assert settings.engine_config().horizon_seconds == 26 * 3600 + 300
    assert settings.engine_config().time_zone == "Europe/Berlin"


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"SUPPORT_TIMEZONE": "Mars/Olympus"}, "SUPPORT_TIMEZONE: 'Mars/Olympus' is not an IANA"),
        ({"SUPPORT_TIMEZONE": "../../etc/passwd"}, "is not an IANA time zone name"),
        (
            {
                "SUPPORT_WINDOWS": "today",
                "SUPPORT_TIMEZONE": "Asia/Kolkata",
                "SUPPORT_BUCKET": "1h",
            },
            "has offset UTC+05:30, not a multiple of the bucket (3600s)",
        ),
        ({"SUPPORT_WINDOWS": "today", "SUPPORT_BUCKET": "7m"}, "a bucket that divides a day"),
        ({"SUPPORT_CUSTOMER_WINDOWS": "7d,7d"}, "SUPPORT_CUSTOMER_WINDOWS: a window is listed"),
        ({"SUPPORT_CUSTOMER_WINDOWS": "0s"}, "customer window 0s must be longer than zero"),
    ],
)
def test_bad_today_and_zone_settings(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_today_with_a_half_hour_zone_and_a_matching_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPPORT_WINDOWS", "today")
    monkeypatch.setenv("SUPPORT_TIMEZONE", "Asia/Kolkata")
    monkeypatch.setenv("SUPPORT_BUCKET", "30m")
    assert load_settings().windows == (("today", 26 * 3600.0),)
