"""Changelogged state: a table that reports its recoveries, a write-behind record cache and
checkpoints. Tickets and customers use the same mechanisms (:mod:`streams.stage1`,
:mod:`streams.customer_stage`).

- :class:`RecoveryAwareTable`: a Faust table of msgpack bytes that tells its owner which
  partitions it holds after each rebalance and recovery, and recovers from the latest
  checkpoint instead of offset 0.
- :class:`FaustStateStore`: the record cache over it; states reach the changelog just before
  the input offsets that produced them are committed.
- :class:`ChangelogWriter`: changelog records go straight into producer batches.
- :class:`StateLog`: writing the cache (with a fence for brokers that report an end offset
  without the last batch), and periodic checkpoints (every state of the owned partitions
  re-written, and where that copy starts recorded in a checkpoint topic), so recovery reads
  the state plus the writes since, never the whole history.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

import aiokafka
import faust
import msgspec
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from faust.types import TP, StoreT, TableT

log = logging.getLogger(__name__)

CHECKPOINT_SENTINEL = b"\x00checkpoint"  # a tombstone that marks where a checkpoint starts
_ENCODER = msgspec.msgpack.Encoder()

ChangelogRecord = tuple[bytes, bytes | None]  # key, value (None: a tombstone)


class Partitioned(Protocol):
    """A state that knows the partition it belongs to (of its input and changelog)."""

    @property
    def partition(self) -> int: ...


StateT = TypeVar("StateT", bound=Partitioned)


class RecoveryAwareTable(faust.Table[bytes, bytes]):
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


class FaustStateStore(Generic[StateT]):
    """A state store over a Faust table of msgpack bytes, with a write-behind record cache.

    States changed since the last commit are kept decoded in ``dirty``; all others are
    msgpack bytes in the table's store (one copy, no decoded duplicate). :meth:`flush` runs
    just before the consumer commits input offsets: it encodes each dirty state once, puts it
    in the store and sends one changelog record (a tombstone for a deleted state), so a state
    changed by many events between two commits costs one changelog write, and the changelog
    always holds the state of every offset that gets committed.
    """

    def __init__(
        self, table: faust.Table[bytes, bytes], decoder: msgspec.msgpack.Decoder[StateT]
    ) -> None:
        self.table = table
        self.decoder = decoder
        self.dirty: dict[str, tuple[int, StateT | None]] = {}
        self.writes = 0  # changelog records sent

    def get(self, key: str) -> StateT | None:
        cached = self.dirty.get(key)
        if cached is not None:
            return cached[1]
        raw = self.table.data.get(key.encode())
        return None if raw is None else self.decoder.decode(raw)

    def put(self, key: str, state: StateT) -> None:
        self.dirty[key] = (state.partition, state)

    def delete(self, key: str) -> None:
        state = self.get(key)
        if state is not None:
            self.dirty[key] = (state.partition, None)

    def states(self) -> Iterable[tuple[str, StateT]]:
        found = {
            key.decode(): self.decoder.decode(raw) for key, raw in list(self.table.data.items())
        }
        for key, (_, state) in self.dirty.items():
            if state is None:
                found.pop(key, None)
            else:
                found[key] = state
        return list(found.items())

    def take_dirty(self, partitions: set[int] | None = None) -> dict[int, list[ChangelogRecord]]:
        """Move the dirty states (of ``partitions``, default all) into the store; returns the
        changelog records that must be written for them, by partition."""
        store = self.table.data
        records: dict[int, list[ChangelogRecord]] = {}
        for key, (partition, state) in list(self.dirty.items()):
            if partitions is not None and partition not in partitions:
                continue
            del self.dirty[key]
            encoded = key.encode()
            if state is None:
                store.pop(encoded, None)
                value = None
            else:
                value = _ENCODER.encode(state)
                self._store_put(partition, encoded, value)
            records.setdefault(partition, []).append((encoded, value))
        self.writes += sum(len(batch) for batch in records.values())
        return records

    def flush_soon(self, partitions: set[int] | None = None) -> None:
        """:meth:`take_dirty` and send the records through Faust's producer buffer, without
        waiting (for callers that cannot await; :meth:`StateLog.write` is the fast path)."""
        for partition, records in self.take_dirty(partitions).items():
            for key, value in records:
                self.table.send_changelog(partition, key, value)

    def _store_put(self, partition: int, key: bytes, value: bytes) -> None:
        """Put one state into the store of its changelog partition.

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


def faust_producer(app: faust.App) -> aiokafka.AIOKafkaProducer:
    """The AIOKafkaProducer Faust's aiokafka driver sends with (Faust itself has no batch
    API). Sharing it keeps the order of each partition with Faust's own sends, and Faust's
    flush before every commit covers the batches sent with it too."""
    producer: aiokafka.AIOKafkaProducer = app.producer._ensure_producer()  # type: ignore[attr-defined]
    return producer


