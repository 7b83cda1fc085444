"""Time in the core: integer microseconds since the epoch (exact, unlike float seconds)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["US", "to_us"]

#: Microseconds per second: ``seconds * US`` is microseconds, ``at_us / US`` seconds.
US = 1_000_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def to_us(moment: datetime) -> int:
    """Exact microseconds since the epoch of an aware datetime."""
    if moment.tzinfo is None:
        raise ValueError("an aware datetime is needed")
    return (moment - _EPOCH) // _ONE_US
