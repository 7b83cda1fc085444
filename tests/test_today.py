"""The ``today`` window: local midnight in an IANA zone, exact across DST and midnight."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.today import TODAY, day_start_us, time_zone, window_start_us

US = 1_000_000
MINUTE_US = 60 * US
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Zones with 23/25-hour days, a midnight that does not exist (Sao Paulo until 2018, Santiago),
# half-hour offsets and shifts (Kolkata, Lord Howe), a 2-hour shift (Troll), a skipped day (Apia).
ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "America/Sao_Paulo",
    "America/Santiago",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "Antarctica/Troll",
    "Pacific/Apia",
)


def us(text: str) -> int:
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(microseconds=1)


def local(at_us: int, zone: ZoneInfo) -> datetime:
    return (EPOCH + timedelta(microseconds=at_us)).astimezone(zone)


def scanned_day_start(now_us: int, zone: ZoneInfo) -> int:
    """Oracle: walk back minute by minute while the local date stays the same (every zone's
    transitions in these years fall on whole minutes)."""
    day = local(now_us, zone).date()
    start = now_us - now_us % MINUTE_US
    if local(start, zone).date() != day:  # pragma: no cover - dates change on whole minutes
        raise AssertionError("date changed inside a minute")
    while local(start - MINUTE_US, zone).date() == day:
        start -= MINUTE_US
    return start


@settings(max_examples=300, deadline=None)
@given(
    zone_name=st.sampled_from(ZONES),
    now_us=st.integers(us("2010-01-01T00:00:00+00:00"), us("2030-01-01T00:00:00+00:00")),
)
def test_day_start_is_the_first_instant_of_the_local_date(zone_name: str, now_us: int) -> None:
    zone = time_zone(zone_name)
    start = day_start_us(now_us, zone)
    assert start == scanned_day_start(now_us, zone)
    assert start <= now_us
    assert now_us - start < 26 * 3600 * US
    assert window_start_us(TODAY, 26 * 3600.0, now_us, zone) == start


@settings(max_examples=200, deadline=None)
@given(
    zone_name=st.sampled_from(("Europe/Berlin", "America/New_York", "America/Sao_Paulo")),
    transition=st.sampled_from(
        (
            "2026-03-29T01:00:00+00:00",  # Berlin spring forward (23 h day)
            "2026-10-25T01:00:00+00:00",  # Berlin fall back (25 h day)
            "2026-03-08T07:00:00+00:00",  # New York spring forward
            "2026-11-01T06:00:00+00:00",  # New York fall back
            "2018-11-04T03:00:00+00:00",  # Sao Paulo: midnight skipped, the day starts at 01:00
            "2018-02-18T02:00:00+00:00",  # Sao Paulo: 23:00 repeated, midnight after it
        )
    ),
    offset_minutes=st.integers(-30 * 60, 30 * 60),
)
def test_day_start_near_transitions(zone_name: str, transition: str, offset_minutes: int) -> None:
    zone = time_zone(zone_name)
    now_us = us(transition) + offset_minutes * MINUTE_US + 123_456
    assert day_start_us(now_us, zone) == scanned_day_start(now_us, zone)


@pytest.mark.parametrize(
    ("zone_name", "end_of_day", "hours"),
    [
        ("Europe/Berlin", "2026-03-29T23:59:59.999999+02:00", 23),
        ("Europe/Berlin", "2026-10-25T23:59:59.999999+01:00", 25),
        ("Europe/Berlin", "2026-06-01T23:59:59.999999+02:00", 24),
        ("America/New_York", "2026-03-08T23:59:59.999999-04:00", 23),
        ("America/New_York", "2026-11-01T23:59:59.999999-05:00", 25),
        ("America/Sao_Paulo", "2018-11-04T23:59:59.999999-02:00", 23),
    ],
)
def test_a_day_lasts_23_24_or_25_hours(zone_name: str, end_of_day: str, hours: int) -> None:
    zone = time_zone(zone_name)
    now_us = us(end_of_day)
    assert now_us + 1 - day_start_us(now_us, zone) == hours * 3600 * US
    # one microsecond later it is a new day that starts exactly then
    assert day_start_us(now_us + 1, zone) == now_us + 1


def test_midnight_itself_starts_the_day() -> None:
    zone = time_zone("Europe/Berlin")
    midnight = us("2026-03-29T00:00:00+01:00")
    assert day_start_us(midnight, zone) == midnight
    assert day_start_us(midnight - 1, zone) == us("2026-03-28T00:00:00+01:00")


def test_fixed_windows_are_exact() -> None:
    zone = time_zone("UTC")
    assert window_start_us("7d", 7 * 86400.0, 10**15, zone) == 10**15 - 7 * 86400 * US


@pytest.mark.parametrize("name", ["", "Mars/Base", "../etc/passwd", "/etc/localtime", "Europe/"])
def test_unknown_zones_are_one_line_errors(name: str) -> None:
    with pytest.raises(ValueError, match="is not an IANA time zone name") as error:
        time_zone(name)
    assert "\n" not in str(error.value)
