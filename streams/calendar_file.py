"""The business-calendar file (``SUPPORT_CALENDARS_FILE``, TOML): read and validated at start.

Layout (JSON Schema: ``schemas/config/support-calendars.schema.json``; example:
``deploy/calendars.toml``)::

    [default]                       # required: teams without their own calendar use it
    timezone = "Europe/Berlin"      # IANA name
    [default.hours]                 # weekday or range (mon-fri) = working intervals
    mon-fri = ["09:00-12:30", "13:30-18:00"]
    sat = ["10:00-14:00"]
    [[default.holidays]]
    date = 2026-12-25               # a TOML date or "YYYY-MM-DD": closed all day
    name = "Christmas Day"          # optional, for people
    [[default.holidays]]
    date = 2026-12-24
    hours = ["09:00-13:00"]         # a partial day: these hours replace the day's

    [teams."Night Desk"]            # per team; omitted keys are taken from [default]
    hours = { sun-thu = ["22:00-06:00"] }   # overnight: Sunday 22:00 to Monday 06:00, ...

Team names are matched after the same sanitizing as the ``team`` label (so they match the
engine's team keys). Any problem stops the worker with one line naming the file, the place in
it and the problem, e.g. ``calendars.toml: teams.Billing.timezone: unknown time zone
'Europe/Berln'``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from datetime import date
from pathlib import Path

from streams.core.calendar import Calendar, CalendarError, CalendarSet
from streams.core.labels import team_label

_TOP_KEYS = ("default", "teams")
_CALENDAR_KEYS = ("timezone", "hours", "holidays")
_HOLIDAY_KEYS = ("date", "hours", "name")


class CalendarFileError(ValueError):
    """The calendar file is missing or wrong; the message is one line for the operator."""


def load_calendars(path: Path | str) -> CalendarSet:
    """Read and validate a calendar file; raise :class:`CalendarFileError` (one line)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise CalendarFileError(f"{path}: cannot read the file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CalendarFileError(f"{path}: not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CalendarFileError(f"{path}: not valid TOML: {exc}") from None
    try:
        return calendars_from_dict(data)
    except CalendarError as exc:
        raise CalendarFileError(f"{path}: {exc}") from None


def calendars_from_dict(data: Mapping[str, object]) -> CalendarSet:
    """Validate a parsed calendar document; raise :class:`CalendarError` with its path."""
    _known_keys(data, _TOP_KEYS, "")
    default_doc = data.get("default")
    if default_doc is None:
        raise CalendarError("default", "missing: a default calendar is required")
    default_table = _table(default_doc, "default")
    for key in ("timezone", "hours"):
        if key not in default_table:
            raise CalendarError(f"default.{key}", "missing")
    default = _calendar(default_table, {}, "default")
    teams: dict[str, Calendar] = {}
    origin: dict[str, str] = {}
    for name, doc in _table(data.get("teams", {}), "teams").items():
        where = f"teams.{_quote(name)}"
        label = team_label(name)
        if label in origin:
            raise CalendarError(where, f"is the same team as {origin[label]}")
        origin[label] = where
        teams[label] = _calendar(_table(doc, where), default_table, where)
    return CalendarSet(default, teams)


def _calendar(doc: Mapping[str, object], base: Mapping[str, object], where: str) -> Calendar:
    _known_keys(doc, _CALENDAR_KEYS, where)
    merged = {**base, **doc}
    holidays: list[tuple[date | str, list[str] | None]] = []
    holiday_docs = merged.get("holidays", [])
    holidays_where = f"{where}.holidays" if "holidays" in doc or not base else "default.holidays"
    if not isinstance(holiday_docs, list):
        raise CalendarError(holidays_where, "must be a list of tables with a date")
    for i, entry in enumerate(holiday_docs):
        table = _table(entry, f"{holidays_where}[{i}]")
        _known_keys(table, _HOLIDAY_KEYS, f"{holidays_where}[{i}]")
        if "date" not in table:
            raise CalendarError(f"{holidays_where}[{i}].date", "missing")
        if "name" in table and not isinstance(table["name"], str):
            raise CalendarError(f"{holidays_where}[{i}].name", "must be text")
        hours = table.get("hours")
        holidays.append((table["date"], hours))  # type: ignore[arg-type]  # checked by weekly()
    try:
        return Calendar.weekly(
            merged["timezone"],  # type: ignore[arg-type]  # checked by weekly()
            merged["hours"],  # type: ignore[arg-type]
            holidays,
        )
    except CalendarError as exc:
        prefix = where if exc.path.split(".")[0].split("[")[0] in doc or not base else "default"
        raise exc.within(prefix) from None


def _table(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise CalendarError(where, "must be a table")
    return value


def _known_keys(table: Mapping[str, object], allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            path = f"{where}.{_quote(key)}" if where else _quote(key)
            raise CalendarError(path, f"unknown key (expected {', '.join(allowed)})")


def _quote(name: str) -> str:
    """A TOML key as written in a path: bare when it can be, else quoted."""
    bare = name.replace("-", "").replace("_", "")
    return name if name and bare.isascii() and bare.isalnum() else f'"{name}"'
