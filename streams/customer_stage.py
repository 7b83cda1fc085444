"""The Faust layer of churn and retention (SPEC §4): ``customer-lifecycle`` end to end.

The same two stages as tickets (:mod:`streams.app`), with the same persistence mechanisms
(:mod:`streams.changelog`), on topics and a table of their own:

1. Stage 1: records of the ``customer-lifecycle`` topic (keyed by ``customer_id``) reach
   :meth:`CustomerStage.process` through the worker's input agent. Per owned partition of
   *that topic* a :class:`~streams.core.customers.CustomerEngine` keeps customer states in the
   changelogged ``customers`` table (record cache written before every offset commit,
   checkpoints in ``<app>-customers-checkpoints``) and derives partials in memory, sent as
   absolute values to ``<app>-customer-partials``; after every recovery it rebuilds them from
   the table and re-sends a complete snapshot.
2. Stage 2: every customer partial goes to one partition of ``<app>-customer-partials`` (so one
   worker sees every segment and caps the label exactly); its owner merges them into a
   :class:`~streams.core.customers.CustomerKpiStore` and is the only worker that exports and
   publishes customer KPIs. A rebalance starts it empty; the snapshots refill it.

Ownership is always by (topic, partition): partition 3 of ``customer-lifecycle`` and partition 3
of ``ticket-created`` are different things, even though Faust's assignor co-partitions topics
of equal partition count (every input topic has the same count, SPEC §2) and so hands both to
the same worker. Engines, caught-up flags, positions and readiness of customers are kept
apart from the tickets', and the ``customers`` table only reacts to partitions of its own
source topic and changelog.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import faust
import msgspec
from faust.types import TP

from streams.changelog import FaustStateStore, RecoveryAwareTable, StateLog, internal_topic
from streams.core.customers import (
    CustomerBatch,
    CustomerEngine,
    CustomerKpiStore,
    CustomerOutcome,
    CustomerReading,
    CustomerState,
    customer_batches,
)
from streams.core.units import US, to_us
from streams.events import CustomerLifecycle
from streams.outputs.prometheus import KpiCollector

if TYPE_CHECKING:
    from streams.app import KpiWorker

log = logging.getLogger(__name__)

_STATE_DECODER = msgspec.msgpack.Decoder(CustomerState)
_BATCH_DECODER = msgspec.msgpack.Decoder(CustomerBatch)
_BATCH_ENCODER = msgspec.msgpack.Encoder()
_LAGGING_FLUSH_S = 1.0
STAGE2_KEY = "customers"  # the key (and routing hash) of every customer partials message


class CustomerStage:
    """Stage 1 and stage 2 of customers inside one worker process."""

    def __init__(self, worker: KpiWorker, stage2_partition: int) -> None:
        self.worker = worker
        self.settings = worker.settings
        self.config = self.settings.customer_config()
        self.topic = self.settings.topic_customer_lifecycle
        self.stage2_partition = stage2_partition
        self.engines: dict[int, CustomerEngine] = {}
        self.store: CustomerKpiStore | None = None  # while this worker owns stage 2
        self.recovering = True  # from a rebalance until stage 1 has rebuilt its engines
        self._caught_up: dict[int, bool] = {}  # stage-1 partition -> last flag sent
        self._flushed_at: dict[int, float] = {}  # stage-1 partition -> monotonic time
        worker.registry.register(KpiCollector(self.current_readings))

    # -- construction -------------------------------------------------------------------------

    def build(self, app: faust.App) -> None:
        s = self.settings
        self.partials = internal_topic(app, f"{s.app_id}-customer-partials", s.partitions)
        self.checkpoint_topic = internal_topic(
            app, f"{s.app_id}-customers-checkpoints", s.partitions
        )
        self.table = RecoveryAwareTable(
            app,
            name="customers",
            partitions=s.partitions,
            key_type=bytes,
            value_type=bytes,
            beacon=app.tables.beacon,
            source_topics=[self.topic],
            on_recovered=self._recovered,
            on_revoked=self._revoked,
            on_assigned=self._assigned,
            read_checkpoints=lambda partitions: self.log.read_checkpoints(partitions),
        )
        app.tables.add(self.table)
        store = FaustStateStore(self.table, _STATE_DECODER)
        self.log = StateLog(
            "customers", app, self.table, store, self.checkpoint_topic, s.kafka_bootstrap
        )
        app.agent(self.partials, name="merge-customer-partials")(self.worker._merge_partials)
        app.timer(s.flush_interval, name="flush-customer-partials")(self._flush_partials)
        app.timer(1.0, name="checkpoint-customers")(self._checkpoint)

    @property
    def partials_topic(self) -> str:
        return self.partials.get_topic_name()

    # -- stage 1 --------------------------------------------------------------------------------

    def owns(self, partition: int) -> bool:
        return partition in self.engines

    def process(self, event: CustomerLifecycle, partition: int) -> None:
        """Apply one decoded lifecycle event of an owned partition."""
        engine = self.engines[partition]
        at_us = to_us(event.occurred_at)
        clock = self.worker.clock_us(max(engine.stream_time_us, at_us))
        result = engine.process(event, clock)
        health = self.worker.health
        health.saw_event(self.topic, at_us / US)
        if result.late:
            health.late.labels(self.topic).inc()
        if result.outcome is CustomerOutcome.DUPLICATE:
            health.duplicate.labels(self.topic).inc()
        engine.housekeeping(clock)

    def rebuild(self, partition: int) -> None:
        """Recompute one engine's partials from the table (after a contained error)."""
        engine = self.engines.get(partition)
        if engine is None:
            return
        fresh = CustomerEngine(partition, self.log.store, self.config)
        try:
            fresh.rebuild(self._rebuild_clock())
        except Exception as error:  # keep the engine we have; the next recovery rebuilds
            self.worker.guard.report(error, "events", f"customer rebuild of partition {partition}")
            return
        self.engines[partition] = fresh

    def _rebuild_clock(self) -> int | None:
        return self.worker.clock_us(0) if self.settings.clock == "wall" else None

    def _recovered(self, partitions: set[int]) -> None:
        for partition in list(self.engines):
            if partition not in partitions:
                del self.engines[partition]
        by_partition: dict[int, list[tuple[str, CustomerState]]] = {p: [] for p in partitions}
        for key, state in self.log.store.states():  # decode every customer once
            mine = by_partition.get(state.partition)
            if mine is None:
                self.table.data.pop(key.encode(), None)  # stale local copy; no changelog write
            else:
                mine.append((key, state))
        clock = self._rebuild_clock()
        for partition, states in by_partition.items():
            engine = CustomerEngine(partition, self.log.store, self.config)
            engine.rebuild(clock, states)
            self.engines[partition] = engine
        self.recovering = False
        self.log.recovered()
        log.info(
            "customers: stage 1 owns %s partitions %s; recovered %d customer records "
            "(%d customers) from checkpoints %s",
            self.topic,
            sorted(partitions),
            self.table.recovered_records,
            sum(len(states) for states in by_partition.values()),
            self.table.checkpoints,
        )

    def _revoked(self, partitions: set[int]) -> None:
        self.log.store.flush(partitions)  # written at on_partitions_revoked already
        for partition in partitions:
            self.engines.pop(partition, None)

    async def revoke_all(self) -> None:
        """A rebalance starts: stop stage 1 and write the record cache before a new owner
        can recover the partitions."""
        self.engines.clear()
        self.recovering = True
        await self.log.write()

    async def _checkpoint(self) -> None:
        if not self.recovering:
            await self.log.checkpoint(set(self.engines), self.settings.checkpoint_records)

    async def _flush_partials(self) -> None:
        """Send what changed, as absolute values, to the one stage-2 partition (coalesced
        for _LAGGING_FLUSH_S while a partition catches up, as for tickets)."""
        now = time.monotonic()
        for engine in list(self.engines.values()):
            partition = engine.partition
            was = self._caught_up.get(partition)
            caught_up = self.worker._source_caught_up(partition, bool(was), [self.topic])
            last = self._flushed_at.get(partition, 0.0)
            if not caught_up and was is False and now - last < _LAGGING_FLUSH_S:
                continue
            self._caught_up[partition] = caught_up
            self._flushed_at[partition] = now
            # Fold expired buckets and retire customers in quiet partitions too (wall clock);
            # the table writes reach the changelog before the next offset commit.
            engine.housekeeping(self.worker.clock_us(engine.stream_time_us))
            partials = engine.flush()
            if not partials and was == caught_up:
                continue
            for batch in customer_batches(
                partition, partials, engine.stream_time_us, caught_up=caught_up
            ):
                self.partials.send_soon(
                    key=STAGE2_KEY.encode(),
                    value=_BATCH_ENCODER.encode(batch),
                    partition=self.stage2_partition,
                )

    # -- stage 2 --------------------------------------------------------------------------------

    def _assigned(self, assigned: set[TP]) -> None:
        """A rebalance: stage 2 starts empty if this worker holds the customer partials
        partition; every stage-1 partition re-sends a complete snapshot after recovery."""
        mine = {tp.partition for tp in assigned if tp.topic == self.partials_topic}
        owner = self.stage2_partition in mine
        self.store = CustomerKpiStore(self.config) if owner else None
        self.recovering = True
        self._caught_up.clear()
        if owner:
            log.info("customers: stage 2 owns partial partition %d", self.stage2_partition)

    def apply_partial(self, partition: int, raw: bytes) -> None:
        store = self.store
        if store is None or partition != self.stage2_partition:
            log.debug("skipping a customer partial of partition %d: not owned", partition)
            return  # revoked while in flight; the new owner applies it
        store.apply_batch(_BATCH_DECODER.decode(raw))

    def owned_tps(self) -> list[TP]:
        """The partitions this stage reads, for the worker's broker probe."""
        tps = [TP(self.topic, p) for p in list(self.engines)]
        if self.store is not None:
            tps.append(TP(self.partials_topic, self.stage2_partition))
        return tps

    def owns_position(self, topic: str, partition: int) -> bool | None:
        """Whether a consumer position of ``topic`` is this stage's to report (None: not a
        topic of this stage)."""
        if topic == self.topic:
            return partition in self.engines
        if topic == self.partials_topic:
            return self.store is not None and partition == self.stage2_partition
        return None

    def ready(self) -> bool:
        """Recovered, every owned source partition caught up, and (when this worker holds
        stage 2) a complete snapshot from every caught-up source partition."""
        if self.recovering:
            return False
        if not all(self._caught_up.get(p, False) for p in self.engines):
            return False
        store = self.store
        if store is None:
            return True
        if not store.complete(self.settings.partitions):
            return False
        lag = self.worker._lag([self.partials_topic], self.stage2_partition)
        return lag is not None and lag <= self.settings.ready_max_lag

    # -- outputs ----------------------------------------------------------------------------------

    def read_clock_us(self) -> int:
        if self.settings.clock == "stream":
            return 0 if self.store is None else self.store.stream_time_us
        return round(time.time() * US)

    def readings(self) -> Iterator[CustomerReading]:
        store = self.store
        if store is not None:
            yield from store.read(self.read_clock_us(), self.settings.max_segments)

    def current_readings(self) -> Iterator[CustomerReading]:
        """What /metrics exports: nothing while the worker is not ready."""
        if self.worker.ready():
            yield from self.readings()


__all__ = ["STAGE2_KEY", "CustomerStage"]
