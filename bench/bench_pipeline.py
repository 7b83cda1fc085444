"""Full-pipeline benchmark: the KPI worker beside a bare Faust agent, in the same run (SPEC §7).

Run on demand (not part of the test suite)::

    python bench/bench_pipeline.py [--events 50000] [--partitions 4] [--output FILE]

One embedded broker (Tansu); every contender gets its own fresh set of topics and its own
consumer group. The contenders run one after the other (the machine has 2 cores), each as a
real child process: (a) ``bench/bare_faust_agent.py`` (one agent on the six input topics that
counts events, same broker settings) and (b) ``python -m streams.worker`` with
``SUPPORT_CLOCK=stream`` and the default flush/publish intervals. Measured for each:

1. Throughput: the same simulated stream (``streams.simulation.generate``, steady profile,
   2 % duplicates, 10 % out-of-order up to 2 min) is produced before the contender starts;
   events/s from "ready" (partitions assigned and, for the worker, tables recovered: the log
   line the bench polls every 20 ms) until every record is counted (worker:
   ``support_events_processed_total`` + records rejected at decoding, polled every second;
   bare agent: its own time of its last event). For the worker also "KPIs complete": until
   ``support_tickets_created{window="24h"}`` overall counts every ticket of the stream
   (stage 2, the merge of partials, can lag stage 1).
2. Latency, contender caught up: one warm-up ticket then ``--probes`` single ticket-created
   events at ``--probe-rate`` per second, stamped "now". Worker: from just before the send to
   the first scrape of ``/metrics`` (every 20 ms) where
   ``support_tickets_created{window="15m",team="all",channel="all",priority="all"}`` counts
   it; bare agent: produce-to-consume (its receive time of the probe's key).
3. Memory: RSS (``VmRSS`` in ``/proc/PID/status``) of a fresh contender with 0, then
   ``--tickets-mid``, then ``--tickets`` open tickets (crafted customer-created tickets
   spread over the previous 20 h, never answered or solved); slope in bytes per ticket.
4. Recovery: ``kill -9`` of that loaded contender, then a restart; worker: time until
   ``/metrics`` shows the same overall ``support_open_tickets`` as before the kill; bare
   agent: time until it consumes a record produced after the kill.

Results go to ``bench/RESULTS-pipeline.md`` (or ``--output``) with the machine, the date and
the load average seen at each phase. ``--profile FILE`` additionally runs the worker's
throughput phase once more under cProfile (slower, not in the table) and prints its top
functions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from machine import cpu_model, load_average

from streams.events import CHANNELS, EVENT_TYPES, PRIORITIES
from streams.simulation import DEFAULT_TEAMS, SimOptions, SimRecord, generate, send_to_kafka
from streams_dev.broker import (
    SHORT_SESSION_TIMEOUT_SECONDS,
    EmbeddedBroker,
    create_topics,
)
from streams_dev.metrics import OVERALL, fetch_page, key, samples, series
from streams_dev.processes import ChildProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
BARE_AGENT = Path(__file__).resolve().parent / "bare_faust_agent.py"
INPUT_KINDS = tuple(EVENT_TYPES)
RATE = 3000.0  # simulated ticket arrivals per hour
CREATED_15M = ("support_tickets_created", {**OVERALL, "window": "15m"})
CREATED_24H = ("support_tickets_created", {**OVERALL, "window": "24h"})
OPEN_OVERALL = ("support_open_tickets", OVERALL)
# A /metrics scrape costs the worker ~20 ms of CPU (about 1,000 series): poll it at most once a
# second while it works, or the benchmark itself slows it down measurably.
WORKER_POLL_S = 1.0
PROCESSED, REJECTED = "support_events_processed_total", "support_events_rejected_total"
_DECODE_REJECTIONS_EXCLUDED = ("before_created",)  # counted as processed too


def wait_for(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.02) -> float:
    """Poll until ``condition()``; the ``time.time()`` at which it first held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.time()
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


