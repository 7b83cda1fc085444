"""Integration-test harness: real worker processes on the session's embedded broker.

A :class:`Deployment` is one isolated installation (its own topic names and Faust app id)
on the shared broker. :class:`WorkerProcess` runs ``python -m streams.worker`` as a real
child process, so tests can ``kill -9`` it. :func:`expected_kpis` computes what the KPIs
must be with the brute-force reference, from the same simulator records the test produced.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from helpers.reference import differences, format_differences, reference_kpis
from streams.core import kpis
from streams.core.kpis import EngineConfig, KpiKey, KpiValues
from streams.decoding import Rejection, decode
from streams.events import EVENT_TYPES, Event
from streams.settings import load_settings
from streams.simulation.model import SimOptions, SimRecord
from streams.simulator import generate, send_to_kafka
from streams_dev.broker import SHORT_SESSION_TIMEOUT_SECONDS, create_topics
from streams_dev.metrics import fetch_page, samples
from streams_dev.processes import ChildProcess, free_port

INPUT_TOPICS = tuple(EVENT_TYPES)  # default topic names = logical kinds
_KPI_METRICS = {"support_" + name for name in (*kpis.WINDOWED_KPIS, *kpis.LIVE_KPIS)}


@dataclass
class Deployment:
    bootstrap: str
    prefix: str
    partitions: int = 4
    env: dict[str, str] = field(default_factory=dict)

    def topic(self, name: str) -> str:
        """The deployment's actual name for a default topic name."""
        return f"{self.prefix}.{name}"

    @property
    def topics(self) -> dict[str, str]:
        names = (*INPUT_TOPICS, "support-kpis", "support-events-dlq")
        return {name: self.topic(name) for name in names}

    def worker_env(self, web_port: int) -> dict[str, str]:
        env = {
            "SUPPORT_KAFKA_BOOTSTRAP": self.bootstrap,
            "SUPPORT_APP_ID": self.prefix.replace(".", "-"),
            "SUPPORT_PARTITIONS": str(self.partitions),
            "SUPPORT_SESSION_TIMEOUT": f"{SHORT_SESSION_TIMEOUT_SECONDS}s",
            "SUPPORT_WEB_PORT": str(web_port),
            "SUPPORT_WEB_HOST": "127.0.0.1",
            "SUPPORT_CLOCK": "stream",
            "SUPPORT_FLUSH_INTERVAL": "100ms",
            "SUPPORT_PUBLISH_INTERVAL": "1s",
            "SUPPORT_LOG_LEVEL": "info",
        }
        for name, actual in self.topics.items():
            env["SUPPORT_TOPIC_" + _setting_name(name)] = actual
        env.update(self.env)
        return env

    def engine_config(self) -> EngineConfig:
        overrides = {k.removeprefix("SUPPORT_").lower(): v for k, v in self.env.items()}
        return load_settings(**overrides).engine_config()

    def create_topics(self) -> None:
        topics = {name: self.partitions for name in self.topics.values()}
        asyncio.run(create_topics(self.bootstrap, topics, compacted=[self.topic("support-kpis")]))

    def produce(self, records: Iterable[SimRecord]) -> int:
        return asyncio.run(send_to_kafka(records, self.bootstrap, topics=self.topics))

    def produce_raw(self, topic: str, items: Sequence[tuple[bytes | None, bytes]]) -> None:
        """Produce raw (key, value) pairs to one default-named topic."""

        async def send() -> None:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
            await producer.start()
            try:
                for key, value in items:
                    await producer.send_and_wait(self.topic(topic), value=value, key=key)
            finally:
                await producer.stop()

        asyncio.run(send())


def simulated(
    seed: int,
    hours: float,
    rate: float = 300.0,
    teams: Sequence[str] | None = None,
    **options: float,
) -> list[SimRecord]:
    """Steady simulator traffic over ``hours``, ending ten minutes ago (``options``: the
    :class:`~streams.simulation.model.SimOptions` noise: duplicates, out of order, bad input)."""
    start = time.time() - hours * 3600 - 600
    extra: dict[str, Any] = {} if teams is None else {"teams": teams}
    return list(
        generate(
            "steady",
            seed=seed,
            start=start,
            duration_seconds=hours * 3600,
            rate=rate,
            options=SimOptions(**options),
            **extra,
        )
    )


