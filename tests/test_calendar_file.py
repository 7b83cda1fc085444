"""The calendar file (SUPPORT_CALENDARS_FILE): the example loads and matches its JSON Schema;
every mistake is one line naming the file, the place in it and the problem."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from streams.calendar_file import CalendarFileError, calendars_from_dict, load_calendars
from streams.core.calendar import Calendar, business_us
from streams.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deploy" / "calendars.toml"
SCHEMA = Draft202012Validator(
    json.loads((ROOT / "schemas" / "config" / "support-calendars.schema.json").read_text())
)

GOOD = """
[default]
timezone = "Europe/Berlin"
hours = { mon-fri = ["09:00-17:00"] }
holidays = [{ date = 2026-12-25 }]

[teams.Billing]
timezone = "America/New_York"
"""


def as_json(node: Any) -> Any:
    """The TOML document as the JSON Schema sees it (dates as text)."""
    if isinstance(node, dict):
        return {key: as_json(value) for key, value in node.items()}
    if isinstance(node, list):
        return [as_json(value) for value in node]
    if isinstance(node, date):
        return node.isoformat()
    return node


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "calendars.toml"
    path.write_text(text)
    return path


def test_the_example_file_loads_and_matches_the_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA.schema)
    document = tomllib.loads(EXAMPLE.read_text())
    assert list(SCHEMA.iter_errors(as_json(document))) == []
    calendars = load_calendars(EXAMPLE)
    assert calendars.default.timezone == "Europe/Berlin"
    assert calendars.for_team("Billing").timezone == "America/New_York"
    assert calendars.for_team("Support") is calendars.default
    night = calendars.for_team("Night Desk")
    assert night.timezone == "Europe/Berlin"  # taken from [default]
    assert night.holidays == calendars.default.holidays
    assert night.days[4] == ((0, 6 * 3600),)  # Friday: the end of Thursday night's shift
    assert calendars.for_team("Escalations") == Calendar.always_open("Europe/Berlin")


def test_team_names_match_the_team_labels() -> None:
    data = tomllib.loads(GOOD + '\n[teams."  all  "]\nhours = { sat = ["10:00-12:00"] }\n')
    calendars = calendars_from_dict(data)
    assert set(calendars.teams) == {"Billing", "team-all"}


def test_teams_inherit_and_replace_default_parts() -> None:
    calendars = calendars_from_dict(tomllib.loads(GOOD))
    billing = calendars.for_team("Billing")
    assert billing.days == calendars.default.days
    assert billing.holidays == calendars.default.holidays
    # The same wall-clock hours in another zone are other instants.
    start = 1_796_000_000_000_000
    end = start + 7 * 86_400_000_000
    assert business_us(billing, start, end) == business_us(calendars.default, start, end)
    assert billing != calendars.default


BROKEN = [
    # (document, expected path and problem, does the JSON Schema catch it too)
    ('[default]\ntimezone = "Europe/Berlin"\n', "default.hours: missing", True),
    ('[teams.A]\ntimezone = "UTC"\n', "default: missing", True),
    (GOOD + "[default]\n", "not valid TOML", False),
    (
        GOOD.replace("America/New_York", "America/New_Yrok"),
        "teams.Billing.timezone: unknown",
        False,
    ),
    (GOOD.replace('"Europe/Berlin"', "42"), "default.timezone: must be an IANA", True),
    (
        GOOD.replace('"09:00-17:00"', '"09:00-17:00", "16:00-18:00"'),
        "default.hours.mon-fri[1]: overlaps default.hours.mon-fri[0]",
        False,
    ),
    (GOOD.replace("09:00-17:00", "09:00-17:61"), "default.hours.mon-fri[0]: '09:00-17:61'", True),
    (GOOD.replace("09:00-17:00", "9h-17h"), "is not an interval", True),
    (
        GOOD.replace("mon-fri", "weekdays"),
        "default.hours.weekdays: 'weekdays' is not a weekday",
        True,
    ),
    (
        GOOD.replace("2026-12-25", '"2026-12-32"'),
        "default.holidays[0].date: '2026-12-32' is not",
        True,
    ),
    (
        GOOD.replace("2026-12-25", "2026-12-25T10:00:00"),
        "default.holidays[0].date: 2026-12-25T",
        True,
    ),
    (GOOD.replace("2026-12-25", "2026-02-30"), "not valid TOML", False),
    (
        GOOD.replace("{ date = 2026-12-25 }", "{ day = 2026-12-25 }"),
        "holidays[0].day: unknown",
        True,
    ),
    (GOOD.replace("{ date = 2026-12-25 }", "{ name = 'x' }"), "holidays[0].date: missing", True),
    (GOOD + "\n[teams.Billing.extra]\nx = 1\n", "teams.Billing.extra: unknown key", True),
    (GOOD + "\n[extra]\nx = 1\n", "extra: unknown key (expected default, teams)", True),
    (
        GOOD + '\n[teams."Billing "]\ntimezone = "UTC"\n',
        'teams."Billing ": is the same team',
        False,
    ),
    (
        GOOD + '\n[teams.Night]\nhours = { sun = ["23:00-02:00"], mon = ["01:00-03:00"] }\n',
        "teams.Night.hours.mon[0]: overlaps teams.Night.hours.sun[0]",
        False,
    ),
    (
        GOOD + '\n[teams.Eve]\nholidays = [{ date = 2026-12-24, hours = ["14:00-13:00"] }]\n',
        "teams.Eve.holidays[0].hours[0]: '14:00-13:00' ends before it starts",
        False,
    ),
    (GOOD + "\n[teams.Shut]\nhours = {}\n", "teams.Shut.hours: no working time in the week", False),
]


@pytest.mark.parametrize(("text", "message", "schema_catches"), BROKEN)
def test_mistakes_are_one_clear_line(
    tmp_path: Path, text: str, message: str, schema_catches: bool
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CalendarFileError) as error:
        load_calendars(path)
    line = str(error.value)
    assert line.startswith(f"{path}: "), line
    assert message in line, line
    assert "\n" not in line
    if "not valid TOML" not in message:
        document = as_json(tomllib.loads(text))
        assert bool(list(SCHEMA.iter_errors(document))) == schema_catches


def test_a_missing_or_binary_file(tmp_path: Path) -> None:
    with pytest.raises(CalendarFileError, match=r"nowhere\.toml: cannot read the file"):
        load_calendars(tmp_path / "nowhere.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(CalendarFileError, match="not UTF-8"):
        load_calendars(binary)


# -- settings -----------------------------------------------------------------------------------


def test_sla_and_calendar_settings_default_to_the_spec() -> None:
    settings = load_settings()
    assert settings.calendars_file is None
    assert settings.calendars is None
    assert settings.resolution_sla_targets == {
        "urgent": 4 * 3600.0,
        "high": 8 * 3600.0,
        "normal": 24 * 3600.0,
        "low": 72 * 3600.0,
    }
    config = settings.engine_config()
    assert config.calendars is None
    assert set(config.first_response_sla_clocks.values()) == {"calendar"}
    assert set(config.resolution_sla_clocks.values()) == {"calendar"}


def test_calendar_and_sla_settings_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPPORT_CALENDARS_FILE", str(EXAMPLE))
    monkeypatch.setenv("SUPPORT_RESOLUTION_SLA_TARGETS", "urgent=2h")
    monkeypatch.setenv("SUPPORT_FIRST_RESPONSE_SLA_CLOCK", "business")
    monkeypatch.setenv("SUPPORT_RESOLUTION_SLA_CLOCK", "low=business, normal=business")
    settings = load_settings()
    assert settings.calendars == load_calendars(EXAMPLE)
    config = settings.engine_config()
    assert config.calendars == settings.calendars
    assert config.resolution_sla_targets["urgent"] == 7200.0
    assert config.resolution_sla_targets["low"] == 72 * 3600.0
    assert set(config.first_response_sla_clocks.values()) == {"business"}
    assert config.resolution_sla_clocks == {
        "low": "business",
        "normal": "business",
        "high": "calendar",
        "urgent": "calendar",
    }
    assert config.sla_targets["urgent"] == 900.0  # SUPPORT_SLA_TARGETS unchanged


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SUPPORT_RESOLUTION_SLA_TARGETS", "vip=1h", "unknown priority 'vip'"),
        (
            "SUPPORT_RESOLUTION_SLA_TARGETS",
            "low=3 days",
            "SUPPORT_RESOLUTION_SLA_TARGETS: '3 days'",
        ),
        ("SUPPORT_FIRST_RESPONSE_SLA_CLOCK", "wall", "'wall' is not a clock"),
        ("SUPPORT_RESOLUTION_SLA_CLOCK", "vip=business", "unknown priority 'vip'"),
        (
            "SUPPORT_FIRST_RESPONSE_SLA_CLOCK",
            "urgent=business",
            "SUPPORT_FIRST_RESPONSE_SLA_CLOCK uses business time, which needs "
            "SUPPORT_CALENDARS_FILE",
        ),
    ],
)
def test_bad_sla_settings(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_bad_calendar_file_is_a_bad_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = write(tmp_path, GOOD.replace("America/New_York", "Mars/Olympus"))
    monkeypatch.setenv("SUPPORT_CALENDARS_FILE", str(path))
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert str(error.value) == (
        f"invalid setting SUPPORT_CALENDARS_FILE: {path}: teams.Billing.timezone: "
        "unknown time zone 'Mars/Olympus'"
    )


def test_worker_stops_with_one_line_on_a_bad_calendar_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("09:00-17:00", "09:00-25:00"))
    env = {**os.environ, "SUPPORT_CALENDARS_FILE": str(path)}
    done = subprocess.run(
        [sys.executable, "-m", "streams.worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.strip() == (
        "support-kpi-worker: invalid setting SUPPORT_CALENDARS_FILE: "
        f"{path}: default.hours.mon-fri[0]: '09:00-25:00' is not a time of day (00:00 to 24:00)"
    )