class ChangelogWriter:
    """Writes a table's changelog records straight into the producer's record batches (one
    per partition, split at the producer's batch size) and waits until the broker stored
    them.

    Faust's ``Table.send_changelog`` costs a message object, four ``publish_message`` steps,
    a future and a callback per record, through Faust's producer buffer, whose fill level
    also holds back the delivery of input records: writing the record cache that way cost
    more than processing the events that changed it. RocksDB tables get their persisted
    offset as Faust's per-record callback would set it.
    """

    def __init__(
        self,
        table: TableT[Any, Any],
        producer: Callable[[], aiokafka.AIOKafkaProducer],
    ) -> None:
        self.table = table
        self.producer = producer

    async def write(self, records: Mapping[int, Sequence[ChangelogRecord]]) -> dict[int, int]:
        """Write ``records`` (by partition, in order) and wait until they are stored; returns
        the offset of each partition's first record."""
        producer = self.producer()
        topic = self.table.changelog_topic.get_topic_name()
        sent: list[tuple[int, int, asyncio.Future[Any]]] = []
        for partition, items in records.items():
            batch, count = producer.create_batch(), 0
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    future = await producer.send_batch(batch, topic, partition=partition)
                    sent.append((partition, count, future))
                    batch, count = producer.create_batch(), 0
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        size = len(key) + len(value or b"")
                        raise ValueError(f"a {size} B record does not fit in a producer batch")
                count += 1
            if count:
                future = await producer.send_batch(batch, topic, partition=partition)
                sent.append((partition, count, future))
        firsts: dict[int, int] = {}
        store: StoreT[Any, Any] = self.table.data  # type: ignore[assignment]
        for partition, count, future in sent:
            metadata = await future
            firsts.setdefault(partition, metadata.offset)
            store.set_persisted_offset(TP(topic, partition), metadata.offset + count - 1)
        return firsts


class StateLog(Generic[StateT]):
    """A changelogged table with its record cache and its checkpoint topic."""

    def __init__(
        self,
        name: str,
        app: faust.App,
        table: RecoveryAwareTable,
        store: FaustStateStore[StateT],
        checkpoint_topic: faust.TopicT,
        bootstrap: str,
    ) -> None:
        self.name = name
        self.app = app
        self.table = table
        self.store = store
        self.checkpoint_topic = checkpoint_topic
        self.bootstrap = bootstrap
        self.writer = ChangelogWriter(table, lambda: faust_producer(app))
        # Writes and checkpoints take their records and send them under this lock: a
        # partition's records reach the log in the order they were taken (a write between
        # two batches of a checkpoint could otherwise land before an older copy of a state).
        self.writing = asyncio.Lock()
        self.writes_at_checkpoint = 0

    def states_by_partition(self, partitions: set[int]) -> dict[int, list[tuple[str, StateT]]]:
        """The recovered states of ``partitions``, each decoded once. A local copy of another
        partition's state (left by an earlier assignment) is dropped, without a changelog
        write: its partition's owner has the current one."""
        by_partition: dict[int, list[tuple[str, StateT]]] = {p: [] for p in partitions}
        for key, state in self.store.states():
            mine = by_partition.get(state.partition)
            if mine is None:
                self.table.data.pop(key.encode(), None)
            else:
                mine.append((key, state))
        return by_partition

    async def write(self, partitions: set[int] | None = None) -> None:
        """Write the record cache to the changelog and wait until it is stored.

        Then a *fence* (a tombstone of a key no state has) in a later batch of every
        partition written: the embedded Tansu broker reports a partition's end offset
        without its last batch, and Faust's recovery reads only up to that end offset, so the
        last batch must never be one that matters.
        """
        async with self.writing:
            records = self.store.take_dirty(partitions)
            if records:
                await self.writer.write(records)
                await self.writer.write({p: [(CHECKPOINT_SENTINEL, None)] for p in records})

    async def read_checkpoints(self, partitions: set[int]) -> dict[int, int]:
        """The latest checkpoint of each changelog partition (empty on any error or after
        10 s: recovery then reads the changelog from its start, correct but slower)."""
        if not partitions:
            return {}
        try:
            return await asyncio.wait_for(self._fetch_checkpoints(partitions), 10.0)
        except Exception as error:  # a missing topic, a broker hiccup: read everything
            log.warning("no %s checkpoints read (%r); recovering from offset 0", self.name, error)
            return {}

    async def _fetch_checkpoints(self, partitions: set[int]) -> dict[int, int]:
        topic = self.checkpoint_topic.get_topic_name()
        conf = self.app.conf
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap.split(","),
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

    def recovered(self) -> None:
        """A recovery completed: count writes towards the next checkpoint from here."""
        self.writes_at_checkpoint = self.store.writes

    async def checkpoint(self, owned: set[int], min_records: int) -> None:
        """Re-write every state of the owned partitions to the changelog, then record where
        that copy starts: recovery reads from there, so it reads at most the state plus the
        writes since (bounded by ``min_records``), never the whole history. Only once
        ``max(min_records, states held)`` writes happened since the last one."""
        store = self.store
        table = self.table
        since = store.writes - self.writes_at_checkpoint
        if since < max(min_records, len(table.data)) or not owned:
            return
        async with self.writing:
            # The store then holds every current state (tombstones of deleted ones written for
            # RocksDB copies that recover from before this checkpoint); nothing awaits until the
            # copy below is taken.
            dirty = store.take_dirty()
            copy: dict[int, list[ChangelogRecord]] = {
                p: [(CHECKPOINT_SENTINEL, None)] for p in owned
            }
            for key, raw in list(table.data.items()):
                mine = copy.get(store.decoder.decode(raw).partition)
                if mine is not None:
                    mine.append((key, raw))
            self.writes_at_checkpoint = store.writes
            written = sum(len(records) - 1 for records in copy.values())
            if dirty:
                await self.writer.write(dirty)
            starts = await self.writer.write(copy)
            await self.writer.write({p: [(CHECKPOINT_SENTINEL, None)] for p in owned})  # the fence
            for partition, start in starts.items():
                await self.checkpoint_topic.send(
                    key=str(partition).encode(), value=str(start).encode(), partition=partition
                )
        log.info("%s checkpoint: %d records for partitions %s", self.name, written, sorted(owned))
