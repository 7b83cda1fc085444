"""Business-time queries: ``business_us`` with its per-calendar cache vs computing from scratch.

Run on demand::

    python bench/bench_calendar.py [--queries 50000] [--repeat 3] [--output FILE]

Calendars are those of ``deploy/calendars.toml`` (Berlin split days with holidays, New York,
an overnight night desk, 24/7). Queries are ticket-like ranges: a start anywhere in 2026 and a
length from a minute to a year, grouped by length. Timed, single-threaded:

- ``business_us`` with a warm cache (the cost the engine pays per KPI fact);
- ``business_us_uncached`` (the same result computed from the calendar rules every time);
- building one cache block (~48.5 days of one calendar) from a cold calendar;
- a ticket's requester wait (``requester_wait``: five status changes and one team move).

Every cached result is checked against the uncached one first. Results go to
``bench/RESULTS-calendar.md`` (or ``--output``) with the machine and the date.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from machine import cpu_model, load_average

from streams.calendar_file import load_calendars
from streams.core.calendar import Calendar, CalendarSet, business_us, business_us_uncached
from streams.core.clocks import requester_wait

ROOT = Path(__file__).resolve().parent.parent
US = 1_000_000
YEAR_START = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) * US
YEAR = 365 * 86_400 * US
LENGTHS = (  # (label, shortest, longest) in seconds
    ("1 min - 1 h", 60, 3600),
    ("1 h - 1 day", 3600, 86_400),
    ("1 day - 14 days", 86_400, 14 * 86_400),
    ("30 days - 1 year", 30 * 86_400, 365 * 86_400),
)
Query = tuple[Calendar, int, int]


def queries(
    calendars: Sequence[Calendar], count: int, low: int, high: int, seed: int
) -> list[Query]:
    rng = random.Random(seed)
    result = []
    for _ in range(count):
        start = YEAR_START + rng.randrange(YEAR)
        length = round(low * (high / low) ** rng.random() * US)  # log-uniform
        result.append((rng.choice(calendars), start, start + length))
    return result


def rate(function: Callable[[Calendar, int, int], int], work: list[Query], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for calendar, a, b in work:
            function(calendar, a, b)
        best = min(best, time.perf_counter() - start)
    return len(work) / best


def block_build_ms(calendars: Sequence[Calendar], repeat: int) -> float:
    """Milliseconds to build one cache block, on fresh copies (empty caches)."""
    best = float("inf")
    for _ in range(repeat):
        fresh = [replace(calendar, _blocks={}, _holiday_map={}) for calendar in calendars]
        start = time.perf_counter()
        for calendar in fresh:
            business_us(calendar, YEAR_START, YEAR_START + 1)
        best = min(best, (time.perf_counter() - start) / len(fresh))
    return best * 1000


def wait_rate(calendar_set: CalendarSet, count: int, repeat: int) -> float:
    rng = random.Random(7)
    tickets = []
    for _ in range(count):
        created = YEAR_START + rng.randrange(YEAR)
        times = sorted(created + rng.randrange(5 * 86_400 * US) for _ in range(6))
        statuses = list(
            zip(["open", "pending", "open", "on_hold", "solved"], times[1:], strict=True)
        )
        tickets.append((created, times[-1], statuses, [("Billing", times[2])]))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for created, solved, statuses, moves in tickets:
            requester_wait(
                created,
                solved,
                statuses,
                team="Support",
                team_changes=moves,
                calendars=calendar_set,
            )
        best = min(best, time.perf_counter() - start)
    return count / best


def machine() -> list[str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"- CPU: {cpu_model()}",
        f"- nproc: {usable}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        f"- OS: {platform.platform()}",
        f"- load average at start (1/5/15 min; other work on the machine skews figures): "
        f"{load_average()}",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--queries", type=int, default=50_000, help="cached queries per row")
    parser.add_argument("--uncached", type=int, default=2_000, help="uncached queries per row")
    parser.add_argument("--repeat", type=int, default=3, help="passes; the best one counts")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS-calendar.md")
    args = parser.parse_args(argv)

    calendar_set = load_calendars(ROOT / "deploy" / "calendars.toml")
    calendars = [calendar_set.default, *calendar_set.teams.values()]
    header = machine()
    rows = []
    for i, (label, low, high) in enumerate(LENGTHS):
        work = queries(calendars, args.queries, low, high, seed=i)
        uncached = min(args.uncached, args.queries) // (10 if high > 30 * 86_400 else 1)
        for calendar, a, b in work[:uncached]:  # the same answers, and a warm cache
            assert business_us(calendar, a, b) == business_us_uncached(calendar, a, b)
        cached_rate = rate(business_us, work, args.repeat)
        uncached_rate = rate(business_us_uncached, work[:uncached], args.repeat)
        rows.append((label, cached_rate, uncached_rate))
        print(f"{label:18s} cached {cached_rate:>12,.0f}/s  uncached {uncached_rate:>10,.0f}/s")
    build = block_build_ms(calendars, args.repeat)
    waits = wait_rate(calendar_set, args.queries // 5, args.repeat)
    blocks = sum(len(calendar._blocks) for calendar in calendars)
    intervals = sum(len(b.starts) for calendar in calendars for b in calendar._blocks.values())
    print(f"block build {build:.2f} ms, requester wait {waits:,.0f} tickets/s")

    lines = [
        "# Business-time benchmark",
        "",
        f"Run `python bench/bench_calendar.py` ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{args.queries:,} cached queries per row, best of {args.repeat} passes, one thread).",
        "",
        *header,
        "",
        "Calendars: the four of `deploy/calendars.toml` (Berlin split days + Saturday + "
        "holidays, New York with holidays, an overnight night desk, 24/7), queries spread over "
        "them. Start uniform in 2026, length log-uniform within the row's range. Every cached "
        "answer checked equal to the uncached one before timing.",
        "",
        "| range length | `business_us` (cached) queries/s | µs/query | uncached queries/s "
        "| µs/query | cached / uncached |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, cached_rate, uncached_rate in rows:
        lines.append(
            f"| {label} | {cached_rate:,.0f} | {1e6 / cached_rate:.2f} | {uncached_rate:,.0f} "
            f"| {1e6 / uncached_rate:.0f} | {cached_rate / uncached_rate:,.0f}x |"
        )
    lines += [
        "",
        f"- Building one cache block (~48.5 days of one calendar, from a cold calendar): "
        f"{build:.2f} ms. After all rows: {blocks} blocks ({blocks / len(calendars):.0f} per "
        f"calendar, {blocks / len(calendars) * 48.5:.0f} days each), {intervals:,} working "
        "intervals cached for the four calendars.",
        f"- `requester_wait` of a ticket (five status changes, one team move across calendars): "
        f"{waits:,.0f} tickets/s ({1e6 / waits:.1f} µs per ticket).",
        "",
        "Why: a cached query is two binary searches in the blocks of its start and end (~10 "
        "steps over some hundred intervals) plus one addition per block between them, so its "
        "cost hardly grows with the range; the uncached computation walks every local date of "
        "the range and converts its working intervals through the time zone, so it grows "
        "linearly with the range.",
        "",
    ]
    args.output.write_text("\n".join(lines))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
