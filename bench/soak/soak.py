"""Soak test (issue 8): steady simulator traffic with ticket churn for a long time; the
worker's memory and its changelogs must level off (memory follows open work, not history).

Run on demand (not part of ``make test`` or ``make bench``, which runs ``bench/*.py`` only)::

    python bench/soak/soak.py                       # 30 minutes (the issue's soak)
    python bench/soak/soak.py --duration 5m --windows 30s,1m,2m --grace 30s \\
        --retention 150s --attribute-retention 3m --bucket 10s  # compressed time

One embedded broker (Tansu), one worker (``python -m streams.worker``, wall clock) and the
simulator in real time (``--realtime``, steady profile, ``--rate`` tickets per hour, ticket
lives compressed by ``--time-scale`` so that tickets are created, answered, solved and
surveyed continuously). Windows, grace and retention are scaled down too, so that a finished
ticket's state is due for removal a few minutes after its last event and a level is reachable
within the run; the defaults suit 30 minutes.

Every ``--every`` seconds it records the worker's RSS (``VmRSS``), the open tickets it
reports (``support_open_tickets`` overall), events processed, and for each changelog topic
(``tickets``, ``kpi-partials``) the records written (the end offsets: Tansu never compacts)
and the live keys (what a compacted topic and the table hold), the latter from a consumer
that tails both changelogs. Results go to ``bench/RESULTS-soak.md`` (or ``--output``), with
the curve and a verdict: does each series level off (the last third's growth against the
middle third's)?
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ (machine.py)

from machine import cpu_model, load_average

from streams.durations import parse_duration
from streams_dev.broker import (
    SHORT_SESSION_TIMEOUT_SECONDS,
    EmbeddedBroker,
    create_topics,
)
from streams_dev.metrics import OVERALL, fetch_page, key, series, total
from streams_dev.processes import ChildProcess, free_port

APP_ID = "soak"
INPUTS = (
    "ticket-created",
    "ticket-replied",
    "ticket-escalated",
    "ticket-status-changed",
    "survey-submitted",
    "customer-lifecycle",
)
CHANGELOGS = (f"{APP_ID}-tickets-changelog", f"{APP_ID}-kpi-partials-changelog")


@dataclass
class Sample:
    elapsed: float
    rss: int
    open_tickets: float
    processed: float
    written: dict[str, int]
    live: dict[str, int]
    load: str


class ChangelogTail:
    """Tails the changelog topics in a thread: records written and live keys per topic."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.written = dict.fromkeys(CHANGELOGS, 0)
        self.keys: dict[str, set[bytes]] = {t: set() for t in CHANGELOGS}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def live(self) -> dict[str, int]:
        return {topic: len(keys) for topic, keys in self.keys.items()}

    async def _run(self) -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            metadata_max_age_ms=5000,
        )
        await consumer.start()
        try:
            consumer.subscribe(pattern=f"^{APP_ID}-.*-changelog$")
            while not self._stop.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, messages in batches.items():
                    keys = self.keys.setdefault(tp.topic, set())
                    self.written[tp.topic] = self.written.get(tp.topic, 0) + len(messages)
                    for message in messages:
                        if message.key is None:
                            continue
                        if message.value is None:
                            keys.discard(message.key)
                        else:
                            keys.add(message.key)
        finally:
            await consumer.stop()


def scrape(port: int) -> str:
    return fetch_page(f"http://127.0.0.1:{port}/metrics", timeout=10) or ""


def read_metrics(text: str) -> tuple[float, float]:
    """(overall open tickets, events processed) from a /metrics page."""
    page = series(text)
    open_tickets = page.get(key("support_open_tickets", **OVERALL), 0.0)
    return open_tickets, total(page, "support_events_processed_total") or 0.0


