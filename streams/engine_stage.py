"""What both stage-1 layers share: engines per owned partition over a changelogged table.

Tickets (:mod:`streams.stage1`) and customers (:mod:`streams.customer_stage`) each keep, per
owned partition of their input, an engine whose states live in a changelogged table
(:mod:`streams.changelog`). :class:`EngineStage` holds the engines' life cycle: recovery (every
engine rebuilt from the recovered states, then a complete snapshot), revocation, the rebuild
after a contained error, checkpoints, and the flush schedule (coalesced while a partition
catches up, with the caught-up flag stage 2 needs for readiness).
"""

from __future__ import annotations

import gc
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from streams.changelog import RecoveryAwareTable, StateLog

if TYPE_CHECKING:
    from streams.app import KpiWorker

log = logging.getLogger(__name__)

LAGGING_FLUSH_S = 1.0  # a partition that catches up flushes this seldom (fewer, larger messages)


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector off for a burst of allocations that stay alive (a
    rebuild, a snapshot); back on after (any cycle made meanwhile is collected then)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Engine(Protocol):
    """A stage-1 engine of one partition (TicketEngine, CustomerEngine)."""

    partition: int
    stream_time_us: int

    def rebuild(self, clock_us: int | None = None, states: Any = None) -> None: ...


EngineT = TypeVar("EngineT", bound=Engine)


class EngineStage(ABC, Generic[EngineT]):
    """The engines of the partitions of ``topics`` this worker owns.

    Subclasses create the table and ``log`` when the app is built, and say how an engine is
    made (:meth:`new_engine`) and what recovery logs (:attr:`recovered_message`).
    """

    #: ``%``-format of the recovery log line: partitions, records read, states, checkpoints.
    recovered_message = "recovered partitions %s: %d records (%d states), checkpoints %s"
    #: Where a failed rebuild is reported (followed by the partition).
    rebuild_label = "rebuild of partition"

    table: RecoveryAwareTable
    log: StateLog[Any]

    def __init__(self, worker: KpiWorker, topics: Iterable[str]) -> None:
        self.worker = worker
        self.settings = worker.settings
        self.topics = list(topics)
        self.engines: dict[int, EngineT] = {}
        self.recovering = True  # from a rebalance until the engines are rebuilt
        self.caught_up: dict[int, bool] = {}  # input partition -> last flag sent
        self._flushed_at: dict[int, float] = {}  # input partition -> monotonic time

    @abstractmethod
    def new_engine(self, partition: int) -> EngineT:
        """A fresh engine of ``partition`` over the table's states."""

    def owns(self, partition: int) -> bool:
        return partition in self.engines

    def rebuild(self, partition: int) -> None:
        """Recompute one engine's partials from the table (after a contained error: the
        engine may have applied part of the record)."""
        if partition not in self.engines:
            return
        engine = self.new_engine(partition)
        try:
            engine.rebuild(self.worker.clock.rebuild_us())
        except Exception as error:  # keep the engine we have; the next recovery rebuilds
            self.worker.guard.report(error, "events", f"{self.rebuild_label} {partition}")
            return
        self.engines[partition] = engine

    def recovered(self, partitions: set[int]) -> None:
        """The table holds ``partitions`` now: one engine each, rebuilt from their states.

        Without the cyclic garbage collector meanwhile: decoding every state allocates a few
        objects per ticket that all stay alive, so it would scan the growing heap over and
        over (50,000 tickets: decoding took 0.4-1 s with it, 0.05 s without; the rebuild
        about half as long). Any cycle made here is collected after."""
        with paused_gc():
            self._recovered(partitions)

    def _recovered(self, partitions: set[int]) -> None:
        for partition in list(self.engines):
            if partition not in partitions:
                del self.engines[partition]
        by_partition = self.log.states_by_partition(partitions)
        clock = self.worker.clock.rebuild_us()
        for partition, states in by_partition.items():
            engine = self.new_engine(partition)
            engine.rebuild(clock, states)
            self.engines[partition] = engine
        self.recovering = False
        self.log.recovered()
        log.info(
            self.recovered_message,
            sorted(partitions),
            self.table.recovered_records,
            sum(len(states) for states in by_partition.values()),
            self.table.checkpoints,
        )

    def revoked(self, partitions: set[int]) -> None:
        # Write what the record cache holds for them before the new owner recovers them
        # (harmless if their offsets are not committed: replayed events are duplicates).
        self.log.store.flush_soon(partitions)  # written at on_partitions_revoked already
        for partition in partitions:
            self.engines.pop(partition, None)

    def rebalanced(self) -> None:
        """A rebalance: recovering until the engines are rebuilt; every caught-up flag is
        sent again."""
        self.recovering = True
        self.caught_up.clear()

    async def revoke_all(self) -> None:
        """A rebalance starts (eager: every partition is revoked, before the group re-forms).
        Stage 1 stops here: its cached writes reach the log now, before any new owner can
        recover the partitions or send its own snapshot."""
        self.engines.clear()
        self.recovering = True
        await self.log.write()

    async def checkpoint(self) -> None:
        if not self.recovering:
            await self.log.checkpoint(set(self.engines), self.settings.checkpoint_records)

    def due(self, now: float) -> Iterator[tuple[EngineT, bool | None, bool]]:
        """The engines to flush at monotonic time ``now``, with the caught-up flag last sent
        (None: none yet) and the current one. While a partition catches up (its KPIs are
        withheld anyway) it is flushed every LAGGING_FLUSH_S only."""
        for engine in list(self.engines.values()):
            partition = engine.partition
            was = self.caught_up.get(partition)
            caught_up = self.worker.progress.caught_up(self.topics, partition, bool(was))
            last = self._flushed_at.get(partition, 0.0)
            if not caught_up and was is False and now - last < LAGGING_FLUSH_S:
                continue
            self.caught_up[partition] = caught_up
            self._flushed_at[partition] = now
            yield engine, was, caught_up

    def lagging(self) -> bool:
        """Some owned input partition was behind at its last flush."""
        return not all(self.caught_up.values())

    def ready(self) -> bool:
        """Recovered, and every owned input partition caught up at its last flush."""
        return not self.recovering and all(self.caught_up.get(p, False) for p in self.engines)


__all__ = ["LAGGING_FLUSH_S", "Engine", "EngineStage"]
