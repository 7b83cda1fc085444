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
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

import aiokafka
import faust
import msgspec
from aiokafka.partitioner import murmur2
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from faust.types import TP
from prometheus_client import CollectorRegistry, Gauge, disable_created_metrics
from prometheus_client.exposition import choose_encoder

from streams.consumer import KpiTransport
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
from streams.decoding import Rejection, RejectionReason, decode
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
_TICKET_ENCODER = msgspec.msgpack.Encoder()
_LAGGING_FLUSH_S = 1.0
_CHECKPOINT_SENTINEL = b"\x00checkpoint"  # a tombstone that marks where a checkpoint starts
_BROKER_PROBE_S = 2.0  # how often the worker checks that the broker answers
_BATCH_DECODER = msgspec.msgpack.Decoder(PartialBatch)
_BATCH_ENCODER = msgspec.msgpack.Encoder()


def dimension_partition(dimension: str, partitions: int) -> int:
    """Stage-2 routing: every group of one dimension goes to the same stage-2 partition, so
    one worker sees all teams and can cap the team label exactly (SPEC §5 label bounds).
    The same murmur2 hash as Kafka's default partitioner on the key ``dimension``."""
    hashed: int = murmur2(dimension.encode())
    return (hashed & 0x7FFFFFFF) % partitions


