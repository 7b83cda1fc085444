"""Stage 1 of the tickets in the worker: input records in, partials out.

Per owned input partition a :class:`~streams.core.ticket_engine.TicketEngine` keeps ticket
states in the changelogged ``tickets`` table (:mod:`streams.changelog`: record cache written
before every offset commit, checkpoints in ``<app>-tickets-checkpoints``) and derives partial
aggregates in memory. :meth:`TicketStage1.flush_partials` sends the partials that changed to
``<app>-kpi-partials`` as *absolute values*, one message per (source partition, dimension)
(:mod:`streams.core.partials`); after every recovery the engines rebuild their partials from
the tickets and re-send them all, so a crash between a table write and a send loses nothing,
and a replay counts nothing twice.

Records of ``customer-lifecycle`` go to :mod:`streams.customer_stage` after decoding.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import faust
import msgspec

from streams.changelog import FaustStateStore, RecoveryAwareTable, StateLog
from streams.core.partials import batch_updates
from streams.core.ticket import TicketState
from streams.core.ticket_engine import InputRecord, Outcome, TicketEngine
from streams.core.units import US, to_us
from streams.dead_letters import held_letter, letter
from streams.decoding import Rejection, decode
from streams.events import CustomerLifecycle
from streams.faust_app import internal_topic

if TYPE_CHECKING:
    from streams.app import KpiWorker

log = logging.getLogger(__name__)

_TICKET_DECODER = msgspec.msgpack.Decoder(TicketState)
_BATCH_ENCODER = msgspec.msgpack.Encoder()
_LAGGING_FLUSH_S = 1.0


class FaustTicketStore(FaustStateStore[TicketState]):
    """TicketStore over the Faust ``tickets`` table (:class:`FaustStateStore`)."""

    def __init__(self, table: faust.Table[bytes, bytes]) -> None:
        super().__init__(table, _TICKET_DECODER)


class TicketStage1:
    """The ticket engines of the input partitions this worker owns."""

    def __init__(self, worker: KpiWorker) -> None:
        self.worker = worker
        self.settings = worker.settings
        self.config = worker.config
        # The ticket topics (co-partitioned, keyed by ticket); customer-lifecycle has its own
        # stage (streams.customer_stage), keyed by customer.
        self.topics = {
            topic: kind
            for topic, kind in worker.input_kinds.items()
            if topic != self.settings.topic_customer_lifecycle
        }
        self.engines: dict[int, TicketEngine] = {}
        self.recovering = True  # from a rebalance until the engines are rebuilt
        self.caught_up: dict[int, bool] = {}  # input partition -> last flag sent
        self._flushed_at: dict[int, float] = {}  # input partition -> monotonic time

    # -- construction -------------------------------------------------------------------------

    def build(self, app: faust.App, partials: faust.TopicT) -> None:
        s = self.settings
        self.partials = partials
        self.checkpoint_topic = internal_topic(app, f"{s.app_id}-tickets-checkpoints", s.partitions)
        self.table = RecoveryAwareTable(
            app,
            name="tickets",
            partitions=s.partitions,
            key_type=bytes,  # bytes key/value types make Faust use the raw codec
            value_type=bytes,
            beacon=app.tables.beacon,
            source_topics=self.topics,
            on_recovered=self._recovered,
            on_revoked=self._revoked,
            on_assigned=self.worker.assigned,
            read_checkpoints=lambda partitions: self.log.read_checkpoints(partitions),
        )
        app.tables.add(self.table)
        self.log = StateLog(
            "tickets",
            app,
            self.table,
            FaustTicketStore(self.table),
            self.checkpoint_topic,
            s.kafka_bootstrap,
        )
        app.timer(s.flush_interval, name="flush-partials")(self.flush_partials)
        app.timer(1.0, name="checkpoint-tickets")(self._checkpoint)

    @property
    def store(self) -> FaustStateStore[TicketState]:
        """The ticket record cache (tests substitute a faulty one)."""
        return self.log.store

    @store.setter
    def store(self, store: FaustStateStore[TicketState]) -> None:
        self.log.store = store

    # -- input records --------------------------------------------------------------------------

    def handle_input(
        self, topic: str, partition: int, offset: int, raw: bytes
    ) -> list[tuple[bytes, bytes]]:
        """Process one input record; returns dead letters to send."""
        worker = self.worker
        customers = topic == worker.customers.topic
        if not (worker.customers.owns(partition) if customers else partition in self.engines):
            # A partition revoked in a rebalance while its records were in flight: its new
            # owner processes them from the committed offset. Touching its tickets or sending
            # its partials here could overwrite the new owner's newer values.
            log.debug("skipping %s[%d]@%d: partition not owned", topic, partition, offset)
            return []
        worker.progress.processed(topic, partition, offset)
        now = time.time()
        kind = worker.input_kinds.get(topic, topic)
        decoded = decode(
            kind,
            raw,
            now=now,
            future_tolerance_seconds=self.settings.future_tolerance,
            max_bytes=self.settings.max_event_bytes,
        )
        health = worker.health
        if isinstance(decoded, Rejection):
            health.rejected.labels(topic, decoded.reason).inc()
            return [
                letter(decoded, topic=topic, partition=partition, offset=offset, raw=raw, now=now)
            ]
        if isinstance(decoded, CustomerLifecycle):
            worker.customers.process(decoded, partition)
            return []

        engine = self.engines[partition]
        at_us = to_us(decoded.occurred_at)
        clock = worker.clock.engine_us(max(engine.stream_time_us, at_us))
        result = engine.process(decoded, clock, InputRecord(topic, partition, offset, raw))
        health.saw_event(topic, at_us / US)
        worker.cumulative.count(result.derived)
        if result.late:
            health.late.labels(topic).inc()
        if result.outcome is Outcome.DUPLICATE:
            health.duplicate.labels(topic).inc()
        letters = []
        for held in result.rejected:
            health.rejected.labels(held.topic, "before_created").inc()
            letters.append(held_letter(held, "before_created", now))
        for orphan in engine.housekeeping(clock):
            health.orphaned.labels(orphan.topic).inc()
            health.rejected.labels(orphan.topic, "orphan").inc()
            letters.append(held_letter(orphan, "orphan", now))
        return letters

    def rebuild(self, partition: int) -> None:
        """Recompute one engine's partials from the ticket table (after a contained error:
        the engine may have applied part of the record)."""
        if partition not in self.engines:
            return
        engine = TicketEngine(partition, self.store, self.config, self.worker.firsts)
        try:
            engine.rebuild(self.worker.clock.rebuild_us())
        except Exception as error:  # keep the engine we have; the next recovery rebuilds
            self.worker.guard.report(error, "events", f"rebuild of partition {partition}")
            return
        self.engines[partition] = engine

    # -- rebalances -----------------------------------------------------------------------------

    def _recovered(self, partitions: set[int]) -> None:
        for partition in list(self.engines):
            if partition not in partitions:
                del self.engines[partition]
        by_partition = self.log.states_by_partition(partitions)
        clock = self.worker.clock.rebuild_us()
        for partition, states in by_partition.items():
            engine = TicketEngine(partition, self.store, self.config, self.worker.firsts)
            self.engines[partition] = engine
            engine.rebuild(clock, states)
        self.recovering = False
        self.log.recovered()
        log.info(
            "stage 1 owns input partitions %s; recovered %d ticket records (%d tickets) "
            "from checkpoints %s",
            sorted(partitions),
            self.table.recovered_records,
            sum(len(states) for states in by_partition.values()),
            self.table.checkpoints,
        )

    def _revoked(self, partitions: set[int]) -> None:
        # Write what the record cache holds for them before the new owner recovers them
        # (harmless if their offsets are not committed: replayed events are duplicates).
        self.store.flush(partitions)  # revoked at on_partitions_revoked already
        for partition in partitions:
            self.engines.pop(partition, None)

    def assigned(self) -> None:
        """A rebalance: recovering until the engines are rebuilt; every caught-up flag is
        sent again."""
        self.recovering = True
        self.caught_up.clear()

    async def revoke_all(self) -> None:
        """A rebalance starts (eager: every partition is revoked, before the group re-forms).
        Stage 1 stops here: its cached ticket writes reach the log now, before any new owner
        can recover the partition or send its own snapshot."""
        self.engines.clear()
        self.recovering = True
        await self.write()

    async def write(self) -> None:
        """Write the ticket record cache to the changelog (:meth:`StateLog.write`)."""
        await self.log.write()

    async def _checkpoint(self) -> None:
        if not self.recovering:
            await self.log.checkpoint(set(self.engines), self.settings.checkpoint_records)

    # -- partials ---------------------------------------------------------------------------------

    async def flush_partials(self) -> None:
        # Buffered sends: the consumer flushes the producer before it commits offsets, and a
        # partial lost in a crash is re-sent by the rebuild after recovery. One message per
        # (source partition, dimension) carries every partial that changed.
        # While a partition catches up (its KPIs are withheld anyway) it coalesces for
        # _LAGGING_FLUSH_S instead: far fewer, larger messages.
        worker = self.worker
        now = time.monotonic()
        for engine in list(self.engines.values()):
            was = self.caught_up.get(engine.partition)
            caught_up = worker.progress.caught_up(self.topics, engine.partition, bool(was))
            last = self._flushed_at.get(engine.partition, 0.0)
            if not caught_up and was is False and now - last < _LAGGING_FLUSH_S:
                continue
            self.caught_up[engine.partition] = caught_up
            self._flushed_at[engine.partition] = now
            updates = engine.flush()
            if not updates and was == caught_up:
                continue
            for batch in batch_updates(
                engine.partition,
                updates,
                engine.stream_time_us,
                caught_up=caught_up,
                announce=was != caught_up,
            ):
                self.partials.send_soon(
                    key=batch.dimension.encode(),
                    value=_BATCH_ENCODER.encode(batch),
                    partition=worker.stage2.route(batch.dimension),
                )

    def ready(self) -> bool:
        """Recovered, and every owned input partition caught up at its last flush."""
        return not self.recovering and all(self.caught_up.get(p, False) for p in self.engines)


__all__ = ["FaustTicketStore", "TicketStage1"]
