"""The worker's clock: which "now" the engines use and the KPIs are read at (``SUPPORT_CLOCK``).

Chosen once, from the settings, by :func:`clock_for`; the stages ask the clock object and never
test the setting themselves.

- :class:`WallClock` (``wall``, production): now is the host's time. Windows decay and the
  live backlog ages while no events arrive.
- :class:`StreamClock` (``stream``, replays and tests): now is the stream time, the latest
  event time seen (per stage-1 partition for the engines, over every source for a merge).

Not to be confused with :mod:`streams.core.clocks`, the SLA clocks (calendar and business
time) of one ticket.
"""

from __future__ import annotations

import time
from typing import Literal, Protocol

from streams.core.units import US

ClockName = Literal["wall", "stream"]


class Clock(Protocol):
    """Now, in µs since the epoch, given the stream time of what the caller holds."""

    #: True: the engines' clock is the stream time (stage 1 then gives them the stream time
    #: of every input topic, see :meth:`streams.progress.Progress.watermark`).
    follows_stream: bool

    def engine_us(self, stream_time_us: int) -> int:
        """The engine clock when processing or flushing at ``stream_time_us``."""
        ...

    def read_us(self, stream_time_us: int) -> int:
        """The instant KPIs are read at, for a merge whose stream time is ``stream_time_us``."""
        ...

    def rebuild_us(self) -> int | None:
        """The clock a rebuild runs at (None: the stream time of the rebuilt states)."""
        ...


class WallClock:
    """The host's time, whatever the events say."""

    follows_stream = False

    def engine_us(self, stream_time_us: int) -> int:
        return round(time.time() * US)

    def read_us(self, stream_time_us: int) -> int:
        return round(time.time() * US)

    def rebuild_us(self) -> int | None:
        return round(time.time() * US)


class StreamClock:
    """The latest event time seen: results depend on the events only."""

    follows_stream = True

    def engine_us(self, stream_time_us: int) -> int:
        return stream_time_us

    def read_us(self, stream_time_us: int) -> int:
        return stream_time_us

    def rebuild_us(self) -> int | None:
        return None


def clock_for(name: ClockName) -> Clock:
    """The clock object of a ``SUPPORT_CLOCK`` value."""
    return StreamClock() if name == "stream" else WallClock()


__all__ = ["Clock", "ClockName", "StreamClock", "WallClock", "clock_for"]
