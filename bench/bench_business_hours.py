"""Events/s of the pure KPI engine with and without business calendars (issue 12).

Run on demand (not part of the test suite)::

    python bench/bench_business_hours.py [--events 30000] [--repeat 5] [--output FILE]

The same decoded stream (``streams.simulation.generate``, steady profile with out-of-order
delivery and duplicates, on top of 10,000 pre-loaded open tickets, half unanswered; see
``bench_engine.py``) runs through ``PartitionEngine.process`` + ``housekeeping`` + ``flush`` +
``KpiStore.apply`` every 100 events, in four configurations: no calendars (everything calendar
time); the example calendars ``deploy/calendars.toml`` with both SLA policies on the calendar
clock; the same with both on the business clock (the first-response deadline of every
unanswered ticket is then found on its team's calendar); and the office-hours profile's stream
(agents answer in working hours only) with business clocks. Then the business-clock case
after 1,000, 10,000 and 50,000 open tickets (the per-event cost must not grow with the state),
and the Python heap per pre-loaded open ticket (tracemalloc, engine aggregates included) with
and without calendars.

Results go to ``bench/RESULTS-business-hours.md`` (or ``--output``) with the machine and date;
the "Reading the figures" notes at its end are written by hand and kept when it is re-run.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import subprocess
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import msgspec
from bench_engine import (
    preload_events,
    simulated_events,
)
from machine import cpu_model, load_average

from streams.calendar_file import load_calendars
from streams.core.kpis import EngineConfig
from streams.core.partition import DictTicketStore, PartialUpdate, PartitionEngine
from streams.core.store import KpiStore
from streams.core.units import to_us
from streams.events import PRIORITIES, Event

ROOT = Path(__file__).resolve().parent.parent
CALENDARS = ROOT / "deploy" / "calendars.toml"
TEAMS = ["Billing", "Technical", "Accounts", "Onboarding"]  # Billing has its own calendar
OPEN_TICKETS = 10_000
FLUSH_EVERY = 100
_NOTES = "## Reading the figures"

_WIRE_ENCODER = msgspec.msgpack.Encoder()
_WIRE_DECODER = msgspec.msgpack.Decoder(PartialUpdate)


def configs() -> dict[str, EngineConfig]:
    base = EngineConfig()
    calendars = load_calendars(CALENDARS)
    business = dict.fromkeys(PRIORITIES, "business")
    with_calendars = replace(base, calendars=calendars)
    on_business = replace(
        with_calendars,
        first_response_sla_clocks=business,  # type: ignore[arg-type]
        resolution_sla_clocks=business,  # type: ignore[arg-type]
    )
    return {
        "no calendars": base,
        "calendars, calendar-clock SLAs": with_calendars,
        "calendars, business-clock SLAs": on_business,
    }


class Engine:
    """One partition's engine and a stage-2 store, fed like the worker feeds them."""

    def __init__(self, config: EngineConfig) -> None:
        self.engine = PartitionEngine(0, DictTicketStore(), config)
        self.store = KpiStore(config)

    def feed(self, events: Sequence[Event]) -> None:
        engine = self.engine
        clock_us = 0
        for n, event in enumerate(events, 1):
            clock_us = max(engine.stream_time_us, to_us(event.occurred_at))
            engine.process(event, clock_us)
            if n % FLUSH_EVERY == 0 or n == len(events):
                engine.housekeeping(clock_us)
                for update in engine.flush():
                    self.store.apply(_WIRE_DECODER.decode(_WIRE_ENCODER.encode(update)))


@dataclass
class Row:
    name: str
    stream: str
    us_per_event: list[float]

    @property
    def best(self) -> float:
        return min(self.us_per_event)


Case = tuple[str, str, EngineConfig, list[Event], list[Event]]  # name, stream, config, pre, events


def timed(cases: Sequence[Case], repeat: int) -> list[Row]:
    """Per case: a fresh engine fed the pre-load (not timed), then the stream (timed).
    Round-robin over the cases, ``repeat`` rounds: load from other processes on a shared
    machine spreads over every case instead of skewing one."""
    rows = [Row(name, stream, []) for name, stream, _, _, _ in cases]
    for _ in range(repeat):
        for row, (_, _, config, preload, events) in zip(rows, cases, strict=True):
            engine = Engine(config)
            engine.feed(preload)
            gc.collect()
            started = time.perf_counter()
            engine.feed(events)
            row.us_per_event.append((time.perf_counter() - started) / len(events) * 1e6)
    return rows


