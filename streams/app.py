"""The Faust layer: one worker process, wiring the stages to the app, its agents and timers.

Two stages, both partitioned, both on Kafka (README, Architecture):

1. :mod:`streams.stage1`: the ``process-events`` agent consumes the co-partitioned input
   topics; the ticket engines keep ticket states in the changelogged ``tickets`` table and
   send partials (:mod:`streams.core.partials`) to ``<app>-kpi-partials``.
2. :mod:`streams.stage2`: the ``merge-partials`` agent consumes that topic, partitioned by
   dimension, into KPI merges; what a worker owns here is what it exports on ``/metrics``
   (:mod:`streams.outputs.metrics_page`) and publishes to ``support-kpis``.

``customer-lifecycle`` (keyed by customer) goes through the same agents into a stage of its
own, :mod:`streams.customer_stage`. The app and its topics are built by
:mod:`streams.faust_app`, the clock is chosen once (:mod:`streams.clock`), dead letters are
built by :mod:`streams.dead_letters`, positions and lag are kept by :mod:`streams.progress`.
This module holds what is shared: the agents' loops with their containment, rebalances,
readiness, the broker probe and the outputs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import faust
from faust.types import TP
from prometheus_client import CollectorRegistry, Gauge, disable_created_metrics

from streams.clock import clock_for
from streams.core.customers import CustomerReading
from streams.core.firsts import FirstDerivations
from streams.core.kpis import EngineConfig
from streams.core.merge import KpiReading
from streams.customer_stage import STAGE2_KEY, CustomerStage
from streams.faust_app import build_app, declare_on_start, internal_topic, raw_topic
from streams.outputs.cumulative import CumulativeKpis
from streams.outputs.guard import RecordGuard
from streams.outputs.health import ConsumerLagCollector, PipelineHealth
from streams.outputs.metrics_page import install_metrics_page
from streams.outputs.prometheus import KpiCollector
from streams.outputs.publisher import KpiPublisher
from streams.progress import Progress
from streams.settings import Settings
from streams.stage1 import TicketStage1
from streams.stage2 import TicketStage2, dimension_partition

log = logging.getLogger(__name__)

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series

_BROKER_PROBE_S = 2.0  # how often the worker checks that the broker answers


class KpiWorker:
    """Builds the Faust app for one worker process and wires its stages to it."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.config: EngineConfig = settings.engine_config()
        self.clock = clock_for(settings.clock)
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
        self.publisher = KpiPublisher()
        self._broker_answered = time.monotonic()  # last answer to the broker probe
        self.stage1 = TicketStage1(self)
        self.stage2 = TicketStage2(self)
        self.customers = CustomerStage(self, dimension_partition(STAGE2_KEY, settings.partitions))
        self.app = self._build_app()

    # -- construction -------------------------------------------------------------------------

    def _build_app(self) -> faust.App:
        s = self.settings
        app = build_app(
            s, before_commit=self._before_commit, commit_interval_now=self._commit_interval
        )
        self.progress = Progress(app, s.ready_max_lag)
        create = s.create_topics
        self.inputs = raw_topic(app, *self.input_kinds, partitions=s.partitions, internal=create)
        self.partials = internal_topic(app, f"{s.app_id}-kpi-partials", s.partitions)
        self.kpi_topic = raw_topic(
            app, s.topic_kpis, partitions=s.partitions, internal=create, compacting=True
        )
        self.dlq_topic = raw_topic(app, s.topic_dlq, partitions=s.partitions, internal=create)
        self.stage1.build(app, self.partials)
        app.on_partitions_revoked.connect(self._on_partitions_revoked)
        self.customers.build(app)
        app.agent(self.inputs, name="process-events")(self._process_events)
        app.agent(self.partials, name="merge-partials")(self._merge_partials)
        app.timer(s.publish_interval, name="publish-kpis")(self._publish_kpis)
        app.timer(_BROKER_PROBE_S, name="probe-broker")(self._probe_broker)
        install_metrics_page(app, self.registry)
        declare_on_start(
            app,
            lambda: [
                self.kpi_topic,
                self.dlq_topic,
                self.stage1.checkpoint_topic,
                self.customers.checkpoint_topic,
            ],
        )
        return app

    # -- stage 1: input records ---------------------------------------------------------------

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
        """:meth:`TicketStage1.handle_input`; an unexpected exception dead-letters the record
        instead (see streams.outputs.guard) and the partition goes on.

        The engine may have applied part of the record: its partials are rebuilt from the
        ticket table (the durable state), as after a recovery.
        """
        try:
            return self.stage1.handle_input(topic, partition, offset, raw)
        except Exception as error:
            letter = self.guard.dead_letter(
                error, stage="events", topic=topic, partition=partition, offset=offset, raw=raw
            )
            if topic == self.customers.topic:
                self.customers.rebuild(partition)
            else:
                self.stage1.rebuild(partition)
            return [letter]

    # -- stage 2: partials ----------------------------------------------------------------------

    async def _merge_partials(self, stream: faust.StreamT[Any]) -> None:
        """The agent of both partials topics (tickets' and customers')."""
        async for event in stream.events():
            message = event.message
            self.progress.processed(message.topic, message.partition, message.offset)
            for key, value in self._contained_partial(
                message.topic, message.partition, message.offset, event.value
            ):
                await self.dlq_topic.send(key=key, value=value)

    def _contained_partial(
        self, topic: str, partition: int, offset: int, raw: bytes
    ) -> list[tuple[bytes, bytes]]:
        """Apply one partials message; an unexpected exception dead-letters it instead
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
                self.stage2.apply_partial(partition, raw)
        except Exception as error:
            letter = self.guard.dead_letter(
                error, stage="partials", topic=topic, partition=partition, offset=offset, raw=raw
            )
            return [letter]
        return []

    # -- rebalances and commits -------------------------------------------------------------------

    def assigned(self, assigned: set[TP]) -> None:
        """A rebalance (the ``tickets`` table's assignment): both stages start over; stage 2
        empty until every stage-1 partition has re-sent a complete snapshot."""
        partials = self.partials.get_topic_name()
        self.stage2.assigned({tp.partition for tp in assigned if tp.topic == partials})
        self.stage1.rebalanced()
        self.progress.positions.clear()  # from now on: the committed offsets, then ours
        self.publisher.forget()

    async def _on_partitions_revoked(self, *args: Any, **kwargs: Any) -> None:
        """A rebalance starts (eager: every partition is revoked, before the group re-forms).
        Stage 1 stops here: its cached state writes and its last partials reach the log now,
        before any new owner can recover the partition or send its own snapshot."""
        await self.stage1.revoke_all()
        await self.customers.revoke_all()

    def _commit_interval(self) -> float:
        """How often input offsets may be committed now: seldom while a stage catches up (its
        record cache then absorbs more changes per ticket; a crash replays more, counting
        nothing twice), at Faust's interval (0: no minimum of ours) otherwise."""
        if self.stage1.lagging() or self.customers.lagging():
            return self.settings.catchup_commit_interval
        return 0.0

    async def _before_commit(self) -> None:
        """Runs just before input offsets are committed: the state they imply goes first."""
        await self.stage1.log.write()
        await self.customers.log.write()

    # -- readiness ------------------------------------------------------------------------------

    async def _probe_broker(self) -> None:
        """Ask the broker for the end offsets of the partitions this worker owns. While it
        does not answer (down, frozen, unreachable) the worker is not ready: its KPIs stop
        following the events without anything else showing it."""
        partials = self.partials.get_topic_name()
        tps = [TP(topic, p) for p in list(self.stage1.engines) for topic in self.stage1.topics]
        tps += [TP(partials, p) for p in list(self.stage2.merges)]
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
        """support_pipeline_ready: the broker answers, stage 1 recovered and caught up, and
        every owned stage-2 partition holds a complete snapshot from every caught-up source
        partition (tickets and customers)."""
        if not self.stage1.ready() or not self.broker_answering() or not self.customers.ready():
            return False
        return self.stage2.ready(self.partials.get_topic_name())

    # -- outputs ----------------------------------------------------------------------------------

    def current_readings(self) -> Iterator[KpiReading]:
        """What /metrics exports: nothing while the worker is not ready (a half-recovered or
        half-caught-up merge is never presented as current)."""
        if self.ready():
            yield from self.stage2.readings()

    def consumer_lag(self) -> dict[tuple[str, int], int]:
        lag = {}
        consumer = self.app.consumer
        partials = self.partials.get_topic_name()
        positions = self.progress.positions
        for (topic, partition), position in list(positions.items()):
            mine = self.customers.owns_position(topic, partition)
            if mine is None:
                owned = self.stage2.merges if topic == partials else self.stage1.engines
                mine = partition in owned
            if not mine:
                continue
            try:
                highwater = consumer.highwater(TP(topic, partition))
            except Exception:  # the consumer does not know this partition's end yet
                continue
            if highwater is not None:
                if highwater < position:  # the broker lost data; report it once
                    self.health.offsets_went_back(topic, partition, position, highwater)
                    positions[(topic, partition)] = position = highwater
                lag[(topic, partition)] = max(0, highwater - position)
        return lag

    async def _publish_kpis(self) -> None:
        if not self.ready():
            return  # publish only complete, current values (the topic keeps the last ones)
        now = time.time()
        try:
            readings: list[KpiReading | CustomerReading] = [*self.stage2.readings()]
            readings.extend(self.customers.readings())
            changes = self.publisher.changes(readings, now)
        except Exception as error:  # contained: the next tick tries again
            self.guard.report(error, "publish", "the KPI publish tick, skipped")
            return
        for key, value in changes:
            self.kpi_topic.send_soon(key=key, value=value)
