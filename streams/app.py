"""The Faust layer: app, agents, tables and timers around the pure KPI core.

Two stages, both partitioned, both on Kafka:

1. ``process_events`` consumes the co-partitioned input topics (keyed by ticket). Per input
   partition a :class:`~streams.core.partition.PartitionEngine` keeps ticket states in the
   changelogged ``tickets`` table and derives partial aggregates in memory. A timer sends the
   partials that changed to the internal ``<app>-kpi-partials`` topic as *absolute values*;
   after every recovery the engine rebuilds its partials from the tickets and re-sends them
   all, so a crash between a table write and a send loses nothing, and a replay counts
   nothing twice.
2. ``merge_partials`` consumes that topic, keyed by dimension (overall/team/channel/
   priority), keeps the latest partial per (group, source partition, bucket) in the
   changelogged ``kpi-partials`` table and merges them into rolling windows
   (:class:`~streams.core.store.KpiStore`). What a worker owns in stage 2 is exactly what it
   exports on ``/metrics`` and publishes to ``support-kpis``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import faust
import msgspec
from faust.types import TP
from prometheus_client import CollectorRegistry, disable_created_metrics
from prometheus_client.exposition import choose_encoder

from streams.core.aggregate import US
from streams.core.firsts import FirstDerivations
from streams.core.kpis import EngineConfig
from streams.core.partition import (
    Outcome,
    PartialUpdate,
    PartitionEngine,
    Source,
    dimension_of,
)
from streams.core.store import KpiReading, KpiStore
from streams.core.ticket import Held, TicketState, to_us
from streams.decoding import Rejection, RejectionReason, decode
from streams.outputs.cumulative import CumulativeKpis
from streams.outputs.health import ConsumerLagCollector, PipelineHealth
from streams.outputs.prometheus import KpiCollector
from streams.outputs.publisher import KpiPublisher
from streams.records import dead_letter, dead_letter_key, encode_record
from streams.settings import Settings

log = logging.getLogger(__name__)

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series

_TICKET_DECODER = msgspec.msgpack.Decoder(TicketState)
_TICKET_ENCODER = msgspec.msgpack.Encoder()
_PARTIAL_DECODER = msgspec.msgpack.Decoder(PartialUpdate)
_PARTIAL_ENCODER = msgspec.msgpack.Encoder()


def dimension_key(group: tuple[str, str, str]) -> bytes:
    """Stage-2 routing: every group of one dimension goes to the same stage-2 partition, so
    one worker sees all teams and can cap the team label exactly (SPEC §5 label bounds)."""
    return dimension_of(group).encode()


class _RecoveryAwareTable(faust.Table[bytes, bytes]):
    """A table that tells its owner which partitions it holds after each recovery."""

    def __init__(
        self,
        *args: Any,
        source_topics: Iterable[str],
        on_recovered: Callable[[set[int]], None],
        on_revoked: Callable[[set[int]], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._source_topics = frozenset(source_topics)
        self._on_recovered = on_recovered
        self._on_revoked = on_revoked

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        # Stop using revoked partitions at once, before the new owner starts.
        self._on_revoked({tp.partition for tp in revoked if tp.topic in self._source_topics})
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        name = self.changelog_topic_name
        self._on_recovered({tp.partition for tp in active_tps if tp.topic == name})


class FaustTicketStore:
    """TicketStore over the Faust ``tickets`` table (bytes keys, msgpack values)."""

    def __init__(self, table: faust.Table[bytes, bytes]) -> None:
        self.table = table

    def get(self, key: str) -> TicketState | None:
        raw = self.table.get(key.encode())
        return None if raw is None else _TICKET_DECODER.decode(raw)

    def put(self, key: str, state: TicketState) -> None:
        self.table[key.encode()] = _TICKET_ENCODER.encode(state)

    def delete(self, key: str) -> None:
        encoded = key.encode()
        if encoded in self.table:
            del self.table[encoded]

    def states(self) -> Iterable[tuple[str, TicketState]]:
        return [
            (key.decode(), _TICKET_DECODER.decode(raw)) for key, raw in list(self.table.items())
        ]


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
        self.registry.register(KpiCollector(self.readings))
        self.registry.register(ConsumerLagCollector(self.consumer_lag))
        self.cumulative = CumulativeKpis(self.registry, self.config.sla_targets, settings.max_teams)
        self.firsts = FirstDerivations()  # outlives engines: no double count after a rebuild
        self.engines: dict[int, PartitionEngine] = {}
        self.kpi_stores: dict[int, KpiStore] = {}
        self.publisher = KpiPublisher()
        self._positions: dict[tuple[str, int], int] = {}
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
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            autodiscover=False,
            table_standby_replicas=0,
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
        )
        app.tables.add(self.tickets)
        self.partial_table = _RecoveryAwareTable(
            app,
            name="kpi-partials",
            partitions=s.partitions,
            key_type=bytes,  # bytes key/value types make Faust use the raw codec
            value_type=bytes,
            beacon=app.tables.beacon,
            source_topics=[self.partials.get_topic_name()],
            on_recovered=self._partials_recovered,
            on_revoked=self._partials_revoked,
        )
        app.tables.add(self.partial_table)
        self.ticket_store = FaustTicketStore(self.tickets)
        app.agent(self.inputs, name="process-events")(self._process_events)
        app.agent(self.partials, name="merge-partials")(self._merge_partials)
        app.timer(s.flush_interval, name="flush-partials")(self._flush_partials)
        app.timer(s.publish_interval, name="publish-kpis")(self._publish_kpis)
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
            for topic in (self.kpi_topic, self.dlq_topic):
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
            for key, value in self._handle_input(
                message.topic, message.partition, message.offset, event.value or b""
            ):
                await self.dlq_topic.send(key=key, value=value)
            # With a backlog the stream never suspends on its own: yield so that stage 2,
            # the flush timer and /metrics keep up instead of waiting for the backlog's end.
            await asyncio.sleep(0)

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
        log.info("stage 1 owns input partitions %s", sorted(partitions))

    def _tickets_revoked(self, partitions: set[int]) -> None:
        for partition in partitions:
            self.engines.pop(partition, None)

    async def _flush_partials(self) -> None:
        # Buffered sends: the consumer flushes the producer before it commits offsets, and a
        # partial lost in a crash is re-sent by the rebuild after recovery.
        for engine in list(self.engines.values()):
            for update in engine.flush():
                self.partials.send_soon(
                    key=dimension_key(update.group), value=_PARTIAL_ENCODER.encode(update)
                )

    # -- stage 2 --------------------------------------------------------------------------------

    async def _merge_partials(self, stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            message = event.message
            self._positions[(message.topic, message.partition)] = message.offset + 1
            self._apply_partial(message.partition, event.value)

    def _apply_partial(self, partition: int, raw: bytes) -> None:
        store = self.kpi_stores.get(partition)
        if store is None:
            log.debug("skipping a partial of partition %d: not owned", partition)
            return  # revoked while in flight; the new owner applies it
        update = _PARTIAL_DECODER.decode(raw)
        if update.reset:
            self._reset_partials(partition, update)
            store.apply(update)
            return
        key = _partial_key(partition, update)
        if update.window is None and update.live is None:
            if key in self.partial_table:
                del self.partial_table[key]
        else:
            self.partial_table[key] = raw
        store.apply(update)

    def _reset_partials(self, partition: int, reset: PartialUpdate) -> None:
        """Delete the stored partials a reset drops (tombstones in the changelog)."""
        dimension = dimension_of(reset.group)
        prefix = f"{partition}|{reset.partition}|".encode()
        for key in [k for k in list(self.partial_table.keys()) if k.startswith(prefix)]:
            update = _PARTIAL_DECODER.decode(self.partial_table[key])
            if dimension_of(update.group) == dimension:
                del self.partial_table[key]

    def _partials_recovered(self, partitions: set[int]) -> None:
        self.kpi_stores = {p: KpiStore(self.config) for p in partitions}
        for key, raw in list(self.partial_table.items()):
            partition = int(key.split(b"|", 1)[0])
            store = self.kpi_stores.get(partition)
            if store is None:
                self.partial_table.data.pop(key, None)  # stale local copy; no changelog write
                continue
            store.apply(_PARTIAL_DECODER.decode(raw))
        self.publisher.forget()
        log.info("stage 2 owns partial partitions %s", sorted(partitions))

    def _partials_revoked(self, partitions: set[int]) -> None:
        for partition in partitions:
            self.kpi_stores.pop(partition, None)

    # -- outputs ----------------------------------------------------------------------------------

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
                lag[(topic, partition)] = max(0, highwater - position)
        return lag

    async def _publish_kpis(self) -> None:
        now = time.time()
        for key, value in self.publisher.changes(self.readings(), now):
            self.kpi_topic.send_soon(key=key, value=value)


def _partial_key(partition: int, update: PartialUpdate) -> bytes:
    team, channel, priority = update.group
    kind = "live" if update.is_live else "window"
    source = f"{update.partition}|{kind}|{update.bucket}"
    return f"{partition}|{source}|{team}|{channel}|{priority}".encode()