def metric_value(text: str | None, metric: tuple[str, dict[str, str]]) -> float | None:
    """Value of the sample of ``metric`` (name, exact label set), if exported."""
    if text is None:
        return None
    name, labels = metric
    return series(text, names={name}).get(key(name, **labels))


def records_counted(text: str) -> int:
    """Input records the worker is done with: valid events + records rejected at decoding."""
    return round(
        sum(
            sample.value
            for sample in samples(text, names={PROCESSED, REJECTED})
            if sample.name == PROCESSED
            or sample.labels.get("reason") not in _DECODE_REJECTIONS_EXCLUDED
        )
    )


# -- deployments and contender processes ------------------------------------------------------


@dataclass
class Deployment:
    """One isolated set of topics (and consumer group) on the shared broker."""

    bootstrap: str
    prefix: str
    partitions: int
    clock: str = "stream"

    def topic(self, kind: str) -> str:
        return f"{self.prefix}.{kind}"

    @property
    def rename(self) -> dict[str, str]:
        return {kind: self.topic(kind) for kind in (*INPUT_KINDS, "support-kpis", "dlq")}

    def create_topics(self) -> None:
        topics = {name: self.partitions for name in self.rename.values()}
        asyncio.run(create_topics(self.bootstrap, topics, compacted=[self.topic("support-kpis")]))

    def produce(self, records: Iterable[SimRecord]) -> int:
        return asyncio.run(send_to_kafka(records, self.bootstrap, topics=self.rename))


