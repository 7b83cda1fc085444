"""Durations as settings and command lines write them: ``250ms``, ``90s``, ``15m``, ``1h``,
``7d``; a bare number is seconds. The one parser of the project (settings, simulator, demo).
"""

from __future__ import annotations

import argparse
import re

__all__ = ["format_duration", "non_negative_duration", "parse_duration", "positive_duration"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str) -> float:
    """'15m' -> 900.0 seconds; a bare number is seconds; zero is a duration."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 1h or 7d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_duration(seconds: float) -> str:
    """900.0 -> '15m', 86400.0 -> '24h', 604800.0 -> '7d', 0.2 -> '200ms': what
    :func:`parse_duration` reads back."""
    if seconds and seconds < 1:
        return f"{seconds * 1000:g}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        # Days only beyond one: '24h' reads better than '1d'.
        if seconds >= size and seconds % size == 0 and (unit != "d" or seconds > size):
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def non_negative_duration(text: str) -> float:
    """An argparse ``type``: :func:`parse_duration` with argparse's error."""
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def positive_duration(text: str) -> float:
    """An argparse ``type``: a duration greater than zero."""
    seconds = non_negative_duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"not a positive duration: {text!r} (e.g. 90s, 15m, 2h)")
    return seconds
