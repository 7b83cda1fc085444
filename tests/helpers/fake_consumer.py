"""A stand-in for the Faust app's consumer: highwaters and committed offsets, no broker."""

from __future__ import annotations

from typing import Any, cast

from faust.types import TP

from streams.progress import Progress


class FakeConsumer:
    def __init__(self, highwaters: dict[TP, int | None], committed: dict[TP, int]) -> None:
        self.highwaters = highwaters
        self._committed_offset = committed

    def highwater(self, tp: TP) -> int | None:
        if tp not in self.highwaters:
            raise KeyError(tp)  # as the real consumer for a partition it was not assigned
        return self.highwaters[tp]


class FakeApp:
    def __init__(self, consumer: FakeConsumer) -> None:
        self.consumer = consumer


def fake_progress(
    highwaters: dict[TP, int | None],
    committed: dict[TP, int] | None = None,
    ready_max_lag: int = 10,
) -> Progress:
    """A :class:`Progress` over a :class:`FakeConsumer`."""
    app = FakeApp(FakeConsumer(highwaters, committed or {}))
    return Progress(cast(Any, app), ready_max_lag=ready_max_lag)
