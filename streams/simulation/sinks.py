"""Where simulated records go: a JSON-lines file or Kafka; plus progress reporting.

Pacing: with ``realtime=True`` each record is sent when the wall clock reaches its
``deliver_at`` (generate with ``start = time.time()`` so event time tracks the wall clock);
otherwise records go out as fast as the sink takes them (backfill).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, TextIO

import msgspec

from streams.simulation.model import CREATED, SimRecord

ProgressFn = Callable[[int, SimRecord], None]
"""Called after each record is handed to the sink, with the number sent so far."""


class Progress:
    """A progress line on a text stream: events sent, rate, tickets, elapsed.

    On a TTY the line is rewritten in place (carriage return) at most every ``interval``
    seconds (default 0.25); elsewhere a plain line is printed every ``interval`` seconds
    (default 10). Call :meth:`finish` at the end for the final line.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        interval: float | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval if interval is not None else (0.25 if self.tty else 10.0)
        self.clock = clock
        self.started = clock()
        self.last_print = self.started
        self.sent = 0
        self.tickets = 0
        self.bad = 0
        self.duplicates = 0

    def __call__(self, sent: int, record: SimRecord) -> None:
        self.sent = sent
        if record.bad is not None:
            self.bad += 1
        elif record.duplicate is not None:
            self.duplicates += 1
        elif record.topic == CREATED:
            self.tickets += 1
        now = self.clock()
        if now - self.last_print >= self.interval:
            self.last_print = now
            self._print(now)

    def line(self, now: float | None = None) -> str:
        elapsed = (self.clock() if now is None else now) - self.started
        rate = self.sent / elapsed if elapsed > 0 else 0.0
        return (
            f"sent {self.sent} events ({rate:.1f}/s), {self.tickets} tickets, "
            f"{self.duplicates} duplicates, {self.bad} bad, elapsed {elapsed:.1f}s"
        )

    def _print(self, now: float) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K" + self.line(now))
        else:
            self.stream.write(self.line(now) + "\n")
        self.stream.flush()

    def finish(self) -> None:
        now = self.clock()
        self._print(now)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# --- JSON lines ------------------------------------------------------------------------------


def record_to_json(record: SimRecord) -> dict[str, Any]:
    """One JSONL object: topic, key, value (text, or ``value_base64`` if not UTF-8) and times.

    ``bad`` and ``duplicate`` are written only when set.
    """
    obj: dict[str, Any] = {"topic": record.topic, "key": record.key.decode()}
    try:
        obj["value"] = record.value.decode()
    except UnicodeDecodeError:
        obj["value_base64"] = base64.b64encode(record.value).decode("ascii")
    obj["occurred_at"] = record.occurred_at
    obj["deliver_at"] = record.deliver_at
    if record.bad is not None:
        obj["bad"] = record.bad
    if record.duplicate is not None:
        obj["duplicate"] = record.duplicate
    return obj


def record_from_json(obj: Mapping[str, Any]) -> SimRecord:
    """Inverse of :func:`record_to_json` (``deliver_at`` defaults to ``occurred_at``)."""
    if "value_base64" in obj:
        try:
            value = base64.b64decode(obj["value_base64"], validate=True)
        except binascii.Error as exc:
            raise ValueError(f"bad value_base64: {exc}") from exc
    else:
        value = str(obj["value"]).encode()
    occurred_at = float(obj["occurred_at"])
    return SimRecord(
        topic=str(obj["topic"]),
        key=str(obj["key"]).encode(),
        value=value,
        occurred_at=occurred_at,
        deliver_at=float(obj.get("deliver_at", occurred_at)),
        bad=obj.get("bad"),
        duplicate=obj.get("duplicate"),
    )


def _pace(record: SimRecord, realtime: bool) -> float:
    """Seconds to wait before sending ``record``."""
    return max(0.0, record.deliver_at - time.time()) if realtime else 0.0


def write_jsonl(
    records: Iterable[SimRecord],
    out: str | Path | IO[str],
    *,
    realtime: bool = False,
    progress: ProgressFn | None = None,
) -> int:
    """Write records as JSON lines to a path (``"-"``: stdout) or an open text file.

    Returns the number of records written. In realtime mode each line is flushed when sent.
    """
    if isinstance(out, str | Path):
        if str(out) == "-":
            return _write_lines(records, sys.stdout, realtime, progress)
        with open(out, "w", encoding="utf-8") as fh:
            return _write_lines(records, fh, realtime, progress)
    return _write_lines(records, out, realtime, progress)


