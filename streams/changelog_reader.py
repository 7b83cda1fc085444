"""Reading a table's checkpoints and changelog with a plain consumer of its own.

Faust restores a table record by record through its stream machinery (fetcher, event
objects, a queue, per-record bookkeeping): 3,000-11,000 records/s on the benchmark machine,
4-15 s for the 50,000 tickets of the recovery benchmark. :class:`ChangelogReader` fetches
the same records in large batches with a plain aiokafka consumer (no group, no commits) and
keeps only the latest value per key; :class:`streams.changelog.RecoveryAwareTable` applies
them to its in-memory store before the worker resumes its input. It also reads the latest
checkpoint of each partition (written by :class:`streams.changelog.StateLog`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import aiokafka
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from faust.types import TP, AppT

# Bytes per partition per fetch: the state of a partition comes in a few round trips.
_FETCH_BYTES = 8 * 2**20
# A partition whose position does not move for this long while records are missing is
# reported as an error (the caller retries with a new reader).
_STALL_S = 30.0

#: key -> (offset, value) of the latest record of each key read (None: a tombstone)
Latest = dict[bytes, tuple[int, bytes | None]]


class ChangelogReader:
    """A consumer without a group over the partitions it is asked to read."""

    def __init__(self, consumer: aiokafka.AIOKafkaConsumer) -> None:
        self.consumer = consumer

    @classmethod
    async def open(cls, app: AppT, bootstrap: str) -> ChangelogReader:
        conf = app.conf
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=bootstrap.split(","),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=_FETCH_BYTES,
            request_timeout_ms=5000,
            **credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context),
        )
        await consumer.start()
        return cls(consumer)

    async def close(self) -> None:
        await self.consumer.stop()

    async def ends(self, tps: Iterable[TP]) -> dict[TP, int]:
        """The end offset of each partition (the offset the next record would get)."""
        wanted = {aiokafka.TopicPartition(tp.topic, tp.partition): tp for tp in tps}
        if not wanted:
            return {}
        ends = await self.consumer.end_offsets(list(wanted))
        return {wanted[ktp]: int(end) for ktp, end in ends.items()}

    async def checkpoints(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """The latest checkpoint (changelog offset) recorded for each partition in ``topic``:
        the last records up to the end offset the broker reports (a checkpoint is followed by
        a fence, see StateLog.checkpoint; one it does not report yet leaves an earlier one,
        which is a valid start too)."""
        found: dict[int, int] = {}
        tps = [TP(topic, p) for p in sorted(partitions)]
        ends = await self.ends(tps)
        # A few records back: the last checkpoints and their fences.
        ranges = {tp: (max(0, end - 4), end) for tp, end in ends.items()}
        await self._read(ranges, lambda tp, record: _checkpoint(found, tp, record))
        return found

    async def latest(
        self, ranges: Mapping[TP, tuple[int | None, int]]
    ) -> tuple[dict[TP, Latest], dict[TP, int]]:
        """Read each partition from its start offset (None: its beginning) up to its end
        offset (exclusive); returns the latest record per key and how many records were read,
        per partition."""
        latest: dict[TP, Latest] = {tp: {} for tp in ranges}
        read: dict[TP, int] = dict.fromkeys(ranges, 0)

        def keep(tp: TP, record: Any) -> None:
            read[tp] += 1
            if record.key is not None:
                latest[tp][record.key] = (record.offset, record.value)

        await self._read(ranges, keep)
        return latest, read

    async def _read(
        self, ranges: Mapping[TP, tuple[int | None, int]], each: Callable[[TP, Any], None]
    ) -> int:
        """Call ``each(tp, record)`` for every record of each range; returns how many."""
        consumer = self.consumer
        pending: dict[aiokafka.TopicPartition, int] = {}
        starts: dict[aiokafka.TopicPartition, int | None] = {}
        tps: dict[aiokafka.TopicPartition, TP] = {}
        for tp, (start, end) in ranges.items():
            if end > (start or 0):
                ktp = aiokafka.TopicPartition(tp.topic, tp.partition)
                pending[ktp] = end
                starts[ktp] = start
                tps[ktp] = tp
        if not pending:
            return 0
        consumer.assign(list(pending))
        for ktp, start in starts.items():
            if start is None:
                await consumer.seek_to_beginning(ktp)
            else:
                consumer.seek(ktp, start)
        read = 0
        loop = asyncio.get_running_loop()
        moved_at = loop.time()
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for ktp, records in batch.items():
                stop = pending.get(ktp)
                if stop is None:
                    continue
                tp = tps[ktp]
                for record in records:
                    if record.offset >= stop:
                        break
                    each(tp, record)
                    read += 1
            if batch:
                moved_at = loop.time()
            for ktp, end in list(pending.items()):
                if await consumer.position(ktp) >= end:
                    del pending[ktp]
                    consumer.pause(ktp)
            if pending and loop.time() - moved_at > _STALL_S:
                raise TimeoutError(f"no records from {_s(pending)} in {_STALL_S:g}s")
        return read


def _checkpoint(found: dict[int, int], tp: TP, record: Any) -> None:
    if record.value:  # (an empty value is a fence)
        found[tp.partition] = int(record.value)


def _s(tps: Iterable[Any]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in tps)


__all__ = ["ChangelogReader", "Latest"]
