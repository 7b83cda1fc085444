"""Stage 2 of the tickets in the worker: partials in, merged KPIs out.

``<app>-kpi-partials`` is partitioned by dimension (overall/team/channel/priority,
:func:`dimension_partition`); per owned partition a :class:`~streams.core.merge.KpiMerge`
keeps the latest partial per (group, source partition, bucket) and merges them into rolling
windows. Stage 2 keeps no durable state: after every rebalance every stage-1 partition re-sends
a complete snapshot (a reset followed by all its partials), so stage 2 recovers from state, not
from history. What a worker owns in stage 2 is exactly what it exports on ``/metrics`` and
publishes to ``support-kpis``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import msgspec
from aiokafka.partitioner import murmur2

from streams.core.merge import KpiMerge, KpiReading
from streams.core.partials import DIMENSIONS, PartialBatch

if TYPE_CHECKING:
    from streams.app import KpiWorker

log = logging.getLogger(__name__)

BATCH_DECODER = msgspec.msgpack.Decoder(PartialBatch)


def dimension_partition(dimension: str, partitions: int) -> int:
    """Stage-2 routing: every group of one dimension goes to the same stage-2 partition, so
    one worker sees all teams and can cap the team label exactly (SPEC §5 label bounds).
    The same murmur2 hash as Kafka's default partitioner on the key ``dimension``."""
    hashed: int = murmur2(dimension.encode())
    return (hashed & 0x7FFFFFFF) % partitions


class TicketStage2:
    """The KPI merges of the partials partitions this worker owns."""

    def __init__(self, worker: KpiWorker) -> None:
        self.worker = worker
        self.settings = worker.settings
        self.config = worker.config
        self.merges: dict[int, KpiMerge] = {}  # partials partition -> its merge
        # partials partition -> the dimensions routed to it
        self.dimensions: dict[int, list[str]] = {}
        for dimension in DIMENSIONS:
            self.dimensions.setdefault(self.route(dimension), []).append(dimension)

    def route(self, dimension: str) -> int:
        """The partials partition of a dimension."""
        return dimension_partition(dimension, self.settings.partitions)

    def assigned(self, partitions: set[int]) -> None:
        """A rebalance: stage 2 starts empty for every partials partition it holds; every
        stage-1 partition re-sends a complete snapshot once its recovery completes."""
        self.merges = {p: KpiMerge(self.config) for p in partitions}
        log.info("stage 2 owns partial partitions %s", sorted(partitions))

    def apply_partial(self, partition: int, raw: bytes) -> None:
        """Apply one partials message of ``partition`` (one :class:`PartialBatch`)."""
        merge = self.merges.get(partition)
        if merge is None:
            log.debug("skipping a partial of partition %d: not owned", partition)
            return  # revoked while in flight; the new owner applies it
        merge.apply_batch(BATCH_DECODER.decode(raw))

    def ready(self, partials_topic: str) -> bool:
        """Every owned partials partition holds a complete snapshot from every caught-up
        source partition, and has (almost) no backlog."""
        limit = self.settings.ready_max_lag
        for partition, merge in list(self.merges.items()):
            dimensions = self.dimensions.get(partition, [])
            if not merge.complete(dimensions, self.settings.partitions):
                return False
            lag = self.worker.progress.lag([partials_topic], partition)
            if dimensions and (lag is None or lag > limit):
                return False
        return True

    def readings(self) -> Iterator[KpiReading]:
        """The KPIs of every owned merge, read at the worker's clock."""
        merges = list(self.merges.values())
        now_us = self.worker.clock.read_us(max((m.stream_time_us for m in merges), default=0))
        for merge in merges:
            yield from merge.read(now_us, self.settings.max_teams)


__all__ = ["BATCH_DECODER", "TicketStage2", "dimension_partition"]
