"""A brute-force business-time oracle and generated calendars, written independently of
:mod:`streams.core.calendar`: whether an instant is working time is read straight off the local
wall clock (``datetime.fromtimestamp``), and business time is summed minute by minute.

Used by ``test_calendar.py`` and ``test_clocks.py``; the differential reference of the engine
can use it for business-time KPIs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from streams.core.calendar import Calendar

US = 1_000_000


@dataclass(frozen=True)
class Spec:
    """A calendar as the oracle reads it: (weekday, start, end) seconds; end <= start is
    overnight; holidays: date -> same-day intervals."""

    zone: str
    weekly: tuple[tuple[int, int, int], ...]
    holidays: dict[date, tuple[tuple[int, int], ...]]


def spec_of(calendar: Calendar) -> Spec:
    """The oracle's view of a built calendar (its per-weekday wall intervals already include
    overnight spill), e.g. for a reference implementation fed the engine's calendars. The
    weekly rules themselves are checked against the oracle through :func:`to_calendar`."""
    weekly = tuple((day, a, b) for day, intervals in enumerate(calendar.days) for a, b in intervals)
    return Spec(calendar.timezone, weekly, dict(calendar.holidays))


def oracle_working(spec: Spec, zone: ZoneInfo, instant_s: int) -> bool:
    """Is this instant working time? Read straight off the local wall clock."""
    local = datetime.fromtimestamp(instant_s, zone)
    day, second = local.date(), local.hour * 3600 + local.minute * 60 + local.second
    if day in spec.holidays:
        return any(a <= second < b for a, b in spec.holidays[day])
    weekday = day.weekday()
    for start_day, a, b in spec.weekly:
        if b > a:
            if weekday == start_day and a <= second < b:
                return True
        elif (weekday == start_day and second >= a) or (
            weekday == (start_day + 1) % 7 and second < b
        ):
            return True
    return False


def oracle_business_us(spec: Spec, start_us: int, end_us: int) -> int:
    """Minute by minute (every bound in the generated specs is a whole minute, so is every
    time-zone transition since 1970 in the zones used): overlap of [start, end) with each
    working minute."""
    if end_us < start_us:
        return -oracle_business_us(spec, end_us, start_us)
    zone = ZoneInfo(spec.zone)
    total = 0
    minute = start_us // (60 * US) * 60
    while minute * US < end_us:
        overlap = min(end_us, (minute + 60) * US) - max(start_us, minute * US)
        if overlap > 0 and oracle_working(spec, zone, minute):
            total += overlap
        minute += 60
    return total


ZONES = (
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Sao_Paulo",
    "Pacific/Apia",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "America/St_Johns",
    "UTC",
)

_BLOCK_S = 2**22
_TRANSITIONS = tuple(
    int(datetime.fromisoformat(text).timestamp())
    for text in (
        "2026-03-29T00:30:00+00:00",  # Berlin spring forward
        "2026-10-25T00:30:00+00:00",  # Berlin fall back
        "2026-03-08T06:00:00+00:00",  # New York spring forward
        "2026-11-01T05:30:00+00:00",  # New York fall back
        "2026-10-03T15:00:00+00:00",  # Lord Howe +30 min
        "2018-11-04T02:00:00+00:00",  # Sao Paulo midnight gap
        "2011-12-29T12:00:00+00:00",  # Apia skips a day
        "2026-04-04T14:00:00+00:00",  # Chatham fall back
        "2026-11-01T03:30:00+00:00",  # St John's fall back
    )
)
ANCHORS = (*_TRANSITIONS, _BLOCK_S * 420, _BLOCK_S * 421)  # and cache block bounds (2025-26)

MINUTES_PER_WEEK = 7 * 1440


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    grid = draw(st.sampled_from([1, 30, 60]))  # minute bounds, or on the half hour / hour
    points = draw(
        st.lists(st.integers(0, MINUTES_PER_WEEK // grid - 1), min_size=2, max_size=10, unique=True)
    )
    points = sorted(p * grid for p in points)
    rotation = draw(st.integers(0, MINUTES_PER_WEEK - 1))
    weekly: list[tuple[int, int, int]] = []
    for first, second in zip(points[::2], points[1::2], strict=False):
        length = second - first
        start = (first + rotation) % MINUTES_PER_WEEK
        day, start_min = divmod(start, 1440)
        if length > 1440 or (length == 1440 and start_min != 0):
            continue  # not one interval (at most a day; a full day only from midnight)
        end_min = (start_min + length) % 1440 if start_min + length > 1440 else start_min + length
        weekly.append((day, start_min * 60, end_min * 60))
    if not weekly:
        weekly.append((draw(st.integers(0, 6)), 9 * 3600, 17 * 3600))
    holidays: dict[date, tuple[tuple[int, int], ...]] = {}
    base = date(2026, 3, 20)
    for offset in draw(st.lists(st.integers(-3000, 3000), max_size=4, unique=True)):
        bounds = draw(st.lists(st.integers(0, 1440 // grid), max_size=4, unique=True))
        bounds = sorted(b * grid * 60 for b in bounds)
        holidays[base + timedelta(days=offset)] = tuple(
            zip(bounds[::2], bounds[1::2], strict=False)
        )
    return Spec(draw(st.sampled_from(ZONES)), tuple(weekly), holidays)


def to_calendar(spec: Spec) -> Calendar:
    def hhmm(seconds: int) -> str:
        return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}"

    hours: dict[str, list[str]] = {}
    names = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    for day, a, b in spec.weekly:
        hours.setdefault(names[day], []).append(f"{hhmm(a)}-{hhmm(b)}")
    holidays: list[tuple[date | str, Sequence[str] | None]] = [
        (day, [f"{hhmm(a)}-{hhmm(b)}" for a, b in intervals] or None)
        for day, intervals in spec.holidays.items()
    ]
    return Calendar.weekly(spec.zone, hours, holidays)


def spans(max_hours: int) -> st.SearchStrategy[int]:
    """µs up to ``max_hours`` hours, spread over the whole span (whole hours, then the rest)."""
    return st.builds(
        lambda hours, rest: hours * 3600 * US + rest,
        st.integers(0, max_hours - 1),
        st.one_of(st.just(0), st.integers(0, 3600 * US)),
    )


@st.composite
def ranges(draw: st.DrawFn, spec: Spec) -> tuple[int, int]:
    anchor = draw(
        st.one_of(
            st.sampled_from(ANCHORS),
            st.integers(int(datetime(1975, 1, 1, tzinfo=UTC).timestamp()), 2_000_000_000),
        )
    )
    start = (anchor - 3 * 86_400) * US + draw(spans(6 * 24))
    length = draw(spans(4 * 24))
    return (start, start + length) if draw(st.booleans()) else (start + length, start)
