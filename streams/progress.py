"""How far the worker has read each partition it owns, and how far behind the broker it is.

Positions are the next offset to process per (topic, partition), set by the stages as they
process records; until a partition has one, the consumer's committed offset counts. Lag is the
broker's end offset (highwater) minus the position. Stage 1 flags a source partition caught up
from its lag (:meth:`Progress.caught_up`), readiness checks the partials' lag,
``support_consumer_lag`` reports every owned position, and under the stream clock an engine's
clock waits for the input topic read furthest behind (:meth:`Progress.watermark`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import faust
from faust.types import TP


class Progress:
    """Positions of one worker, and their lag against the consumer's highwaters."""

    def __init__(self, app: faust.App, ready_max_lag: int) -> None:
        self.app = app
        self.ready_max_lag = ready_max_lag
        self.positions: dict[tuple[str, int], int] = {}
        # (topic, partition) -> the highwater the consumer reported at the last lag()
        self.highwaters: dict[tuple[str, int], int] = {}

    def processed(self, topic: str, partition: int, offset: int) -> None:
        """The record at ``offset`` is processed: the position moves past it."""
        self.positions[(topic, partition)] = offset + 1

    def lag(self, topics: Iterable[str], partition: int) -> int | None:
        """Records not processed yet in one partition of ``topics`` (None: not known yet)."""
        committed = getattr(self.app.consumer, "_committed_offset", {})
        total = 0
        for topic in topics:
            highwater = self._highwater(topic, partition)
            if highwater is None:
                return None
            position = self.positions.get((topic, partition))
            if position is None:
                position = committed.get((topic, partition)) or 0
            total += max(0, highwater - position)
        return total

    def watermark(
        self, topics: Iterable[str], partition: int, seen: Mapping[str, int], stream_us: int
    ) -> int:
        """The stream time of one partition of ``topics`` as a whole: ``stream_us`` (the
        latest event time read from any of them), or the latest event time read from a
        topic that still has a backlog, if earlier (0 if such a topic has none read yet).

        Cross-topic order is not guaranteed (SPEC §3): in a replay, one topic can be read
        hours of event time ahead of another. An engine on this clock holds a reply until
        the topic that carries its ticket's creation has been read that far, instead of
        dropping it as an orphan. ``seen``: topic -> latest event time read from it.

        Runs for every event: it uses the highwaters as of the last :meth:`lag` (every
        flush, a fraction of a second old), asking the consumer only for one it has not
        cached yet (the first events after an assignment come before the first flush); a
        topic whose highwater the consumer does not know yet holds the time back too."""
        low = stream_us
        highwaters = self.highwaters
        positions = self.positions
        committed = getattr(self.app.consumer, "_committed_offset", {})
        for topic in topics:
            key = (topic, partition)
            highwater = highwaters.get(key)
            if highwater is None:
                highwater = self._highwater(topic, partition)
            if highwater is not None:
                position = positions.get(key)
                if position is None:
                    position = committed.get(key) or 0  # (a TP equals its plain tuple)
                if position >= highwater:
                    continue  # nothing left to read there
            low = min(low, seen.get(topic, 0))
        return low

    def _highwater(self, topic: str, partition: int) -> int | None:
        """The consumer's highwater of one topic partition, cached (None: not known yet)."""
        try:
            highwater: int | None = self.app.consumer.highwater(TP(topic, partition))
        except Exception:  # the consumer does not know this partition yet
            return None
        if highwater is not None:
            self.highwaters[(topic, partition)] = highwater
        return highwater

    def caught_up(self, topics: Iterable[str], partition: int, was: bool) -> bool:
        """Whether one partition of ``topics`` has (almost) no backlog: lag at most
        SUPPORT_READY_MAX_LAG to become caught up, more than 10x that to stop being so."""
        lag = self.lag(topics, partition)
        if lag is None:
            return False
        limit = self.ready_max_lag
        return lag <= (10 * limit + 10 if was else limit)


__all__ = ["Progress"]
