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
from streams.engine_stage import EngineStage, paused_gc
from streams.events import CustomerLifecycle
from streams.faust_app import internal_topic

if TYPE_CHECKING:
    from streams.app import KpiWorker

log = logging.getLogger(__name__)

_TICKET_DECODER = msgspec.msgpack.Decoder(TicketState)
_BATCH_ENCODER = msgspec.msgpack.Encoder()


class FaustTicketStore(FaustStateStore[TicketState]):
    """TicketStore over the Faust ``tickets`` table (:class:`FaustStateStore`)."""

    def __init__(self, table: faust.Table[bytes, bytes]) -> None:
        super().__init__(table, _TICKET_DECODER)


class TicketStage1(EngineStage[TicketEngine]):
    """The ticket engines of the input partitions this worker owns."""

    recovered_message = (
        "stage 1 owns input partitions %s; recovered %d ticket records (%d tickets) "
        "from checkpoints %s"
    )

    def __init__(self, worker: KpiWorker) -> None:
        # The ticket topics (co-partitioned, keyed by ticket); customer-lifecycle has its own
        # stage (streams.customer_stage), keyed by customer.
        customers = worker.settings.topic_customer_lifecycle
        super().__init__(worker, [topic for topic in worker.input_kinds if topic != customers])
        self.config = worker.config
        # Stream clock: input partition -> topic -> the latest event time read from it since
        # the last rebalance (Progress.watermark).
        self.seen_us: dict[int, dict[str, int]] = {}

    def rebalanced(self) -> None:
        super().rebalanced()
        self.seen_us.clear()

    def new_engine(self, partition: int) -> TicketEngine:
        return TicketEngine(partition, self.store, self.config, self.worker.firsts)

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
            on_recovered=self.recovered,
            on_revoked=self.revoked,
            on_assigned=self.worker.assigned,
            checkpoint_topic=self.checkpoint_topic.get_topic_name(),
            bootstrap=s.kafka_bootstrap,
            read_at_start=s.recovery_read_at_start,
        )
        app.tables.add(self.table)
        self.log = StateLog(
            "tickets",
            app,
            self.table,
            FaustTicketStore(self.table),
            self.checkpoint_topic,
        )
        app.timer(s.flush_interval, name="flush-partials")(self.flush_partials)
        app.timer(1.0, name="checkpoint-tickets")(self.checkpoint)

    @property
    def store(self) -> FaustStateStore[TicketState]:
        """The ticket record cache (tests substitute a faulty one)."""
        store: FaustStateStore[TicketState] = self.log.store
        return store

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
        stream_us = max(engine.stream_time_us, at_us)
        if worker.clock.follows_stream:
            seen = self.seen_us.setdefault(partition, {})
            seen[topic] = max(seen.get(topic, 0), at_us)
            stream_us = worker.progress.watermark(self.topics, partition, seen, stream_us)
        clock = worker.clock.engine_us(stream_us)
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

    # -- partials ---------------------------------------------------------------------------------

    async def flush_partials(self) -> None:
        # Buffered sends: the consumer flushes the producer before it commits offsets, and a
        # partial lost in a crash is re-sent by the rebuild after recovery. One message per
        # (source partition, dimension) carries every partial that changed; a partition
        # that catches up is flushed less often (EngineStage.due).
        for engine, was, caught_up in self.due(time.monotonic()):
            with paused_gc():  # after a rebuild: a snapshot of every partial at once
                self._flush_engine(engine, was, caught_up)

    def _flush_engine(self, engine: TicketEngine, was: bool | None, caught_up: bool) -> None:
        updates = engine.flush()
        if not updates and was == caught_up:
            return
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
                partition=self.worker.stage2.route(batch.dimension),
            )


__all__ = ["FaustTicketStore", "TicketStage1"]
