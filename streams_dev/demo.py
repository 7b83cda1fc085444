"""``python -m streams_dev.demo`` (``make demo``): the whole pipeline on one machine, live.

Starts, in this order:

1. the embedded Kafka-API broker (Tansu, in memory, free loopback port) and the topics: the
   input topics, ``support-kpis`` (compacted) and ``support-events-dlq``, all with
   ``--partitions`` partitions;
2. one worker (``python -m streams.worker``) as a child process; its output goes to
   ``worker.log`` in the demo's temporary directory;
3. the traffic simulator, in this process: one simulated helpdesk whose history starts
   ``--backfill`` ago (sent at once, so the 1h/24h windows have data immediately) and which
   then runs in real time (``--profile``; ``incident`` starts a minute into the live part).
   Ticket lives run ten times faster than reality (time scale 0.1) and the traffic carries
   some duplicates, out-of-order deliveries and invalid records, so the health counters move.

Then it prints where ``/metrics`` is and, every ``--interval`` seconds, a short summary scraped
from it. Ctrl-C (or SIGTERM/SIGHUP) stops the simulator, the worker (SIGTERM, SIGKILL after a
timeout) and the broker, removes the temporary directory (unless ``--keep``) and exits 0. If a
child dies early, the demo prints the tail of its log, stops the rest, keeps the logs and exits 1.

The worker inherits the caller's ``SUPPORT_*`` variables (e.g. ``SUPPORT_SLA_TARGETS``), except
those the demo sets: ``SUPPORT_KAFKA_BOOTSTRAP``, ``SUPPORT_PARTITIONS``, ``SUPPORT_WEB_HOST``,
``SUPPORT_WEB_PORT``, ``SUPPORT_SESSION_TIMEOUT``, ``SUPPORT_APP_ID`` and ``SUPPORT_LOG_LEVEL``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from streams.calendar_file import load_calendars
from streams.durations import non_negative_duration, positive_duration
from streams.simulation import (
    DEFAULT_RATE,
    PROFILES,
    TOPICS,
    SimOptions,
    SimRecord,
    generate,
    send_to_kafka,
)
from streams_dev.broker import (
    SHORT_SESSION_TIMEOUT_SECONDS,
    BrokerStartError,
    EmbeddedBroker,
    TopicCreationError,
    create_topics,
)
from streams_dev.metrics import OVERALL, Series, fetch_page, key, series, total
from streams_dev.processes import ChildProcess, free_port

__all__ = ["Summary", "format_summary", "main"]

DEFAULT_WEB_PORT = 6066
DEFAULT_PARTITIONS = 4
APP_ID = "support-kpi-demo"
KPI_TOPIC = "support-kpis"
DLQ_TOPIC = "support-events-dlq"
LIFECYCLE_TOPIC = "customer-lifecycle"  # the simulator writes it in the churn profile
TIME_SCALE = 0.1
# The office-hours profile's calendars (in a source checkout) unless SUPPORT_CALENDARS_FILE is set.
DEMO_CALENDARS = Path(__file__).resolve().parent.parent / "deploy" / "calendars.toml"
INCIDENT_DELAY = 60.0  # the incident profile starts this long into the live part
WORKER_READY_TIMEOUT = 90.0
WORKER_STOP_TIMEOUT = 10.0
SIMULATOR_STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 30
MISSING = "—"

log = logging.getLogger("streams_dev.demo")


# --- the summary ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """The numbers the demo shows; ``None`` where the worker exports no value (yet)."""

    waiting: float | None = None
    oldest_waiting_seconds: float | None = None
    first_response_p50: Mapping[str, float | None] = field(default_factory=dict)
    sla_attainment_1h: float | None = None
    # with calendars (the office-hours profile): the 24 h median in business time
    first_response_business_p50_24h: float | None = None
    csat_24h: float | None = None
    nps_24h: float | None = None
    created_1h: float | None = None
    solved_1h: float | None = None
    escalation_ratio_1h: float | None = None
    processed_total: float | None = None
    rejected_total: float | None = None
    # support_pipeline_ready: 0 while the worker recovers or catches up (no KPI values then)
    ready: float | None = None
    # churn and retention (only with customer-lifecycle traffic, e.g. --profile churn)
    customer_window: str | None = None
    customers_active: float | None = None
    customers_churned: float | None = None
    customers_new: float | None = None
    churn_ratio: float | None = None
    retention_ratio: float | None = None

    @classmethod
    def from_series(cls, page: Series, windows: Sequence[str] = ("15m", "1h", "24h")) -> Summary:
        def overall(name: str, **labels: str) -> float | None:
            return page.get(key(name, **OVERALL, **labels))

        return cls(
            waiting=overall("support_unanswered_tickets"),
            oldest_waiting_seconds=overall("support_oldest_unanswered_age_seconds"),
            first_response_p50={
                w: overall("support_first_response_p50_seconds", window=w) for w in windows
            },
            sla_attainment_1h=overall("support_first_response_sla_attainment_ratio", window="1h"),
            first_response_business_p50_24h=overall(
                "support_first_response_business_p50_seconds", window="24h"
            ),
            csat_24h=overall("support_csat_satisfied_ratio", window="24h"),
            nps_24h=overall("support_nps_score", window="24h"),
            created_1h=overall("support_tickets_created", window="1h"),
            solved_1h=overall("support_tickets_solved", window="1h"),
            escalation_ratio_1h=overall("support_escalation_ratio", window="1h"),
            processed_total=total(page, "support_events_processed_total"),
            rejected_total=total(page, "support_events_rejected_total"),
            ready=page.get(key("support_pipeline_ready")),
            **_customers(page),
        )


def _customers(series: Series) -> dict[str, Any]:
    """The overall customer KPIs of one window (7d if exported, else the first one)."""
    windows = sorted(
        dict(labels)["window"]
        for name, labels in series
        if name == "support_customers_active_at_start" and ("segment", "all") in labels
    )
    if not windows:
        return {}
    window = "7d" if "7d" in windows else windows[0]

    def value(name: str, **labels: str) -> float | None:
        return series.get(key(name, segment="all", **labels))

    return {
        "customer_window": window,
        "customers_active": value("support_customers_active"),
        "customers_churned": value("support_customers_churned", window=window),
        "customers_new": value("support_customers_new", window=window),
        "churn_ratio": value("support_customer_churn_ratio", window=window),
        "retention_ratio": value("support_customer_retention_ratio", window=window),
    }


def _count(value: float | None) -> str:
    return MISSING if value is None else f"{value:.0f}"


def _percent(value: float | None) -> str:
    return MISSING if value is None else f"{value * 100:.1f}%"


def _score(value: float | None) -> str:
    return MISSING if value is None else f"{value:+.1f}"


def _duration(seconds: float | None) -> str:
    """Compact duration: 42s, 5m07s, 2h03m, 1d04h."""
    if seconds is None:
        return MISSING
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def format_summary(summary: Summary, elapsed: float) -> list[str]:
    """Three short lines (each under 100 characters for typical values), and a fourth with
    churn and retention when the worker exports customer KPIs."""
    stamp = f"[{_duration(elapsed):>6}]"
    pad = " " * len(stamp)
    p50 = " · ".join(f"{w} {_duration(v)}" for w, v in summary.first_response_p50.items())
    if summary.first_response_business_p50_24h is not None:
        p50 += f" (24h business {_duration(summary.first_response_business_p50_24h)})"
    if summary.ready is not None and summary.ready < 1:
        return [
            f"{stamp} catching up: events {_count(summary.processed_total)} processed, "
            f"{_count(summary.rejected_total)} rejected; KPIs show once complete"
        ]
    lines = [
        f"{stamp} waiting now {_count(summary.waiting)} · oldest "
        f"{_duration(summary.oldest_waiting_seconds)} · created/solved 1h "
        f"{_count(summary.created_1h)}/{_count(summary.solved_1h)} · escalation 1h "
        f"{_percent(summary.escalation_ratio_1h)}",
        f"{pad} first response p50: {p50} · SLA met 1h {_percent(summary.sla_attainment_1h)}",
        f"{pad} CSAT 24h {_percent(summary.csat_24h)} · NPS 24h {_score(summary.nps_24h)} · "
        f"events {_count(summary.processed_total)} processed, "
        f"{_count(summary.rejected_total)} rejected",
    ]
    window = summary.customer_window
    if window is not None:
        lines.append(
            f"{pad} customers active {_count(summary.customers_active)} · {window}: churn "
            f"{_percent(summary.churn_ratio)} ({_count(summary.customers_churned)}) · "
            f"retention {_percent(summary.retention_ratio)} · new "
            f"{_count(summary.customers_new)}"
        )
    return lines


# --- child processes -------------------------------------------------------------------------


def _port_free(port: int) -> bool:
    """Whether nothing listens on ``port`` (any IPv4 address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


class ChildDied(RuntimeError):
    """A part of the demo stopped on its own; the message says which, with its log tail."""


# --- the simulator ---------------------------------------------------------------------------


class _UntilNow(Iterator[SimRecord]):
    """Records due for delivery by ``cutoff``; keeps the first later one for :meth:`rest`."""

    def __init__(self, records: Iterator[SimRecord], cutoff: float) -> None:
        self._records = records
        self._cutoff = cutoff
        self._held: SimRecord | None = None
        self._done = False

    def __iter__(self) -> _UntilNow:
        return self

    def __next__(self) -> SimRecord:
        if self._done:
            raise StopIteration
        record = next(self._records, None)
        if record is None or record.deliver_at > self._cutoff:
            self._held = record
            self._done = True
            raise StopIteration
        return record

    def rest(self) -> Iterator[SimRecord]:
        if self._held is not None:
            yield self._held
        yield from self._records


@dataclass
class SimulatorState:
    sent: int = 0
    backfill_sent: int = 0
    backfill_seconds: float | None = None

    def count(self, sent: int, record: SimRecord) -> None:
        self.sent += 1


async def run_simulator(
    bootstrap: str,
    *,
    profile: str,
    seed: int,
    backfill: float,
    rate: float,
    state: SimulatorState,
    out: TextIO,
    calendars_file: str | None = None,
) -> None:
    """Backfill ``backfill`` seconds of history as fast as possible, then continue live.
    ``calendars_file``: the agents' working hours in the office-hours profile."""
    now = time.time()
    options = SimOptions(
        duplicate_rate=0.02,
        out_of_order=0.05,
        out_of_order_delay=60.0,
        bad_input_rate=0.005,
        time_scale=TIME_SCALE,
        incident_start=backfill + INCIDENT_DELAY if profile == "incident" else None,
        incident_ramp=300.0,
    )
    records = generate(
        profile,  # type: ignore[arg-type]  # checked by argparse choices
        seed=seed,
        start=now - backfill,
        rate=rate,
        options=options,
        calendars=None if calendars_file is None else load_calendars(calendars_file),
    )
    if backfill > 0:
        head = _UntilNow(records, now)
        began = time.monotonic()
        state.backfill_sent = await send_to_kafka(head, bootstrap, progress=state.count)
        state.backfill_seconds = time.monotonic() - began
        print(
            f"backfill: {state.backfill_sent} events ({_duration(backfill)} of history) "
            f"sent in {state.backfill_seconds:.1f}s; now live",
            file=out,
            flush=True,
        )
        records = head.rest()
    await send_to_kafka(records, bootstrap, realtime=True, progress=state.count)


# --- the demo --------------------------------------------------------------------------------


@dataclass
class Options:
    profile: str
    partitions: int
    port: int
    duration: float | None
    seed: int
    backfill: float
    rate: float
    interval: float
    keep: bool


class Demo:
    def __init__(self, options: Options, out: TextIO) -> None:
        self.options = options
        self.out = out
        self.tty = out.isatty()
        self.workdir = Path(tempfile.mkdtemp(prefix="support-kpi-demo-"))
        self.worker_log = self.workdir / "worker.log"
        self.broker_log = self.workdir / "broker.log"
        self.broker = EmbeddedBroker(log_path=self.broker_log)
        # stopped by the demo itself, after the simulator; SIGTERM if the demo dies
        self.worker = ChildProcess("worker", self.worker_log)
        self.simulator: asyncio.Task[None] | None = None
        self.sim_state = SimulatorState()
        self.stop_requested = asyncio.Event()
        self.hurry = asyncio.Event()
        self.web_port = 0
        self.metrics_answered = False
        self._drawn_lines = 0

    def say(self, text: str) -> None:
        if self.tty and self._drawn_lines:
            self._drawn_lines = 0  # keep the last summary; print below it
        print(text, file=self.out, flush=True)

    def request_stop(self, signum: int) -> None:
        if self.stop_requested.is_set():
            self.hurry.set()  # a second Ctrl-C: do not wait for graceful shutdowns
        else:
            self.say(f"\n{signal.Signals(signum).name}: stopping…")
            self.stop_requested.set()

    async def run(self) -> int:
        opts = self.options
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, self.request_stop, sig)
        failed = True
        try:
            await self._start()
            if not self.stop_requested.is_set():
                await self._watch()
            failed = False
            return 0
        except (ChildDied, BrokerStartError, TopicCreationError, ConnectionError) as exc:
            self.say(f"error: {exc}")
            return 1
        finally:
            await self._shutdown()
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            if opts.keep or failed:  # after a failure, keep the logs for a look
                self.say(f"logs kept in {self.workdir}")
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)

    async def _start(self) -> None:
        opts = self.options
        self.say(
            f"support-kpi demo: profile={opts.profile} seed={opts.seed} logs in {self.workdir}"
        )
        # 1. broker + topics (spawned from this, the main, thread: see EmbeddedBroker.spawn)
        self.broker.spawn()
        self.say(f"broker:    Tansu pid {self.broker.pid} on {self.broker.bootstrap_servers}")
        await asyncio.to_thread(self.broker.wait_ready)
        topics = {name: opts.partitions for name in (*TOPICS, LIFECYCLE_TOPIC, KPI_TOPIC)}
        topics[DLQ_TOPIC] = opts.partitions
        await create_topics(self.broker.bootstrap_servers, topics, compacted=[KPI_TOPIC])
        if self.stop_requested.is_set():
            return
        # 2. the worker
        self.web_port = self._pick_web_port()
        env = dict(os.environ)
        env.update(
            SUPPORT_KAFKA_BOOTSTRAP=self.broker.bootstrap_servers,
            SUPPORT_PARTITIONS=str(opts.partitions),
            SUPPORT_WEB_HOST="127.0.0.1",
            SUPPORT_WEB_PORT=str(self.web_port),
            SUPPORT_SESSION_TIMEOUT=f"{SHORT_SESSION_TIMEOUT_SECONDS:g}s",
            SUPPORT_APP_ID=APP_ID,
            SUPPORT_LOG_LEVEL="warning",
        )
        if opts.profile == "office-hours" and DEMO_CALENDARS.exists():
            # Business-time KPIs need calendars; the simulator's agents keep the same hours.
            env.setdefault("SUPPORT_CALENDARS_FILE", str(DEMO_CALENDARS))
        self.worker.spawn([sys.executable, "-m", "streams.worker"], env=env)  # main thread
        self.say(f"worker:    pid {self.worker.pid}, log {self.worker_log}")
        await self._wait_for_metrics()
        if self.stop_requested.is_set():
            return
        self.say(f"metrics:   {self.metrics_url}")
        # 3. the simulator
        self.simulator = asyncio.create_task(
            run_simulator(
                self.broker.bootstrap_servers,
                profile=opts.profile,
                seed=opts.seed,
                backfill=opts.backfill,
                rate=opts.rate,
                state=self.sim_state,
                out=self.out,
                calendars_file=env.get("SUPPORT_CALENDARS_FILE"),
            ),
            name="simulator",
        )
        live = "" if opts.profile != "incident" else f", incident from +{INCIDENT_DELAY:g}s"
        self.say(
            f"simulator: {opts.profile} traffic, {opts.rate:g} tickets/h, backfill "
            f"{_duration(opts.backfill)}, then live{live} (Ctrl-C stops everything)"
        )

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/metrics"

    def _pick_web_port(self) -> int:
        wanted = self.options.port
        if wanted == 0:
            return free_port()
        if _port_free(wanted):
            return wanted
        port = free_port()
        self.say(f"port {wanted} is taken; the worker serves /metrics on port {port} instead")
        return port

    async def _wait_for_metrics(self) -> None:
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        while not self.stop_requested.is_set():
            self._check_children()
            if await asyncio.to_thread(fetch_page, self.metrics_url, 1.0) is not None:
                self.metrics_answered = True
                return
            if time.monotonic() > deadline:
                raise ChildDied(
                    f"the worker did not serve {self.metrics_url} within "
                    f"{WORKER_READY_TIMEOUT:g}s; last lines of {self.worker_log}:\n"
                    f"{self.worker.log_tail(LOG_TAIL_LINES)}"
                )
            await self._sleep(0.3)

    def _check_children(self) -> None:
        if not self.broker.running:
            raise ChildDied(
                f"the broker stopped; last lines of its log ({self.broker_log}):\n"
                f"{self.broker.log_tail(LOG_TAIL_LINES)}"
            )
        if self.worker.pid is not None and not self.worker.alive():
            raise ChildDied(
                f"the worker exited with code {self.worker.returncode}; last lines of "
                f"{self.worker_log}:\n{self.worker.log_tail(LOG_TAIL_LINES)}"
            )
        sim = self.simulator
        if sim is not None and sim.done() and not sim.cancelled():
            error = sim.exception()
            raise ChildDied(f"the simulator stopped: {error!r}" if error else "simulator ended")

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_requested.wait(), seconds)

    async def _watch(self) -> None:
        opts = self.options
        began = time.monotonic()
        deadline = None if opts.duration is None else began + opts.duration
        while not self.stop_requested.is_set():
            await self._sleep(
                opts.interval
                if deadline is None
                else min(opts.interval, deadline - time.monotonic())
            )
            if self.stop_requested.is_set():
                break
            self._check_children()
            text = await asyncio.to_thread(fetch_page, self.metrics_url, 2.0)
            if text is None:
                self.say(f"(no answer from {self.metrics_url})")
            else:
                self.metrics_answered = True
                summary = Summary.from_series(series(text))
                self._draw(format_summary(summary, time.monotonic() - began))
            if deadline is not None and time.monotonic() >= deadline:
                self.say(f"--duration {opts.duration:g}s reached: stopping…")
                break

    def _draw(self, lines: list[str]) -> None:
        if self.tty and self._drawn_lines:
            self.out.write(f"\x1b[{self._drawn_lines}F\x1b[J")  # redraw in place
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
        self._drawn_lines = len(lines) if self.tty else 0

    async def _shutdown(self) -> None:
        sim = self.simulator
        if sim is not None and not sim.done():
            sim.cancel()  # send_to_kafka flushes what it handed over, then stops its producer
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(sim, SIMULATOR_STOP_TIMEOUT)
        if sim is not None:
            self.say(f"simulator: stopped after {self.sim_state.sent} events")
        worker = self.worker
        if worker.pid is not None:
            if worker.alive():
                worker.signal(signal.SIGTERM)
                if not await self._wait_exit(worker, WORKER_STOP_TIMEOUT):
                    self.say("worker:    still running; killing it")
            await asyncio.to_thread(worker.stop, 0)  # reaped; nothing left in its group
            self.say(f"worker:    stopped (exit code {worker.returncode})")
        if self.broker.pid is not None:
            await asyncio.to_thread(self.broker.stop)
            self.say("broker:    stopped")

    async def _wait_exit(self, child: ChildProcess, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while child.alive():
            if self.hurry.is_set() or time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        return True


# --- command line ----------------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535: {text!r}")
    return value


def _partitions(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"partitions must be 1-1024: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m streams_dev.demo",
        description="Run the support-KPI pipeline locally: embedded broker, one worker and "
        "the traffic simulator; print live KPIs and serve /metrics. Ctrl-C stops everything.",
    )
    p.add_argument("--profile", choices=PROFILES, default="steady", help="traffic profile")
    p.add_argument(
        "--partitions",
        type=_partitions,
        default=DEFAULT_PARTITIONS,
        help=f"partitions per topic [default {DEFAULT_PARTITIONS}]",
    )
    p.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_WEB_PORT,
        help=f"worker web port for /metrics; a free one if taken, 0: any free one "
        f"[default {DEFAULT_WEB_PORT}]",
    )
    p.add_argument(
        "--duration", type=positive_duration, help="stop by itself after this long (90s, 5m, ...)"
    )
    p.add_argument("--seed", type=int, help="simulator seed (default: random, printed)")
    p.add_argument(
        "--backfill",
        type=non_negative_duration,
        default=7200.0,
        help="history sent at start, so the long windows have data (0: none) [default 2h]",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        help=f"ticket arrivals per hour [default {DEFAULT_RATE:g}]",
    )
    p.add_argument(
        "--interval",
        type=positive_duration,
        default=3.0,
        help="seconds between summaries [default 3]",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.rate > 0:
        build_parser().error("--rate must be positive")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # shutdown chatter
    options = Options(
        profile=args.profile,
        partitions=args.partitions,
        port=args.port,
        duration=args.duration,
        seed=args.seed if args.seed is not None else random.SystemRandom().randrange(2**32),
        backfill=args.backfill,
        rate=args.rate,
        interval=args.interval,
        keep=args.keep,
    )

    stream = out if out is not None else sys.stdout
    if isinstance(stream, io.TextIOWrapper):
        stream.reconfigure(errors="replace")  # "—" and "·" on a terminal that lacks them

    async def run() -> int:
        return await Demo(options, stream).run()

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