def heap_per_open_ticket(config: EngineConfig, preload: list[Event]) -> float:
    """Python heap growth per pre-loaded open ticket (states, backlog and window partials)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tickets = DictTicketStore()
    engine = PartitionEngine(0, tickets, config)
    clock_us = 0
    for event in preload:
        clock_us = max(engine.stream_time_us, to_us(event.occurred_at))
        engine.process(event, clock_us)
    engine.housekeeping(clock_us)
    engine.flush()
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del engine, tickets
    return grown / OPEN_TICKETS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS-business-hours.md")
    args = parser.parse_args(argv)
    load = load_average()
    preload = preload_events(OPEN_TICKETS, TEAMS)
    steady = simulated_events(args.events, TEAMS, seed=7)
    office = simulated_events(args.events, TEAMS, seed=7, profile="office-hours")
    cases: list[Case] = [
        (name, "steady", config, preload, steady) for name, config in configs().items()
    ]
    business = configs()["calendars, business-clock SLAs"]
    cases.append(("calendars, business-clock SLAs", "office-hours", business, preload, office))
    rows = timed(cases, args.repeat)
    flat = timed(
        [
            (f"{n:,} open tickets", "steady", business, preload_events(n, TEAMS), steady)
            for n in (1_000, OPEN_TICKETS, 50_000)
        ],
        args.repeat,
    )
    heap = {name: heap_per_open_ticket(config, preload) for name, config in configs().items()}
    baseline = rows[0].best
    lines = [
        "# Business hours benchmark: engine events/s with and without calendars",
        "",
        f"Run `python bench/bench_business_hours.py` on "
        f"{subprocess.run(['date', '-u'], capture_output=True, text=True).stdout.strip()} "
        f"({args.events:,} simulated records after {OPEN_TICKETS:,} pre-loaded open tickets "
        f"per run, best and median of {args.repeat} rounds over the configurations, one "
        f"thread).",
        "",
        f"- CPU: {cpu_model()}",
        f"- nproc: {os.cpu_count()}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        f"- OS: {platform.platform()}",
        f"- load average at start (1/5/15 min): {load}",
        "",
        "Per event: `PartitionEngine.process`; every 100 events `housekeeping` + `flush`, each "
        "partial through the msgpack wire format and `KpiStore.apply`; the pre-load is fed "
        "first, untimed. Calendars: `deploy/calendars.toml` (Europe/Berlin split days for the "
        "default, New York for Billing). Teams: Billing, Technical, Accounts, Onboarding.",
        "",
        "| configuration | stream | µs/event (best) | µs/event (median) | events/s (best) "
        "| vs no calendars |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.stream} | {row.best:.1f} | "
            f"{statistics.median(row.us_per_event):.1f} | {1e6 / row.best:,.0f} | "
            f"{baseline / row.best:.2f}x |"
        )
    lines += [
        "",
        "Flat in the state: the same stream, business-clock SLAs, after more open tickets:",
        "",
        "| open tickets pre-loaded | µs/event (best) | µs/event (median) | events/s (best) |",
        "|---:|---:|---:|---:|",
        *(
            f"| {row.name.split()[0]} | {row.best:.1f} | "
            f"{statistics.median(row.us_per_event):.1f} | {1e6 / row.best:,.0f} |"
            for row in flat
        ),
        "",
        "Python heap per pre-loaded open ticket (half of them unanswered), engine state and "
        "aggregates included:",
        "",
        "| configuration | bytes per open ticket |",
        "|---|---:|",
        *(f"| {name} | {value:,.0f} |" for name, value in heap.items()),
        "",
    ]
    notes = args.output.read_text() if args.output.exists() else ""
    kept = notes[notes.find(_NOTES) :] if _NOTES in notes else ""  # hand-written, kept
    args.output.write_text("\n".join(lines) + kept)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