class _RecoveryAwareTable(faust.Table[bytes, bytes]):
    """A table that tells its owner which partitions it holds after each recovery."""

    def __init__(
        self,
        *args: Any,
        source_topics: Iterable[str],
        on_recovered: Callable[[set[int]], None],
        on_revoked: Callable[[set[int]], None],
        on_assigned: Callable[[set[TP]], None],
        read_checkpoints: Callable[[set[int]], Awaitable[dict[int, int]]],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._source_topics = frozenset(source_topics)
        self._on_recovered = on_recovered
        self._on_revoked = on_revoked
        self._on_assigned = on_assigned
        self._read_checkpoints = read_checkpoints
        # changelog partition -> offset from which the changelog holds the complete state
        self.checkpoints: dict[int, int] = {}
        self.recovered_records = 0  # changelog records read since the last rebalance

    def persisted_offset(self, tp: TP) -> int | None:
        """Where recovery starts reading: the latest complete checkpoint, not offset 0 (the
        changelog is not compacted on every broker, e.g. the embedded Tansu)."""
        stored: int | None = super().persisted_offset(tp)
        if stored is not None:
            # A RocksDB table holds the state up to its own persisted offset (the in-memory
            # store never has one): a checkpoint further on would skip the tombstones of
            # tickets deleted in between, which the local copy still holds.
            return stored
        return self.checkpoints.get(tp.partition)

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        events = list(batch)
        self.recovered_records += len(events)
        super().apply_changelog_batch(events)

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        # Stop using revoked partitions at once, before the new owner starts.
        self._on_revoked({tp.partition for tp in revoked if tp.topic in self._source_topics})
        self._on_assigned(assigned)
        self.recovered_records = 0
        mine = {tp.partition for tp in assigned if tp.topic in self._source_topics}
        self.checkpoints = await self._read_checkpoints(mine)
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        name = self.changelog_topic_name
        self._on_recovered({tp.partition for tp in active_tps if tp.topic == name})


class FaustTicketStore:
    """TicketStore over the Faust ``tickets`` table, with a write-behind record cache.

    Tickets changed since the last commit are kept decoded in ``dirty``; all others are msgpack
    bytes in the table's store (one copy, no decoded duplicate). :meth:`flush` runs just
    before the consumer commits input offsets: it encodes each dirty ticket once, puts it in
    the store and sends one changelog record (a tombstone for a deleted ticket), so a ticket
    changed by many events between two commits costs one changelog write, and the changelog
    always holds the state of every offset that gets committed.
    """

    def __init__(self, table: faust.Table[bytes, bytes]) -> None:
        self.table = table
        self.dirty: dict[str, tuple[int, TicketState | None]] = {}
        self.writes = 0  # changelog records sent

    def get(self, key: str) -> TicketState | None:
        cached = self.dirty.get(key)
        if cached is not None:
            return cached[1]
        raw = self.table.data.get(key.encode())
        return None if raw is None else _TICKET_DECODER.decode(raw)

    def put(self, key: str, state: TicketState) -> None:
        self.dirty[key] = (state.partition, state)

    def delete(self, key: str) -> None:
        state = self.get(key)
        if state is not None:
            self.dirty[key] = (state.partition, None)

    def states(self) -> Iterable[tuple[str, TicketState]]:
        found = {
            key.decode(): _TICKET_DECODER.decode(raw) for key, raw in list(self.table.data.items())
        }
        for key, (_, state) in self.dirty.items():
            if state is None:
                found.pop(key, None)
            else:
                found[key] = state
        return list(found.items())

    def flush(self, partitions: set[int] | None = None) -> set[int]:
        """Write the dirty tickets (of ``partitions``, default all) to the store and the
        changelog; returns the partitions written to."""
        store = self.table.data
        sent = 0
        written: set[int] = set()
        for key, (partition, state) in list(self.dirty.items()):
            if partitions is not None and partition not in partitions:
                continue
            del self.dirty[key]
            encoded = key.encode()
            if state is None:
                store.pop(encoded, None)
                value = None
            else:
                value = _TICKET_ENCODER.encode(state)
                self._store_put(partition, encoded, value)
            self.table.send_changelog(partition, encoded, value)
            written.add(partition)
            sent += 1
        self.writes += sent
        return written

    def _store_put(self, partition: int, key: bytes, value: bytes) -> None:
        """Put one ticket into the store of its changelog partition.

        Faust's RocksDB store picks the partition database from the event being processed
        (``current_event()``) and asserts there is one; flushes run outside any event (before
        a commit, in the checkpoint timer, at revocation), so a RocksDB table gets the put
        in its partition's database directly. The in-memory store has no partitions."""
        store: Any = self.table.data
        db_for_partition = getattr(store, "_db_for_partition", None)
        if db_for_partition is None:
            store[key] = value
            return
        db_for_partition(partition).put(key, value)
        store._key_index[key] = partition

    def forget(self, partitions: set[int]) -> None:
        """Drop cached changes of partitions this worker no longer owns (after a flush)."""
        for key in [k for k, (p, _) in self.dirty.items() if p in partitions]:
            del self.dirty[key]


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
        self._writes_at_checkpoint = 0
        self._flushed_at: dict[int, float] = {}  # stage-1 partition -> monotonic time
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
        self.partials = app.topic(
            f"{s.app_id}-kpi-partials",
            partitions=s.partitions,
            internal=True,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.checkpoint_topic = app.topic(
            f"{s.app_id}-tickets-checkpoints",
            partitions=s.partitions,
            internal=True,
            key_serializer="raw",
            value_serializer="raw",
        )
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
        self.tickets = _RecoveryAwareTable(
            app,
            name="tickets",
            partitions=s.partitions,
            key_type=bytes,  # bytes key/value types make Faust use the raw codec
            value_type=bytes,
            beacon=app.tables.beacon,
            source_topics=self.input_kinds,
            on_recovered=self._tickets_recovered,
            on_revoked=self._tickets_revoked,
            on_assigned=self._assigned,
            read_checkpoints=self._read_checkpoints,
        )
        app.tables.add(self.tickets)
        app.on_partitions_revoked.connect(self._on_partitions_revoked)
        self.ticket_store = FaustTicketStore(self.tickets)
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
            for topic in (self.kpi_topic, self.dlq_topic, self.checkpoint_topic):
                await topic.maybe_declare()

        app.task(declare_output_topics)
        return app

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
        engine = self.engines.get(partition)
        if engine is None:
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
        self._writes_at_checkpoint = self.ticket_store.writes
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

    async def _read_checkpoints(self, partitions: set[int]) -> dict[int, int]:
        """The latest checkpoint of each tickets-changelog partition (empty on any error or
        after 10 s: recovery then reads the changelog from its start, correct but slower)."""
        if not partitions:
            return {}
        try:
            return await asyncio.wait_for(self._fetch_checkpoints(partitions), 10.0)
        except Exception as error:  # a missing topic, a broker hiccup: read everything
            log.warning("no tickets checkpoints read (%r); recovering from offset 0", error)
            return {}

    async def _fetch_checkpoints(self, partitions: set[int]) -> dict[int, int]:
        topic = self.checkpoint_topic.get_topic_name()
        conf = self.app.conf
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap.split(","),
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            request_timeout_ms=5000,
            **credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context),
        )
        found: dict[int, int] = {}
        await consumer.start()
        try:
            tps = [aiokafka.TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                # A few records back: some brokers (Tansu) report the end before the last batch.
                consumer.seek(tp, max(0, ends[tp] - 4))
            while True:
                batch = await consumer.getmany(timeout_ms=300)
                if not batch:
                    break
                for tp, records in batch.items():
                    for record in records:
                        if record.value:
                            found[tp.partition] = int(record.value)
        finally:
            await consumer.stop()
        return found

    async def _checkpoint_tickets(self) -> None:
        """Re-write every ticket of the owned partitions to the changelog, then record where
        that copy starts: recovery reads from there, so it reads at most the state plus the
        writes since (bounded by SUPPORT_CHECKPOINT_RECORDS), never the whole history."""
        store = self.ticket_store
        keys = len(self.tickets.data)
        since = store.writes - self._writes_at_checkpoint
        if since < max(self.settings.checkpoint_records, keys) or self._recovering:
            return
        owned = set(self.engines)
        if not owned:
            return
        store.flush()  # the store now holds every current state; nothing below awaits
        starts = {p: self.tickets.send_changelog(p, _CHECKPOINT_SENTINEL, None) for p in owned}
        written = 0
        for key, raw in list(self.tickets.data.items()):
            partition = _TICKET_DECODER.decode(raw).partition
            if partition in starts:
                self.tickets.send_changelog(partition, key, raw)
                written += 1
        self._writes_at_checkpoint = store.writes
        await self.app.producer.flush()
        for partition in starts:
            self.tickets.send_changelog(partition, _CHECKPOINT_SENTINEL, None)  # the fence
        for partition, future in starts.items():
            metadata = await future
            await self.checkpoint_topic.send(
                key=str(partition).encode(),
                value=str(metadata.offset).encode(),
                partition=partition,
            )
        log.info("tickets checkpoint: %d records for partitions %s", written, sorted(owned))

    async def _before_commit(self) -> None:
        """Runs just before input offsets are committed: the state they imply goes first."""
        await self._write_tickets()

    async def _write_tickets(self, partitions: set[int] | None = None) -> None:
        """Write the ticket record cache to the changelog and wait until it is stored.

        Then a *fence* (a tombstone of a key no ticket has) in a later batch of every
        partition written: the embedded Tansu broker reports a partition's end offset
        without its last batch, and Faust's recovery reads only up to that end offset, so the
        last batch must never be one that matters.
        """
        written = self.ticket_store.flush(partitions)
        if written:
            await self.app.producer.flush()
            for partition in written:
                self.tickets.send_changelog(partition, _CHECKPOINT_SENTINEL, None)
            await self.app.producer.flush()

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

    def _source_caught_up(self, partition: int, was: bool) -> bool:
        """Whether stage 1 of this input partition has (almost) no backlog: lag at most
        SUPPORT_READY_MAX_LAG to become caught up, more than 10x that to stop being so."""
        lag = self._lag(self.input_kinds, partition)
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
        tps = [TP(topic, p) for p in list(self.engines) for topic in self.input_kinds]
        tps += [TP(partials, p) for p in list(self.kpi_stores)]
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
        if self._recovering or not self.broker_answering():
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
            owned = self.kpi_stores if topic == partials else self.engines
            if partition not in owned:
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
            changes = self.publisher.changes(self.readings(), now)
        except Exception as error:  # contained: the next tick tries again
            self.guard.report(error, "publish", "the KPI publish tick, skipped")
            return
        for key, value in changes:
            self.kpi_topic.send_soon(key=key, value=value)
