"""Run the whole engine in-process over a list of events (tests, benchmarks, backfill checks).

Events are routed by key to ``partitions`` stage-1 engines exactly as Kafka would co-partition
them, each on its own stream-time clock; their partials are merged by one stage-2 store, and
every KPI is read at ``now`` (default: the latest event time).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import msgspec

from streams.core.kpis import EngineConfig, KpiValues
from streams.core.partition import DictTicketStore, PartialUpdate, PartitionEngine
from streams.core.store import KpiStore
from streams.core.units import US, to_us
from streams.events import Event, routing_key

_WIRE_ENCODER = msgspec.msgpack.Encoder()
_WIRE_DECODER = msgspec.msgpack.Decoder(PartialUpdate)


def partition_for(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


def replay(
    arrivals: Iterable[Event],
    config: EngineConfig,
    *,
    now: float | None = None,
    partitions: int = 1,
) -> KpiValues:
    store = DictTicketStore()
    engines = [PartitionEngine(p, store, config) for p in range(partitions)]
    kpi_store = KpiStore(config)
    for event in arrivals:
        engine = engines[partition_for(routing_key(event), partitions)]
        clock_us = max(engine.stream_time_us, to_us(event.occurred_at))
        engine.process(event, clock_us)
        engine.housekeeping(clock_us)
        for update in engine.flush():
            # Through the wire format, as in the worker: a flushed partial is a snapshot.
            kpi_store.apply(_WIRE_DECODER.decode(_WIRE_ENCODER.encode(update)))
    now_us = kpi_store.stream_time_us if now is None else round(now * US)
    return kpi_store.values(now_us)
