"""The Faust layer: app, agents, tables and timers around the pure KPI core.

Two stages, both partitioned, both on Kafka:

1. ``process_events`` consumes the co-partitioned input topics (keyed by ticket). Per input
   partition a :class:`~streams.core.partition.PartitionEngine` keeps ticket states in the
   changelogged ``tickets`` table and derives partial aggregates in memory. A timer sends the
   partials that changed to the internal ``<app>-kpi-partials`` topic as *absolute values*;
   after every recovery the engine rebuilds its partials from the tickets and re-sends them
   all, so a crash between a table write and a send loses nothing, and a replay counts
   nothing twice.
   One message per flush per (source partition, dimension) carries all changed partials
   (:class:`~streams.core.partition.PartialBatch`).
2. ``merge_partials`` consumes that topic, partitioned by dimension (overall/team/channel/
   priority), and merges the latest partial per (group, source partition, bucket) into
   rolling windows (:class:`~streams.core.store.KpiStore`). Stage 2 keeps no durable state:
   after every rebalance every stage-1 partition re-sends a complete snapshot (a reset
   followed by all its partials), so stage 2 recovers from state, not from history. What a
   worker owns in stage 2 is exactly what it exports on ``/metrics`` and publishes to
   ``support-kpis``.

``customer-lifecycle`` (keyed by customer) goes through the same agents into a stage of its
own, :mod:`streams.customer_stage`, with its own table, partials topic and readiness; the
changelogged tables of both share :mod:`streams.changelog`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Iterable, Iterator
from typing import Any

import faust
import msgspec
from aiokafka.partitioner import murmur2
from faust.types import TP
from prometheus_client import CollectorRegistry, Gauge, disable_created_metrics
from prometheus_client.exposition import choose_encoder

from streams.changelog import FaustStateStore, RecoveryAwareTable, StateLog, internal_topic
from streams.consumer import KpiTransport
from streams.core.customers import CustomerReading
from streams.core.firsts import FirstDerivations
from streams.core.kpis import EngineConfig
from streams.core.partition import (
    DIMENSIONS,
    Outcome,
    PartialBatch,
    PartitionEngine,
    Source,
    batch_updates,
)
from streams.core.store import KpiReading, KpiStore
from streams.core.ticket import Held, TicketState
from streams.core.units import US, to_us
from streams.customer_stage import STAGE2_KEY, CustomerStage
from streams.decoding import Rejection, RejectionReason, decode
from streams.events import CustomerLifecycle
from streams.outputs.cumulative import CumulativeKpis
from streams.outputs.guard import RecordGuard
from streams.outputs.health import ConsumerLagCollector, PipelineHealth
from streams.outputs.prometheus import KpiCollector
from streams.outputs.publisher import KpiPublisher
from streams.records import dead_letter, dead_letter_key, encode_record
from streams.settings import Settings

log = logging.getLogger(__name__)

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series

_TICKET_DECODER = msgspec.msgpack.Decoder(TicketState)
_LAGGING_FLUSH_S = 1.0
_BROKER_PROBE_S = 2.0  # how often the worker checks that the broker answers
_BATCH_DECODER = msgspec.msgpack.Decoder(PartialBatch)
_BATCH_ENCODER = msgspec.msgpack.Encoder()


def dimension_partition(dimension: str, partitions: int) -> int:
    """Stage-2 routing: every group of one dimension goes to the same stage-2 partition, so
    one worker sees all teams and can cap the team label exactly (SPEC §5 label bounds).
    The same murmur2 hash as Kafka's default partitioner on the key ``dimension``."""
    hashed: int = murmur2(dimension.encode())
    return (hashed & 0x7FFFFFFF) % partitions


class FaustTicketStore(FaustStateStore[TicketState]):
    """TicketStore over the Faust ``tickets`` table (:class:`FaustStateStore`)."""

    def __init__(self, table: faust.Table[bytes, bytes]) -> None:
        super().__init__(table, _TICKET_DECODER)


def _credentials(settings: Settings) -> Any:
    protocol = settings.kafka_security_protocol
    context = None
    if protocol.endswith("SSL"):
        cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        context = ssl.create_default_context(cafile=cafile)
    if protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password else None,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