class Contender(ChildProcess):
    """A contender child process in its own session and working directory."""

    kind = ""
    ready_line = ""

    def __init__(self, deployment: Deployment) -> None:
        workdir = Path(tempfile.mkdtemp(prefix=f"bench-{self.kind}-"))
        super().__init__(self.kind, workdir / "process.log")
        self.deployment = deployment
        self.port = free_port()
        self.workdir = workdir
        self.started_at = 0.0

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        raise NotImplementedError

    def start(self) -> Contender:
        self.started_at = time.time()
        self.spawn(self.command(), cwd=self.workdir, env={**os.environ, **self.env()})
        return self

    def wait_ready(self, timeout: float = 90.0) -> float:
        """Wall time at which the ready line (assignment/recovery done) was first seen."""
        offset = len(self.log_path.read_bytes()) if self.log_path.exists() else 0

        def ready() -> bool:
            self.check_alive()
            with self.log_path.open("rb") as fh:
                fh.seek(offset)
                return self.ready_line.encode() in fh.read()

        return wait_for(ready, timeout, f"{self.kind} ready")

    def check_alive(self) -> None:
        if self.pid is not None and not self.alive():
            raise RuntimeError(f"{self.kind} exited with {self.returncode}:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        super().stop(timeout)

    @property
    def url(self) -> str:
        raise NotImplementedError

    def counted(self) -> int:
        """Input records consumed so far (-1: not answering)."""
        raise NotImplementedError


class Worker(Contender):
    kind = "worker"
    ready_line = "stage 1 owns input partitions"

    def __init__(self, deployment: Deployment, profile_to: Path | None = None) -> None:
        super().__init__(deployment)
        self.profile_to = profile_to

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def command(self) -> list[str]:
        if self.profile_to is not None:
            profiler = ["-m", "cProfile", "-o", str(self.profile_to)]
            return [sys.executable, *profiler, "-m", "streams.worker"]
        return [sys.executable, "-m", "streams.worker"]

    def env(self) -> dict[str, str]:
        d = self.deployment
        env = {
            "SUPPORT_KAFKA_BOOTSTRAP": d.bootstrap,
            "SUPPORT_APP_ID": d.prefix,
            "SUPPORT_PARTITIONS": str(d.partitions),
            "SUPPORT_SESSION_TIMEOUT": f"{SHORT_SESSION_TIMEOUT_SECONDS}s",
            "SUPPORT_WEB_PORT": str(self.port),
            "SUPPORT_WEB_HOST": "127.0.0.1",
            "SUPPORT_CLOCK": d.clock,
            "SUPPORT_LOG_LEVEL": "info",
            "SUPPORT_TOPIC_KPIS": d.topic("support-kpis"),
            "SUPPORT_TOPIC_DLQ": d.topic("dlq"),
        }
        for kind in INPUT_KINDS:
            env["SUPPORT_TOPIC_" + kind.replace("-", "_").upper()] = d.topic(kind)
        return env

    def scrape(self) -> str | None:
        return fetch_page(self.url)

    def counted(self) -> int:
        text = self.scrape()
        return -1 if text is None else records_counted(text)


class BareAgent(Contender):
    kind = "bare agent"
    ready_line = "bare agent owns input partitions"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/count"

    def command(self) -> list[str]:
        return [sys.executable, str(BARE_AGENT)]

    def env(self) -> dict[str, str]:
        d = self.deployment
        return {
            "BARE_BOOTSTRAP": d.bootstrap,
            "BARE_TOPICS": ",".join(d.topic(kind) for kind in INPUT_KINDS),
            "BARE_APP_ID": d.prefix,
            "BARE_PARTITIONS": str(d.partitions),
            "BARE_WEB_PORT": str(self.port),
            "BARE_SESSION_TIMEOUT": str(SHORT_SESSION_TIMEOUT_SECONDS),
        }

    def status(self) -> dict[str, Any] | None:
        text = fetch_page(self.url)
        if text is None:
            return None
        status: dict[str, Any] = json.loads(text)
        return status

    def counted(self) -> int:
        status = self.status()
        return -1 if status is None else int(status["count"])


def make(kind: str, deployment: Deployment, profile_to: Path | None = None) -> Contender:
    return Worker(deployment, profile_to) if kind == "worker" else BareAgent(deployment)


# -- the simulated stream and crafted tickets -------------------------------------------------


def simulated_records(count: int, seed: int) -> list[SimRecord]:
    """``count`` records of steady traffic ending well before now (>20 min: see latency)."""
    now = time.time()
    span = 3600 + 1.5 * count / (RATE / 3600 * 2.5)  # the count ends the stream earlier
    options = SimOptions(duplicate_rate=0.02, out_of_order=0.1, out_of_order_delay=120.0)
    records = list(
        generate("steady", seed=seed, start=now - span, count=count, rate=RATE, options=options)
    )
    last = max(record.occurred_at for record in records)
    if last > now - 1200:
        raise RuntimeError("the simulated stream ends too close to now; raise the span")
    return records


def day_records(tickets: int, seed: int) -> list[SimRecord]:
    """A day-long replay: ``tickets`` tickets whose events spread over the last ~23 h of
    event time (ending 30 min before now, so the latency probes stand alone in 15 min, and
    starting 30 min inside the 24 h window, so the whole day still counts while the run lasts)."""
    now = time.time()
    span = 23 * 3600
    options = SimOptions(duplicate_rate=0.02, out_of_order=0.1, out_of_order_delay=120.0)
    records = list(
        generate(
            "steady",
            seed=seed,
            start=now - span - 1800,
            duration_seconds=span,
            rate=tickets / (span / 3600),
            options=options,
        )
    )
    return [r for r in records if r.occurred_at <= now - 1200]


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def created_record(ticket: str, at: float, index: int) -> SimRecord:
    value = json.dumps(
        {
            "event_id": f"{ticket}-created",
            "occurred_at": rfc3339(at),
            "schema_version": 1,
            "ticket_id": ticket,
            "customer_id": f"customer-{index % 5000}",
            "team": DEFAULT_TEAMS[index % len(DEFAULT_TEAMS)],
            "channel": CHANNELS[index % len(CHANNELS)],
            "priority": PRIORITIES[index % len(PRIORITIES)],
        }
    ).encode()
    return SimRecord("ticket-created", ticket.encode(), value, at, at)


def open_tickets(count: int, end: float) -> list[SimRecord]:
    """Customer tickets created over the 20 h before ``end``, never answered or solved."""
    span = 20 * 3600.0
    return [created_record(f"open-{i}", end - span + span * i / count, i) for i in range(count)]


# -- phases -----------------------------------------------------------------------------------


@dataclass
class Figures:
    kind: str
    loads: dict[str, str] = field(default_factory=dict)
    start_to_ready_s: float = 0.0
    throughput_s: float = 0.0
    throughput_eps: float = 0.0
    kpis_s: float = 0.0
    latency_ms: list[float] = field(default_factory=list)
    latency_missed: int = 0
    scrape_ms: float = 0.0
    scrape_bytes: int = 0
    rss_after_stream: int = 0
    rss_by_tickets: dict[int, int] = field(default_factory=dict)
    open_before_kill: float | None = None
    recovery_ready_s: float = 0.0
    recovery_s: float = 0.0
    open_lag_s: dict[int, float] = field(default_factory=dict)
    produced: dict[str, int] = field(default_factory=dict)  # topic -> records produced


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait_counted(contender: Contender, target: int, timeout: float, step: float) -> float:
    """Wall time at which the contender had counted ``target`` records."""
    if isinstance(contender, BareAgent):
        holder: list[float] = []

        def done() -> bool:
            contender.check_alive()
            status = contender.status()
            if status is None or status["count"] < target:
                return False
            holder.append(float(status["last_at"]))
            return True

        wait_for(done, timeout, f"bare agent to count {target}", step)
        return holder[0]

    def counted() -> bool:
        contender.check_alive()
        return contender.counted() >= target

    return wait_for(counted, timeout, f"worker to count {target}", step)


def throughput(
    kind: str, broker: EmbeddedBroker, records: Sequence[SimRecord], args: argparse.Namespace
) -> tuple[Figures, Contender]:
    figures = Figures(kind)
    deployment = Deployment(
        broker.bootstrap_servers, f"bench-{_slug(kind)}-tp", args.partitions, args.clock
    )
    deployment.create_topics()
    t = time.perf_counter()
    deployment.produce(records)
    say(f"{kind}: produced {len(records)} records in {time.perf_counter() - t:.1f}s")
    figures.loads["throughput"] = load_average()
    contender = make(kind, deployment).start()
    try:
        return _throughput(contender, figures, records)
    except BaseException:
        contender.stop()
        raise


def _throughput(
    contender: Contender, figures: Figures, records: Sequence[SimRecord]
) -> tuple[Figures, Contender]:
    kind = contender.kind
    ready = contender.wait_ready()
    figures.start_to_ready_s = ready - contender.started_at
    step = WORKER_POLL_S if kind == "worker" else 0.05
    done = wait_counted(contender, len(records), timeout=900, step=step)
    figures.throughput_s = done - ready
    figures.throughput_eps = len(records) / figures.throughput_s
    if isinstance(contender, Worker):
        tickets = len({r.key for r in records if r.topic == "ticket-created" and r.bad is None})
        shown = wait_for(
            lambda: metric_value(contender.scrape(), CREATED_24H) == tickets,
            900,
            f"{tickets} tickets created (24h) on /metrics",
            WORKER_POLL_S,
        )
        figures.kpis_s = shown - ready
    else:
        figures.kpis_s = figures.throughput_s
    figures.rss_after_stream = contender.rss_bytes()
    figures.produced = asyncio.run(produced_records(contender.deployment))
    say(
        f"{kind}: ready {figures.start_to_ready_s:.1f}s after start, {len(records)} records in "
        f"{figures.throughput_s:.2f}s = {figures.throughput_eps:,.0f}/s, KPIs complete after "
        f"{figures.kpis_s:.2f}s (load {load_average()})"
    )
    return figures, contender


async def produced_records(deployment: Deployment) -> dict[str, int]:
    """Records in every topic the contender wrote (all its topics but the inputs)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    inputs = {deployment.topic(kind) for kind in INPUT_KINDS}
    consumer = AIOKafkaConsumer(bootstrap_servers=deployment.bootstrap)
    await consumer.start()
    try:
        topics = [
            t
            for t in await consumer.topics()
            if t.startswith(deployment.prefix) and t not in inputs
        ]
        counts = {}
        for topic in sorted(topics):
            parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in parts]
            ends = await consumer.end_offsets(tps) if tps else {}
            counts[topic.removeprefix(deployment.prefix)] = sum(ends.values())
        return counts
    finally:
        await consumer.stop()


def _slug(kind: str) -> str:
    return kind.replace(" ", "-")


async def _probe_latency(contender: Contender, figures: Figures, probes: int, rate: float) -> None:
    from aiokafka import AIOKafkaProducer

    deployment = contender.deployment
    topic = deployment.topic("ticket-created")
    producer = AIOKafkaProducer(bootstrap_servers=deployment.bootstrap, acks="all", linger_ms=0)
    await producer.start()
    sent: dict[int, float] = {}
    seen: dict[int, float] = {}
    scrape_times: list[float] = []
    sizes: list[int] = []
    try:
        async with aiohttp.ClientSession() as session:

            async def read() -> tuple[float | None, dict[str, float]]:
                t0 = time.perf_counter()
                async with session.get(contender.url) as response:
                    body = await response.read()
                scrape_times.append(time.perf_counter() - t0)
                sizes.append(len(body))
                if isinstance(contender, Worker):
                    return metric_value(body.decode(), CREATED_15M), {}
                status = json.loads(body)
                return None, {k: float(v) for k, v in status["probes"].items()}

            async def send(index: int | str) -> float:
                ticket = f"probe-{index}"
                at = time.time()
                await producer.send_and_wait(
                    topic, created_record(ticket, at, 0).value, key=ticket.encode()
                )
                return at

            # warm-up: moves the stream clock to now (the simulated stream leaves the 15 min
            # window), then everything settles
            await send("warmup")
            deadline = time.monotonic() + 300
            base = 0.0
            while time.monotonic() < deadline:
                value, received = await read()
                if (value == 1.0) or ("probe-warmup" in received):
                    base = 1.0 if value is not None else 0.0
                    break
                await asyncio.sleep(0.05)
            else:
                raise TimeoutError(f"{contender.kind}: the warm-up probe never showed")
            await asyncio.sleep(3.0)
            scrape_times.clear()
            sizes.clear()

            async def poll() -> None:
                while len(seen) < probes:
                    value, received = await read()
                    now = time.time()
                    if value is not None:
                        for i in sent:
                            if i not in seen and value >= base + i:
                                seen[i] = now
                    for i in sent:
                        if i not in seen and f"probe-{i}" in received:
                            seen[i] = received[f"probe-{i}"]
                    await asyncio.sleep(0.02)

            poller = asyncio.create_task(poll())
            for i in range(1, probes + 1):
                sent[i] = await send(i)
                await asyncio.sleep(max(0.0, sent[i] + 1 / rate - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(poller, 30)
    finally:
        await producer.stop()
    figures.latency_ms = [1000 * (seen[i] - sent[i]) for i in sorted(seen)]
    figures.latency_missed = probes - len(seen)
    figures.scrape_ms = 1000 * statistics.mean(scrape_times) if scrape_times else 0.0
    figures.scrape_bytes = round(statistics.mean(sizes)) if sizes else 0


def latency(contender: Contender, figures: Figures, args: argparse.Namespace) -> None:
    figures.loads["latency"] = load_average()
    asyncio.run(_probe_latency(contender, figures, args.probes, args.probe_rate))
    lat = sorted(figures.latency_ms)
    say(
        f"{contender.kind}: latency p50 {pct(lat, 50):.0f} ms, p90 {pct(lat, 90):.0f} ms, "
        f"max {lat[-1] if lat else float('nan'):.0f} ms, missed {figures.latency_missed}"
    )


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    if not values:
        return float("nan")
    rank = max(1, -(-len(values) * p // 100))
    return values[int(rank) - 1]


def memory_and_recovery(
    kind: str, broker: EmbeddedBroker, figures: Figures, args: argparse.Namespace
) -> None:
    deployment = Deployment(
        broker.bootstrap_servers, f"bench-{_slug(kind)}-mem", args.partitions, args.clock
    )
    deployment.create_topics()
    tickets = open_tickets(args.tickets, time.time() - 3600)
    contender = make(kind, deployment).start()
    try:
        contender.wait_ready()
        time.sleep(3.0)
        figures.loads["memory"] = load_average()
        figures.rss_by_tickets[0] = contender.rss_bytes()
        loaded = 0
        for level in (args.tickets_mid, args.tickets):
            deployment.produce(tickets[loaded:level])
            loaded = level
            counted = wait_counted(contender, level, timeout=900, step=WORKER_POLL_S)
            if isinstance(contender, Worker):
                shown = _wait_open(contender, level)
                figures.open_lag_s[level] = shown - counted
            time.sleep(2.0)  # settle
            figures.rss_by_tickets[level] = contender.rss_bytes()
            say(
                f"{kind}: RSS {figures.rss_by_tickets[level] / 2**20:.1f} MiB at {level} tickets"
                f" (open tickets shown {figures.open_lag_s.get(level, 0):.1f}s after counted;"
                f" load {load_average()})"
            )
        figures.loads["recovery"] = load_average()
        if isinstance(contender, Worker):
            _worker_recovery(contender, figures)
        else:
            _bare_recovery(contender, figures)
    finally:
        contender.stop()


def _open_overall(worker: Worker) -> float | None:
    return metric_value(worker.scrape(), OPEN_OVERALL)


def _wait_open(worker: Worker, expected: int) -> float:
    """Wall time at which /metrics shows ``expected`` open tickets overall."""
    return wait_for(
        lambda: _open_overall(worker) == expected, 300, f"{expected} open tickets", WORKER_POLL_S
    )


def _worker_recovery(worker: Worker, figures: Figures) -> None:
    figures.open_before_kill = _open_overall(worker)
    worker.kill()
    worker.port = free_port()
    worker.start()
    ready = worker.wait_ready(timeout=180)
    figures.recovery_ready_s = ready - worker.started_at
    done = wait_for(
        lambda: _open_overall(worker) == figures.open_before_kill,
        180,
        "the same open tickets after the restart",
        0.02,
    )
    figures.recovery_s = done - worker.started_at
    say(
        f"worker: recovered {figures.open_before_kill:.0f} open tickets: ready "
        f"{figures.recovery_ready_s:.1f}s, KPIs back {figures.recovery_s:.1f}s after restart"
    )


def _bare_recovery(bare: Contender, figures: Figures) -> None:
    assert isinstance(bare, BareAgent)
    bare.kill()
    marker = created_record("probe-after-kill", time.time(), 0)
    bare.deployment.produce([marker])
    bare.port = free_port()
    bare.start()
    ready = bare.wait_ready(timeout=180)
    figures.recovery_ready_s = ready - bare.started_at

    def resumed() -> bool:
        status = bare.status()
        return status is not None and "probe-after-kill" in status["probes"]

    wait_for(resumed, 180, "the bare agent to consume after the restart", 0.02)
    status = bare.status()
    assert status is not None
    figures.recovery_s = float(status["probes"]["probe-after-kill"]) - bare.started_at
    say(
        f"bare agent: ready {figures.recovery_ready_s:.1f}s, consuming again "
        f"{figures.recovery_s:.1f}s after restart"
    )


def profile_worker(
    broker: EmbeddedBroker, records: Sequence[SimRecord], args: argparse.Namespace
) -> str:
    deployment = Deployment(broker.bootstrap_servers, "bench-worker-profile", args.partitions)
    deployment.create_topics()
    deployment.produce(records)
    out = Path(args.profile).resolve()
    worker = Worker(deployment, profile_to=out).start()
    try:
        ready = worker.wait_ready()
        done = wait_counted(worker, len(records), timeout=1800, step=0.2)
        say(f"worker under cProfile: {len(records) / (done - ready):,.0f}/s")
    finally:
        worker.stop(timeout=60)
    if not out.exists():
        return "(no profile written)"
    with tempfile.TemporaryFile("w+") as fh:
        stats = pstats.Stats(str(out), stream=fh)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
        fh.seek(0)
        return fh.read()


# -- report -----------------------------------------------------------------------------------


def machine() -> list[str]:
    cpu = cpu_model()
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return [
        f"- CPU: {cpu}",
        f"- nproc: {os.cpu_count()}",
        f"- RAM: {mem_kib / 2**20:.1f} GiB",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        f"- OS: {platform.platform()}",
    ]


def mib(n: int) -> float:
    return n / 2**20


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def report(
    args: argparse.Namespace,
    n_records: int,
    bare: Figures,
    worker: Figures,
    started: str,
    load_start: str,
    command: str,
) -> str:
    mid, top = int(args.tickets_mid), int(args.tickets)
    both = (bare, worker)

    def slope(f: Figures) -> float:
        return (f.rss_by_tickets[top] - f.rss_by_tickets[mid]) / (top - mid)

    def slope0(f: Figures) -> float:
        return (f.rss_by_tickets[top] - f.rss_by_tickets[0]) / top

    def lat(f: Figures, p: float) -> float:
        return pct(sorted(f.latency_ms), p)

    def lmax(f: Figures) -> float:
        return max(f.latency_ms) if f.latency_ms else float("nan")

    rows: list[tuple[str, str, str, str]] = []

    def row(label: str, fmt: str, b: float, w: float, *, with_ratio: bool = True) -> None:
        rows.append((label, format(b, fmt), format(w, fmt), ratio(w, b) if with_ratio else ""))

    row("start to ready (s)", ".1f", bare.start_to_ready_s, worker.start_to_ready_s)
    row(
        f"ready to {n_records:,} records counted (s)", ".2f", bare.throughput_s, worker.throughput_s
    )
    row(
        "**throughput, records counted (events/s)**",
        ",.0f",
        bare.throughput_eps,
        worker.throughput_eps,
    )
    row("ready to KPIs complete on /metrics (s)", ".2f", bare.kpis_s, worker.kpis_s)
    row(
        "**throughput to KPIs complete (events/s)**",
        ",.0f",
        n_records / bare.kpis_s,
        n_records / worker.kpis_s,
    )
    row(
        "**messages produced per input record, catch-up**",
        ".3f",
        sum(bare.produced.values()) / n_records,
        sum(worker.produced.values()) / n_records,
        with_ratio=False,
    )
    for p in (50, 90, 99):
        row(f"latency p{p} (ms)", ".0f", lat(bare, p), lat(worker, p))
    row("latency max (ms)", ".0f", lmax(bare), lmax(worker))
    row(
        "probes not seen within 30 s",
        "d",
        bare.latency_missed,
        worker.latency_missed,
        with_ratio=False,
    )
    row("RSS after the throughput stream (MiB)", ".1f", *(mib(f.rss_after_stream) for f in both))
    for level in (0, mid, top):
        rss = (mib(f.rss_by_tickets[level]) for f in both)
        row(f"RSS with {level:,} open tickets (MiB)", ".1f", *rss)
    row(f"**RSS slope {mid:,} to {top:,} tickets (B/ticket)**", ",.0f", *map(slope, both))
    row(f"RSS slope 0 to {top:,} tickets (B/ticket)", ",.0f", *map(slope0, both))
    row("recovery: restart to ready (s)", ".1f", bare.recovery_ready_s, worker.recovery_ready_s)
    row(
        "**recovery: restart to consuming / same KPIs (s)**",
        ".1f",
        bare.recovery_s,
        worker.recovery_s,
    )
    table = [
        "| measure | bare Faust agent | KPI worker | worker / bare |",
        "|---|---:|---:|---:|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
    ]
    loads = [
        "| phase | bare agent | worker |",
        "|---|---|---|",
        *(
            f"| {phase} | {bare.loads.get(phase, '')} | {worker.loads.get(phase, '')} |"
            for phase in ("throughput", "latency", "memory", "recovery")
        ),
    ]
    return "\n".join(
        [
            "# Full-pipeline benchmark: KPI worker vs bare Faust agent",
            "",
            f"Run `{command}` on {started} (`date -u`).",
            "",
            *machine(),
            f"- load average at start (1/5/15 min): {load_start}",
            "",
            f"Setup: embedded Tansu broker, {args.partitions} partitions per topic, one process "
            "per contender, contenders one after the other, each on its own fresh topics. Stream "
            f"(mix `{args.mix}`): {n_records:,} records of `streams.simulation.generate` "
            + (
                f"(steady, {RATE:g} tickets/h, "
                if args.mix == "steady"
                else f"(a day-long replay: {args.day_tickets:,} tickets over ~24 h of event time, "
            )
            + "2 % duplicates, 10 % out-of-order up to 2 min), produced before the contender "
            f"starts. Worker: `python -m streams.worker`, `SUPPORT_CLOCK={args.clock}`, default "
            "flush and publish intervals; session timeout "
            f"{SHORT_SESSION_TIMEOUT_SECONDS:g} s (both). Latency: "
            f"{args.probes} ticket-created probes at {args.probe_rate:g}/s after a warm-up. "
            f"Memory: a fresh contender, then {mid:,} and {top:,} open (never answered) tickets.",
            "",
            *table,
            "",
            "Records the worker produced during the throughput phase, by topic (end offsets; "
            "the embedded broker may leave out each partition's last batch): "
            + ", ".join(f"`{t}` {n:,}" for t, n in worker.produced.items())
            + ".",
            "",
            f"Scrape of the worker's `/metrics` during the latency phase: {worker.scrape_bytes:,} "
            f"bytes, {worker.scrape_ms:.1f} ms per request (bare `/count`: "
            f"{bare.scrape_ms:.1f} ms).",
            "",
            "Worker, memory phase: time from the last open ticket counted on "
            "`support_events_processed_total` to `support_open_tickets` (overall) showing them "
            "all: "
            + ", ".join(f"{s:.1f} s at {n:,} tickets" for n, s in worker.open_lag_s.items())
            + ".",
            "",
            "Load average (1/5/15 min) when each phase started:",
            "",
            *loads,
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=50_000, help="records in the stream")
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic")
    parser.add_argument("--tickets", type=int, default=50_000, help="open tickets, top level")
    parser.add_argument("--tickets-mid", type=int, default=20_000, help="open tickets, middle")
    parser.add_argument("--probes", type=int, default=200, help="latency probes")
    parser.add_argument("--probe-rate", type=float, default=50.0, help="probes per second")
    parser.add_argument(
        "--mix",
        choices=("steady", "day"),
        default="steady",
        help="steady: the simulator's stream (stream clock); day: --day-tickets tickets over "
        "24 h of event time, replayed with the wall clock",
    )
    parser.add_argument("--day-tickets", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", default=str(ROOT / "bench" / "RESULTS-pipeline.md"))
    parser.add_argument("--profile", help="also profile the worker (cProfile output file)")
    args = parser.parse_args(argv)
    if not 0 < args.tickets_mid < args.tickets:
        parser.error("need 0 < --tickets-mid < --tickets")
    command = "python bench/bench_pipeline.py " + " ".join(argv or sys.argv[1:])
    started = datetime.now(UTC).strftime("%a %b %d %H:%M:%S UTC %Y")
    load_start = load_average()
    args.clock = "stream" if args.mix == "steady" else "wall"
    if args.mix == "steady":
        records = simulated_records(args.events, args.seed)
    else:
        records = day_records(args.day_tickets, args.seed)
    say(f"{len(records)} simulated records; load {load_start}")
    results: dict[str, Figures] = {}
    with EmbeddedBroker() as broker:
        for kind in ("bare agent", "worker"):
            figures, contender = throughput(kind, broker, records, args)
            try:
                latency(contender, figures, args)
            finally:
                contender.stop()
            memory_and_recovery(kind, broker, figures, args)
            results[kind] = figures
        text = report(
            args,
            len(records),
            results["bare agent"],
            results["worker"],
            started,
            load_start,
            command.strip(),
        )
        Path(args.output).write_text(text)
        if args.profile:
            say("profiling the worker (cProfile)")
            profile = profile_worker(broker, records, args)
            Path(args.profile + ".txt").write_text(profile)
            say(f"profile summary in {args.profile}.txt")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
