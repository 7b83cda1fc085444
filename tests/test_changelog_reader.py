"""streams.changelog_reader on the embedded broker: what table recovery reads.

The reader must give, per partition, the value of the latest record of each key in an offset
range (tombstones included, records outside the range ignored), and the latest checkpoint of
each partition with the fences that follow checkpoints skipped.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import faust
import pytest
from aiokafka import AIOKafkaProducer
from faust.types import TP

from streams.changelog_reader import ChangelogReader

pytestmark = pytest.mark.integration

Records = list[tuple[bytes, bytes | None]]
MakeTopics = Callable[..., dict[str, str]]  # the ``make_topics`` fixture


async def _produce(bootstrap: str, topic: str, by_partition: dict[int, Records]) -> None:
    """Each partition's records in batches of up to 50, then a batch of its own holding a
    fence (as the worker writes them: Tansu reports end offsets without the last batch)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for partition, records in by_partition.items():
            for index, (key, value) in enumerate(records):
                await producer.send(topic, key=key, value=value, partition=partition)
                if index % 50 == 49:
                    await producer.flush()
            await producer.flush()
            await producer.send_and_wait(topic, key=b"fence", value=None, partition=partition)
    finally:
        await producer.stop()


def _expected(records: Records, start: int, end: int) -> dict[bytes, bytes | None]:
    latest: dict[bytes, bytes | None] = {}
    for key, value in records[start:end]:
        latest[key] = value
    return latest


def test_latest_is_the_last_record_per_key_in_each_range(
    bootstrap_servers: str, make_topics: MakeTopics
) -> None:
    topic = make_topics({"changelog": 3})["changelog"]
    rng = random.Random(11)
    by_partition: dict[int, Records] = {
        p: [
            (f"k{rng.randrange(40)}".encode(), None if rng.random() < 0.1 else f"v{i}".encode())
            for i in range(n)
        ]
        for p, n in ((0, 700), (1, 3), (2, 0))
    }

    async def run() -> None:
        await _produce(bootstrap_servers, topic, by_partition)
        reader = await ChangelogReader.open(faust.App("reader-test"), bootstrap_servers)
        try:
            ends = await reader.ends(TP(topic, p) for p in by_partition)
            # Tansu may report an end without the last batch: read up to what it reports.
            ranges = {
                TP(topic, 0): (250, ends[TP(topic, 0)]),
                TP(topic, 1): (None, ends[TP(topic, 1)]),
                TP(topic, 2): (None, ends[TP(topic, 2)]),
            }
            latest, read = await reader.latest(ranges)
        finally:
            await reader.close()
        for tp, (start, end) in ranges.items():
            records = by_partition[tp.partition]
            expected = _expected([*records, (b"fence", None)], start or 0, end)
            assert {key: value for key, (_, value) in latest[tp].items()} == expected
            assert read[tp] == max(0, end - (start or 0))
            assert all((start or 0) <= offset < end for offset, _ in latest[tp].values())
        assert ends[TP(topic, 0)] >= 700  # every record (the fence may not be reported)

    asyncio.run(run())


def test_checkpoints_skip_fences_and_take_the_latest(
    bootstrap_servers: str, make_topics: MakeTopics
) -> None:
    topic = make_topics({"checkpoints": 3})["checkpoints"]
    # partition 0: two checkpoints, each followed by a fence; 1: one; 2: none (_produce
    # adds a fence batch at the end of each)
    by_partition: dict[int, Records] = {
        0: [(b"0", b"10"), (b"0", b""), (b"0", b"25")],
        1: [(b"1", b"7")],
    }

    async def run() -> dict[int, int]:
        await _produce(bootstrap_servers, topic, by_partition)
        reader = await ChangelogReader.open(faust.App("reader-test"), bootstrap_servers)
        try:
            return await reader.checkpoints(topic, [0, 1, 2])
        finally:
            await reader.close()

    assert asyncio.run(run()) == {0: 25, 1: 7}