class KpiWorker:
    """Builds the Faust app for one worker process and holds its in-memory engine state."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.config: EngineConfig = settings.engine_config()
        self.input_kinds = settings.input_topics()
        # The ticket topics (co-partitioned, keyed by ticket); customer-lifecycle has its own
        # stage (streams.customer_stage), keyed by customer.
        self.ticket_kinds = {
            topic: kind
            for topic, kind in self.input_kinds.items()
            if topic != settings.topic_customer_lifecycle
        }
        self.registry = registry or CollectorRegistry(auto_describe=False)
        self.health = PipelineHealth(self.registry, self.input_kinds)
        self.guard = RecordGuard(self.registry, self.health.rejected)
        self.registry.register(KpiCollector(self.current_readings))
        Gauge(
            "support_pipeline_ready",
            "1 once this worker's KPIs are complete and current; 0 while it recovers or "
            "catches up (its KPI gauges are withheld then).",
            registry=self.registry,
        ).set_function(lambda: 1.0 if self.ready() else 0.0)
        self.registry.register(ConsumerLagCollector(self.consumer_lag))
        self.cumulative = CumulativeKpis(self.registry, self.config.sla_targets, settings.max_teams)
        self.firsts = FirstDerivations()  # outlives engines: no double count after a rebuild
        self.engines: dict[int, PartitionEngine] = {}
        self.kpi_stores: dict[int, KpiStore] = {}
        # stage-2 partition -> the dimensions routed to it
        self.stage2_dimensions: dict[int, list[str]] = {}
        for dimension in DIMENSIONS:
            target = dimension_partition(dimension, settings.partitions)
            self.stage2_dimensions.setdefault(target, []).append(dimension)
        self.publisher = KpiPublisher()
        self._positions: dict[tuple[str, int], int] = {}
        self._recovering = True  # from a rebalance until stage 1 has rebuilt its engines
        self._broker_answered = time.monotonic()  # last answer to the broker probe
        self._caught_up: dict[int, bool] = {}  # stage-1 partition -> last flag sent
        self._flushed_at: dict[int, float] = {}  # stage-1 partition -> monotonic time
        self.customers = CustomerStage(self, dimension_partition(STAGE2_KEY, settings.partitions))
        self.app = self._build_app()

    # -- construction -------------------------------------------------------------------------

    def _build_app(self) -> faust.App:
        s = self.settings
        app = faust.App(
            s.app_id,
            broker=[f"kafka://{server.strip()}" for server in s.kafka_bootstrap.split(",")],
            broker_credentials=_credentials(s),
            broker_session_timeout=s.session_timeout,
            broker_heartbeat_interval=min(3.0, s.session_timeout / 3),
            store=s.store,
            topic_partitions=s.partitions,
            topic_replication_factor=s.replication_factor,
            topic_allow_declare=s.create_topics,
            key_serializer="raw",
            value_serializer="raw",
            web_port=s.web_port,
            web_bind=s.web_host,
            web_in_thread=False,
            # Serve /metrics (and Faust's plain "/" status page) only: the built-in views list
            # the tables and read their keys (/table), show the cluster topology (/router),
            # sensor statistics and the assignment (/, /assignment) or the service graph.
            web_tables_enabled=False,
            web_router_enabled=False,
            web_stats_enabled=False,
            web_graph_enabled=False,
            web_metrics_enabled=False,
            env={},  # Faust's own APP_* variables (APP_WEB_TABLES_ENABLED=1 ...) are ignored
            # Faust checks that the changelog offsets a table has applied are <= the topic's
            # end. With the in-memory store the check only runs across rebalances inside one
            # process, where a broker whose end offset lags its last batch (Tansu) makes it
            # fail and the whole worker exit. Lost broker data is reported by the lag check
            # (support_offset_resets_total) instead. RocksDB keeps the check (local files
            # ahead of the changelog must stop the worker).
            recovery_consistency_check=not s.store.startswith("memory"),
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            autodiscover=False,
            table_standby_replicas=0,
        )
        app.transport = KpiTransport(
            app.conf.broker_consumer,
            app,
            fetch_max_wait_ms=max(1, round(s.fetch_max_wait * 1000)),
            before_commit=self._before_commit,
        )
        create = s.create_topics
        self.inputs = app.topic(
            *self.input_kinds,
            partitions=s.partitions,
            internal=create,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.partials = internal_topic(app, f"{s.app_id}-kpi-partials", s.partitions)
        self.checkpoint_topic = internal_topic(app, f"{s.app_id}-tickets-checkpoints", s.partitions)
        self.kpi_topic = app.topic(
            s.topic_kpis,
            partitions=s.partitions,
            internal=create,
            compacting=True,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.dlq_topic = app.topic(
            s.topic_dlq,
            partitions=s.partitions,
            internal=create,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.tickets = RecoveryAwareTable(
            app,
            name="tickets",
            partitions=s.partitions,
            key_type=bytes,  # bytes key/value types make Faust use the raw codec
            value_type=bytes,
            beacon=app.tables.beacon,
            source_topics=self.ticket_kinds,
            on_recovered=self._tickets_recovered,
            on_revoked=self._tickets_revoked,
            on_assigned=self._assigned,
            read_checkpoints=lambda partitions: self.ticket_log.read_checkpoints(partitions),
        )
        app.tables.add(self.tickets)
        app.on_partitions_revoked.connect(self._on_partitions_revoked)
        self.ticket_log = StateLog(
            "tickets",
            app,
            self.tickets,
            FaustTicketStore(self.tickets),
            self.checkpoint_topic,
            s.kafka_bootstrap,
        )
        self.customers.build(app)
        app.agent(self.inputs, name="process-events")(self._process_events)
        app.agent(self.partials, name="merge-partials")(self._merge_partials)
        app.timer(s.flush_interval, name="flush-partials")(self._flush_partials)
        app.timer(s.publish_interval, name="publish-kpis")(self._publish_kpis)
        app.timer(1.0, name="checkpoint-tickets")(self._checkpoint_tickets)
        app.timer(_BROKER_PROBE_S, name="probe-broker")(self._probe_broker)
        registry = self.registry

        async def metrics_page(web: Any, request: Any) -> Any:
            # Text format 0.0.4, or OpenMetrics when the Accept header asks for it, as
            # prometheus-client's own handler does.
            encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
            return web.bytes(encoder(registry), headers={"Content-Type": content_type})

        app.page("/metrics")(metrics_page)

        async def declare_output_topics() -> None:
            # Agents declare their input topics; topics the worker only writes to are
            # declared here so they get the configured partitions and compaction.
            topics = (
                self.kpi_topic,
                self.dlq_topic,
                self.checkpoint_topic,
                self.customers.checkpoint_topic,
            )
            for topic in topics:
                await topic.maybe_declare()

        app.task(declare_output_topics)
        return app

    @property
    def ticket_store(self) -> FaustStateStore[TicketState]:
        """The ticket record cache (tests substitute a faulty one)."""
        return self.ticket_log.store

    @ticket_store.setter
    def ticket_store(self, store: FaustStateStore[TicketState]) -> None:
        self.ticket_log.store = store

    # -- clocks ---------------------------------------------------------------------------------

    def clock_us(self, stream_time_us: int) -> int:
        if self.settings.clock == "stream":
            return stream_time_us
        return round(time.time() * US)

    def read_clock_us(self) -> int:
        if self.settings.clock == "stream":
            return max((store.stream_time_us for store in self.kpi_stores.values()), default=0)
        return round(time.time() * US)

    # -- stage 1 --------------------------------------------------------------------------------

    async def _process_events(self, stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            message = event.message
            for key, value in self._contained_input(
                message.topic, message.partition, message.offset, event.value or b""
            ):
                await self.dlq_topic.send(key=key, value=value)
            # With a backlog the stream never suspends on its own: yield so that stage 2,
            # the flush timer and /metrics keep up instead of waiting for the backlog's end.
            await asyncio.sleep(0)

    def _contained_input(
        self, topic: str, partition: int, offset: int, raw: bytes
    ) -> list[tuple[bytes, bytes]]:
        """:meth:`_handle_input`; an unexpected exception dead-letters the record instead.

        The engine may have applied part of the record: its partials are rebuilt from the
        ticket table (the durable state), as after a recovery.
        """
        try:
            return self._handle_input(topic, partition, offset, raw)
        except Exception as error:
            letter = self.guard.dead_letter(
                error, stage="events", topic=topic, partition=partition, offset=offset, raw=raw
            )
            if topic == self.customers.topic:
                self.customers.rebuild(partition)
            else:
                self._rebuild_engine(partition)
            return [letter]

    def _rebuild_engine(self, partition: int) -> None:
        if partition not in self.engines:
            return
        engine = PartitionEngine(partition, self.ticket_store, self.config, self.firsts)
        try:
            engine.rebuild(self.clock_us(0) if self.settings.clock == "wall" else None)
        except Exception as error:  # keep the engine we have; the next recovery rebuilds
            self.guard.report(error, "events", f"rebuild of partition {partition}")
            return
        self.engines[partition] = engine

    def _handle_input(
        self, topic: str, partition: int, offset: int, raw: bytes
    ) -> list[tuple[bytes, bytes]]:
        """Process one input record; returns dead letters to send."""
        customers = topic == self.customers.topic
        if not (self.customers.owns(partition) if customers else partition in self.engines):
            # A partition revoked in a rebalance while its records were in flight: its new
            # owner processes them from the committed offset. Touching its tickets or sending
            # its partials here could overwrite the new owner's newer values.
            log.debug("skipping %s[%d]@%d: partition not owned", topic, partition, offset)
            return []
        self._positions[(topic, partition)] = offset + 1
        now = time.time()
        kind = self.input_kinds.get(topic, topic)
        decoded = decode(
            kind,
            raw,
            now=now,
            future_tolerance_seconds=self.settings.future_tolerance,
            max_bytes=self.settings.max_event_bytes,
        )
        if isinstance(decoded, Rejection):
            self.health.rejected.labels(topic, decoded.reason).inc()
            record = dead_letter(
                decoded,
                topic=topic,
                partition=partition,
                offset=offset,
                original=raw,
                rejected_at=now,
            )
            return [(dead_letter_key(topic, partition, offset), encode_record(record))]
        if isinstance(decoded, CustomerLifecycle):
            self.customers.process(decoded, partition)
            return []

        engine = self.engines[partition]
        at_us = to_us(decoded.occurred_at)
        clock = self.clock_us(max(engine.stream_time_us, at_us))
        result = engine.process(decoded, clock, Source(topic, partition, offset, raw))
        self.health.saw_event(topic, at_us / US)
        self.cumulative.count(result.derived)
        if result.late:
            self.health.late.labels(topic).inc()
        if result.outcome is Outcome.DUPLICATE:
            self.health.duplicate.labels(topic).inc()
        letters = [self._held_letter(held, "before_created", now) for held in result.rejected]
        for orphan in engine.housekeeping(clock):
            self.health.orphaned.labels(orphan.topic).inc()
            letters.append(self._held_letter(orphan, "orphan", now))
        return letters

    def _held_letter(self, held: Held, reason: RejectionReason, now: float) -> tuple[bytes, bytes]:
        """Dead letter of an event the engine could not apply (before_created or orphan)."""
        self.health.rejected.labels(held.topic, reason).inc()
        if reason == "before_created":
            rejection = Rejection(
                reason, "occurred_at", "the event is earlier than its ticket's creation"
            )
        else:
            rejection = Rejection(
                reason, "ticket_id", "the ticket was not created within the orphan hold time"
            )
        record = dead_letter(
            rejection,
            topic=held.topic,
            partition=held.partition,
            offset=held.offset,
            original=held.raw,
            rejected_at=now,
        )
        return dead_letter_key(held.topic, held.partition, held.offset), encode_record(record)

    def _tickets_recovered(self, partitions: set[int]) -> None:
        for partition in list(self.engines):
            if partition not in partitions:
                del self.engines[partition]
        by_partition: dict[int, list[tuple[str, TicketState]]] = {p: [] for p in partitions}
        for key, state in self.ticket_store.states():  # decode every ticket once
            mine = by_partition.get(state.partition)
            if mine is None:
                self.tickets.data.pop(key.encode(), None)  # stale local copy; no changelog write
            else:
                mine.append((key, state))
        wall = self.settings.clock == "wall"
        for partition, states in by_partition.items():
            engine = PartitionEngine(partition, self.ticket_store, self.config, self.firsts)
            self.engines[partition] = engine
            engine.rebuild(self.clock_us(0) if wall else None, states)
        self._recovering = False
        self.ticket_log.recovered()
        log.info(
            "stage 1 owns input partitions %s; recovered %d ticket records (%d tickets) "
            "from checkpoints %s",
            sorted(partitions),
            self.tickets.recovered_records,
            sum(len(states) for states in by_partition.values()),
            self.tickets.checkpoints,
        )

    def _tickets_revoked(self, partitions: set[int]) -> None:
        # Write what the record cache holds for them before the new owner recovers them
        # (harmless if their offsets are not committed: replayed events are duplicates).
        self.ticket_store.flush(partitions)  # revoked at on_partitions_revoked already
        for partition in partitions:
            self.engines.pop(partition, None)

    async def _on_partitions_revoked(self, *args: Any, **kwargs: Any) -> None:
        """A rebalance starts (eager: every partition is revoked, before the group re-forms).
        Stage 1 stops here: its cached ticket writes and its last partials reach the log
        now, before any new owner can recover the partition or send its own snapshot."""
        self.engines.clear()
        self._recovering = True
        await self._write_tickets()
        await self.customers.revoke_all()

    async def _checkpoint_tickets(self) -> None:
        if not self._recovering:
            await self.ticket_log.checkpoint(set(self.engines), self.settings.checkpoint_records)

    async def _before_commit(self) -> None:
        """Runs just before input offsets are committed: the state they imply goes first."""
        await self._write_tickets()
        await self.customers.log.write()

    async def _write_tickets(self, partitions: set[int] | None = None) -> None:
        """Write the ticket record cache to the changelog (:meth:`StateLog.write`)."""
        await self.ticket_log.write(partitions)

    async def _flush_partials(self) -> None:
        # Buffered sends: the consumer flushes the producer before it commits offsets, and a
        # partial lost in a crash is re-sent by the rebuild after recovery. One message per
        # (source partition, dimension) carries every partial that changed.
        # While a partition catches up (its KPIs are withheld anyway) it coalesces for
        # _LAGGING_FLUSH_S instead: far fewer, larger messages.
        partitions = self.settings.partitions
        now = time.monotonic()
        for engine in list(self.engines.values()):
            was = self._caught_up.get(engine.partition)
            caught_up = self._source_caught_up(engine.partition, bool(was))
            last = self._flushed_at.get(engine.partition, 0.0)
            if not caught_up and was is False and now - last < _LAGGING_FLUSH_S:
                continue
            self._caught_up[engine.partition] = caught_up
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
                    partition=dimension_partition(batch.dimension, partitions),
                )

    def _source_caught_up(
        self, partition: int, was: bool, topics: Iterable[str] | None = None
    ) -> bool:
        """Whether stage 1 of this input partition (of ``topics``, default the ticket topics)
        has (almost) no backlog: lag at most SUPPORT_READY_MAX_LAG to become caught up, more
        than 10x that to stop being so."""
        lag = self._lag(self.ticket_kinds if topics is None else topics, partition)
        if lag is None:
            return False
        limit = self.settings.ready_max_lag
        return lag <= (10 * limit + 10 if was else limit)

    def _lag(self, topics: Iterable[str], partition: int) -> int | None:
        """Records not processed yet in one partition of ``topics`` (None: not known yet)."""
        consumer = self.app.consumer
        committed = getattr(consumer, "_committed_offset", {})
        total = 0
        for topic in topics:
            tp = TP(topic, partition)
            try:
                highwater = consumer.highwater(tp)
            except Exception:  # the consumer does not know this partition yet
                return None
            if highwater is None:
                return None
            position = self._positions.get((topic, partition))
            if position is None:
                position = committed.get(tp) or 0
            total += max(0, highwater - position)
        return total

    async def _probe_broker(self) -> None:
        """Ask the broker for the end offsets of the partitions this worker owns. While it
        does not answer (down, frozen, unreachable) the worker is not ready: its KPIs stop
        following the events without anything else showing it."""
        partials = self.partials.get_topic_name()
        tps = [TP(topic, p) for p in list(self.engines) for topic in self.ticket_kinds]
        tps += [TP(partials, p) for p in list(self.kpi_stores)]
        tps += self.customers.owned_tps()
        if tps:
            try:
                await asyncio.wait_for(
                    self.app.consumer.highwaters(*tps), timeout=self.settings.session_timeout
                )
            except Exception:  # the timeout, or a consumer not started yet
                return
        self._broker_answered = time.monotonic()

    def broker_answering(self) -> bool:
        silent = time.monotonic() - self._broker_answered
        return silent <= self.settings.session_timeout + 2 * _BROKER_PROBE_S

    def ready(self) -> bool:
        """support_pipeline_ready: the broker answers, recovered, stage 1 caught up, and every
        owned stage-2 partition holds a complete snapshot from every caught-up source
        partition."""
        if self._recovering or not self.broker_answering() or not self.customers.ready():
            return False
        if not all(self._caught_up.get(p, False) for p in self.engines):
            return False
        partials = self.partials.get_topic_name()
        for partition, store in list(self.kpi_stores.items()):
            dimensions = self.stage2_dimensions.get(partition, [])
            if not store.complete(dimensions, self.settings.partitions):
                return False
            lag = self._lag([partials], partition)
            if dimensions and (lag is None or lag > self.settings.ready_max_lag):
                return False
        return True

    # -- stage 2 --------------------------------------------------------------------------------

    def _assigned(self, assigned: set[TP]) -> None:
        """A rebalance: stage 2 starts empty for every partials partition it holds; every
        stage-1 partition re-sends a complete snapshot once its recovery completes."""
        partials = self.partials.get_topic_name()
        mine = {tp.partition for tp in assigned if tp.topic == partials}
        self.kpi_stores = {p: KpiStore(self.config) for p in mine}
        self._recovering = True
        self._caught_up.clear()
        self._positions.clear()  # from now on: the committed offsets, then what we process
        self.publisher.forget()
        log.info("stage 2 owns partial partitions %s", sorted(mine))

    async def _merge_partials(self, stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            message = event.message
            self._positions[(message.topic, message.partition)] = message.offset + 1
            for key, value in self._contained_partial(
                message.topic, message.partition, message.offset, event.value
            ):
                await self.dlq_topic.send(key=key, value=value)

    def _contained_partial(
        self, topic: str, partition: int, offset: int, raw: bytes
    ) -> list[tuple[bytes, bytes]]:
        """:meth:`_apply_partial`; an unexpected exception dead-letters the message instead
        (see streams.outputs.guard) and the partition goes on.

        Stage 2 keeps no durable state to rebuild from, and needs none here: a batch carries
        absolute values, so a batch applied only in part leaves the groups it did not reach
        at their previous values, which the source's next update of those groups (or its
        next snapshot, after any rebalance) replaces.
        """
        try:
            if topic == self.customers.partials_topic:
                self.customers.apply_partial(partition, raw)
            else:
                self._apply_partial(partition, raw)
        except Exception as error:
            letter = self.guard.dead_letter(
                error, stage="partials", topic=topic, partition=partition, offset=offset, raw=raw
            )
            return [letter]
        return []

    def _apply_partial(self, partition: int, raw: bytes) -> None:
        store = self.kpi_stores.get(partition)
        if store is None:
            log.debug("skipping a partial of partition %d: not owned", partition)
            return  # revoked while in flight; the new owner applies it
        store.apply_batch(_BATCH_DECODER.decode(raw))

    # -- outputs ----------------------------------------------------------------------------------

    def current_readings(self) -> Iterator[KpiReading]:
        """What /metrics exports: nothing while the worker is not ready (a half-recovered or
        half-caught-up store is never presented as current)."""
        if self.ready():
            yield from self.readings()

    def readings(self) -> Iterator[KpiReading]:
        now_us = self.read_clock_us()
        for store in list(self.kpi_stores.values()):
            yield from store.read(now_us, self.settings.max_teams)

    def consumer_lag(self) -> dict[tuple[str, int], int]:
        lag = {}
        consumer = self.app.consumer
        partials = self.partials.get_topic_name()
        for (topic, partition), position in list(self._positions.items()):
            mine = self.customers.owns_position(topic, partition)
            if mine is None:
                mine = partition in (self.kpi_stores if topic == partials else self.engines)
            if not mine:
                continue
            try:
                highwater = consumer.highwater(TP(topic, partition))
            except Exception:  # the consumer does not know this partition's end yet
                continue
            if highwater is not None:
                if highwater < position:  # the broker lost data; report it once
                    self.health.offsets_went_back(topic, partition, position, highwater)
                    self._positions[(topic, partition)] = position = highwater
                lag[(topic, partition)] = max(0, highwater - position)
        return lag

    async def _publish_kpis(self) -> None:
        if not self.ready():
            return  # publish only complete, current values (the topic keeps the last ones)
        now = time.time()
        try:
            readings: list[KpiReading | CustomerReading] = [*self.readings()]
            readings.extend(self.customers.readings())
            changes = self.publisher.changes(readings, now)
        except Exception as error:  # contained: the next tick tries again
            self.guard.report(error, "publish", "the KPI publish tick, skipped")
            return
        for key, value in changes:
            self.kpi_topic.send_soon(key=key, value=value)
