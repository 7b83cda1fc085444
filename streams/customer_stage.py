"""The Faust layer of churn and retention (SPEC §4): ``customer-lifecycle`` end to end.

The same two stages as tickets (:mod:`streams.stage1`, :mod:`streams.stage2`), with the same
persistence mechanisms (:mod:`streams.changelog`), on topics and a table of their own:

1. Stage 1: records of the ``customer-lifecycle`` topic (keyed by ``customer_id``) reach
   :meth:`CustomerStage.process` through the worker's input agent. Per owned partition of
   *that topic* a :class:`~streams.core.customers.CustomerEngine` keeps customer states in the
   changelogged ``customers`` table (record cache written before every offset commit,
   checkpoints in ``<app>-customers-checkpoints``) and derives partials in memory, sent as
   absolute values to ``<app>-customer-partials``; after every recovery it rebuilds them from
   the table and re-sends a complete snapshot.
2. Stage 2: every customer partial goes to one partition of ``<app>-customer-partials`` (so one
   worker sees every segment and caps the label exactly); its owner merges them into a
   :class:`~streams.core.customers.CustomerKpiMerge` and is the only worker that exports and
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

from streams.changelog import FaustStateStore, RecoveryAwareTable, StateLog
from streams.core.customers import (
    CustomerBatch,
    CustomerEngine,
    CustomerKpiMerge,
    CustomerOutcome,
    CustomerReading,
    CustomerState,
    customer_batches,
)
from streams.core.units import US, to_us
from streams.engine_stage import EngineStage
from streams.events import CustomerLifecycle
from streams.faust_app import internal_topic
from streams.outputs.prometheus import KpiCollector

if TYPE_CHECKING:
    from streams.app import KpiWorker

log = logging.getLogger(__name__)

_STATE_DECODER = msgspec.msgpack.Decoder(CustomerState)
_BATCH_DECODER = msgspec.msgpack.Decoder(CustomerBatch)
_BATCH_ENCODER = msgspec.msgpack.Encoder()
STAGE2_KEY = "customers"  # the key (and routing hash) of every customer partials message


class CustomerStage(EngineStage[CustomerEngine]):
    """Stage 1 and stage 2 of customers inside one worker process."""

    rebuild_label = "customer rebuild of partition"

    def __init__(self, worker: KpiWorker, stage2_partition: int) -> None:
        self.topic = worker.settings.topic_customer_lifecycle
        super().__init__(worker, [self.topic])
        self.config = self.settings.customer_config()
        self.stage2_partition = stage2_partition
        self.merge: CustomerKpiMerge | None = None  # while this worker owns stage 2
        worker.registry.register(KpiCollector(self.current_readings))
        self.recovered_message = (
            f"customers: stage 1 owns {self.topic} partitions %s; recovered %d customer "
            "records (%d customers) from checkpoints %s"
        )

    def new_engine(self, partition: int) -> CustomerEngine:
        return CustomerEngine(partition, self.log.store, self.config)

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
            on_recovered=self.recovered,
            on_revoked=self.revoked,
            on_assigned=self._assigned,
            checkpoint_topic=self.checkpoint_topic.get_topic_name(),
            bootstrap=s.kafka_bootstrap,
            read_at_start=s.recovery_read_at_start,
        )
        app.tables.add(self.table)
        store = FaustStateStore(self.table, _STATE_DECODER)
        self.log = StateLog("customers", app, self.table, store, self.checkpoint_topic)
        app.agent(self.partials, name="merge-customer-partials")(self.worker._merge_partials)
        app.timer(s.flush_interval, name="flush-customer-partials")(self._flush_partials)
        app.timer(1.0, name="checkpoint-customers")(self.checkpoint)

    @property
    def partials_topic(self) -> str:
        return self.partials.get_topic_name()

    # -- stage 1 --------------------------------------------------------------------------------

    def process(self, event: CustomerLifecycle, partition: int) -> None:
        """Apply one decoded lifecycle event of an owned partition."""
        engine = self.engines[partition]
        at_us = to_us(event.occurred_at)
        clock = self.worker.clock.engine_us(max(engine.stream_time_us, at_us))
        result = engine.process(event, clock)
        health = self.worker.health
        health.saw_event(self.topic, at_us / US)
        if result.late:
            health.late.labels(self.topic).inc()
        if result.outcome is CustomerOutcome.DUPLICATE:
            health.duplicate.labels(self.topic).inc()
        engine.housekeeping(clock)

    async def _flush_partials(self) -> None:
        """Send what changed, as absolute values, to the one stage-2 partition (coalesced
        while a partition catches up, as for tickets: EngineStage.due)."""
        for engine, was, caught_up in self.due(time.monotonic()):
            partition = engine.partition
            # Fold expired buckets and retire customers in quiet partitions too (wall clock);
            # the table writes reach the changelog before the next offset commit.
            engine.housekeeping(self.worker.clock.engine_us(engine.stream_time_us))
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
        self.merge = CustomerKpiMerge(self.config) if owner else None
        self.rebalanced()
        if owner:
            log.info("customers: stage 2 owns partial partition %d", self.stage2_partition)

    def apply_partial(self, partition: int, raw: bytes) -> None:
        merge = self.merge
        if merge is None or partition != self.stage2_partition:
            log.debug("skipping a customer partial of partition %d: not owned", partition)
            return  # revoked while in flight; the new owner applies it
        merge.apply_batch(_BATCH_DECODER.decode(raw))

    def owned_tps(self) -> list[TP]:
        """The partitions this stage reads, for the worker's broker probe."""
        tps = [TP(self.topic, p) for p in list(self.engines)]
        if self.merge is not None:
            tps.append(TP(self.partials_topic, self.stage2_partition))
        return tps

    def owns_position(self, topic: str, partition: int) -> bool | None:
        """Whether a consumer position of ``topic`` is this stage's to report (None: not a
        topic of this stage)."""
        if topic == self.topic:
            return partition in self.engines
        if topic == self.partials_topic:
            return self.merge is not None and partition == self.stage2_partition
        return None

    def ready(self) -> bool:
        """Recovered, every owned source partition caught up, and (when this worker holds
        stage 2) a complete snapshot from every caught-up source partition."""
        if not super().ready():
            return False
        merge = self.merge
        if merge is None:
            return True
        if not merge.complete(self.settings.partitions):
            return False
        lag = self.worker.progress.lag([self.partials_topic], self.stage2_partition)
        return lag is not None and lag <= self.settings.ready_max_lag

    # -- outputs ----------------------------------------------------------------------------------

    def readings(self) -> Iterator[CustomerReading]:
        merge = self.merge
        if merge is not None:
            now_us = self.worker.clock.read_us(merge.stream_time_us)
            yield from merge.read(now_us, self.settings.max_segments)

    def current_readings(self) -> Iterator[CustomerReading]:
        """What /metrics exports: nothing while the worker is not ready."""
        if self.worker.ready():
            yield from self.readings()


__all__ = ["STAGE2_KEY", "CustomerStage"]
