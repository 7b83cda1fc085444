"""Business time: exact unit cases (DST, holidays, overnight shifts) and a Hypothesis
differential test against a brute-force oracle written here, independently of the engine."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from helpers.calendar_oracle import (
    US,
    oracle_business_us,
    oracle_working,
    ranges,
    spans,
    spec_of,
    specs,
    to_calendar,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core.calendar import (
    Calendar,
    CalendarError,
    business_deadline_us,
    business_seconds,
    business_us,
    business_us_uncached,
    is_working,
)

HOUR = 3600 * US
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def at(zone: ZoneInfo, y: int, m: int, d: int, hh: int = 0, mm: int = 0, *, fold: int = 0) -> int:
    """µs since the epoch of a local wall time (fold=1: the second of a repeated time)."""
    moment = datetime(y, m, d, hh, mm, tzinfo=zone, fold=fold)
    return (moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def daily(zone: str, *intervals: str) -> Calendar:
    return Calendar.weekly(zone, {"mon-sun": list(intervals)})


def day_hours(calendar: Calendar, zone: ZoneInfo, day: date) -> float:
    start = at(zone, day.year, day.month, day.day)
    nxt = day + timedelta(days=1)
    return business_us(calendar, start, at(zone, nxt.year, nxt.month, nxt.day)) / HOUR


# -- DST ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "hours"),
    [
        ("00:00-24:00", 23),  # the day is 23 hours long
        ("01:00-03:00", 1),  # 02:00-03:00 does not exist
        ("02:30-04:00", 1),  # starts in the gap: from 03:00 on
        ("01:00-02:30", 1),  # ends in the gap: until 02:00 (= 03:00)
        ("09:00-17:00", 8),  # untouched
    ],
)
def test_berlin_spring_forward(interval: str, hours: float) -> None:
    assert day_hours(daily("Europe/Berlin", interval), BERLIN, date(2026, 3, 29)) == hours


@pytest.mark.parametrize(
    ("interval", "hours"),
    [
        ("00:00-24:00", 25),  # the day is 25 hours long
        ("01:00-04:00", 4),  # 02:00-03:00 is lived twice
        ("02:00-03:00", 2),
        ("02:30-05:00", 3),  # 02:30-03:00 twice, then 03:00-05:00
        ("09:00-17:00", 8),
    ],
)
def test_berlin_fall_back(interval: str, hours: float) -> None:
    assert day_hours(daily("Europe/Berlin", interval), BERLIN, date(2026, 10, 25)) == hours


@pytest.mark.parametrize(
    ("day", "interval", "hours"),
    [
        (date(2026, 3, 8), "00:00-24:00", 23),
        (date(2026, 3, 8), "01:00-03:00", 1),
        (date(2026, 3, 8), "02:15-02:45", 0),  # entirely in the gap
        (date(2026, 11, 1), "00:00-24:00", 25),
        (date(2026, 11, 1), "01:00-02:00", 2),  # 01:00-02:00 EDT, then again EST
        (date(2026, 11, 1), "01:30-01:45", 0.5),
    ],
)
def test_new_york_both_directions(day: date, interval: str, hours: float) -> None:
    assert day_hours(daily("America/New_York", interval), NEW_YORK, day) == hours


def test_a_range_inside_the_repeated_hour_counts_real_time() -> None:
    calendar = daily("America/New_York", "00:00-24:00")
    first = at(NEW_YORK, 2026, 11, 1, 1, 30)
    second = at(NEW_YORK, 2026, 11, 1, 1, 30, fold=1)
    assert second - first == HOUR
    assert business_us(calendar, first, second) == HOUR
    night = daily("America/New_York", "01:00-01:45")
    assert business_us(night, first, second) == 45 * 60 * US  # 01:30-01:45 EDT, 01:00-01:30 EST


def test_overnight_shift_across_spring_forward() -> None:
    calendar = Calendar.weekly("Europe/Berlin", {"sat": ["22:00-06:00"]})
    start = at(BERLIN, 2026, 3, 28, 12)
    end = at(BERLIN, 2026, 3, 29, 12)
    assert business_us(calendar, start, end) == 7 * HOUR  # 22-24, then 00-06 minus the gap


def test_always_open_is_real_time_across_years_and_transitions() -> None:
    calendar = Calendar.always_open("Europe/Berlin")
    start, end = at(BERLIN, 2019, 1, 1, 3, 17), at(BERLIN, 2026, 7, 9, 11, 2) + 123_456
    assert business_us(calendar, start, end) == end - start


def test_a_date_that_does_not_exist_holds_no_time() -> None:
    apia = ZoneInfo("Pacific/Apia")  # 2011-12-30 was skipped (UTC-10 -> UTC+14)
    calendar = daily("Pacific/Apia", "00:00-24:00")
    start, end = at(apia, 2011, 12, 29), at(apia, 2011, 12, 31)
    assert business_us(calendar, start, end) == 24 * HOUR == end - start
    holiday = Calendar.weekly("Pacific/Apia", {"mon-sun": ["09:00-17:00"]}, [("2011-12-30", None)])
    assert business_us(holiday, start, end) == 8 * HOUR


def test_a_midnight_that_does_not_exist() -> None:
    sao_paulo = ZoneInfo("America/Sao_Paulo")  # 2018-11-04 00:00 -> 01:00
    calendar = Calendar.weekly("America/Sao_Paulo", {"sun": ["00:00-01:00", "09:00-10:00"]})
    start, end = at(sao_paulo, 2018, 11, 3, 12), at(sao_paulo, 2018, 11, 5)
    assert business_us(calendar, start, end) == HOUR


def test_half_hour_dst_lord_howe() -> None:
    zone = ZoneInfo("Australia/Lord_Howe")  # 2026-10-04 02:00 -> 02:30
    assert day_hours(daily("Australia/Lord_Howe", "00:00-24:00"), zone, date(2026, 10, 4)) == 23.5
    assert day_hours(daily("Australia/Lord_Howe", "01:00-03:00"), zone, date(2026, 10, 4)) == 1.5


# -- weekly schedule, holidays ----------------------------------------------------------------

OFFICE = Calendar.weekly(
    "Europe/Berlin",
    {"mon-fri": ["09:00-12:30", "13:30-18:00"], "sat": ["10:00-14:00"]},
    [(date(2026, 12, 25), None), ("2026-12-24", ["09:00-13:00"])],
)


def test_split_days_and_a_week() -> None:
    # Mon 2026-11-30 00:00 to Mon 2026-12-07 00:00: 5 * 8 h + 4 h on Saturday.
    assert business_us(OFFICE, at(BERLIN, 2026, 11, 30), at(BERLIN, 2026, 12, 7)) == 44 * HOUR
    # The lunch break does not count.
    lunch = business_us(OFFICE, at(BERLIN, 2026, 12, 1, 12), at(BERLIN, 2026, 12, 1, 14))
    assert lunch == HOUR


def test_whole_and_partial_holidays() -> None:
    week = business_us(OFFICE, at(BERLIN, 2026, 12, 21), at(BERLIN, 2026, 12, 28))
    assert week == (3 * 8 + 4 + 0 + 4) * HOUR  # Mon-Wed, Christmas Eve 4 h, Christmas 0, Sat 4 h
    eve = business_us(OFFICE, at(BERLIN, 2026, 12, 24, 12), at(BERLIN, 2026, 12, 24, 18))
    assert eve == HOUR  # open 09:00-13:00 only, no lunch break that day


def test_overnight_shifts_belong_to_their_start_day_and_wrap_the_week() -> None:
    night = Calendar.weekly("UTC", {"sun": ["22:00-06:00"], "wed": ["20:00-24:00"]})
    # Sunday 2026-12-06 22:00 to Monday 06:00.
    monday = datetime(2026, 12, 7, tzinfo=UTC)
    assert (
        business_seconds(night, monday - timedelta(days=1), monday + timedelta(days=1)) == 8 * 3600
    )
    assert business_seconds(night, monday, monday + timedelta(hours=5)) == 5 * 3600
    assert is_working(night, at(ZoneInfo("UTC"), 2026, 12, 7, 5, 59))
    assert not is_working(night, at(ZoneInfo("UTC"), 2026, 12, 7, 6))


def test_a_holiday_cuts_the_part_of_a_shift_on_its_date() -> None:
    night = Calendar.weekly("UTC", {"mon-sun": ["22:00-06:00"]}, [("2026-12-25", None)])
    utc = ZoneInfo("UTC")
    start, end = at(utc, 2026, 12, 24, 12), at(utc, 2026, 12, 26, 12)
    # 24th 22-24, nothing on the 25th, 26th 00-06 (the shift that began on the holiday evening).
    assert business_us(night, start, end) == 8 * HOUR


def test_seconds_in_interval_bounds() -> None:
    calendar = daily("UTC", "09:00:30-09:01:15")
    utc = ZoneInfo("UTC")
    start = at(utc, 2026, 5, 4)
    assert business_us(calendar, start, start + 86_400 * US) == 45 * US
    assert business_us(calendar, at(utc, 2026, 5, 4, 9, 1), start + 86_400 * US) == 15 * US


def test_instants_outside_hours_zero_and_reversed_ranges() -> None:
    friday_evening = at(BERLIN, 2026, 12, 4, 19)
    monday_morning = at(BERLIN, 2026, 12, 7, 8, 59)
    assert business_us(OFFICE, friday_evening, at(BERLIN, 2026, 12, 5, 9)) == 0
    assert business_us(OFFICE, friday_evening, monday_morning) == 4 * HOUR  # Saturday
    assert business_us(OFFICE, friday_evening, friday_evening) == 0
    assert business_us(OFFICE, monday_morning, friday_evening) == -4 * HOUR
    inside = at(BERLIN, 2026, 12, 7, 10)
    assert business_us(OFFICE, inside, inside + 1) == 1
    assert business_us(OFFICE, inside - 7, inside) == 7


def test_business_seconds_needs_aware_datetimes() -> None:
    with pytest.raises(ValueError, match="aware"):
        business_seconds(OFFICE, datetime(2026, 1, 1), datetime(2026, 1, 2))


def test_deadline_runs_out_inside_working_time() -> None:
    ny = Calendar.weekly(
        "America/New_York",
        {"mon-fri": ["09:00-17:00"]},
        [("2026-12-25", None), ("2026-12-24", ["09:00-13:00"])],
    )
    # Wed 16:00 + 6 h: 1 h Wed, 4 h Thu (half day), Fri holiday, 1 h Mon -> Mon 10:00.
    start = at(NEW_YORK, 2026, 12, 23, 16)
    assert business_deadline_us(ny, start, 6 * HOUR) == at(NEW_YORK, 2026, 12, 28, 10)
    # Used up exactly at a closing time: a reply up to the next opening still meets it.
    assert business_deadline_us(ny, start, HOUR) == at(NEW_YORK, 2026, 12, 24, 9)
    assert business_deadline_us(ny, start, 0) == start
    assert business_deadline_us(ny, at(NEW_YORK, 2026, 12, 23, 20), 0) == at(
        NEW_YORK, 2026, 12, 24, 9
    )
    with pytest.raises(ValueError, match="negative"):
        business_deadline_us(ny, start, -1)


def test_ranges_over_many_cache_blocks_equal_the_direct_computation() -> None:
    start = at(BERLIN, 2024, 2, 29, 10, 11) + 17
    for days in (1, 30, 49, 100, 400, 1500):
        end = start + days * 86_400 * US + 999_999
        assert business_us(OFFICE, start, end) == business_us_uncached(OFFICE, start, end)


def test_calendars_compare_by_value_and_cache_per_calendar() -> None:
    one = Calendar.weekly("UTC", {"mon-fri": ["09:00-17:00"]})
    two = Calendar.weekly(
        "UTC", {"mon": ["09:00-17:00"], "tue-fri": ["09:00-12:00", "12:00-17:00"]}
    )
    assert one == two
    assert hash(one) == hash(two)
    assert not one._blocks
    business_us(one, 0, HOUR)
    assert one._blocks
    assert not two._blocks


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hours", "holidays", "path", "problem"),
    [
        ({"mon": ["09:00-12:00", "11:00-13:00"]}, [], "hours.mon[1]", "overlaps hours.mon[0]"),
        ({"mon": ["22:00-06:00"], "tue": ["05:00-09:00"]}, [], "hours.tue[0]", "overlaps"),
        ({"sun": ["23:00-01:00"], "mon": ["00:30-09:00"]}, [], "hours.mon[0]", "overlaps"),
        ({"mon": ["25:00-26:00"]}, [], "hours.mon[0]", "not a time of day"),
        ({"mon": ["9-17"]}, [], "hours.mon[0]", "not an interval"),
        ({"mon": ["24:00-02:00"]}, [], "hours.mon[0]", "24:00 can only end"),
        ({"mon": ["09:00-09:00"]}, [], "hours.mon[0]", "empty"),
        ({"mon": ["09:60-10:00"]}, [], "hours.mon[0]", "not a time of day"),
        ({"funday": ["09:00-10:00"]}, [], "hours.funday", "not a weekday"),
        ({"mon-fri": ["09:00-10:00"], "fri": []}, [], "hours.fri", "already given by"),
        ({"mon": "09:00-17:00"}, [], "hours.mon", "must be a list"),
        ({}, [], "hours", "no working time"),
        ({"mon": ["09:00-17:00"]}, [("2026-02-30", None)], "holidays[0].date", "not a date"),
        ({"mon": ["09:00-17:00"]}, [("26-12-25", None)], "holidays[0].date", "not a date"),
        (
            {"mon": ["09:00-17:00"]},
            [("2026-12-25", None), (date(2026, 12, 25), ["09:00-10:00"])],
            "holidays[1].date",
            "listed twice",
        ),
        (
            {"mon": ["09:00-17:00"]},
            [("2026-12-24", ["22:00-02:00"])],
            "holidays[0].hours[0]",
            "ends before",
        ),
        (
            {"mon": ["09:00-17:00"]},
            [("2026-12-24", ["09:00-12:00", "10:00-11:00"])],
            "holidays[0].hours[1]",
            "overlaps",
        ),
    ],
)
def test_bad_calendars_name_the_place_and_the_problem(
    hours: dict[str, object],
    holidays: list[tuple[date | str, list[str] | None]],
    path: str,
    problem: str,
) -> None:
    with pytest.raises(CalendarError) as error:
        Calendar.weekly("Europe/Berlin", hours, holidays)  # type: ignore[arg-type]
    assert error.value.path == path
    assert problem in error.value.problem


@pytest.mark.parametrize(
    "zone", ["Europe/Berln", "", "../etc/passwd", "Mars/Olympus_Mons", "America"]
)
def test_unknown_time_zones_are_rejected(zone: str) -> None:
    with pytest.raises(CalendarError) as error:
        Calendar.weekly(zone, {"mon": ["09:00-17:00"]})
    assert error.value.path == "timezone"


# -- differential test against a brute-force oracle ----------------------------------------


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_business_time_equals_the_brute_force_oracle(data: st.DataObject) -> None:
    spec = data.draw(specs())
    calendar = to_calendar(spec)
    holiday_range = data.draw(st.booleans())
    if holiday_range and spec.holidays:  # make sure some ranges meet the holidays
        day = data.draw(st.sampled_from(sorted(spec.holidays)))
        midnight = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
        start = (midnight - 86_400) * US + data.draw(spans(24))
        end = start + data.draw(spans(3 * 24))
    else:
        start, end = data.draw(ranges(spec))
    expected = oracle_business_us(spec, start, end)
    assert business_us(calendar, start, end) == expected
    assert oracle_business_us(spec_of(calendar), start, end) == expected
    assert business_us_uncached(calendar, start, end) == expected
    lo = min(start, end)
    assert is_working(calendar, lo) == oracle_working(spec, ZoneInfo(spec.zone), lo // US)
    if expected > 0:
        amount = data.draw(st.integers(0, expected))
        deadline = business_deadline_us(calendar, start, amount)
        assert business_us(calendar, start, deadline) == amount
        assert is_working(calendar, deadline)  # just after it the target is exceeded
        assert business_us(calendar, start, deadline + 1) == amount + 1
