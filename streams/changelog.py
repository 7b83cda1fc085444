"""Changelogged state: a table that reports its recoveries, a write-behind record cache and
checkpoints. Tickets and customers use the same mechanisms (:mod:`streams.stage1`,
:mod:`streams.customer_stage`).

- :class:`RecoveryAwareTable`: a Faust table of msgpack bytes that tells its owner which
  partitions it holds after each rebalance and recovery, and recovers from the latest
  checkpoint instead of offset 0; with the in-memory store it reads its changelog itself
  (:mod:`streams.changelog_reader`), starting at process start, before the group join ends.
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
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import aiokafka
import faust
import msgspec
from faust.types import TP, StoreT, TableT

from streams.changelog_reader import ChangelogReader, Latest

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
        checkpoint_topic: str,
        bootstrap: str,
        read_at_start: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._source_topics = frozenset(source_topics)
        self._on_recovered = on_recovered
        self._on_revoked = on_revoked
        self._on_assigned = on_assigned
        self._checkpoint_topic = checkpoint_topic
        self._bootstrap = bootstrap
        # changelog partition -> offset from which the changelog holds the complete state
        self.checkpoints: dict[int, int] = {}
        self.recovered_records = 0  # changelog records read since the last rebalance
        # The in-memory store is restored by a ChangelogReader (see on_rebalance).
        self._reads_own_changelog = str(self.app.conf.store).startswith("memory")
        self._read_at_start_enabled = read_at_start  # SUPPORT_RECOVERY_READ_AT_START
        self._preload: asyncio.Future[tuple[Latest, int]] | None = None
        self._preload_ends: dict[TP, int] = {}  # changelog partition -> end offset preloaded
        self._applied_by_faust: dict[bytes, int] = {}  # key -> offset, during a preload
        self._preload_started = 0.0
        self._warm: asyncio.Future[_Warm | None] | None = None  # read at start
        self._closing: set[asyncio.Future[None]] = set()  # readers being closed

    def persisted_offset(self, tp: TP) -> int | None:
        """Where recovery starts reading: the latest complete checkpoint, not offset 0 (the
        changelog is not compacted on every broker, e.g. the embedded Tansu)."""
        stored: int | None = super().persisted_offset(tp)
        if stored is not None:
            # A RocksDB table holds the state up to its own persisted offset (the in-memory
            # store never has one): a checkpoint further on would skip the tombstones of
            # tickets deleted in between, which the local copy still holds.
            return stored
        if tp in self._preload_ends:
            # The preload reads up to here; Faust reads only what comes after (normally
            # nothing: nobody writes a changelog partition before its new owner recovered).
            end = self._preload_ends[tp]
            return end - 1 if end > 0 else None
        return self.checkpoints.get(tp.partition)

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        events = list(batch)
        self.recovered_records += len(events)
        if self._preload is not None:
            applied = self._applied_by_faust
            for event in events:
                applied[event.key] = max(event.message.offset, applied.get(event.key, -1))
        super().apply_changelog_batch(events)

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        # Stop using revoked partitions at once, before the new owner starts.
        self._on_revoked({tp.partition for tp in revoked if tp.topic in self._source_topics})
        self._on_assigned(assigned)
        self.recovered_records = 0
        mine = {tp.partition for tp in assigned if tp.topic in self._source_topics}
        self._stop_preload()
        if not (self._reads_own_changelog and await self._start_preload(mine, assigned)):
            self.checkpoints = await self._checkpoints_once(mine)
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)

    async def _start_preload(self, mine: set[int], assigned: set[TP]) -> bool:
        """Start reading the assigned changelog partitions (from their checkpoints to their
        current ends) in the background; Faust's own recovery then starts at those ends.

        Only their end offsets are asked for here: this runs inside the consumer's
        rebalance callback, during which the group member sends no heartbeats. False (Faust
        restores the table itself, from the checkpoints) if the broker does not answer."""
        name = self.changelog_topic_name
        changelog = {tp for tp in assigned if tp.topic == name}
        reader = self._warm_reader()
        try:
            if reader is None:
                reader = await asyncio.wait_for(self._open_reader(), 10.0)
        except Exception as error:
            log.warning("%s: no changelog reader (%r); Faust restores the table", name, error)
            return False
        try:
            ends = await asyncio.wait_for(reader.ends(changelog), 10.0)
        except Exception as error:
            self._close_soon(reader)
            log.warning("%s: no end offsets (%r); Faust restores the table", name, error)
            return False
        self._preload_ends = ends
        self._applied_by_faust = {}
        self._preload_started = time.monotonic()
        self._preload = asyncio.ensure_future(self._read_changelog(reader, mine))
        return True

    async def _read_changelog(self, reader: ChangelogReader, mine: set[int]) -> tuple[Latest, int]:
        """The latest record per key of the assigned changelog partitions since their
        checkpoints, and how many records that took; retried with a new reader until it
        succeeds (or a rebalance stops it)."""
        ends = self._preload_ends
        warm = await self._take_warm()
        while True:
            try:
                if warm is not None and all(
                    warm.ends.get(tp, end + 1) <= end for tp, end in ends.items()
                ):
                    # Read at start: only what was written since is left to read.
                    ranges: dict[TP, tuple[int | None, int]] = {
                        tp: (warm.ends[tp], end) for tp, end in ends.items()
                    }
                    checkpoints = warm.checkpoints
                else:
                    warm = None
                    checkpoints = await self._read_checkpoints(reader, mine)
                    ranges = {
                        tp: (_start(checkpoints.get(tp.partition), end), end)
                        for tp, end in ends.items()
                    }
                latest, counts = await reader.latest(ranges)
                self.checkpoints = {p: c for p, c in checkpoints.items() if p in mine}
                merged: Latest = {}
                read = 0
                for tp in ends:
                    if warm is not None:
                        merged.update(warm.latest.get(tp, {}))
                        read += warm.read.get(tp, 0)
                    merged.update(latest[tp])
                    read += counts[tp]
                return merged, read
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("reading %s failed (%r); again", self.changelog_topic_name, error)
                await asyncio.sleep(1.0)
            finally:
                self._close_soon(reader)
            reader = await self._reopen_reader()

    async def on_start(self) -> None:
        await super().on_start()
        if self._reads_own_changelog and self._read_at_start_enabled:
            self._warm = asyncio.ensure_future(self._read_at_start())

    async def _read_at_start(self) -> _Warm | None:
        """Read every partition of the changelog (from its checkpoint) while the worker
        waits for the group join (seconds: the broker's join delay, and after a crash the
        old member's session timeout), so that its first assignment reads only what was
        written since. None if the broker does not answer (the assignment reads it all)."""
        name = self.changelog_topic_name
        partitions = set(range(self.partitions or self.app.conf.topic_partitions))
        try:
            reader = await asyncio.wait_for(self._open_reader(), 10.0)
        except Exception as error:
            log.info("%s: not read at start (%r)", name, error)
            return None
        try:
            # Checkpoints first: one written after the end offsets were read could point
            # past them.
            checkpoints = await self._read_checkpoints(reader, partitions)
            ends = await reader.ends({TP(name, p) for p in partitions})
            ranges = {
                tp: (_start(checkpoints.get(tp.partition), end), end) for tp, end in ends.items()
            }
            latest, read = await reader.latest(ranges)
        except Exception as error:
            self._close_soon(reader)
            log.info("%s: not read at start (%r)", name, error)
            return None
        except BaseException:  # cancelled (the worker stops)
            self._close_soon(reader)
            raise
        # The reader stays open for the first assignment (its rebalance callback asks it
        # for the end offsets; opening one there costs a connection and a metadata request).
        log.info("%s read at start: %d records", name, sum(read.values()))
        return _Warm(ends, checkpoints, latest, read, reader)

    def _warm_reader(self) -> ChangelogReader | None:
        """The reader of the read at start, if that read is done and the reader unused."""
        warm = self._warm
        if warm is None or not warm.done() or warm.cancelled() or warm.exception() is not None:
            return None
        result = warm.result()
        if result is None:
            return None
        reader, result.reader = result.reader, None
        return reader

    async def _take_warm(self) -> _Warm | None:
        """What was read at start (first assignment only: later ones read what they need)."""
        warm, self._warm = self._warm, None
        result = None if warm is None else await warm
        if result is not None and result.reader is not None:
            self._close_soon(result.reader)
            result.reader = None
        return result

    def _close_soon(self, reader: ChangelogReader) -> None:
        """Close a reader without waiting for it (its fetcher and connections)."""
        task = asyncio.ensure_future(reader.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _reopen_reader(self) -> ChangelogReader:
        while True:
            try:
                return await asyncio.wait_for(self._open_reader(), 10.0)
            except Exception as error:
                log.warning("no changelog reader (%r); again", error)
                await asyncio.sleep(1.0)

    async def _open_reader(self) -> ChangelogReader:
        return await ChangelogReader.open(self.app, self._bootstrap)

    async def _checkpoints_once(self, partitions: set[int]) -> dict[int, int]:
        try:
            reader = await asyncio.wait_for(self._open_reader(), 10.0)
        except Exception as error:
            log.warning("no %s read (%r); recovering from offset 0", self._checkpoint_topic, error)
            return {}
        try:
            return await self._read_checkpoints(reader, partitions)
        finally:
            await reader.close()

    async def _read_checkpoints(
        self, reader: ChangelogReader, partitions: set[int]
    ) -> dict[int, int]:
        """The latest checkpoint of each changelog partition (empty on any error or after
        10 s: recovery then reads the changelog from its start, correct but slower)."""
        if not partitions:
            return {}
        try:
            return await asyncio.wait_for(
                reader.checkpoints(self._checkpoint_topic, partitions), 10.0
            )
        except Exception as error:  # a missing topic, a broker hiccup: read everything
            log.warning("no %s read (%r); recovering from offset 0", self._checkpoint_topic, error)
            return {}

    async def on_stop(self) -> None:
        self._stop_preload()
        reader = self._warm_reader()
        if reader is not None:
            await reader.close()
        if self._warm is not None:
            self._warm.cancel()
        await super().on_stop()

    def _stop_preload(self) -> None:
        if self._preload is not None:
            self._preload.cancel()
        self._preload = None
        self._preload_ends = {}
        self._applied_by_faust = {}

    def _apply_preloaded(self, latest: Latest) -> None:
        """Put the preloaded records into the store; a key Faust restored from a later
        offset (records written after the preload's end) keeps Faust's value."""
        store = self.data
        applied = self._applied_by_faust
        for key, (offset, value) in latest.items():
            if applied.get(key, -1) > offset:
                continue
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        preload = self._preload
        if preload is not None:
            # Faust resumes the input only after this returns: the state is complete first.
            await asyncio.wait([preload])
            if preload is not self._preload or preload.cancelled():
                return  # a newer rebalance started; its recovery completes later
            latest, read = preload.result()
            self._apply_preloaded(latest)
            self.recovered_records += read
            self._stop_preload()
            log.info(
                "%s: read %d records (%d keys) since checkpoints %s in %.2fs",
                self.changelog_topic_name,
                read,
                len(latest),
                self.checkpoints,
                time.monotonic() - self._preload_started,
            )
        await super().on_recovery_completed(active_tps, standby_tps)
        # Let the other tables complete first: the rebuild below holds the event loop.
        await asyncio.sleep(0)
        name = self.changelog_topic_name
        self._on_recovered({tp.partition for tp in active_tps if tp.topic == name})


@dataclass
class _Warm:
    """A table's changelog as read at start: per partition, its end offset then, the latest
    record per key since its checkpoint and how many records that was."""

    ends: dict[TP, int]
    checkpoints: dict[int, int]
    latest: dict[TP, Latest]
    read: dict[TP, int]
    reader: ChangelogReader | None  # kept open for the first assignment


def _start(checkpoint: int | None, end: int) -> int | None:
    """Where to read a changelog partition up to ``end`` from: its checkpoint, or its
    beginning when there is none (or it points past ``end``: written after the end was read)."""
    return checkpoint if checkpoint is not None and checkpoint < end else None


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

    async def fence(self, partitions: Iterable[int]) -> None:
        """A *fence* in a later batch of each partition: a tombstone of a key no state has.
        The embedded Tansu broker reports a partition's end offset without its last batch,
        and recovery reads only up to that end offset, so the last batch must never be one
        that matters."""
        await self.write({p: [(CHECKPOINT_SENTINEL, None)] for p in partitions})


class StateLog(Generic[StateT]):
    """A changelogged table with its record cache and its checkpoint topic."""

    def __init__(
        self,
        name: str,
        app: faust.App,
        table: RecoveryAwareTable,
        store: FaustStateStore[StateT],
        checkpoint_topic: faust.TopicT,
    ) -> None:
        self.name = name
        self.app = app
        self.table = table
        self.store = store
        self.checkpoint_topic = checkpoint_topic
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
        """Write the record cache to the changelog and wait until it is stored, then a fence
        (:meth:`ChangelogWriter.fence`) in every partition written."""
        async with self.writing:
            records = self.store.take_dirty(partitions)
            if records:
                await self.writer.write(records)
                await self.writer.fence(records)

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
            await self.writer.fence(owned)
            for partition, start in starts.items():
                await self.checkpoint_topic.send(
                    key=str(partition).encode(), value=str(start).encode(), partition=partition
                )
            # A fence here too (an empty value, which readers skip): a broker that reports
            # the end offset without the last batch (Tansu) then still shows this checkpoint.
            await self.app.producer.flush()
            for partition in starts:
                await self.checkpoint_topic.send(
                    key=str(partition).encode(), value=b"", partition=partition
                )
        log.info("%s checkpoint: %d records for partitions %s", self.name, written, sorted(owned))
