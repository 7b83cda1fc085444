"""The one duration syntax (``streams.durations``): settings, the simulator's and the demo's
command lines all read it."""

from __future__ import annotations

import argparse

import pytest

from streams.durations import (
    format_duration,
    non_negative_duration,
    parse_duration,
    positive_duration,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("1h", 3600),
        ("7d", 604800),
        ("250ms", 0.25),
        ("42", 42),
        (" 1.5h ", 5400),
        ("0", 0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "15x", "-5m", "1.", "h", "15M"])
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_format_duration_reads_like_the_settings() -> None:
    values = (0.2, 10, 60, 300, 3600, 86400, 604800, 90)
    texts = ["200ms", "10s", "1m", "5m", "1h", "24h", "7d", "90s"]
    assert [format_duration(s) for s in values] == texts
    assert [parse_duration(text) for text in texts] == list(values)


def test_command_line_types_refuse_with_argparse_errors() -> None:
    assert positive_duration("2h") == 7200
    assert non_negative_duration("0s") == 0
    with pytest.raises(argparse.ArgumentTypeError, match="not a positive duration"):
        positive_duration("0m")
    with pytest.raises(argparse.ArgumentTypeError, match="is not a duration"):
        non_negative_duration("soon")