def _write_lines(
    records: Iterable[SimRecord], fh: IO[str], realtime: bool, progress: ProgressFn | None
) -> int:
    encoder = msgspec.json.Encoder()
    sent = 0
    try:
        for record in records:
            wait = _pace(record, realtime)
            if wait:
                fh.flush()
                time.sleep(wait)
            fh.write(encoder.encode(record_to_json(record)).decode() + "\n")
            sent += 1
            if progress is not None:
                progress(sent, record)
    finally:
        fh.flush()
    return sent


def read_jsonl(path: str | Path) -> Iterator[SimRecord]:
    """Read records written by :func:`write_jsonl` (blank lines are skipped)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield record_from_json(msgspec.json.decode(line))


# --- Kafka -----------------------------------------------------------------------------------

_INFLIGHT_BATCHES = 64  # backfill: wait for acknowledgements when this many batches are out


async def send_to_kafka(
    records: Iterable[SimRecord],
    bootstrap_servers: str,
    *,
    realtime: bool = False,
    progress: ProgressFn | None = None,
    topics: Mapping[str, str] | None = None,
    producer_config: Mapping[str, Any] | None = None,
) -> int:
    """Produce records to Kafka with :class:`aiokafka.AIOKafkaProducer`; return how many.

    Keys go through the default (murmur2) partitioner, so all events of a ticket share a
    partition number when the input topics have the same partition count. ``topics`` renames
    topics (default name -> actual name). ``producer_config`` adds or overrides producer
    settings. Every record is acknowledged (``acks="all"``) before this returns; on
    cancellation (Ctrl-C) the records handed over so far are flushed and the producer stopped.

    Realtime: one ``send`` per record at its ``deliver_at``. Backfill: records are packed into
    per-partition batches (same partitioner), which is several times faster; order within a
    partition is kept, and across topics it is not guaranteed anyway (SPEC §3).
    """
    from aiokafka import AIOKafkaProducer

    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "acks": "all",
        "client_id": "support-kpi-simulator",
        "linger_ms": 0 if realtime else 20,
        "max_batch_size": 256 * 1024,
    }
    config.update(producer_config or {})
    producer = AIOKafkaProducer(**config)
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    rename = dict(topics or {})
    try:
        if realtime:
            return await _send_paced(producer, records, rename, progress)
        return await _send_batched(producer, records, rename, progress)
    finally:
        await producer.stop()  # flushes what was handed over


async def _send_paced(
    producer: Any,
    records: Iterable[SimRecord],
    rename: Mapping[str, str],
    progress: ProgressFn | None,
) -> int:
    sent = 0
    pending: list[Awaitable[Any]] = []
    for record in records:
        wait = _pace(record, True)
        if wait:
            await asyncio.sleep(wait)
        topic = rename.get(record.topic, record.topic)
        pending.append(await producer.send(topic, record.value, key=record.key))
        sent += 1
        if progress is not None:
            progress(sent, record)
        if len(pending) >= 100:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return sent


async def _send_batched(
    producer: Any,
    records: Iterable[SimRecord],
    rename: Mapping[str, str],
    progress: ProgressFn | None,
) -> int:
    from aiokafka.partitioner import DefaultPartitioner

    partitioner = DefaultPartitioner()
    partitions: dict[str, list[int]] = {}
    batches: dict[tuple[str, int], Any] = {}
    pending: list[Awaitable[Any]] = []
    sent = 0
    try:
        for record in records:
            topic = rename.get(record.topic, record.topic)
            parts = partitions.get(topic)
            if parts is None:
                parts = partitions[topic] = sorted(await producer.partitions_for(topic))
            partition: int = partitioner(record.key, parts, parts)
            batch = batches.get((topic, partition))
            if batch is None:
                batch = batches[topic, partition] = producer.create_batch()
            if batch.append(key=record.key, value=record.value, timestamp=None) is None:
                pending.append(await producer.send_batch(batch, topic, partition=partition))
                batch = batches[topic, partition] = producer.create_batch()
                if batch.append(key=record.key, value=record.value, timestamp=None) is None:
                    raise ValueError(
                        f"a record of {len(record.value)} bytes exceeds max_batch_size"
                    )
            sent += 1
            if progress is not None:
                progress(sent, record)
            if len(pending) >= _INFLIGHT_BATCHES:
                await asyncio.gather(*pending)
                pending.clear()
    finally:
        # Also on Ctrl-C: what was counted as sent is handed to the producer, which flushes it.
        for (topic, partition), batch in batches.items():
            if batch.record_count():
                pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)
    return sent
