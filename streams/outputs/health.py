"""Pipeline-health metrics of one worker (SPEC §5): what it read, rejected, found late or
duplicated, how fresh its input is, how far behind it is, what build it runs, and the
standard process metrics (memory, CPU, open files, start time)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from streams.decoding import REJECTION_REASONS
from streams.version import VERSION, revision

log = logging.getLogger(__name__)

LagSource = Callable[[], Mapping[tuple[str, int], int]]


class PipelineHealth:
    def __init__(self, registry: CollectorRegistry, topics: Iterable[str]) -> None:
        self.processed = Counter(
            "support_events_processed",
            "Valid input events consumed (including duplicates and late events).",
            ["topic"],
            registry=registry,
        )
        self.rejected = Counter(
            "support_events_rejected",
            "Input records rejected and sent to the dead-letter topic, by reason.",
            ["topic", "reason"],
            registry=registry,
        )
        self.late = Counter(
            "support_events_late",
            "Events older than the longest window plus grace: they update ticket state only.",
            ["topic"],
            registry=registry,
        )
        self.duplicate = Counter(
            "support_events_duplicate",
            "Events ignored as duplicates (same event_id, a second ticket-created, or an "
            "event of a retired ticket dated at or before its last event).",
            ["topic"],
            registry=registry,
        )
        self.orphaned = Counter(
            "support_events_orphaned",
            "Events of tickets never created, dropped after the orphan hold time.",
            ["topic"],
            registry=registry,
        )
        self.last_event = Gauge(
            "support_last_event_timestamp_seconds",
            "Event time (occurred_at) of the newest event consumed, as POSIX seconds.",
            ["topic"],
            registry=registry,
        )
        self.offset_resets = Counter(
            "support_offset_resets",
            "Times a partition this worker consumed ended before the offset it had already "
            "reached: the broker lost data (restarted empty, or the topic was re-created).",
            ["topic"],
            registry=registry,
        )
        self._newest: dict[str, float] = {}
        self._per_topic: dict[str, tuple[Counter, Gauge]] = {}
        build = Info(
            "support_build", "Version and source revision of the running worker.", registry=registry
        )
        build.info({"version": VERSION, "revision": revision()})
        ProcessCollector(registry=registry)  # process_* (Linux /proc): memory, CPU, start
        for topic in topics:
            self.processed.labels(topic)
            self.late.labels(topic)
            self.duplicate.labels(topic)
            self.orphaned.labels(topic)
            self.offset_resets.labels(topic)
            for reason in REJECTION_REASONS:
                self.rejected.labels(topic, reason)

    def offsets_went_back(self, topic: str, partition: int, position: int, end: int) -> None:
        """The broker says ``topic[partition]`` ends at ``end`` < ``position`` (consumed)."""
        self.offset_resets.labels(topic).inc()
        log.error(
            "%s[%d] now ends at offset %d but this worker had consumed it up to offset %d: "
            "the broker lost the partition's data (restarted empty, or the topic was deleted "
            "and re-created). KPIs and ticket state no longer match the topics: see "
            "docs/operations.md, 'The broker lost its data'.",
            topic,
            partition,
            end,
            position,
        )

    def saw_event(self, topic: str, occurred_at: float) -> None:
        # Runs for every event: the labelled children are looked up once per topic
        # (``labels()`` validates, builds a key and takes a lock on every call).
        children = self._per_topic.get(topic)
        if children is None:
            children = self._per_topic[topic] = (
                self.processed.labels(topic),
                self.last_event.labels(topic),
            )
        processed, last_event = children
        processed.inc()
        if occurred_at > self._newest.get(topic, 0.0):
            self._newest[topic] = occurred_at
            last_event.set(occurred_at)


class ConsumerLagCollector(Collector):
    """support_consumer_lag_messages{topic,partition}: records not yet processed."""

    def __init__(self, lag: LagSource) -> None:
        self._lag = lag

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "support_consumer_lag_messages",
            "Records in an owned partition not processed yet by this worker: the input "
            "topics (stage 1) and <app>-kpi-partials, <app>-customer-partials (stage 2).",
            labels=["topic", "partition"],
        )
        for (topic, partition), lag in sorted(self._lag().items()):
            family.add_metric([topic, str(partition)], float(lag))
        yield family