def _setting_name(topic: str) -> str:
    special = {"support-kpis": "KPIS", "support-events-dlq": "DLQ"}
    return special.get(topic, topic.replace("-", "_").upper())


class WorkerProcess(ChildProcess):
    """``python -m streams.worker`` as a child process with its own working directory."""

    #: every worker started since the current test began (its log goes into a failure report)
    started: ClassVar[list[WorkerProcess]] = []

    def __init__(
        self,
        deployment: Deployment,
        name: str = "worker",
        module: str = "streams.worker",
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``module``: the worker's entry point, e.g. a module under ``tests/helpers/`` that runs
        a subclass of the worker (fault injection in a real process, never in production code)."""
        workdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        super().__init__(name, workdir / "worker.log")
        self.deployment = deployment
        self.module = module
        self.env = dict(env or {})
        self.port = free_port()
        self.workdir = workdir
        self.last_page: str | None = None  # its /metrics page just before stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def start(self) -> WorkerProcess:
        env = {**os.environ, **self.deployment.worker_env(self.port), **self.env}
        if self.module != "streams.worker":
            tests = str(Path(__file__).resolve().parents[1])  # tests/: ``helpers.*`` importable
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [tests, env.get("PYTHONPATH")]))
        self.spawn([sys.executable, "-m", self.module], env=env, cwd=self.workdir)
        WorkerProcess.started.append(self)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the worker serves /metrics and has been assigned partitions."""

        def ready() -> bool:
            text = self.scrape()
            return text is not None and "owns input partitions" in self.log()

        # Polled often: a worker is ready ~7 s after its start, every test starts some.
        wait_until(
            ready, timeout, lambda: f"{self.name} not ready; log:\n{self.log_tail()}", step=0.1
        )

    def scrape(self) -> str | None:
        return fetch_page(self.url)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop it, keeping its last /metrics page for a failure report
        (``tests/helpers/worker_logs.py``)."""
        if self.alive():
            self.last_page = fetch_page(self.url, timeout=2.0)
        super().stop(timeout)


def wait_until(
    condition: Callable[[], bool], timeout: float, message: Callable[[], str], step: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(step)
    raise AssertionError(message())


# -- reading KPIs back -------------------------------------------------------------------------


@dataclass
class Scrape:
    values: KpiValues
    duplicates: list[KpiKey]  # keys exported more than once
    counters: dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(texts: Iterable[str]) -> Scrape:
    """KPI values from one or more /metrics bodies (several workers: their union)."""
    values: KpiValues = {}
    duplicates: list[KpiKey] = []
    counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for text in texts:
        for sample in samples(text):
            labels = sample.labels
            if sample.name not in _KPI_METRICS:
                key_labels = tuple(sorted(labels.items()))
                counter_key = (sample.name, key_labels)
                counters[counter_key] = counters.get(counter_key, 0.0) + sample.value
                continue
            kpi = sample.name.removeprefix("support_")
            window = labels.get("window", kpis.LIVE_WINDOW)
            key = KpiKey(kpi, window, labels["team"], labels["channel"], labels["priority"])
            if key in values:
                duplicates.append(key)
            values[key] = sample.value
    return Scrape(values, duplicates, counters)


def counter_total(scrape: Scrape, name: str, **labels: str) -> float:
    total = 0.0
    for (sample_name, sample_labels), value in scrape.counters.items():
        if sample_name == name and all(dict(sample_labels).get(k) == v for k, v in labels.items()):
            total += value
    return total


def decoded_events(records: Iterable[SimRecord], *, now: float | None = None) -> list[Event]:
    """The valid events among simulator records, in delivery order (as the worker sees them)."""
    wall = time.time() if now is None else now
    events = []
    for record in records:
        decoded = decode(record.topic, record.value, now=wall, future_tolerance_seconds=300)
        if not isinstance(decoded, Rejection):
            events.append(decoded)
    return events


def expected_kpis(events: Sequence[Event], config: EngineConfig) -> KpiValues:
    """Reference KPIs at stream time (the latest event time), as SUPPORT_CLOCK=stream reads."""
    now = max(event.occurred_at.timestamp() for event in events)
    return reference_kpis(events, config, now=now)


def assert_kpis_converge(
    read: Callable[[], KpiValues], expected: Mapping[KpiKey, float | None], timeout: float = 90.0
) -> None:
    """Wait until the exported KPIs equal the reference; fail with the differences."""
    last: list[str] = ["nothing read yet"]

    def agree() -> bool:
        actual = read()
        diffs = differences(actual, expected)
        if diffs:
            last[0] = format_differences(diffs, actual_name="exported")
        return not diffs and bool(actual)

    # Every 0.5 s: each read makes the worker render its whole /metrics page.
    wait_until(agree, timeout, lambda: last[0], step=0.5)


def scrape_all(workers: Sequence[WorkerProcess]) -> Scrape:
    texts = []
    for worker in workers:
        text = worker.scrape()
        if text is not None:
            texts.append(text)
    return parse_metrics(texts)


def listening_hosts(port: int) -> set[str]:
    """IPv4/IPv6 addresses with a TCP socket listening on ``port`` (from /proc/net/tcp*)."""
    hosts: set[str] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A = LISTEN
                continue
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in host (little-endian) byte order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, width // 2, 4))
            if width == 8:
                hosts.add(".".join(str(b) for b in words))
            else:
                hosts.add(str(ipaddress.IPv6Address(words)))
    return hosts


# -- reading and writing topics directly ----------------------------------------------------


@dataclass(frozen=True)
class TopicRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def read_topic(bootstrap: str, topic: str) -> list[TopicRecord]:
    """Every record of ``topic`` from the beginning to its current end (no consumer group)."""

    async def read() -> list[TopicRecord]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        try:
            await consumer.topics()  # fetches the cluster metadata
            partitions = sorted(consumer.partitions_for_topic(topic) or ())
            assert partitions, f"topic {topic} has no partitions"
            tps = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            records: list[TopicRecord] = []
            # The embedded broker's ListOffsets can report the start of the last batch as
            # the end, so read past it until nothing new arrives for a while.
            deadline = time.monotonic() + 30
            idle_since = time.monotonic()
            while True:
                behind = [tp for tp in tps if await consumer.position(tp) < end[tp]]
                if not behind and time.monotonic() - idle_since > 1.5:
                    break
                assert time.monotonic() < deadline, f"could not read {topic} to its end"
                batches = await consumer.getmany(*tps, timeout_ms=300)
                for tp, messages in batches.items():
                    for m in messages:
                        records.append(TopicRecord(tp.partition, m.offset, m.key, m.value))
                        idle_since = time.monotonic()
            return records
        finally:
            await consumer.stop()

    return asyncio.run(read())


def latest_by_key(records: Iterable[TopicRecord]) -> dict[bytes, bytes | None]:
    """What a compacted topic means: the last value of every key, in offset order."""
    latest: dict[bytes, bytes | None] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert record.key is not None, f"record without key at {record.partition}@{record.offset}"
        latest[record.key] = record.value
    return latest


def produce_located(
    bootstrap: str, items: Sequence[tuple[str, bytes | None, bytes | None]]
) -> list[tuple[int, int]]:
    """Produce (actual topic, key, value) in order; return each record's (partition, offset)."""

    async def send() -> list[tuple[int, int]]:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=4 * 2**20
        )
        await producer.start()
        try:
            futures = [await producer.send(t, value=v, key=k) for t, k, v in items]
            metadata = await asyncio.gather(*futures)
            return [(m.partition, m.offset) for m in metadata]
        finally:
            await producer.stop()

    return asyncio.run(send())
