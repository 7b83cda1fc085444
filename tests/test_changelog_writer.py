"""streams.changelog.ChangelogWriter on the real embedded broker.

The record cache is written straight into producer batches: every record of every
partition must arrive, in the order taken, also when a partition's records fill several
batches, and the offset returned for a partition must be that of its first record (a
checkpoint records it as where recovery starts).
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from helpers.pipeline import read_topic

from streams.changelog import ChangelogRecord, ChangelogWriter
from streams.faust_app import build_app
from streams.settings import load_settings
from streams_dev.broker import create_topics

pytestmark = pytest.mark.integration

PARTITIONS = 3
PER_PARTITION = 400  # of ~300 B: several of the producer's 16 KiB batches per partition


async def nothing() -> None:
    return None


def test_batched_writes_arrive_complete_in_order_with_their_first_offsets(
    bootstrap_servers: str, unique_prefix: str
) -> None:
    app = build_app(load_settings(kafka_bootstrap=bootstrap_servers, app_id=unique_prefix), nothing)
    table = app.Table("states", key_type=bytes, value_type=bytes, partitions=PARTITIONS)
    topic = table.changelog_topic.get_topic_name()
    records: dict[int, list[ChangelogRecord]] = {
        p: [
            (f"k{p}-{i}".encode(), None if i % 97 == 0 else f"{p}:{i}:".encode() * 40)
            for i in range(PER_PARTITION)
        ]
        for p in range(PARTITIONS)
    }
    fences: dict[int, list[ChangelogRecord]] = {p: [(b"fence", None)] for p in range(PARTITIONS)}

    async def write() -> tuple[dict[int, int], dict[int, int]]:
        await create_topics(bootstrap_servers, {topic: PARTITIONS})
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
        await producer.start()
        try:
            writer = ChangelogWriter(table, lambda: producer)
            before = await writer.write({1: [(b"earlier", b"x")]})
            firsts = await writer.write(records)
            await writer.write(fences)  # past the last batch that matters (Tansu's end offset)
            return before, firsts
        finally:
            await producer.stop()

    before, firsts = asyncio.run(write())

    assert before == {1: 0}
    assert firsts == {0: 0, 1: 1, 2: 0}
    found: dict[int, list[ChangelogRecord]] = {p: [] for p in range(PARTITIONS)}
    for record in sorted(read_topic(bootstrap_servers, topic), key=lambda r: r.offset):
        assert record.key is not None
        found[record.partition].append((record.key, record.value))
    assert found[1][0] == (b"earlier", b"x")
    for p in range(PARTITIONS):
        written = found[p][firsts[p] :]
        assert written == [*records[p], *fences[p]], f"partition {p}"
