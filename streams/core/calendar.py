"""Business calendars and exact business time between two instants (SPEC §4, issue 12).

A :class:`Calendar` is an IANA time zone, weekly working intervals in local wall-clock time
(several per day for split days; an interval whose end is not after its start, ``22:00-06:00``,
is an overnight shift that ends the next day) and holidays (local dates without working time, or
with their own working hours for a partial day).

Semantics (what a support manager expects from "business hours"):

- **An instant is working time when its local wall-clock reading falls inside a working interval
  of that local date.** Business time is the *real* elapsed time (microseconds of UTC time) of the
  working instants between two instants; ``business_us(cal, a, b)`` counts ``[a, b)``.
- **DST.** On a spring-forward day the skipped wall times do not exist, so 01:00-03:00 on the
  Berlin day that jumps 02:00 -> 03:00 holds one real hour. On a fall-back day the repeated hour
  is lived twice, so 01:00-04:00 on the day that goes back 03:00 -> 02:00 holds four real hours.
  A date that does not exist at all (Pacific/Apia skipped 2011-12-30) holds no working time.
- **Overnight shifts** belong to the day they start in the weekly schedule (``mon =
  ["22:00-06:00"]`` works Monday 22:00 to Tuesday 06:00) but, like every interval, are read on
  the wall clock: the part after midnight is working time of the next date.
- **Holidays are local dates.** A whole-day holiday has no working time on that date's wall clock,
  00:00-24:00, whichever shift it belongs to (the after-midnight part of a shift that started the
  evening before is cut too; a shift starting on the holiday evening is cut at midnight, its part
  on the next date still counts). A partial holiday replaces that date's working intervals by its
  own (e.g. Christmas Eve 09:00-13:00).
- ``business_us(cal, a, b) == -business_us(cal, b, a)`` (so it is additive over any split
  point); zero-length ranges are 0.

Speed: working intervals are materialised lazily in UTC blocks of 2**22 s (~48.5 days), each
block with sorted interval starts and prefix sums of working time, kept on the calendar object
(cached per calendar, built once per block in a few milliseconds). A query is two binary
searches in its blocks: O(log n) for ranges within a block or its neighbour, plus one addition
per further block spanned (a ticket open for a year spans about eight). Converting local wall
intervals to UTC uses the zone's offset segments found by sampling every 3 hours and bisecting
to the second: zones that change offset twice within 3 hours and return to the same offset would
be missed (no zone in the IANA database since 1970 does).

Pure: standard library only (``zoneinfo``); times are integer microseconds since the epoch, as
everywhere in the engine (:mod:`streams.core.ticket`).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from streams.core.units import US, to_us

DAY = 86_400
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_ONE_SECOND = timedelta(seconds=1)
_BLOCK_S = 2**22  # seconds of UTC time per cached block (~48.5 days)
_BLOCK_US = _BLOCK_S * US
_SAMPLE_S = 3 * 3600  # offset sampling step when looking for time-zone transitions
_MAX_OFFSET_S = DAY  # |local - UTC| is less than a day in every zone Python accepts
_MAX_DEADLINE_BLOCKS = 2000  # ~265 years: a deadline further away is an error

_TIME = r"(\d{1,2}):(\d{2})(?::(\d{2}))?"
_INTERVAL = re.compile(rf"^\s*{_TIME}\s*-\s*{_TIME}\s*$")

Interval = tuple[int, int]  # [start, end) seconds since local midnight, 0 <= start < end <= DAY


class CalendarError(ValueError):
    """A calendar definition is wrong; ``path`` says where (``hours.mon[1]``), ``related``
    names the other part involved, if any (``overlaps hours.sun[0]``)."""

    def __init__(self, path: str, problem: str, related: str = "") -> None:
        self.path = path
        self.related = related
        self._base = problem
        self.problem = f"{problem} {related}" if related else problem
        super().__init__(f"{path}: {self.problem}" if path else self.problem)

    def within(self, prefix: str) -> CalendarError:
        """The same error, its paths under ``prefix`` (``teams.Billing``)."""
        related = f"{prefix}.{self.related}" if self.related else ""
        return CalendarError(f"{prefix}.{self.path}" if self.path else prefix, self._base, related)


@dataclass(frozen=True, slots=True)
class _Block:
    """Working intervals of one UTC block: starts/ends in µs, cum[i] = work before interval i."""

    starts: list[int]
    ends: list[int]
    cum: list[int]
    total: int

    def worked(self, at_us: int) -> int:
        """Working µs from the block start to ``at_us`` (inside the block)."""
        i = bisect_right(self.starts, at_us) - 1
        if i < 0:
            return 0
        return self.cum[i] + min(at_us, self.ends[i]) - self.starts[i]


@dataclass(frozen=True, slots=True)
class Calendar:
    """A business calendar. Build one with :meth:`weekly`; compare and hash by value.

    ``days[d]`` are the working intervals on the wall clock of a weekday ``d`` (0 = Monday) that
    is not a holiday, overnight spill from the day before included, sorted and merged;
    ``holidays`` maps a local date to its working intervals (empty for a whole-day holiday).
    """

    timezone: str
    days: tuple[tuple[Interval, ...], ...]
    holidays: tuple[tuple[date, tuple[Interval, ...]], ...] = ()
    # Per-calendar cache of built blocks (block index -> _Block); not part of the value.
    _blocks: dict[int, _Block] = field(default_factory=dict, compare=False, hash=False, repr=False)
    _holiday_map: dict[date, tuple[Interval, ...]] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    def __post_init__(self) -> None:
        if len(self.days) != 7:
            raise CalendarError("hours", "needs seven weekdays")
        self._holiday_map.update(self.holidays)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def weekly(
        cls,
        timezone: str,
        hours: Mapping[str, Sequence[str]],
        holidays: Iterable[tuple[date | str, Sequence[str] | None]] = (),
    ) -> Calendar:
        """A calendar from readable parts; raises :class:`CalendarError` naming the bad part.

        ``hours`` maps ``mon`` .. ``sun`` or a range ``mon-fri`` to intervals ``"09:00-17:30"``
        (``24:00`` may end one; an end not after the start is an overnight shift).
        ``holidays`` are (date, intervals or None for a whole day) pairs, dates as
        :class:`datetime.date` or ``YYYY-MM-DD``.
        """
        check_timezone(timezone, "timezone")
        weekly = _weekly_intervals(hours)
        days = _day_patterns(weekly)
        if not any(days):
            raise CalendarError("hours", "no working time in the week")
        seen: dict[date, tuple[Interval, ...]] = {}
        for i, (day, day_hours) in enumerate(holidays):
            path = f"holidays[{i}]"
            when = _parse_date(day, f"{path}.date")
            if when in seen:
                raise CalendarError(f"{path}.date", f"{when.isoformat()} is listed twice")
            hours_path = f"{path}.hours"
            seen[when] = () if day_hours is None else _same_day_intervals(day_hours, hours_path)
        return cls(timezone, days, tuple(sorted(seen.items())))

    @classmethod
    def always_open(cls, timezone: str = "UTC") -> Calendar:
        """24/7: business time equals real elapsed time."""
        return cls.weekly(timezone, {"mon-sun": ["00:00-24:00"]})

    def wall_intervals(self, day: date) -> tuple[Interval, ...]:
        """Working intervals on the wall clock of a local date."""
        special = self._holiday_map.get(day)
        if special is not None:
            return special
        return self.days[day.weekday()]


@dataclass(frozen=True)
class CalendarSet:
    """The calendars of a deployment: a default one and per-team ones (keys are team labels)."""

    default: Calendar
    teams: Mapping[str, Calendar] = field(default_factory=dict)

    def for_team(self, team: str) -> Calendar:
        return self.teams.get(team, self.default)


# -- queries ------------------------------------------------------------------------------


def business_us(calendar: Calendar, start_us: int, end_us: int) -> int:
    """Working µs of ``calendar`` in ``[start_us, end_us)``; negated when end < start."""
    if end_us <= start_us:
        return 0 if end_us == start_us else -business_us(calendar, end_us, start_us)
    first = start_us // _BLOCK_US
    block = calendar._blocks.get(first) or _block(calendar, first)
    if end_us < (first + 1) * _BLOCK_US:  # the common case, inlined: one block
        starts, ends, cum = block.starts, block.ends, block.cum
        i = bisect_right(starts, end_us) - 1
        if i < 0:
            return 0
        worked = cum[i] + min(end_us, ends[i]) - starts[i]
        i = bisect_right(starts, start_us, 0, i + 1) - 1
        if i >= 0:
            worked -= cum[i] + min(start_us, ends[i]) - starts[i]
        return worked
    last = end_us // _BLOCK_US
    total = block.total - block.worked(start_us)
    for index in range(first + 1, last):
        total += _block(calendar, index).total
    return total + _block(calendar, last).worked(end_us)


def business_seconds(calendar: Calendar, start: datetime, end: datetime) -> float:
    """Working seconds between two aware datetimes (a convenience over :func:`business_us`)."""
    return business_us(calendar, to_us(start), to_us(end)) / US


def business_deadline_us(calendar: Calendar, start_us: int, amount_us: int) -> int:
    """When a business-time target of ``amount_us`` (>= 0) from ``start_us`` runs out.

    The instant ``d`` with ``business_us(calendar, start_us, t) <= amount_us`` exactly for
    ``t <= d``: a reply at ``d`` meets the target, any later instant is past it. When the target
    is used up at a closing time, ``d`` is the next opening (a reply before or at the opening
    still has used exactly the target), so ``d`` is always working time.
    """
    if amount_us < 0:
        raise ValueError("amount_us must not be negative")
    index = start_us // _BLOCK_US
    block = _block(calendar, index)
    target = block.worked(start_us) + amount_us
    for _ in range(_MAX_DEADLINE_BLOCKS):
        # The interval in which the cumulative work passes the target, if in this block.
        i = bisect_right(block.cum, target) - 1
        if i >= 0 and target < block.cum[i] + block.ends[i] - block.starts[i]:
            return block.starts[i] + target - block.cum[i]
        target -= block.total
        index += 1
        block = _block(calendar, index)
    raise ValueError("the calendar has no working time for centuries")


def is_working(calendar: Calendar, at_us: int) -> bool:
    """Whether the instant ``at_us`` is working time."""
    block = _block(calendar, at_us // _BLOCK_US)
    i = bisect_right(block.starts, at_us) - 1
    return i >= 0 and at_us < block.ends[i]


def business_us_uncached(calendar: Calendar, start_us: int, end_us: int) -> int:
    """The same as :func:`business_us`, computed from scratch in O(days spanned) (benchmarks,
    tests)."""
    if end_us < start_us:
        return -business_us_uncached(calendar, end_us, start_us)
    lo_s, hi_s = start_us // US, -(-end_us // US)
    total = 0
    for a, b in _utc_intervals(calendar, lo_s, hi_s + 1):
        total += max(0, min(b * US, end_us) - max(a * US, start_us))
    return total


def _block(calendar: Calendar, index: int) -> _Block:
    block = calendar._blocks.get(index)
    if block is None:
        block = calendar._blocks[index] = _build_block(calendar, index)
    return block


def _build_block(calendar: Calendar, index: int) -> _Block:
    lo_s, hi_s = index * _BLOCK_S, (index + 1) * _BLOCK_S
    starts: list[int] = []
    ends: list[int] = []
    cum: list[int] = []
    total = 0
    for a, b in _utc_intervals(calendar, lo_s, hi_s):
        a, b = max(a, lo_s) * US, min(b, hi_s) * US
        if a >= b:
            continue
        if ends and ends[-1] == a:  # touching across midnight: one interval
            ends[-1] = b
        else:
            starts.append(a)
            ends.append(b)
            cum.append(total)
        total += b - a
    return _Block(starts, ends, cum, total)


def _utc_intervals(calendar: Calendar, lo_s: int, hi_s: int) -> list[Interval]:
    """Working intervals in UTC seconds that meet ``[lo_s, hi_s)``, sorted, disjoint."""
    zone = calendar.zone
    seg_starts, seg_offsets = _offset_segments(zone, lo_s - 2 * DAY, hi_s + 2 * DAY)
    first_day = date.fromordinal(_EPOCH_ORDINAL + (lo_s - _MAX_OFFSET_S) // DAY - 1)
    last_day = date.fromordinal(_EPOCH_ORDINAL + (hi_s + _MAX_OFFSET_S) // DAY + 1)
    result: list[Interval] = []
    day = first_day
    while day <= last_day:
        midnight = (day.toordinal() - _EPOCH_ORDINAL) * DAY  # local wall seconds "as if UTC"
        for start, end in calendar.wall_intervals(day):
            wall_a, wall_b = midnight + start, midnight + end
            # UTC instants u with wall(u) = u + offset(u) in [wall_a, wall_b): per offset segment.
            i = max(0, bisect_right(seg_starts, wall_a - _MAX_OFFSET_S) - 1)
            while i < len(seg_starts) and seg_starts[i] < wall_b + _MAX_OFFSET_S:
                seg_end = seg_starts[i + 1] if i + 1 < len(seg_starts) else hi_s + 2 * DAY
                a = max(seg_starts[i], wall_a - seg_offsets[i])
                b = min(seg_end, wall_b - seg_offsets[i])
                if a < b and b > lo_s and a < hi_s:
                    result.append((a, b))
                i += 1
        day += timedelta(days=1)
    result.sort()
    return result


def _offset(zone: ZoneInfo, at_s: int) -> int:
    offset = datetime.fromtimestamp(at_s, zone).utcoffset()
    assert offset is not None
    return offset // _ONE_SECOND


def _offset_segments(zone: ZoneInfo, lo_s: int, hi_s: int) -> tuple[list[int], list[int]]:
    """UTC offsets over ``[lo_s, hi_s)``: segment i starts at ``starts[i]`` with ``offsets[i]``."""
    starts, offsets = [lo_s], [_offset(zone, lo_s)]
    at = lo_s
    while at < hi_s:
        nxt = min(at + _SAMPLE_S, hi_s)
        if _offset(zone, nxt) == offsets[-1]:
            at = nxt
            continue
        low, high = at, nxt  # offset(low) == current, offset(high) differs
        while high - low > 1:
            mid = (low + high) // 2
            if _offset(zone, mid) == offsets[-1]:
                low = mid
            else:
                high = mid
        starts.append(high)
        offsets.append(_offset(zone, high))
        at = high
    return starts, offsets


# -- building and validation ---------------------------------------------------------------


def check_timezone(name: object, path: str) -> str:
    if not isinstance(name, str) or not name:
        raise CalendarError(path, "must be an IANA time zone name such as Europe/Berlin")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CalendarError(path, f"unknown time zone {name!r}") from None
    return name


def parse_time(text: str, path: str, *, end: bool = False) -> int:
    """``HH:MM`` or ``HH:MM:SS`` -> seconds since midnight (``24:00`` only as an end)."""
    match = re.fullmatch(_TIME, text.strip())
    if match is None:
        raise CalendarError(path, f"{text!r} is not a time HH:MM")
    return _seconds(match.group(1), match.group(2), match.group(3), text, path, end=end)


def _seconds(h: str, m: str, s: str | None, text: str, path: str, *, end: bool) -> int:
    hours, minutes, secs = int(h), int(m), int(s or 0)
    if minutes > 59 or secs > 59 or hours > 24 or (hours == 24 and (minutes or secs)):
        raise CalendarError(path, f"{text!r} is not a time of day (00:00 to 24:00)")
    if hours == 24 and not end:
        raise CalendarError(path, f"{text!r}: 24:00 can only end an interval")
    return hours * 3600 + minutes * 60 + secs


def parse_interval(text: object, path: str) -> tuple[int, int]:
    """``"09:00-17:30"`` -> (32400, 63000); an end not after the start means the next day."""
    match = _INTERVAL.match(text) if isinstance(text, str) else None
    if match is None:
        raise CalendarError(path, f"{text!r} is not an interval like '09:00-17:30'")
    assert isinstance(text, str)
    g = match.group
    start = _seconds(g(1), g(2), g(3), text, path, end=False)
    end = _seconds(g(4), g(5), g(6), text, path, end=True)
    if end == start:
        raise CalendarError(path, f"{text!r} is empty")
    return start, end


def _same_day_intervals(texts: object, path: str) -> tuple[Interval, ...]:
    """Intervals within one date (holiday hours): no overnight, no overlap."""
    if not isinstance(texts, list | tuple):
        raise CalendarError(path, "must be a list of intervals like '09:00-13:00'")
    parsed: list[tuple[int, int, str]] = []
    for i, text in enumerate(texts):
        start, end = parse_interval(text, f"{path}[{i}]")
        if end < start:
            raise CalendarError(f"{path}[{i}]", f"{text!r} ends before it starts")
        parsed.append((start, end, f"{path}[{i}]"))
    parsed.sort()
    for (_, end1, _), (start2, _, where2) in pairwise(parsed):
        if start2 < end1:
            raise CalendarError(where2, "overlaps another interval of that day")
    return tuple(_merge([(a, b) for a, b, _ in parsed]))


def _weekday_keys(key: str, path: str) -> list[int]:
    first, sep, last = key.strip().lower().partition("-")
    names = [first, last] if sep else [first]
    if any(name not in WEEKDAYS for name in names):
        raise CalendarError(path, f"{key!r} is not a weekday (mon..sun) or a range like mon-fri")
    lo, hi = WEEKDAYS.index(names[0]), WEEKDAYS.index(names[-1])
    return [day % 7 for day in range(lo, hi + 1 if hi >= lo else hi + 8)]  # sun-thu wraps


def _weekly_intervals(hours: object) -> list[tuple[int, int, str]]:
    """(start, end, path) in seconds since Monday 00:00 local; end may pass the week's end."""
    if not isinstance(hours, Mapping):
        raise CalendarError("hours", "must be a table of weekday = [intervals]")
    owner: dict[int, str] = {}
    weekly: list[tuple[int, int, str]] = []
    for key, texts in hours.items():
        path = f"hours.{key}"
        for day in _weekday_keys(str(key), path):
            if day in owner:
                raise CalendarError(path, f"{WEEKDAYS[day]} is already given by", owner[day])
            owner[day] = path
        if not isinstance(texts, list | tuple):
            raise CalendarError(path, "must be a list of intervals like '09:00-17:30'")
        for i, text in enumerate(texts):
            start, end = parse_interval(text, f"{path}[{i}]")
            if end <= start:
                end += DAY  # overnight shift: ends the next day
            for day in _weekday_keys(str(key), path):
                weekly.append((day * DAY + start, day * DAY + end, f"{path}[{i}]"))
    # No overlap on the week circle (an overnight Sunday shift runs into Monday).
    week = 7 * DAY
    circle = sorted(
        [(a, min(b, week), w) for a, b, w in weekly]
        + [(0, b - week, w) for a, b, w in weekly if b > week]
    )
    for (_, end1, where1), (start2, _, where2) in pairwise(circle):
        if start2 < end1:
            raise CalendarError(where2, "overlaps", where1)
    return weekly


def _day_patterns(weekly: list[tuple[int, int, str]]) -> tuple[tuple[Interval, ...], ...]:
    """Per weekday, the working intervals on that day's wall clock (spill included)."""
    days: list[list[Interval]] = [[] for _ in WEEKDAYS]
    for a, b, _ in weekly:
        day = a // DAY
        days[day].append((a - day * DAY, min(b - day * DAY, DAY)))
        if b - day * DAY > DAY:
            days[(day + 1) % 7].append((0, b - day * DAY - DAY))
    return tuple(tuple(_merge(sorted(intervals))) for intervals in days)


def _merge(intervals: list[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for a, b in intervals:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def _parse_date(value: object, path: str) -> date:
    if isinstance(value, datetime):
        raise CalendarError(path, f"{value.isoformat()} is a date and time; give a date only")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
                return date.fromisoformat(value.strip())
        except ValueError:
            pass
        raise CalendarError(path, f"{value!r} is not a date YYYY-MM-DD")
    raise CalendarError(path, "must be a date YYYY-MM-DD")
