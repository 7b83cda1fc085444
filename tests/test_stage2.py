"""Stage 2 of the tickets in the worker (streams/stage2.py), without a broker."""

from __future__ import annotations

import msgspec
from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP
from helpers.fake_consumer import fake_progress

from streams.app import KpiWorker
from streams.core.merge import KpiMerge
from streams.core.partials import DIMENSIONS, PartialBatch
from streams.settings import load_settings
from streams.stage2 import dimension_partition

PARTITIONS = 6


def worker() -> KpiWorker:
    settings = load_settings(kafka_bootstrap="127.0.0.1:1", partitions=PARTITIONS, clock="stream")
    return KpiWorker(settings)


def test_routing_is_kafkas_default_partitioner_on_the_dimension() -> None:
    everything = list(range(PARTITIONS))
    for dimension in DIMENSIONS:
        key = dimension.encode()
        kafka = DefaultPartitioner()(key, everything, everything)
        assert dimension_partition(dimension, PARTITIONS) == kafka


def test_every_dimension_is_routed_to_exactly_one_partition() -> None:
    stage2 = worker().stage2
    routed = sorted(d for dimensions in stage2.dimensions.values() for d in dimensions)
    assert routed == sorted(DIMENSIONS)
    assert all(stage2.route(d) == p for p, ds in stage2.dimensions.items() for d in ds)


def test_partials_of_a_partition_not_owned_are_skipped() -> None:
    stage2 = worker().stage2
    stage2.assigned({0})
    assert set(stage2.merges) == {0}
    stage2.apply_partial(1, b"not even msgpack")  # not ours: not decoded, not applied


def test_not_ready_until_every_source_sent_its_complete_snapshot_and_the_lag_is_small() -> None:
    w = worker()
    (partition, dimensions), *_ = w.stage2.dimensions.items()
    w.stage2.assigned({partition})
    partials = w.partials.get_topic_name()
    limit = w.settings.ready_max_lag
    end = 10 * limit + 100
    w.progress = fake_progress({TP(partials, partition): end}, ready_max_lag=limit)
    w.progress.processed(partials, partition, end - limit - 1)  # lag: the limit
    merge = w.stage2.merges[partition]
    for source in range(PARTITIONS):
        assert not w.stage2.ready(partials), f"snapshots of sources 0..{source - 1} only"
        for dimension in dimensions:
            batch = PartialBatch(
                source_partition=source,
                dimension=dimension,
                stream_time_us=1,
                updates=[],
                reset=True,
            )
            w.stage2.apply_partial(partition, msgspec.msgpack.encode(batch))
    assert isinstance(merge, KpiMerge)
    assert w.stage2.ready(partials)
    w.progress.processed(partials, partition, end - limit - 2)  # lag: one more
    assert not w.stage2.ready(partials)
