"""RFC 3339 timestamps from integer POSIX milliseconds (exact: no float rounding)."""

from __future__ import annotations

from datetime import UTC, datetime

_CACHE_SIZE = 4096
_seconds_cache: dict[tuple[int, int], str] = {}


def format_time(t_ms: int, offset_minutes: int = 0) -> str:
    """``t_ms`` as RFC 3339 text with milliseconds and an explicit offset (``+00:00`` for UTC)."""
    secs, ms = divmod(t_ms, 1000)
    key = (secs, offset_minutes)
    head = _seconds_cache.get(key)
    if head is None:
        if len(_seconds_cache) >= _CACHE_SIZE:
            _seconds_cache.clear()
        local = datetime.fromtimestamp(secs + offset_minutes * 60, tz=UTC)
        head = _seconds_cache[key] = f"{local:%Y-%m-%dT%H:%M:%S}"
    sign = "+" if offset_minutes >= 0 else "-"
    hh, mm = divmod(abs(offset_minutes), 60)
    return f"{head}.{ms:03d}{sign}{hh:02d}:{mm:02d}"


def format_naive(t_ms: int, *, space: bool = False) -> str:
    """``t_ms`` as a timestamp without offset (invalid input for the event contract)."""
    secs, ms = divmod(t_ms, 1000)
    sep = " " if space else "T"
    return f"{datetime.fromtimestamp(secs, tz=UTC):%Y-%m-%d{sep}%H:%M:%S}.{ms:03d}"
