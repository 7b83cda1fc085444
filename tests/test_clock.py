"""The worker's clock (streams/clock.py): chosen once from SUPPORT_CLOCK."""

from __future__ import annotations

import time

from streams.clock import StreamClock, WallClock, clock_for
from streams.core.units import US

STREAM_US = 1_700_000_000 * US


def test_the_setting_picks_the_clock() -> None:
    assert isinstance(clock_for("stream"), StreamClock)
    assert isinstance(clock_for("wall"), WallClock)


def test_the_stream_clock_is_the_stream_time() -> None:
    clock = StreamClock()
    assert clock.engine_us(STREAM_US) == STREAM_US
    assert clock.read_us(STREAM_US) == STREAM_US
    assert clock.rebuild_us() is None  # a rebuild runs at the rebuilt tickets' stream time


def test_the_wall_clock_ignores_the_stream_time() -> None:
    clock = WallClock()
    before = round(time.time() * US)
    readings = [clock.engine_us(STREAM_US), clock.read_us(0), clock.rebuild_us()]
    after = round(time.time() * US)
    assert all(r is not None and before <= r <= after for r in readings)
