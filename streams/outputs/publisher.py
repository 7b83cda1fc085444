"""The KPI topic ``support-kpis`` (SPEC §5): compacted, keyed ``kpi|window|team|channel|priority``
(customer KPIs: ``kpi|window|segment``).

The publisher derives every record from engine state, so a replay or a restart re-publishes
values, never increments: a consumer that reads the topic from the beginning always ends on
the latest value of every key. A key is published when its value or sample size changed since
it was last published, at most once per publish interval (the caller's timer period).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from streams.core.customers import CustomerReading
from streams.core.store import KpiReading
from streams.core.units import US
from streams.records import KpiRecord, encode_record, kpi_record

Reading = KpiReading | CustomerReading

log = logging.getLogger(__name__)


class KpiPublisher:
    def __init__(self) -> None:
        self._published: dict[str, tuple[float | None, int]] = {}

    def forget(self) -> None:
        """Re-publish everything next time (after a rebalance or restart). Keys this worker
        no longer owns are not tombstoned: their new owner publishes them."""
        self._published.clear()

    def changes(self, readings: Iterable[Reading], now: float) -> list[tuple[bytes, bytes | None]]:
        """(key, value) of every KPI record whose value changed since it was last published,
        and (key, None) — a tombstone — for every key this worker published that no longer
        exists (a team folded into ``other`` by the label cap, a group with no data left), so
        a reader of the compacted topic never keeps a value the board no longer shows."""
        out: list[tuple[bytes, bytes | None]] = []
        seen: set[str] = set()
        for reading in readings:
            topic_key = reading.key.topic_key()
            seen.add(topic_key)
            current = (reading.value, reading.sample_size)
            if self._published.get(topic_key) == current:
                continue
            try:
                record = to_record(reading, now)
            except ValueError as error:  # a value the KPI schema forbids: report, never crash
                log.error("not publishing %s: %s", topic_key, error)
                continue
            self._published[topic_key] = current
            out.append((topic_key.encode(), encode_record(record)))
        for topic_key in [k for k in self._published if k not in seen]:
            del self._published[topic_key]
            out.append((topic_key.encode(), None))
        return out


def to_record(reading: Reading, computed_at: float) -> KpiRecord:
    """The KPI record of one store reading (built by :func:`streams.records.kpi_record`)."""
    start, end = reading.window_start_us, reading.window_end_us
    return kpi_record(
        reading.key,
        value=reading.value,
        sample_size=reading.sample_size,
        window_start=None if start is None else start / US,
        window_end=None if end is None else end / US,
        computed_at=computed_at,
    )
