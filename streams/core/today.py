"""The calendar-day window ``today`` (SPEC §3): from local midnight to the clock.

Pure functions on integer microseconds since the epoch (like :mod:`streams.core.ticket`), so
window edges are exact. A local day is 23, 24 or 25 hours long across daylight-saving changes
(26 h in the rare zone with a 2-hour shift); the day start is found in the IANA zone, never by
adding 24 h.

Definition: ``day_start_us(now)`` is the first instant whose local calendar date is the local
date of ``now``. When local midnight does not exist (a clock change at 00:00 skips to 01:00),
the day starts at the transition instant; when it exists twice, at its first occurrence.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from streams.core.units import to_us

TODAY = "today"
# The longest a local day can last (a 2-hour DST shift, e.g. Antarctica/Troll): state and
# buckets older than clock - TODAY_MAX_SECONDS can never be inside ``today``.
TODAY_MAX_SECONDS = 26 * 3600.0

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def time_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ValueError with one readable line when it is unknown."""
    text = name.strip()
    try:
        if not text or text.startswith(("/", ".")) or ".." in text:
            raise ValueError
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"{name!r} is not an IANA time zone name like UTC, Europe/Berlin or America/New_York"
        ) from None


def _local(at_us: int, zone: tzinfo) -> datetime:
    return (_EPOCH + timedelta(microseconds=at_us)).astimezone(zone)


@lru_cache(maxsize=64)
def _date_start_us(day: date, zone: tzinfo) -> int:
    """The first instant whose local date is ``day`` (cached: one search per day and zone)."""
    # Local midnight read with either offset of a transition: midnight itself when it exists;
    # when it falls in a gap, the later reading lies after the transition that starts the day.
    upper = max(to_us(datetime.combine(day, time(0, fold=fold), tzinfo=zone)) for fold in (0, 1))
    # First instant with local date >= day in (upper - 3 h, upper]: no zone shifts by 3 h.
    low, high = upper - 3 * 3600 * 1_000_000, upper
    while high - low > 1:
        mid = (low + high) // 2
        if _local(mid, zone).date() >= day:
            high = mid
        else:
            low = mid
    return high


def day_start_us(now_us: int, zone: tzinfo) -> int:
    """Start of the local calendar day (in ``zone``) that contains the instant ``now_us``."""
    day = _local(now_us, zone).date()
    start = _date_start_us(day, zone)
    if start > now_us:  # pragma: no cover - only if local dates went backwards across midnight
        start = _date_start_us(day - timedelta(days=1), zone)
    return start


def window_start_us(name: str, size_seconds: float, now_us: int, zone: tzinfo) -> int:
    """Start of window ``name`` at clock ``now_us``: local midnight for ``today``, else
    ``now - size`` (exact, no bucket alignment: stores align it themselves)."""
    if name == TODAY:
        return day_start_us(now_us, zone)
    return now_us - round(size_seconds * 1_000_000)


def is_today(name: str) -> bool:
    return name == TODAY


__all__ = [
    "TODAY",
    "TODAY_MAX_SECONDS",
    "day_start_us",
    "is_today",
    "time_zone",
    "window_start_us",
]