def verdict(values: list[float]) -> str:
    """ "levels off" when the last third of the run added at most a quarter of what the
    middle third added, or at most 5 % of the final value; else "still growing"."""
    n = len(values)
    if n < 6:
        return "too few samples"
    start, one_third, two_thirds, end = values[0], values[n // 3], values[2 * n // 3], values[-1]
    middle, last = two_thirds - one_third, end - two_thirds
    if last <= max(0.25 * middle, 0.05 * abs(end)) or end <= start:
        return f"levels off (+{middle:g} then {last:+g})"
    return f"still growing (+{middle:g} then {last:+g})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", default="30m")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--rate", type=float, default=3600.0, help="tickets per hour")
    parser.add_argument("--time-scale", default="0.05")
    parser.add_argument("--windows", default="1m,5m,10m")
    parser.add_argument("--bucket", default="10s")
    parser.add_argument("--grace", default="1m")
    parser.add_argument("--retention", default="11m")
    parser.add_argument(
        "--attribute-retention",
        default="15m",
        help="SUPPORT_ATTRIBUTE_RETENTION (scaled down like the retention, so retired tickets' "
        "attributes are forgotten within the run too)",
    )
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parents[1] / "RESULTS-soak.md"
    )
    args = parser.parse_args()
    duration = parse_duration(args.duration)
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    samples: list[Sample] = []
    started = datetime.now(UTC)

    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        topics = {name: args.partitions for name in (*INPUTS, "support-events-dlq")}
        topics["support-kpis"] = args.partitions
        asyncio.run(create_topics(bootstrap, topics, compacted=["support-kpis"]))
        port = free_port()
        env = {
            **os.environ,
            "SUPPORT_KAFKA_BOOTSTRAP": bootstrap,
            "SUPPORT_APP_ID": APP_ID,
            "SUPPORT_PARTITIONS": str(args.partitions),
            "SUPPORT_SESSION_TIMEOUT": f"{SHORT_SESSION_TIMEOUT_SECONDS}s",
            "SUPPORT_WEB_HOST": "127.0.0.1",
            "SUPPORT_WEB_PORT": str(port),
            "SUPPORT_WINDOWS": args.windows,
            "SUPPORT_BUCKET": args.bucket,
            "SUPPORT_GRACE": args.grace,
            "SUPPORT_RETENTION": args.retention,
            "SUPPORT_ATTRIBUTE_RETENTION": args.attribute_retention,
            "SUPPORT_ORPHAN_HOLD": args.retention,
            "SUPPORT_LOG_LEVEL": "warning",
        }
        worker = ChildProcess("worker", workdir / "worker.log")
        worker.spawn([sys.executable, "-m", "streams.worker"], cwd=workdir, env=env)
        deadline = time.monotonic() + 120
        while not scrape(port):
            if time.monotonic() > deadline or not worker.alive():
                raise SystemExit(f"the worker did not start; see {workdir / 'worker.log'}")
            time.sleep(1)
        simulator = ChildProcess("simulator", workdir / "simulator.log")
        simulator.spawn(
            [
                sys.executable,
                "-m",
                "streams.simulator",
                "--bootstrap-servers",
                bootstrap,
                "--realtime",
                "--profile",
                "steady",
                f"--rate={args.rate}",
                f"--time-scale={args.time_scale}",
                f"--duration={int(duration) + 60}s",
                f"--seed={args.seed}",
                "--quiet",
            ],
            cwd=workdir,
            env=env,
        )
        print(f"worker /metrics: http://127.0.0.1:{port}/metrics, logs in {workdir}", flush=True)
        tail = ChangelogTail(bootstrap)
        tail.start()
        began = time.monotonic()
        try:
            while (elapsed := time.monotonic() - began) < duration:
                time.sleep(max(0.0, args.every - (elapsed % args.every)))
                if not worker.alive():
                    raise SystemExit(f"the worker exited; see {workdir / 'worker.log'}")
                open_tickets, processed = read_metrics(scrape(port))
                sample = Sample(
                    elapsed=time.monotonic() - began,
                    rss=worker.rss_bytes(),
                    open_tickets=open_tickets,
                    processed=processed,
                    written=dict(tail.written),
                    live=tail.live(),
                    load=load_average(),
                )
                samples.append(sample)
                print(
                    f"[{sample.elapsed:6.0f}s] RSS {sample.rss / 2**20:6.1f} MiB · open "
                    f"{open_tickets:5.0f} · processed {processed:7.0f} · live keys "
                    + " ".join(f"{t.split('-')[1]}={n}" for t, n in sample.live.items())
                    + f" · load {sample.load}",
                    flush=True,
                )
        finally:
            tail.stop()
            for child in (simulator, worker):
                child.stop(30)
    write_results(args, started, samples)
    print(f"results: {args.output}")


def write_results(args: argparse.Namespace, started: datetime, samples: list[Sample]) -> None:
    rss = [round(s.rss / 2**20, 1) for s in samples]
    live_tickets = [float(s.live.get(CHANGELOGS[0], 0)) for s in samples]
    live_partials = [float(s.live.get(CHANGELOGS[1], 0)) for s in samples]
    opened = [s.open_tickets for s in samples]
    lines = [
        "# Soak results",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC for {args.duration} on {cpu_model()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, embedded Tansu broker.",
        f"Traffic: steady profile, {args.rate:g} tickets/h, time scale {args.time_scale}, "
        f"seed {args.seed}. Worker: windows {args.windows}, bucket {args.bucket}, "
        f"grace {args.grace}, retention and orphan hold {args.retention}, attribute "
        f"retention {args.attribute_retention}, "
        f"{args.partitions} partitions.",
        f"Command: `python bench/soak/soak.py {' '.join(sys.argv[1:])}`",
        "",
        "| verdict (last third vs middle third) | |",
        "|---|---|",
        f"| RSS | {verdict(rss)} |",
        f"| open tickets | {verdict(opened)} |",
        f"| tickets changelog, live keys | {verdict(live_tickets)} |",
        f"| kpi-partials changelog, live keys | {verdict(live_partials)} |",
        "",
        "Records written to the changelogs grow with traffic by design (Tansu never compacts;",
        "Kafka compacts them down to the live keys).",
        "",
        "| t (s) | RSS (MiB) | open tickets | events processed | tickets changelog: "
        "written / live | kpi-partials changelog: written / live | load |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in samples:
        t_written, p_written = (s.written.get(t, 0) for t in CHANGELOGS)
        t_live, p_live = (s.live.get(t, 0) for t in CHANGELOGS)
        lines.append(
            f"| {s.elapsed:.0f} | {s.rss / 2**20:.1f} | {s.open_tickets:.0f} | {s.processed:.0f}"
            f" | {t_written} / {t_live} | {p_written} / {p_live} | {s.load} |"
        )
    args.output.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
